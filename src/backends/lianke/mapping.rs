//! Neutral ⇄ Lianke: task states, the error catalog, print options → form fields, and
//! `printer_params` → the neutral capability document. Each table is one `match` to check
//! against `lianke-v3.readable.txt`; the tests below pin every arm.

use std::collections::BTreeMap;

use serde_json::Value;

use super::wire::{LiankeTaskState, PaperDimension, PrinterParams, PrinterStatusData, TaskResult};
use crate::backends::{OutcomeClass, SubmitFailure, TaskProgress, UnsupportedOption, VendorError};
use crate::domain::capabilities::PaperSize;
use crate::domain::options::{ColorMode, Orientation, PageRanges, Paper, Scale, Sides};
use crate::domain::{Capabilities, Decision, ErrorCode, JobError, JobOptions};

// ---------------------------------------------------------------------------------------
// Task states (SPEC §2)

/// `task_state` (+ `task_result` once SUCCESS) → neutral progress.
pub fn task_progress(state: &LiankeTaskState, result: Option<&TaskResult>) -> TaskProgress {
    let processing = |reason: &str| TaskProgress::Processing {
        reason: reason.to_owned(),
    };
    match state {
        LiankeTaskState::Ready => processing("queued_at_vendor"),
        LiankeTaskState::Parsing => processing("rendering"),
        LiankeTaskState::Sending => processing("sending"),
        LiankeTaskState::SetRevoke => processing("cancel_requested"),
        LiankeTaskState::Success => match result {
            Some(r) if r.code == 200 => TaskProgress::Completed,
            Some(r) => TaskProgress::Failed {
                error: task_result_error(r.code, r.msg.as_deref()),
            },
            // The doc adds task_result when the queue state is SUCCESS; until it shows,
            // the outcome is not known.
            None => processing("awaiting_result"),
        },
        LiankeTaskState::Failure => TaskProgress::Failed {
            error: match result {
                Some(r) => task_result_error(r.code, r.msg.as_deref()),
                None => JobError {
                    code: ErrorCode::PrintFailed,
                    message: "Lianke reports the task failed".into(),
                    vendor_code: None,
                    vendor_message: None,
                },
            },
        },
        LiankeTaskState::Revoked => TaskProgress::Canceled,
        LiankeTaskState::Unknown(word) => {
            tracing::warn!(task_state = %word, "Lianke reported a task state the docs do not list; polling on");
            processing("unknown_vendor_status")
        }
    }
}

