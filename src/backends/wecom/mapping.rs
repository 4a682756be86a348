//! Every WeCom fact the gateway maps, each table a `match` to check against the docs line by
//! line (`wecom-cloud-printer-reference.md`, `wecom-get-printer-job-list.md`), with a test
//! row per arm:
//!
//! - `errcode` → what to do ([`WecomErrcode`], [`WecomErrcode::to_vendor_error`]);
//! - the job list's `status` ([`WecomJobStatus`]);
//! - `setting_list` → neutral options ([`map_settings`]);
//! - a finished gateway job → `report_printer_job_status` ([`report_for`], [`gateway_errcode`]);
//! - push `event` names ([`PushEvent`]).

use crate::domain::options::{ColorMode, Orientation, Paper, Sides};
use crate::domain::{Decision, ErrorCode, JobError, JobOptions, JobState};

use super::wire::{ReportPrinterJobStatus, Setting};
use crate::backends::VendorError;

/// A WeCom `errcode`, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WecomErrcode {
    Ok,
    /// -1: system busy; retry (at most 3 times).
    Busy,
    /// 40014: invalid access token; refresh it and retry once.
    InvalidToken,
    /// 42001: access token expired; refresh it and retry once.
    TokenExpired,
    /// 45009: API call rate limit; back off.
    RateLimited,
    /// 45033: concurrency limit; back off.
    ConcurrencyLimited,
    /// 41001: no token was sent (a gateway bug, not a vendor state).
    MissingToken,
    /// 40001: model secret/ticket or device secret refused (simulator's code; the docs give
    /// none).
    InvalidCredential,
    /// 40029: the bind event's `auth_code` is invalid, used or older than 10 minutes.
    InvalidAuthCode,
    /// 40058: invalid parameter, including an unknown (deleted, expired) `jobid`.
    InvalidParameter,
    /// Anything else: kept as is, logged, and treated as a refusal.
    Unknown(i64),
}

impl WecomErrcode {
    pub fn from_code(code: i64) -> WecomErrcode {
        match code {
            0 => WecomErrcode::Ok,
            -1 => WecomErrcode::Busy,
            40014 => WecomErrcode::InvalidToken,
            42001 => WecomErrcode::TokenExpired,
            45009 => WecomErrcode::RateLimited,
            45033 => WecomErrcode::ConcurrencyLimited,
            41001 => WecomErrcode::MissingToken,
            40001 => WecomErrcode::InvalidCredential,
            40029 => WecomErrcode::InvalidAuthCode,
            40058 => WecomErrcode::InvalidParameter,
            other => WecomErrcode::Unknown(other),
        }
    }

    /// The neutral error code and the decision, per the reference's "Errors and limits".
    pub fn classify(self) -> (ErrorCode, Decision) {
        match self {
            WecomErrcode::Ok => (ErrorCode::VendorProtocolError, Decision::Fail),
            WecomErrcode::Busy => (ErrorCode::VendorUnavailable, Decision::Retry),
            WecomErrcode::InvalidToken | WecomErrcode::TokenExpired => {
                (ErrorCode::VendorAuthFailed, Decision::RefreshTokenOnce)
            }
            WecomErrcode::RateLimited | WecomErrcode::ConcurrencyLimited => {
                (ErrorCode::VendorRateLimited, Decision::Retry)
            }
            WecomErrcode::MissingToken | WecomErrcode::InvalidCredential => {
                (ErrorCode::VendorAuthFailed, Decision::Fail)
            }
            WecomErrcode::InvalidAuthCode => (ErrorCode::PrinterAuthFailed, Decision::Fail),
            WecomErrcode::InvalidParameter => (ErrorCode::VendorRejected, Decision::Fail),
            WecomErrcode::Unknown(_) => (ErrorCode::VendorRejected, Decision::Fail),
        }
    }

    /// Whether the token used should be refreshed and the call retried once.
    pub fn refresh_token(self) -> bool {
        matches!(
            self,
            WecomErrcode::InvalidToken | WecomErrcode::TokenExpired
        )
    }

    /// Whether WeCom asks us to slow down (45009/45033): stop calling for a while.
    pub fn back_off(self) -> bool {
        matches!(
            self,
            WecomErrcode::RateLimited | WecomErrcode::ConcurrencyLimited
        )
    }

