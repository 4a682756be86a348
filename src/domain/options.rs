//! Neutral print options, parsed at the edge so an invalid value cannot exist inside.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An option outside its own range; the text names the option and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(String);

impl From<String> for InvalidOption {
    fn from(message: String) -> Self {
        InvalidOption(message)
    }
}

impl From<&str> for InvalidOption {
    fn from(message: &str) -> Self {
        InvalidOption(message.to_owned())
    }
}

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

impl OptionsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionsMode::Strict => "strict",
            OptionsMode::BestEffort => "best_effort",
        }
    }

    pub fn parse(s: &str) -> Option<OptionsMode> {
        [OptionsMode::Strict, OptionsMode::BestEffort]
            .into_iter()
            .find(|mode| mode.as_str() == s)
    }
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
    fn validate(&self) -> Result<(), InvalidOption> {
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
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if let Some(copies) = self.copies
            && !(1..=999).contains(&copies)
        {
            return Err(format!("`copies` must be between 1 and 999, got {copies}").into());
        }
        if let Some(paper) = &self.paper {
            paper.validate()?;
        }
        if let Some(ranges) = &self.page_ranges {
            PageRanges::parse(ranges)?;
        }
        if let Some(Scale::Percent(p)) = self.scale
            && !(1..=400).contains(&p)
        {
            return Err(format!("`scale` percent must be between 1 and 400, got {p}").into());
        }
        if let Some(tray) = &self.tray
            && (tray.is_empty() || tray.len() > 128)
        {
            return Err("`tray` must be a tray name of 1-128 characters".into());
        }
        Ok(())
    }

    /// `page_ranges` parsed. `None` when unset, or for a value that does not parse (every
    /// stored job's was checked by [`JobOptions::validate`] when it was accepted).
    pub fn parsed_page_ranges(&self) -> Option<PageRanges> {
        self.page_ranges
            .as_deref()
            .and_then(|raw| PageRanges::parse(raw).ok())
    }

    /// The options with `page_ranges` in its one written form (`"1-3,5"`), as stored and
    /// shown once a job is accepted. Call after [`JobOptions::validate`].
    pub fn normalised(mut self) -> JobOptions {
        if let Some(ranges) = self.parsed_page_ranges() {
            self.page_ranges = Some(ranges.to_string());
        }
        self
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

/// Pages to print: inclusive ranges of page numbers from 1, in the caller's order. The
/// one place that reads and writes the `"1-3,5"` form; vendors format it from the ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRanges(Vec<(u32, u32)>);

impl PageRanges {
    /// Parses `"1-3, 5"`; refuses empty parts, zero and reversed ranges.
    pub fn parse(raw: &str) -> Result<PageRanges, InvalidOption> {
        let bad = || {
            InvalidOption(format!(
                "`page_ranges` must look like \"1-3,5\" (pages from 1, ascending ranges), got {raw:?}"
            ))
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
        Ok(PageRanges(out))
    }

    /// The ranges, first and last page inclusive (a single page is `(n, n)`).
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }
}

/// The canonical form: `"1-3,5"` (no spaces, a single page without a dash).
impl std::fmt::Display for PageRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (start, end)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_parse_and_refuse() {
        assert_eq!(
            PageRanges::parse("1-3, 5").unwrap().ranges(),
            [(1, 3), (5, 5)]
        );
        for bad in ["", "0", "3-1", "1-", "a", "1,,2"] {
            assert!(PageRanges::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn page_ranges_have_one_written_form() {
        for (raw, canonical) in [("1-3, 5", "1-3,5"), (" 2 - 4 ", "2-4"), ("7-7,9", "7,9")] {
            assert_eq!(PageRanges::parse(raw).unwrap().to_string(), canonical);
        }
        let options = JobOptions {
            page_ranges: Some("1 - 3, 5".into()),
            ..Default::default()
        };
        assert_eq!(options.normalised().page_ranges.as_deref(), Some("1-3,5"));
    }

    #[test]
    fn option_ranges_are_checked() {
        let too_many = JobOptions {
            copies: Some(1000),
            ..Default::default()
        };
        assert!(
            too_many
                .validate()
                .unwrap_err()
                .to_string()
                .contains("copies")
        );
        let tiny = JobOptions {
            paper: Some(Paper::Custom {
                width_mm: 1.0,
                height_mm: 100.0,
            }),
            ..Default::default()
        };
        assert!(tiny.validate().unwrap_err().to_string().contains("paper"));
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