/// A finished task's `task_result.code` ≠ 200 → the job's error. Codes from the doc's
/// examples: 497 no printer, 500/503 the box lost its connection, 502 conversion failed.
pub fn task_result_error(code: i64, msg: Option<&str>) -> JobError {
    let (neutral, message) = match code {
        497 => (
            ErrorCode::PrinterUnavailable,
            "no printer answered on the box's port",
        ),
        500 | 503 => (
            ErrorCode::DeviceOffline,
            "the cloud box lost its connection while printing",
        ),
        502 => (
            ErrorCode::VendorRejected,
            "Lianke could not convert the document for this printer",
        ),
        _ => (ErrorCode::PrintFailed, "Lianke reports the print failed"),
    };
    JobError {
        code: neutral,
        message: message.to_owned(),
        vendor_code: Some(code.to_string()),
        vendor_message: msg.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------------------
// Error catalog

/// Which Lianke call answered: a few codes mean different things per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Submit,
    TaskQuery,
    Cancel,
    DeviceTasks,
    DeviceInfo,
    PrinterList,
    PrinterStatus,
    PrinterParams,
    ResetErrorLimit,
    FlushJobs,
}

/// A Lianke `code` ≠ 200 → neutral code + decision. `no_printer_waits`: LIANKE_NO_PRINTER.
pub fn classify(code: i64, msg: &str, call: Call, no_printer_waits: bool) -> VendorError {
    let no_printer_decision = if no_printer_waits {
        Decision::WaitForDevice
    } else {
        Decision::Fail
    };
    let err = match code {
        // ApiKey missing or unknown (the doc gives no code; the simulator's choice).
        403 => VendorError::new(
            ErrorCode::VendorAuthFailed,
            Decision::Fail,
            "Lianke refused the gateway's ApiKey (check LIANKE_API_KEY)",
        ),
        // A parameter was missing or malformed.
        400 => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "Lianke refused the request's parameters",
        ),
        404 if matches!(call, Call::TaskQuery | Call::Cancel) => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Retry,
            "Lianke does not know this task (or the device id/key is wrong)",
        ),
        404 if call == Call::PrinterParams => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "Lianke does not know this printer model (printer_model)",
        ),
        // 设备id或密码错误
        404 => VendorError::new(
            ErrorCode::PrinterAuthFailed,
            Decision::Fail,
            "Lianke refused the device id or device key",
        ),
        // 未检测到打印机 (printer_status, and a task_result code)
        497 => VendorError::new(
            ErrorCode::PrinterUnavailable,
            no_printer_decision,
            "no printer is plugged into this port of the cloud box",
        )
        .counting_for_breaker(false),
        // 设备未配网
        5001 => VendorError::new(
            ErrorCode::DeviceOffline,
            Decision::WaitForDevice,
            "the cloud box has never been connected to a network",
        )
        .counting_for_breaker(false),
        // 设备已离线
        5002 => VendorError::new(
            ErrorCode::DeviceOffline,
            Decision::WaitForDevice,
            "the cloud box is offline",
        )
        .counting_for_breaker(false),
        // 该USB接口未插入打印机 (reportPrinterStatus=1)
        5011 => VendorError::new(
            ErrorCode::PrinterUnavailable,
            no_printer_decision,
            "no printer is plugged into this USB port of the cloud box",
        )
        .counting_for_breaker(false),
        // 请求频繁，单个设备同时只允许调用一次
        10009 => VendorError::new(
            ErrorCode::DeviceBusy,
            Decision::RetrySoon,
            "the cloud box is busy with another call",
        )
        .counting_for_breaker(false),
        // 正在刷新中 / 正在重启中
        401 => VendorError::new(
            ErrorCode::DeviceBusy,
            Decision::RetrySoon,
            "the cloud box is refreshing or rebooting",
        )
        .counting_for_breaker(false),
        // errLimitNum consecutive failed tasks: suspended for 30 minutes or until reset.
        11203 => VendorError::new(
            ErrorCode::DeviceSuspended,
            Decision::WaitForDevice,
            "Lianke suspended the cloud box after too many failed tasks; an operator can lift it with POST /v1/printers/{id}/reset-error-limit",
        )
        .opening_breaker(),
        // reset_printing_error_limit: 10 a day per device.
        11200 => VendorError::new(
            ErrorCode::VendorRateLimited,
            Decision::Fail,
            "Lianke allows 10 error-limit resets per device a day; today's are used up",
        )
        .counting_for_breaker(false),
        // reset_printing_error_limit: nothing to reset.
        11201 => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "the cloud box has no failed tasks to reset",
        )
        .counting_for_breaker(false),
        _ => VendorError::new(
            ErrorCode::VendorUnavailable,
            Decision::Retry,
            "Lianke answered with an error code the gateway does not know",
        ),
    };
    err.with_vendor(code, msg)
}

/// SPEC §4 outcome classes of a failed `POST /api/print/job`, one row per kind of failure.
/// Lianke answers HTTP 200 even for its own errors (the envelope's `code`), so any other
/// status comes from a proxy or a failing server: a 5xx may follow the task's creation,
/// a 4xx (413 too large, 429, 404) means the request was turned away before it.
pub fn submit_outcome(failure: SubmitFailure) -> OutcomeClass {
    match failure {
        SubmitFailure::ConnectFailed => OutcomeClass::NotSent,
        SubmitFailure::TimedOut => OutcomeClass::Unknown,
        SubmitFailure::ConnectionBroken => OutcomeClass::Unknown,
        SubmitFailure::HttpStatus(500..=599) => OutcomeClass::Unknown,
        SubmitFailure::HttpStatus(_) => OutcomeClass::NotSent,
        SubmitFailure::UnreadableAnswer => OutcomeClass::Unknown,
        SubmitFailure::Envelope => OutcomeClass::Catalog,
    }
}