    /// Whether the call may simply be repeated (-1, at most [`BUSY_RETRIES`] times).
    pub fn retry_now(self) -> bool {
        matches!(self, WecomErrcode::Busy)
    }

    pub fn to_vendor_error(self, code: i64, errmsg: &str) -> VendorError {
        let (neutral, decision) = self.classify();
        let message = match self {
            WecomErrcode::Ok => "WeCom answered errcode 0 without the expected fields".to_owned(),
            WecomErrcode::Busy => "WeCom is busy (-1)".to_owned(),
            WecomErrcode::InvalidToken | WecomErrcode::TokenExpired => {
                "WeCom rejected the access token".to_owned()
            }
            WecomErrcode::RateLimited | WecomErrcode::ConcurrencyLimited => {
                "WeCom's rate or concurrency limit was hit; backing off".to_owned()
            }
            WecomErrcode::MissingToken => "no WeCom access token was sent".to_owned(),
            WecomErrcode::InvalidCredential => {
                "WeCom refused the model or device credentials".to_owned()
            }
            WecomErrcode::InvalidAuthCode => {
                "WeCom refused the bind auth_code (used or expired)".to_owned()
            }
            WecomErrcode::InvalidParameter => {
                "WeCom refused a parameter (unknown or deleted job?)".to_owned()
            }
            WecomErrcode::Unknown(_) => format!("WeCom answered errcode {code}"),
        };
        VendorError::new(neutral, decision, message).with_vendor(code, errmsg)
    }
}

/// How often a `-1` (busy) answer is retried before the call fails.
pub const BUSY_RETRIES: u32 = 3;

/// The job list's `status` (0 unprinted / 1 printed / 2 failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WecomJobStatus {
    Unprinted,
    Printed,
    Failed,
    Unknown(u32),
}

impl WecomJobStatus {
    pub fn from_code(status: u32) -> WecomJobStatus {
        match status {
            0 => WecomJobStatus::Unprinted,
            1 => WecomJobStatus::Printed,
            2 => WecomJobStatus::Failed,
            other => WecomJobStatus::Unknown(other),
        }
    }

    /// The neutral state this status means for a job (SPEC §2's WeCom row): 0 is still to
    /// be printed, 1 completed, 2 failed. `None` for values the docs do not give.
    pub fn neutral_state(self) -> Option<JobState> {
        match self {
            WecomJobStatus::Unprinted => Some(JobState::Pending),
            WecomJobStatus::Printed => Some(JobState::Completed),
            WecomJobStatus::Failed => Some(JobState::Failed),
            WecomJobStatus::Unknown(_) => None,
        }
    }
}

/// `setting_list` mapped: the neutral options, and the entries that did not map (kept raw
/// in the job's metadata along with the whole list).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MappedSettings {
    pub options: JobOptions,
    pub unmapped: Vec<String>,
}

/// Maps WeCom's free-form settings to neutral options where they map. The docs show
/// `纸张大小` (paper) and `单双面` (sides); `份数` (copies), `颜色` (colour), `方向`
/// (orientation) and `页码范围` (pages) are the other settings a WeCom print dialog offers.
pub fn map_settings(settings: &[Setting]) -> MappedSettings {
    let mut mapped = MappedSettings::default();
    for setting in settings {
        let value = setting.value.first().map(|v| v.trim()).unwrap_or("");
        let understood = match setting.key.trim() {
            "纸张大小" | "纸张" => map_paper(value).map(|p| mapped.options.paper = Some(p)),
            "单双面" => map_sides(value).map(|s| mapped.options.sides = Some(s)),
            "份数" => value
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=999).contains(n))
                .map(|n| mapped.options.copies = Some(n)),
            "颜色" | "色彩" => map_color(value).map(|c| mapped.options.color = Some(c)),
            "方向" | "纸张方向" => {
                map_orientation(value).map(|o| mapped.options.orientation = Some(o))
            }
            "页码范围" | "打印范围" => crate::domain::options::PageRanges::parse(value)
                .ok()
                .map(|ranges| mapped.options.page_ranges = Some(ranges.to_string())),
            _ => None,
        };
        if understood.is_none() {
            mapped
                .unmapped
                .push(format!("{}={}", setting.key, setting.value.join("|")));
        }
    }
    mapped
}

