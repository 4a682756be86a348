//! The neutral side of the unified error catalog: every vendor error becomes one of these
//! codes plus a decision about what the engine does next.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, vendor-neutral reasons a job did not (yet) print. Callers may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The vendor refused the printer's credentials or id (e.g. wrong deviceKey).
    PrinterAuthFailed,
    /// The vendor does not know the printer.
    PrinterNotFound,
    /// The device is not on the network; the job waits for it until it expires.
    DeviceOffline,
    /// No printer answers behind the device (unplugged, wrong port).
    PrinterUnavailable,
    /// The device is handling another call; retried shortly.
    DeviceBusy,
    /// The vendor suspended the device after repeated failures.
    DeviceSuspended,
    /// The gateway's circuit breaker for this printer is open.
    CircuitOpen,
    /// The vendor's rate or concurrency limit was hit.
    VendorRateLimited,
    /// The vendor answered with a server error or could not be reached.
    VendorUnavailable,
    /// The vendor did not answer in time.
    VendorTimeout,
    /// The vendor's app token was rejected even after a refresh.
    VendorAuthFailed,
    /// The vendor rejected the job's content or options.
    VendorRejected,
    /// The vendor accepted the job and reports that printing failed.
    PrintFailed,
    /// The vendor sent something the gateway does not understand.
    VendorProtocolError,
    /// A submit's outcome stayed unknown and the vendor could not confirm it.
    DispatchUnconfirmed,
    /// An operator settled an `unconfirmed` job as not printed.
    OperatorNotPrinted,
    /// The job was not printed before its `expires_at`.
    Expired,
    /// The gateway could not read the job's document.
    DocumentUnavailable,
    /// Retries ran out; the last vendor error is kept in `vendor_code`/`vendor_message`.
    RetriesExhausted,
    /// A backend is not configured in this gateway.
    BackendUnavailable,
    /// In `strict` mode, an option the printer's capabilities do not list (or capabilities
    /// that could not be fetched to check it): the job never reached the vendor.
    UnsupportedOption,
    /// The document had to be converted for the printer (PDF to page images) and could not
    /// be: not a readable PDF, no pages selected, or over the page limit. Nothing was sent.
    DocumentUnrenderable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PrinterAuthFailed => "printer_auth_failed",
            ErrorCode::PrinterNotFound => "printer_not_found",
            ErrorCode::DeviceOffline => "device_offline",
            ErrorCode::PrinterUnavailable => "printer_unavailable",
            ErrorCode::DeviceBusy => "device_busy",
            ErrorCode::DeviceSuspended => "device_suspended",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::VendorRateLimited => "vendor_rate_limited",
            ErrorCode::VendorUnavailable => "vendor_unavailable",
            ErrorCode::VendorTimeout => "vendor_timeout",
            ErrorCode::VendorAuthFailed => "vendor_auth_failed",
            ErrorCode::VendorRejected => "vendor_rejected",
            ErrorCode::PrintFailed => "print_failed",
            ErrorCode::VendorProtocolError => "vendor_protocol_error",
            ErrorCode::DispatchUnconfirmed => "dispatch_unconfirmed",
            ErrorCode::OperatorNotPrinted => "operator_not_printed",
            ErrorCode::Expired => "expired",
            ErrorCode::DocumentUnavailable => "document_unavailable",
            ErrorCode::RetriesExhausted => "retries_exhausted",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::UnsupportedOption => "unsupported_option",
            ErrorCode::DocumentUnrenderable => "document_unrenderable",
        }
    }
}

impl ErrorCode {
    /// Whether this error says something about the printer's health (shown in its health
    /// even when it does not count toward the breaker), as opposed to the job's own fault.
    pub fn is_printer_health(self) -> bool {
        !matches!(
            self,
            ErrorCode::VendorRejected
                | ErrorCode::Expired
                | ErrorCode::DocumentUnavailable
                | ErrorCode::BackendUnavailable
                | ErrorCode::UnsupportedOption
                | ErrorCode::DocumentUnrenderable
                | ErrorCode::CircuitOpen
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after an exponential backoff with jitter.
    Retry,
    /// Try again soon (the device was busy with another call).
    RetrySoon,
    /// The device is offline or absent: keep the job pending at a slow cadence until
    /// it comes back or the job expires.
    WaitForDevice,
    /// The vendor rejected our token: refresh it and retry once, right away.
    RefreshTokenOnce,
    /// No retry can help.
    Fail,
}

/// The error recorded on a job: the neutral code first, the vendor's own words kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "code": "device_offline",
    "message": "The printer's cloud device is offline.",
    "vendor_code": "5002",
    "vendor_message": "device offline"
}))]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_message: Option<String>,
}

impl JobError {
    /// An error the gateway found itself, with no vendor words.
    pub fn ours(code: ErrorCode, message: String) -> JobError {
        JobError {
            code,
            message,
            vendor_code: None,
            vendor_message: None,
        }
    }
}