/// An HTTP status other than 200 (Lianke answers 200 even for its own errors, so this is
/// a proxy or server failure).
pub fn classify_http(status: u16) -> VendorError {
    VendorError::new(
        ErrorCode::VendorUnavailable,
        Decision::Retry,
        format!("Lianke answered HTTP {status}"),
    )
    .with_vendor(format!("http_{status}"), format!("HTTP {status}"))
}

// ---------------------------------------------------------------------------------------
// Options → form fields

/// Windows DMPAPER ids for well-known paper names, used when a printer's capabilities were
/// never fetched (Lianke's `dmPaperSize` values are these ids: A4 9, A5 11, Letter 1, …).
pub fn builtin_paper_id(name: &str) -> Option<i64> {
    let n = name.trim().to_ascii_lowercase().replace([' ', '_'], "");
    let id = match n.as_str() {
        "letter" => 1,
        "tabloid" => 3,
        "legal" => 5,
        "executive" => 7,
        "a3" => 8,
        "a4" => 9,
        "a5" => 11,
        "b4" | "b4(jis)" => 12,
        "b5" | "b5(jis)" => 13,
        "a6" => 70,
        _ => return None,
    };
    Some(id)
}

/// The paper when the job names none and the driver's default is unknown: A4.
pub const FALLBACK_PAPER_ID: i64 = 9;

/// Neutral scale → `jpScale`.
pub fn scale_value(scale: Scale) -> String {
    match scale {
        Scale::Fit => "fit".into(),
        Scale::FitWidth => "fitw".into(),
        Scale::FitHeight => "fith".into(),
        Scale::Fill => "fill".into(),
        Scale::Cover => "cover".into(),
        Scale::None => "none".into(),
        Scale::Percent(p) => format!("{p}%"),
    }
}

pub fn color_value(color: ColorMode) -> i64 {
    match color {
        ColorMode::Monochrome => 1,
        ColorMode::Color => 2,
    }
}

pub fn duplex_value(sides: Sides) -> i64 {
    match sides {
        Sides::OneSided => 1,
        Sides::TwoSidedLongEdge => 2,
        Sides::TwoSidedShortEdge => 3,
    }
}

pub fn orientation_value(orientation: Orientation) -> i64 {
    match orientation {
        Orientation::Portrait => 1,
        Orientation::Landscape => 2,
    }
}

/// The `dm*`/`jp*` fields for a job's options, in the doc's order. `params` is the cached
/// `printer_params` of the model when the gateway has it (tray ids, driver defaults).
pub fn option_fields(
    options: &JobOptions,
    caps: Option<&Capabilities>,
    params: Option<&PrinterParams>,
) -> Result<Vec<(&'static str, String)>, VendorError> {
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    let rejected = |message: String| {
        VendorError::new(ErrorCode::VendorRejected, Decision::Fail, message)
            .counting_for_breaker(false)
    };
    // dmPaperSize is required: the named paper's id, 0 + size for custom paper, else the
    // driver's default (DevMode.PaperSize), else A4.
    match &options.paper {
        Some(Paper::Named(name)) => {
            let id = caps
                .and_then(|c| c.find_paper(name))
                .and_then(|p| p.id.parse::<i64>().ok())
                .or_else(|| builtin_paper_id(name))
                .ok_or_else(|| {
                    rejected(format!(
                        "paper {name:?} is not known for this printer; fetch its capabilities (GET /v1/printers/{{id}}/capabilities) to see its papers"
                    ))
                })?;
            fields.push(("dmPaperSize", id.to_string()));
        }
        Some(Paper::Custom {
            width_mm,
            height_mm,
        }) => {
            // Custom sizes: dmPaperSize=0 and the size in 0.1 mm.
            fields.push(("dmPaperSize", "0".into()));
            fields.push(("dmPaperWidth", tenth_mm(*width_mm)));
            fields.push(("dmPaperLength", tenth_mm(*height_mm)));
        }
        None => {
            let id = params
                .and_then(|p| p.dev_mode.as_ref())
                .and_then(|d| d.paper_size)
                .unwrap_or(FALLBACK_PAPER_ID);
            fields.push(("dmPaperSize", id.to_string()));
        }
    }
    if let Some(orientation) = options.orientation {
        fields.push(("dmOrientation", orientation_value(orientation).to_string()));
    }
    if let Some(copies) = options.copies {
        fields.push(("dmCopies", copies.to_string()));
    }
    if let Some(tray) = &options.tray {
        let id = params
            .and_then(|p| p.capabilities.bins.get(tray.trim()).copied())
            .or_else(|| tray.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                rejected(format!(
                    "tray {tray:?} is not one of this printer's trays (see its capabilities)"
                ))
            })?;
        fields.push(("dmDefaultSource", id.to_string()));
    }
    if let Some(color) = options.color {
        fields.push(("dmColor", color_value(color).to_string()));
    }
    if let Some(sides) = options.sides {
        fields.push(("dmDuplex", duplex_value(sides).to_string()));
    }
    if let Some(ranges) = options.parsed_page_ranges() {
        fields.push(("jpPageRange", page_range_value(&ranges)));
    }
    // One of jpAutoScale / jpScale is required; jpScale supersedes jpAutoScale.
    fields.push(("jpScale", scale_value(options.scale.unwrap_or(Scale::Fit))));
    Ok(fields)
}

