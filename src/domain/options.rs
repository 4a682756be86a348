//! Neutral print options, parsed at the edge so an invalid value cannot exist inside.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How options the printer cannot honour are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptionsMode {
    /// Refuse the job with 422 naming the option (default).
    #[default]
    Strict,
    /// Drop what the printer cannot do; the job lists `applied_options` and `dropped_options`.
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    Portrait,
    Landscape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColorMode {
    Monochrome,
    Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    OneSided,
    TwoSidedLongEdge,
    TwoSidedShortEdge,
}

/// A paper: a well-known name (`A4`, `Letter`, …) or a custom size in millimetres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Paper {
    #[schema(example = "A4")]
    Named(String),
    Custom {
        width_mm: f64,
        height_mm: f64,
    },
}

impl Paper {
    fn validate(&self) -> Result<(), String> {
        match self {
            Paper::Named(name) if name.trim().is_empty() || name.len() > 64 => {
                Err("`paper` must be a paper name such as \"A4\" (1-64 characters) or {\"width_mm\", \"height_mm\"}".into())
            }
            Paper::Named(_) => Ok(()),
            Paper::Custom { width_mm, height_mm } => {
                let ok = |v: f64| v.is_finite() && (10.0..=2000.0).contains(&v);
                if ok(*width_mm) && ok(*height_mm) {
                    Ok(())
                } else {
                    Err("custom `paper` sizes must be between 10 and 2000 mm".into())
                }
            }
        }
    }
}

/// How the page is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "mode", content = "percent")]
pub enum Scale {
    Fit,
    FitWidth,
    FitHeight,
    Fill,
    Cover,
    None,
    /// Percent of the paper, 1-400.
    Percent(u16),
}

/// Options a caller may set on a job. Every field is optional; the printer's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"copies": 2, "paper": "A4", "color": "monochrome", "sides": "two_sided_long_edge"}))]
pub struct JobOptions {
    /// 1-999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 999)]
    pub copies: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<Paper>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<Orientation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<Sides>,
    /// Pages to print, e.g. `"1-3,5"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub page_ranges: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// A tray name from the printer's capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub tray: Option<String>,
    /// Backend-specific parameters, checked against that vendor's allow-list.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub vendor_options: serde_json::Map<String, serde_json::Value>,
}

impl JobOptions {
    /// Checks every value's own range. Capability checks come later, per printer.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(copies) = self.copies
            && !(1..=999).contains(&copies)
        {
            return Err(format!("`copies` must be between 1 and 999, got {copies}"));
        }
        if let Some(paper) = &self.paper {
            paper.validate()?;
        }
        if let Some(ranges) = &self.page_ranges {
            parse_page_ranges(ranges)?;
        }
        if let Some(Scale::Percent(p)) = self.scale
            && !(1..=400).contains(&p)
        {
            return Err(format!(
                "`scale` percent must be between 1 and 400, got {p}"
            ));
        }
        if let Some(tray) = &self.tray
            && (tray.is_empty() || tray.len() > 128)
        {
            return Err("`tray` must be a tray name of 1-128 characters".into());
        }
        Ok(())
    }

    /// Fills every option the caller left out from the printer's defaults.
    pub fn with_defaults(mut self, defaults: &JobOptions) -> JobOptions {
        self.copies = self.copies.or(defaults.copies);
        self.paper = self.paper.or_else(|| defaults.paper.clone());
        self.orientation = self.orientation.or(defaults.orientation);
        self.color = self.color.or(defaults.color);
        self.sides = self.sides.or(defaults.sides);
        self.page_ranges = self.page_ranges.or_else(|| defaults.page_ranges.clone());
        self.scale = self.scale.or(defaults.scale);
        self.tray = self.tray.or_else(|| defaults.tray.clone());
        for (key, value) in &defaults.vendor_options {
            self.vendor_options
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        self
    }
}

/// Parses `"1-3,5"` into inclusive ranges; refuses empty parts, zero and reversed ranges.
pub fn parse_page_ranges(raw: &str) -> Result<Vec<(u32, u32)>, String> {
    let bad = || {
        format!(
            "`page_ranges` must look like \"1-3,5\" (pages from 1, ascending ranges), got {raw:?}"
        )
    };
    let mut out = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        let (start, end) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let start: u32 = start.parse().map_err(|_| bad())?;
        let end: u32 = end.parse().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(bad());
        }
        out.push((start, end));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_parse_and_refuse() {
        assert_eq!(parse_page_ranges("1-3, 5").unwrap(), vec![(1, 3), (5, 5)]);
        for bad in ["", "0", "3-1", "1-", "a", "1,,2"] {
            assert!(parse_page_ranges(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn option_ranges_are_checked() {
        let too_many = JobOptions {
            copies: Some(1000),
            ..Default::default()
        };
        assert!(too_many.validate().unwrap_err().contains("copies"));
        let tiny = JobOptions {
            paper: Some(Paper::Custom {
                width_mm: 1.0,
                height_mm: 100.0,
            }),
            ..Default::default()
        };
        assert!(tiny.validate().unwrap_err().contains("paper"));
    }

    #[test]
    fn unknown_option_names_are_refused() {
        let err = serde_json::from_str::<JobOptions>(r#"{"colour":"color"}"#).unwrap_err();
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let defaults = JobOptions {
            copies: Some(2),
            color: Some(ColorMode::Monochrome),
            ..Default::default()
        };
        let asked = JobOptions {
            color: Some(ColorMode::Color),
            ..Default::default()
        };
        let merged = asked.with_defaults(&defaults);
        assert_eq!(merged.copies, Some(2));
        assert_eq!(merged.color, Some(ColorMode::Color));
    }
}