fn map_paper(value: &str) -> Option<Paper> {
    let upper = value.to_ascii_uppercase();
    match upper.as_str() {
        "A3" | "A4" | "A5" | "A6" | "B4" | "B5" => Some(Paper::Named(upper)),
        "LETTER" => Some(Paper::Named("Letter".into())),
        "LEGAL" => Some(Paper::Named("Legal".into())),
        _ => None,
    }
}

fn map_sides(value: &str) -> Option<Sides> {
    match value {
        "单面" => Some(Sides::OneSided),
        "双面" | "双面长边" | "双面长边翻转" => Some(Sides::TwoSidedLongEdge),
        "双面短边" | "双面短边翻转" => Some(Sides::TwoSidedShortEdge),
        _ => None,
    }
}

fn map_color(value: &str) -> Option<ColorMode> {
    match value {
        "黑白" | "单色" => Some(ColorMode::Monochrome),
        "彩色" => Some(ColorMode::Color),
        _ => None,
    }
}

fn map_orientation(value: &str) -> Option<Orientation> {
    match value {
        "纵向" | "竖向" => Some(Orientation::Portrait),
        "横向" => Some(Orientation::Landscape),
        _ => None,
    }
}

/// `errcode`s the gateway reports for its own reasons: WeCom asks for values ≥ 2000.
pub fn gateway_errcode(code: ErrorCode) -> i64 {
    match code {
        // 2001: the document could not be printed as sent
        ErrorCode::DocumentUnavailable
        | ErrorCode::VendorRejected
        | ErrorCode::UnsupportedOption
        | ErrorCode::DocumentUnrenderable => 2001,
        // 2002: the physical printer is unreachable or unusable
        ErrorCode::PrinterAuthFailed
        | ErrorCode::PrinterNotFound
        | ErrorCode::DeviceOffline
        | ErrorCode::PrinterUnavailable
        | ErrorCode::DeviceBusy
        | ErrorCode::DeviceSuspended
        | ErrorCode::CircuitOpen => 2002,
        // 2003: the printer took the job and reported a failure (paper, jam, …)
        ErrorCode::PrintFailed => 2003,
        // 2004: not printed in time
        ErrorCode::Expired => 2004,
        // 2006: the printer's cloud failed the gateway
        ErrorCode::VendorRateLimited
        | ErrorCode::VendorUnavailable
        | ErrorCode::VendorTimeout
        | ErrorCode::VendorAuthFailed
        | ErrorCode::VendorProtocolError
        | ErrorCode::DispatchUnconfirmed
        | ErrorCode::OperatorNotPrinted
        | ErrorCode::RetriesExhausted
        | ErrorCode::BackendUnavailable => 2006,
    }
}

/// 2005: canceled inside the gateway (an operator or app canceled the imported job).
pub const ERRCODE_CANCELED_IN_GATEWAY: i64 = 2005;
/// 2000: failed for a reason the gateway did not record.
pub const ERRCODE_GATEWAY_UNKNOWN: i64 = 2000;

/// The gateway's `state_reason` for a job canceled because its WeCom user deleted it.
pub const REASON_DELETED_AT_WECOM: &str = "deleted_at_wecom";
/// … because WeCom already shows it printed or failed (another cloud handled it).
pub const REASON_FINISHED_AT_WECOM: &str = "finished_at_wecom";

/// What to tell WeCom about a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportPlan {
    Send(ReportPrinterJobStatus),
    /// Nothing to report; the reason is recorded.
    Skip(&'static str),
}

/// WeCom keeps `errmsg` short; cut on a character boundary.
const ERRMSG_MAX_CHARS: usize = 120;