/// `jpPageRange`: "例如：1,2,3,4,5-10" — pages and ranges separated by commas, no spaces.
/// (The doc's special values -1/-2, odd/even pages, have no neutral option.)
fn page_range_value(ranges: &PageRanges) -> String {
    ranges
        .ranges()
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn tenth_mm(mm: f64) -> String {
    ((mm * 10.0).round() as i64).to_string()
}

/// `vendor_options` the gateway passes through, with the values the doc allows.
pub const VENDOR_OPTIONS: &[&str] = &[
    "jpAutoAlign",
    "jpAutoRotate",
    "pdfRev",
    "dmPrintQuality",
    "dmMediaType",
    "htmlKernel",
    "isPreview",
    "reportPrinterStatus",
    "errLimitNum",
];

/// Checks one vendor option; the value as the form will carry it.
pub fn vendor_option_value(name: &str, value: &Value) -> Result<String, UnsupportedOption> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        _ => {
            return Err(format!("vendor option `{name}` must be a string or a number").into());
        }
    };
    let int = text.parse::<i64>().ok();
    let ok = match name {
        "jpAutoAlign" => matches!(
            text.as_str(),
            "" | "z1" | "z2" | "z3" | "z4" | "z5" | "z6" | "z7" | "z8" | "z9"
        ),
        "jpAutoRotate" | "pdfRev" | "isPreview" | "reportPrinterStatus" => {
            matches!(text.as_str(), "0" | "1")
        }
        "dmPrintQuality" => matches!(int, Some(-4..=-1)),
        "dmMediaType" => int.is_some_and(|n| n >= 0),
        "htmlKernel" => matches!(text.as_str(), "wkhtml" | "chrometopdf" | "wkhtmltopdf"),
        // The gateway's breaker should act first, so only lower values make sense.
        "errLimitNum" => matches!(int, Some(1..=30)),
        _ => {
            return Err(format!(
                "vendor option `{name}` is not accepted by the lianke backend; accepted: {}",
                VENDOR_OPTIONS.join(", ")
            )
            .into());
        }
    };
    if ok {
        Ok(text)
    } else {
        Err(format!("vendor option `{name}` has a value Lianke does not accept: {value}").into())
    }
}

// ---------------------------------------------------------------------------------------
// Capabilities

