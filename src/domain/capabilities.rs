//! The neutral capability document every backend normalises its vendor's description into,
//! and the check of a job's options against it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::options::{ColorMode, JobOptions, OptionsMode, Orientation, Paper, Sides};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaperSize {
    /// The vendor's id for this paper (Lianke `dmPaperSize`, Zhimu paper name).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width_mm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height_mm: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "papers": [{"id": "9", "name": "A4", "width_mm": 210.0, "height_mm": 297.0}],
    "color_modes": ["monochrome"],
    "sides": ["one_sided", "two_sided_long_edge", "two_sided_short_edge"],
    "copies_max": 999,
    "orientations": ["portrait", "landscape"],
    "trays": ["Tray 1", "Auto"],
    "media_types": ["Plain"],
    "custom_paper": true,
    "qualities": ["high", "normal", "draft"],
    "resolutions_dpi": ["300x300", "600x600"],
    "collate": true
}))]
pub struct Capabilities {
    pub papers: Vec<PaperSize>,
    pub color_modes: Vec<ColorMode>,
    pub sides: Vec<Sides>,
    pub copies_max: u16,
    pub orientations: Vec<Orientation>,
    #[serde(default)]
    pub trays: Vec<String>,
    #[serde(default)]
    pub media_types: Vec<String>,
    /// Whether custom paper sizes are accepted.
    #[serde(default)]
    pub custom_paper: bool,
    /// Print qualities the printer offers (`high`, `normal`, `low`, `draft`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qualities: Vec<String>,
    /// Resolutions in dpi, as `"600x600"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions_dpi: Vec<String>,
    /// Whether collated and uncollated copies can be chosen (absent: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collate: Option<bool>,
}

/// Options after the capability check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedOptions {
    pub applied: JobOptions,
    /// Names of options dropped in best-effort mode.
    pub dropped: Vec<String>,
}

/// An option the printer cannot honour, named for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option `{option}`: {reason}")]
pub struct UnsupportedOption {
    pub option: &'static str,
    pub reason: String,
}

impl Capabilities {
    pub fn find_paper(&self, name: &str) -> Option<&PaperSize> {
        let wanted = normalise(name);
        self.papers.iter().find(|p| normalise(&p.name) == wanted)
    }

    /// Checks options against what the printer can do. In strict mode the first
    /// unsupported option is an error; in best-effort mode it is dropped and named.
    pub fn check(
        &self,
        options: &JobOptions,
        mode: OptionsMode,
    ) -> Result<CheckedOptions, UnsupportedOption> {
        let mut applied = options.clone();
        let mut dropped = Vec::new();
        let mut problems: Vec<UnsupportedOption> = Vec::new();

        if let Some(copies) = options.copies
            && self.copies_max > 0
            && copies > self.copies_max
        {
            problems.push(UnsupportedOption {
                option: "copies",
                reason: format!("this printer prints at most {} copies", self.copies_max),
            });
            applied.copies = None;
        }
        match &options.paper {
            Some(Paper::Named(name)) if self.find_paper(name).is_none() => {
                let known: Vec<&str> = self.papers.iter().map(|p| p.name.as_str()).collect();
                problems.push(UnsupportedOption {
                    option: "paper",
                    reason: format!("this printer has no paper named {name:?}; it has {known:?}"),
                });
                applied.paper = None;
            }
            Some(Paper::Custom { .. }) if !self.custom_paper => {
                problems.push(UnsupportedOption {
                    option: "paper",
                    reason: "this printer does not accept custom paper sizes".into(),
                });
                applied.paper = None;
            }
            _ => {}
        }
        if let Some(color) = options.color
            && !self.color_modes.is_empty()
            && !self.color_modes.contains(&color)
        {
            problems.push(UnsupportedOption {
                option: "color",
                reason: format!("this printer supports {:?}", self.color_modes),
            });
            applied.color = None;
        }
        if let Some(sides) = options.sides
            && !self.sides.is_empty()
            && !self.sides.contains(&sides)
        {
            problems.push(UnsupportedOption {
                option: "sides",
                reason: format!("this printer supports {:?}", self.sides),
            });
            applied.sides = None;
        }
        if let Some(orientation) = options.orientation
            && !self.orientations.is_empty()
            && !self.orientations.contains(&orientation)
        {
            problems.push(UnsupportedOption {
                option: "orientation",
                reason: format!("this printer supports {:?}", self.orientations),
            });
            applied.orientation = None;
        }
        if let Some(tray) = &options.tray
            && !self.trays.iter().any(|t| t == tray)
        {
            problems.push(UnsupportedOption {
                option: "tray",
                reason: format!("this printer has the trays {:?}", self.trays),
            });
            applied.tray = None;
        }

        match mode {
            OptionsMode::Strict => match problems.into_iter().next() {
                Some(problem) => Err(problem),
                None => Ok(CheckedOptions { applied, dropped }),
            },
            OptionsMode::BestEffort => {
                dropped.extend(problems.into_iter().map(|p| p.option.to_owned()));
                Ok(CheckedOptions { applied, dropped })
            }
        }
    }
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace([' ', '_'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            papers: vec![PaperSize {
                id: "9".into(),
                name: "A4".into(),
                width_mm: Some(210.0),
                height_mm: Some(297.0),
            }],
            color_modes: vec![ColorMode::Monochrome],
            sides: vec![Sides::OneSided],
            copies_max: 99,
            orientations: vec![Orientation::Portrait, Orientation::Landscape],
            trays: vec![],
            media_types: vec![],
            custom_paper: false,
            ..Default::default()
        }
    }

    #[test]
    fn strict_mode_names_the_first_unsupported_option() {
        let options = JobOptions {
            color: Some(ColorMode::Color),
            ..Default::default()
        };
        let err = caps().check(&options, OptionsMode::Strict).unwrap_err();
        assert_eq!(err.option, "color");
    }

    #[test]
    fn best_effort_drops_and_lists() {
        let options = JobOptions {
            color: Some(ColorMode::Color),
            paper: Some(Paper::Named("a4".into())),
            copies: Some(500),
            ..Default::default()
        };
        let checked = caps().check(&options, OptionsMode::BestEffort).unwrap();
        assert_eq!(checked.dropped, vec!["copies", "color"]);
        assert_eq!(checked.applied.paper, Some(Paper::Named("a4".into())));
        assert_eq!(checked.applied.color, None);
    }
}