/// The report for a job that reached `state` (`report_printer_job_status`: 2 ok, 1 failed
/// with an `errcode` ≥ 2000 and a UTF-8 `errmsg`). A job its WeCom user deleted is not
/// reported: WeCom no longer has it.
pub fn report_for(
    jobid: &str,
    state: JobState,
    reason: Option<&str>,
    error: Option<&JobError>,
    deleted_at_wecom: bool,
) -> ReportPlan {
    if deleted_at_wecom && state.is_terminal() {
        return ReportPlan::Skip("the WeCom user deleted the job");
    }
    let failed = |errcode: i64, errmsg: String| {
        ReportPlan::Send(ReportPrinterJobStatus {
            jobid: jobid.to_owned(),
            status: 1,
            errcode: Some(errcode),
            errmsg: Some(errmsg.chars().take(ERRMSG_MAX_CHARS).collect()),
        })
    };
    match state {
        JobState::Completed => ReportPlan::Send(ReportPrinterJobStatus {
            jobid: jobid.to_owned(),
            status: 2,
            errcode: None,
            errmsg: None,
        }),
        JobState::Failed => match error {
            Some(e) => failed(gateway_errcode(e.code), e.message.clone()),
            None => failed(ERRCODE_GATEWAY_UNKNOWN, "打印失败 (print failed)".into()),
        },
        JobState::Canceled => match reason {
            Some(REASON_DELETED_AT_WECOM) => ReportPlan::Skip("the WeCom user deleted the job"),
            Some(REASON_FINISHED_AT_WECOM) => ReportPlan::Skip("WeCom already shows it finished"),
            _ => failed(
                ERRCODE_CANCELED_IN_GATEWAY,
                "已在打印网关取消 (canceled in the print gateway)".into(),
            ),
        },
        JobState::Pending | JobState::Processing | JobState::Unconfirmed => {
            ReportPlan::Skip("the job has not finished")
        }
    }
}

/// Push events (`event` of a decrypted push message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// [96414] a user submitted a job to the device.
    JobSubmitted,
    /// [97370] the user deleted the job.
    JobDeleted,
    /// [95987] a company bound the device; carries `auth_code`.
    Bind,
    /// [95988] a company unbound the device.
    Unbind,
    /// [96053] the newest `model_ticket`.
    ModelTicket,
    Unknown(String),
}