/// `printer_params` (+ `paper_dimension_list`) → the neutral capability document. The
/// vendor's maps are keyed by display name (Chinese for most drivers); the neutral values
/// come from the numbers, which the doc defines.
pub fn capabilities(
    params: &PrinterParams,
    dimensions: &BTreeMap<String, PaperDimension>,
) -> Capabilities {
    let c = &params.capabilities;
    let by_id: BTreeMap<i64, &PaperDimension> =
        dimensions.values().map(|d| (d.paper_id, d)).collect();
    let papers = c
        .papers
        .iter()
        .map(|(name, id)| {
            let dims = by_id
                .get(id)
                .copied()
                .or_else(|| dimensions.get(name.as_str()));
            PaperSize {
                id: id.to_string(),
                name: name.clone(),
                width_mm: dims.and_then(|d| d.physical_width).map(|w| w / 10.0),
                height_mm: dims.and_then(|d| d.physical_height).map(|h| h / 10.0),
            }
        })
        .collect();
    let mut color_modes: Vec<ColorMode> = c
        .color
        .values()
        .filter_map(|v| match v {
            1 => Some(ColorMode::Monochrome),
            2 => Some(ColorMode::Color),
            _ => None,
        })
        .collect();
    color_modes.sort_by_key(|m| color_value(*m));
    color_modes.dedup();
    let mut sides: Vec<Sides> = c
        .duplex
        .values()
        .filter_map(|v| match v {
            1 => Some(Sides::OneSided),
            2 => Some(Sides::TwoSidedLongEdge),
            3 => Some(Sides::TwoSidedShortEdge),
            _ => None,
        })
        .collect();
    sides.sort_by_key(|s| duplex_value(*s));
    sides.dedup();
    let mut orientations: Vec<Orientation> = c
        .orientation
        .values()
        .filter_map(|v| match v {
            1 => Some(Orientation::Portrait),
            2 => Some(Orientation::Landscape),
            _ => None,
        })
        .collect();
    orientations.sort_by_key(|o| orientation_value(*o));
    orientations.dedup();
    Capabilities {
        papers,
        color_modes,
        sides,
        copies_max: c.copies.map_or(999, |n| n.clamp(1, 999) as u16),
        orientations,
        trays: c.bins.keys().cloned().collect(),
        media_types: c.media_types.keys().cloned().collect(),
        // dmPaperSize=0 with dmPaperWidth/dmPaperLength.
        custom_paper: true,
        // dmPrintQuality -1..-4 (lowest..highest) is open to every driver.
        qualities: ["draft", "low", "normal", "high"]
            .map(str::to_owned)
            .to_vec(),
        // `Resolutions` is null in the doc's example; nothing reliable to list.
        resolutions_dpi: Vec::new(),
        collate: None,
    }
}

