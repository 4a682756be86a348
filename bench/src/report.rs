//! The table: one row per SPEC §8 number, with the limit it is compared with, the ratio and
//! the verdict; written as Markdown and JSON.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub path: String,
    pub gateway: String,
    pub limit: String,
    pub ratio: Option<f64>,
    pub target: String,
    /// `None`: informational row, no target.
    pub pass: Option<bool>,
    /// Machine-readable value (the gateway's number, in the row's unit).
    pub value: Option<f64>,
}

impl Row {
    pub fn info(
        path: impl Into<String>,
        gateway: impl Into<String>,
        limit: impl Into<String>,
    ) -> Row {
        Row {
            path: path.into(),
            gateway: gateway.into(),
            limit: limit.into(),
            ratio: None,
            target: "—".into(),
            pass: None,
            value: None,
        }
    }

    /// A rate compared with a limit: passes when gateway / limit ≥ `min_ratio`.
    pub fn ratio(path: &str, gateway: f64, limit_name: &str, limit: f64, min_ratio: f64) -> Row {
        let ratio = if limit > 0.0 { gateway / limit } else { 0.0 };
        Row {
            path: path.into(),
            gateway: fmt_rate(gateway),
            limit: format!("{limit_name}: {}", fmt_rate(limit)),
            ratio: Some(ratio),
            target: format!("≥ {min_ratio:.2}"),
            pass: Some(ratio >= min_ratio),
            value: Some(gateway),
        }
    }

    /// A number that must stay at or below `max`.
    pub fn at_most(path: &str, value: f64, unit: &str, limit: String, max: f64) -> Row {
        Row {
            path: path.into(),
            gateway: format!("{} {unit}", fmt_num(value)),
            limit,
            ratio: None,
            target: format!("≤ {} {unit}", fmt_num(max)),
            pass: Some(value <= max),
            value: Some(value),
        }
    }

    /// A number that must reach at least `min`.
    pub fn at_least(path: &str, value: f64, unit: &str, limit: String, min: f64) -> Row {
        Row {
            path: path.into(),
            gateway: format!("{} {unit}", fmt_num(value)),
            limit,
            ratio: None,
            target: format!("≥ {} {unit}", fmt_num(min)),
            pass: Some(value >= min),
            value: Some(value),
        }
    }
}

pub fn fmt_rate(v: f64) -> String {
    format!("{}/s", fmt_num(v))
}

pub fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        let n = v.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| path | gateway | limit in the same run | ratio | SPEC §8 | pass |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.path,
            r.gateway,
            r.limit,
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "—".into()),
            r.target,
            match r.pass {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "",
            }
        ));
    }
    out
}