impl PushEvent {
    pub fn parse(event: &str) -> PushEvent {
        match event {
            "printer_job_submit" => PushEvent::JobSubmitted,
            "printer_job_del" => PushEvent::JobDeleted,
            "bind" => PushEvent::Bind,
            "unbind" => PushEvent::Unbind,
            "model_ticket" => PushEvent::ModelTicket,
            other => PushEvent::Unknown(other.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errcode_row_of_the_docs_maps_to_its_decision() {
        use WecomErrcode::*;
        let rows: [(i64, WecomErrcode, ErrorCode, Decision); 11] = [
            (0, Ok, ErrorCode::VendorProtocolError, Decision::Fail),
            (-1, Busy, ErrorCode::VendorUnavailable, Decision::Retry),
            (
                40014,
                InvalidToken,
                ErrorCode::VendorAuthFailed,
                Decision::RefreshTokenOnce,
            ),
            (
                42001,
                TokenExpired,
                ErrorCode::VendorAuthFailed,
                Decision::RefreshTokenOnce,
            ),
            (
                45009,
                RateLimited,
                ErrorCode::VendorRateLimited,
                Decision::Retry,
            ),
            (
                45033,
                ConcurrencyLimited,
                ErrorCode::VendorRateLimited,
                Decision::Retry,
            ),
            (
                41001,
                MissingToken,
                ErrorCode::VendorAuthFailed,
                Decision::Fail,
            ),
            (
                40001,
                InvalidCredential,
                ErrorCode::VendorAuthFailed,
                Decision::Fail,
            ),
            (
                40029,
                InvalidAuthCode,
                ErrorCode::PrinterAuthFailed,
                Decision::Fail,
            ),
            (
                40058,
                InvalidParameter,
                ErrorCode::VendorRejected,
                Decision::Fail,
            ),
            (
                60011,
                Unknown(60011),
                ErrorCode::VendorRejected,
                Decision::Fail,
            ),
        ];
        for (code, class, neutral, decision) in rows {
            assert_eq!(WecomErrcode::from_code(code), class, "{code}");
            assert_eq!(class.classify(), (neutral, decision), "{code}");
            let err = class.to_vendor_error(code, "msg");
            assert_eq!(err.vendor_code.as_deref(), Some(code.to_string().as_str()));
            assert_eq!(err.decision, decision);
        }
    }

    #[test]
    fn only_token_codes_refresh_only_limit_codes_back_off_only_busy_retries_now() {
        for code in [
            -1, 0, 40001, 40014, 40029, 40058, 41001, 42001, 45009, 45033, 1,
        ] {
            let class = WecomErrcode::from_code(code);
            assert_eq!(
                class.refresh_token(),
                matches!(code, 40014 | 42001),
                "{code}"
            );
            assert_eq!(class.back_off(), matches!(code, 45009 | 45033), "{code}");
            assert_eq!(class.retry_now(), code == -1, "{code}");
        }
    }

    #[test]
    fn list_statuses_follow_the_job_list_numbering() {
        let rows = [
            (0, WecomJobStatus::Unprinted, Some(JobState::Pending)),
            (1, WecomJobStatus::Printed, Some(JobState::Completed)),
            (2, WecomJobStatus::Failed, Some(JobState::Failed)),
            (7, WecomJobStatus::Unknown(7), None),
        ];
        for (code, status, state) in rows {
            assert_eq!(WecomJobStatus::from_code(code), status);
            assert_eq!(status.neutral_state(), state);
        }
    }

    fn setting(key: &str, value: &str) -> Setting {
        Setting {
            key: key.into(),
            value: vec![value.into()],
        }
    }

    #[test]
    fn each_setting_row_maps_to_its_option() {
        let rows: Vec<(Setting, JobOptions)> = vec![
            (
                setting("纸张大小", "A4"),
                JobOptions {
                    paper: Some(Paper::Named("A4".into())),
                    ..Default::default()
                },
            ),
            (
                setting("纸张大小", "letter"),
                JobOptions {
                    paper: Some(Paper::Named("Letter".into())),
                    ..Default::default()
                },
            ),
            (
                setting("单双面", "单面"),
                JobOptions {
                    sides: Some(Sides::OneSided),
                    ..Default::default()
                },
            ),
            (
                setting("单双面", "双面"),
                JobOptions {
                    sides: Some(Sides::TwoSidedLongEdge),
                    ..Default::default()
                },
            ),
            (
                setting("单双面", "双面短边"),
                JobOptions {
                    sides: Some(Sides::TwoSidedShortEdge),
                    ..Default::default()
                },
            ),
            (
                setting("份数", "3"),
                JobOptions {
                    copies: Some(3),
                    ..Default::default()
                },
            ),
            (
                setting("颜色", "黑白"),
                JobOptions {
                    color: Some(ColorMode::Monochrome),
                    ..Default::default()
                },
            ),
            (
                setting("颜色", "彩色"),
                JobOptions {
                    color: Some(ColorMode::Color),
                    ..Default::default()
                },
            ),
            (
                setting("方向", "横向"),
                JobOptions {
                    orientation: Some(Orientation::Landscape),
                    ..Default::default()
                },
            ),
            (
                setting("方向", "纵向"),
                JobOptions {
                    orientation: Some(Orientation::Portrait),
                    ..Default::default()
                },
            ),
            (
                setting("页码范围", "1-3,5"),
                JobOptions {
                    page_ranges: Some("1-3,5".into()),
                    ..Default::default()
                },
            ),
        ];
        for (s, expected) in rows {
            let mapped = map_settings(std::slice::from_ref(&s));
            assert_eq!(mapped.options, expected, "{s:?}");
            assert!(mapped.unmapped.is_empty(), "{s:?}");
        }
    }

    #[test]
    fn settings_that_do_not_map_are_kept_raw() {
        let mapped = map_settings(&[
            setting("装订", "左侧"),
            setting("份数", "0"),
            setting("纸张大小", "信封"),
            setting("单双面", "三面"),
        ]);
        assert_eq!(mapped.options, JobOptions::default());
        assert_eq!(
            mapped.unmapped,
            vec!["装订=左侧", "份数=0", "纸张大小=信封", "单双面=三面"]
        );
    }

    #[test]
    fn every_neutral_error_code_reports_a_gateway_errcode_of_2000_or_more() {
        let rows = [
            (ErrorCode::DocumentUnavailable, 2001),
            (ErrorCode::VendorRejected, 2001),
            (ErrorCode::PrinterAuthFailed, 2002),
            (ErrorCode::PrinterNotFound, 2002),
            (ErrorCode::DeviceOffline, 2002),
            (ErrorCode::PrinterUnavailable, 2002),
            (ErrorCode::DeviceBusy, 2002),
            (ErrorCode::DeviceSuspended, 2002),
            (ErrorCode::CircuitOpen, 2002),
            (ErrorCode::PrintFailed, 2003),
            (ErrorCode::Expired, 2004),
            (ErrorCode::VendorRateLimited, 2006),
            (ErrorCode::VendorUnavailable, 2006),
            (ErrorCode::VendorTimeout, 2006),
            (ErrorCode::VendorAuthFailed, 2006),
            (ErrorCode::VendorProtocolError, 2006),
            (ErrorCode::DispatchUnconfirmed, 2006),
            (ErrorCode::OperatorNotPrinted, 2006),
            (ErrorCode::RetriesExhausted, 2006),
            (ErrorCode::BackendUnavailable, 2006),
        ];
        for (code, errcode) in rows {
            assert_eq!(gateway_errcode(code), errcode, "{code}");
            assert!(errcode >= 2000);
        }
    }

    #[test]
    fn reports_use_2_for_printed_and_1_for_failed_unlike_the_list() {
        assert_eq!(
            report_for("j", JobState::Completed, Some("printed"), None, false),
            ReportPlan::Send(ReportPrinterJobStatus {
                jobid: "j".into(),
                status: 2,
                errcode: None,
                errmsg: None
            })
        );
        let error = JobError {
            code: ErrorCode::PrintFailed,
            message: "打印机缺纸".into(),
            vendor_code: None,
            vendor_message: None,
        };
        assert_eq!(
            report_for("j", JobState::Failed, None, Some(&error), false),
            ReportPlan::Send(ReportPrinterJobStatus {
                jobid: "j".into(),
                status: 1,
                errcode: Some(2003),
                errmsg: Some("打印机缺纸".into())
            })
        );
        let ReportPlan::Send(unknown) = report_for("j", JobState::Failed, None, None, false) else {
            panic!("a failure is reported");
        };
        assert_eq!(unknown.errcode, Some(2000));
        let ReportPlan::Send(canceled) =
            report_for("j", JobState::Canceled, Some("canceled"), None, false)
        else {
            panic!("a gateway cancel is reported");
        };
        assert_eq!((canceled.status, canceled.errcode), (1, Some(2005)));
        for reason in [REASON_DELETED_AT_WECOM, REASON_FINISHED_AT_WECOM] {
            assert!(matches!(
                report_for("j", JobState::Canceled, Some(reason), None, false),
                ReportPlan::Skip(_)
            ));
        }
        for state in [
            JobState::Pending,
            JobState::Processing,
            JobState::Unconfirmed,
        ] {
            assert!(matches!(
                report_for("j", state, None, None, false),
                ReportPlan::Skip(_)
            ));
        }
    }

    #[test]
    fn jobs_deleted_at_wecom_are_never_reported() {
        for state in [JobState::Completed, JobState::Failed, JobState::Canceled] {
            assert!(matches!(
                report_for("j", state, Some("canceled"), None, true),
                ReportPlan::Skip(_)
            ));
        }
    }

    #[test]
    fn errmsg_is_cut_on_a_character_boundary() {
        let error = JobError {
            code: ErrorCode::PrintFailed,
            message: "纸".repeat(500),
            vendor_code: None,
            vendor_message: None,
        };
        let ReportPlan::Send(r) = report_for("j", JobState::Failed, None, Some(&error), false)
        else {
            panic!()
        };
        assert_eq!(r.errmsg.unwrap().chars().count(), 120);
    }

    #[test]
    fn push_events_parse_and_unknown_ones_are_kept() {
        let rows = [
            ("printer_job_submit", PushEvent::JobSubmitted),
            ("printer_job_del", PushEvent::JobDeleted),
            ("bind", PushEvent::Bind),
            ("unbind", PushEvent::Unbind),
            ("model_ticket", PushEvent::ModelTicket),
            ("reboot", PushEvent::Unknown("reboot".into())),
        ];
        for (name, event) in rows {
            assert_eq!(PushEvent::parse(name), event);
        }
    }
}