/// `printer_status` flags → neutral conditions.
pub fn status_conditions(s: &PrinterStatusData) -> Vec<String> {
    let flags = [
        (s.out_of_paper, "out_of_paper"),
        (s.paper_jam, "paper_jam"),
        (s.head_opened, "door_open"),
        (s.out_of_ribbon, "out_of_ribbon"),
        (s.out_of_ink, "low_ink"),
        (s.pause, "paused"),
        (s.printing, "printing"),
    ];
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// `printer_state` of `printer_list` (network printers) → a neutral condition.
pub fn printer_state_condition(state: &str) -> Option<&'static str> {
    match state {
        "idle" => None,
        "printing" => Some("printing"),
        "stopped" => Some("stopped"),
        "outOfPaper" => Some("out_of_paper"),
        _ => Some("unknown_state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> TaskResult {
        TaskResult {
            code,
            msg: Some(format!("msg {code}")),
        }
    }

    #[test]
    fn every_task_state_maps_as_spec_section_2_says() {
        use LiankeTaskState::*;
        let processing = |r: &str| TaskProgress::Processing { reason: r.into() };
        let rows: Vec<(LiankeTaskState, Option<TaskResult>, TaskProgress)> = vec![
            (Ready, None, processing("queued_at_vendor")),
            (Parsing, None, processing("rendering")),
            (Sending, None, processing("sending")),
            (SetRevoke, None, processing("cancel_requested")),
            (Success, Some(result(200)), TaskProgress::Completed),
            (
                Success,
                Some(result(503)),
                TaskProgress::Failed {
                    error: task_result_error(503, Some("msg 503")),
                },
            ),
            (Success, None, processing("awaiting_result")),
            (
                Failure,
                Some(result(500)),
                TaskProgress::Failed {
                    error: task_result_error(500, Some("msg 500")),
                },
            ),
            (Revoked, None, TaskProgress::Canceled),
            (
                Unknown("ARCHIVED".into()),
                None,
                processing("unknown_vendor_status"),
            ),
        ];
        for (state, res, expected) in rows {
            assert_eq!(task_progress(&state, res.as_ref()), expected, "{state:?}");
        }
        // FAILURE without a task_result still fails.
        assert!(matches!(
            task_progress(&Failure, None),
            TaskProgress::Failed { .. }
        ));
    }

    #[test]
    fn failed_tasks_carry_liankes_code_and_message() {
        let rows = [
            (497, ErrorCode::PrinterUnavailable),
            (500, ErrorCode::DeviceOffline),
            (502, ErrorCode::VendorRejected),
            (503, ErrorCode::DeviceOffline),
            (599, ErrorCode::PrintFailed),
        ];
        for (code, neutral) in rows {
            let e = task_result_error(code, Some("原因"));
            assert_eq!(e.code, neutral, "{code}");
            assert_eq!(e.vendor_code.as_deref(), Some(code.to_string().as_str()));
            assert_eq!(e.vendor_message.as_deref(), Some("原因"));
        }
    }

    #[test]
    fn every_lianke_error_code_has_its_decision() {
        use Decision::*;
        // (code, call, neutral, decision, counts for breaker, opens breaker)
        let rows = [
            (
                403,
                Call::Submit,
                ErrorCode::VendorAuthFailed,
                Fail,
                false,
                false,
            ),
            (
                400,
                Call::Submit,
                ErrorCode::VendorRejected,
                Fail,
                false,
                false,
            ),
            (
                404,
                Call::Submit,
                ErrorCode::PrinterAuthFailed,
                Fail,
                false,
                false,
            ),
            (
                404,
                Call::TaskQuery,
                ErrorCode::VendorRejected,
                Retry,
                true,
                false,
            ),
            (
                404,
                Call::Cancel,
                ErrorCode::VendorRejected,
                Retry,
                true,
                false,
            ),
            (
                404,
                Call::PrinterParams,
                ErrorCode::VendorRejected,
                Fail,
                false,
                false,
            ),
            (
                497,
                Call::PrinterStatus,
                ErrorCode::PrinterUnavailable,
                WaitForDevice,
                false,
                false,
            ),
            (
                5001,
                Call::Submit,
                ErrorCode::DeviceOffline,
                WaitForDevice,
                false,
                false,
            ),
            (
                5002,
                Call::Submit,
                ErrorCode::DeviceOffline,
                WaitForDevice,
                false,
                false,
            ),
            (
                5011,
                Call::Submit,
                ErrorCode::PrinterUnavailable,
                WaitForDevice,
                false,
                false,
            ),
            (
                10009,
                Call::PrinterStatus,
                ErrorCode::DeviceBusy,
                RetrySoon,
                false,
                false,
            ),
            (
                401,
                Call::DeviceInfo,
                ErrorCode::DeviceBusy,
                RetrySoon,
                false,
                false,
            ),
            (
                11203,
                Call::Submit,
                ErrorCode::DeviceSuspended,
                WaitForDevice,
                true,
                true,
            ),
            (
                11200,
                Call::ResetErrorLimit,
                ErrorCode::VendorRateLimited,
                Fail,
                false,
                false,
            ),
            (
                11201,
                Call::ResetErrorLimit,
                ErrorCode::VendorRejected,
                Fail,
                false,
                false,
            ),
            (
                12345,
                Call::Submit,
                ErrorCode::VendorUnavailable,
                Retry,
                true,
                false,
            ),
        ];
        for (code, call, neutral, decision, counts, opens) in rows {
            let e = classify(code, "消息", call, true);
            assert_eq!(e.code, neutral, "{code} {call:?}");
            assert_eq!(e.decision, decision, "{code} {call:?}");
            assert_eq!(e.counts_for_breaker, counts, "{code} {call:?}");
            assert_eq!(e.opens_breaker, opens, "{code} {call:?}");
            assert_eq!(e.vendor_code.as_deref(), Some(code.to_string().as_str()));
            assert_eq!(e.vendor_message.as_deref(), Some("消息"));
            assert!(!e.outcome_unknown);
        }
        // LIANKE_NO_PRINTER=fail
        assert_eq!(classify(5011, "", Call::Submit, false).decision, Fail);
        assert_eq!(classify(497, "", Call::Submit, false).decision, Fail);
        let http = classify_http(502);
        assert_eq!(
            (http.code, http.decision),
            (ErrorCode::VendorUnavailable, Retry)
        );
    }

    fn params() -> PrinterParams {
        serde_json::from_value(serde_json::json!({
            "Capabilities": {
                "Bins": {"纸盘 1": 1, "自动选择": 7},
                "Color": {"黑白": 1, "彩色": 2},
                "Copies": 999,
                "Duplex": {"关闭": 1, "短边": 3, "长边": 2},
                "MediaTypes": {"默认": 0},
                "Orientation": {"横向": 2, "竖向": 1},
                "Papers": {"A4": 9, "A5": 11, "A6": 70, "Letter": 1}
            },
            "DevMode": {"PaperSize": 11, "DefaultSource": 7}
        }))
        .unwrap()
    }

    fn dims() -> BTreeMap<String, PaperDimension> {
        serde_json::from_value(serde_json::json!({
            "A4": {"paper_id": 9, "physical_height": 2970, "physical_width": 2100},
            "A6": {"paper_id": 262, "physical_height": 1480, "physical_width": 1050}
        }))
        .unwrap()
    }

    #[test]
    fn printer_params_normalise_into_capabilities() {
        let caps = capabilities(&params(), &dims());
        let a4 = caps.find_paper("a4").unwrap();
        assert_eq!(
            (a4.id.as_str(), a4.width_mm, a4.height_mm),
            ("9", Some(210.0), Some(297.0))
        );
        // A6 is 70 in Papers and 262 in the dimension list (as in the doc): matched by name.
        assert_eq!(caps.find_paper("A6").unwrap().width_mm, Some(105.0));
        assert_eq!(caps.find_paper("Letter").unwrap().width_mm, None);
        assert_eq!(
            caps.color_modes,
            vec![ColorMode::Monochrome, ColorMode::Color]
        );
        assert_eq!(
            caps.sides,
            vec![
                Sides::OneSided,
                Sides::TwoSidedLongEdge,
                Sides::TwoSidedShortEdge
            ]
        );
        assert_eq!(
            caps.orientations,
            vec![Orientation::Portrait, Orientation::Landscape]
        );
        assert_eq!(caps.copies_max, 999);
        assert_eq!(caps.trays, vec!["纸盘 1".to_owned(), "自动选择".to_owned()]);
        assert_eq!(caps.media_types, vec!["默认".to_owned()]);
        assert!(caps.custom_paper);
    }

    #[test]
    fn options_become_the_documented_fields() {
        let caps = capabilities(&params(), &dims());
        let options = JobOptions {
            copies: Some(3),
            paper: Some(Paper::Named("A5".into())),
            orientation: Some(Orientation::Landscape),
            color: Some(ColorMode::Color),
            sides: Some(Sides::TwoSidedShortEdge),
            page_ranges: Some("1-3, 5".into()),
            scale: Some(Scale::Percent(80)),
            tray: Some("纸盘 1".into()),
            vendor_options: Default::default(),
        };
        let fields = option_fields(&options, Some(&caps), Some(&params())).unwrap();
        let expected: Vec<(&str, String)> = vec![
            ("dmPaperSize", "11".into()),
            ("dmOrientation", "2".into()),
            ("dmCopies", "3".into()),
            ("dmDefaultSource", "1".into()),
            ("dmColor", "2".into()),
            ("dmDuplex", "3".into()),
            ("jpPageRange", "1-3,5".into()),
            ("jpScale", "80%".into()),
        ];
        assert_eq!(fields, expected);
    }

    #[test]
    fn paper_defaults_custom_sizes_and_scales() {
        let custom = JobOptions {
            paper: Some(Paper::Custom {
                width_mm: 80.0,
                height_mm: 200.05,
            }),
            ..Default::default()
        };
        let f = option_fields(&custom, None, None).unwrap();
        assert_eq!(
            &f[..3],
            &[
                ("dmPaperSize", "0".to_owned()),
                ("dmPaperWidth", "800".to_owned()),
                ("dmPaperLength", "2001".to_owned()),
            ]
        );
        // No paper: the driver's default, else A4; no scale: fit.
        let none = JobOptions::default();
        assert_eq!(
            option_fields(&none, None, Some(&params())).unwrap(),
            vec![
                ("dmPaperSize", "11".to_owned()),
                ("jpScale", "fit".to_owned())
            ]
        );
        assert_eq!(option_fields(&none, None, None).unwrap()[0].1, "9");
        // Without capabilities, well-known names still map.
        let letter = JobOptions {
            paper: Some(Paper::Named("Letter".into())),
            ..Default::default()
        };
        assert_eq!(option_fields(&letter, None, None).unwrap()[0].1, "1");
        let odd = JobOptions {
            paper: Some(Paper::Named("Foolscap".into())),
            ..Default::default()
        };
        assert_eq!(
            option_fields(&odd, None, None).unwrap_err().decision,
            Decision::Fail
        );
        for (scale, word) in [
            (Scale::Fit, "fit"),
            (Scale::FitWidth, "fitw"),
            (Scale::FitHeight, "fith"),
            (Scale::Fill, "fill"),
            (Scale::Cover, "cover"),
            (Scale::None, "none"),
            (Scale::Percent(120), "120%"),
        ] {
            assert_eq!(scale_value(scale), word);
        }
        for (c, v) in [(ColorMode::Monochrome, 1), (ColorMode::Color, 2)] {
            assert_eq!(color_value(c), v);
        }
        for (s, v) in [
            (Sides::OneSided, 1),
            (Sides::TwoSidedLongEdge, 2),
            (Sides::TwoSidedShortEdge, 3),
        ] {
            assert_eq!(duplex_value(s), v);
        }
        for (o, v) in [(Orientation::Portrait, 1), (Orientation::Landscape, 2)] {
            assert_eq!(orientation_value(o), v);
        }
    }

    #[test]
    fn vendor_options_are_allow_listed_and_checked() {
        use serde_json::json;
        for (k, v, out) in [
            ("jpAutoAlign", json!("z5"), "z5"),
            ("jpAutoRotate", json!(1), "1"),
            ("pdfRev", json!(true), "1"),
            ("dmPrintQuality", json!(-4), "-4"),
            ("dmMediaType", json!(256), "256"),
            ("htmlKernel", json!("chrometopdf"), "chrometopdf"),
            ("isPreview", json!("0"), "0"),
            ("reportPrinterStatus", json!(0), "0"),
            ("errLimitNum", json!(10), "10"),
        ] {
            assert_eq!(vendor_option_value(k, &v).unwrap(), out, "{k}");
        }
        for (k, v) in [
            ("jpAutoAlign", json!("z0")),
            ("dmPrintQuality", json!(-5)),
            ("htmlKernel", json!("gecko")),
            ("errLimitNum", json!(31)),
            ("deviceKey", json!("x")),
            ("callbackUrl", json!("https://evil")),
            ("pdfRev", json!([1])),
        ] {
            assert!(vendor_option_value(k, &v).is_err(), "{k}");
        }
    }

    #[test]
    fn printer_status_flags_become_conditions() {
        let s = PrinterStatusData {
            out_of_paper: true,
            pause: true,
            ..Default::default()
        };
        assert_eq!(status_conditions(&s), vec!["out_of_paper", "paused"]);
        assert_eq!(printer_state_condition("idle"), None);
        assert_eq!(printer_state_condition("outOfPaper"), Some("out_of_paper"));
        assert_eq!(printer_state_condition("stopped"), Some("stopped"));
        assert_eq!(printer_state_condition("printing"), Some("printing"));
        assert_eq!(printer_state_condition("weird"), Some("unknown_state"));
    }
}
