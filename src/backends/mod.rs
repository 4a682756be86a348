//! The seam every vendor plugs into: the [`Backend`] trait, the values that cross it, and
//! the registry keyed by backend name.
//!
//! The engine owns the job lifecycle (leases, retries, breaker, state machine); a backend
//! only speaks its vendor's wire format and classifies the vendor's answers into neutral
//! outcomes and [`VendorError`]s carrying a [`Decision`]. Backends know nothing of SQL,
//! axum or the public API.

pub mod lianke;
pub mod wecom;

pub mod pacing;
pub mod source;
pub mod token_cache;
pub mod zhimu;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    Capabilities, Decision, DocumentKind, DocumentType, ErrorCode, JobError, JobOptions, PrinterId,
};

/// Declares a refusal a backend gives before any vendor call: a newtype over the sentence
/// that says what to change (the text reaches the caller unchanged).
macro_rules! refusal {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0}")]
        pub struct $name(pub String);

        impl From<String> for $name {
            fn from(message: String) -> Self {
                $name(message)
            }
        }

        impl From<&str> for $name {
            fn from(message: &str) -> Self {
                $name(message.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(refusal: $name) -> String {
                refusal.0
            }
        }
    };
}

refusal!(
    /// A printer's locator or secrets that its backend refuses at registration.
    InvalidPrinterConfig
);
refusal!(
    /// A document (kind and type) that the vendor cannot take.
    UnsupportedDocument
);
refusal!(
    /// A `vendor_options` entry outside the vendor's allow-list, or of the wrong type.
    UnsupportedOption
);
refusal!(
    /// A backend that cannot start from its settings (base URL, credentials, HTTP client).
    BackendSetupError
);

/// A printer as a backend sees it: its locator, its secrets and its cached capabilities.
#[derive(Debug, Clone)]
pub struct PrinterContext {
    pub id: PrinterId,
    pub locator: Value,
    pub secrets: Secrets,
    pub capabilities: Option<Capabilities>,
}

/// Backend credentials, opened in memory for the call (they are sealed at rest, see
/// `secrets_at_rest`). `Debug` never shows them, so they cannot leak through a log line
/// (the log tests look for `Secrets([redacted])`).
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, secrecy::SecretString>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

impl Secrets {
    pub fn new(values: BTreeMap<String, secrecy::SecretString>) -> Secrets {
        Secrets(values)
    }

    /// Secrets given in clear (an operator's request, checked with the vendor before saving).
    pub fn from_plain(plain: &Value) -> Secrets {
        Secrets(
            plain
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let text = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), secrecy::SecretString::from(text))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        use secrecy::ExposeSecret;
        self.0.get(key).map(|s| s.expose_secret())
    }
}

/// What a backend says about a printer's configuration when it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterSetup {
    /// The vendor device this printer sits on; in-flight limits are per device.
    pub device: String,
    /// How many vendor calls may be in flight on that device at once.
    pub max_in_flight: u32,
}

/// The document handed to a backend.
#[derive(Debug, Clone)]
pub struct DocumentPayload {
    pub kind: DocumentKind,
    pub doc_type: Option<DocumentType>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub url: Option<String>,
    pub bytes: Option<Bytes>,
    /// Pages the gateway rendered (PNG, in print order) because the printer cannot take
    /// the document's type: when not empty the backend sends these, not `bytes`, and
    /// `doc_type` is PNG.
    pub pages: Vec<Bytes>,
}

/// Everything a backend needs to submit one job.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub job_id: Uuid,
    pub document: DocumentPayload,
    pub options: JobOptions,
    /// Where the vendor should report the result, when the gateway has a public URL.
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the (last) submit of this job started: lets `find_task` look for the vendor
    /// task near that moment.
    pub submit_started_at: Option<DateTime<Utc>>,
    /// For `find_task` only: vendor task ids that already belong to other jobs on the same
    /// device, so a lookup by time never takes a neighbour's task for this job's.
    pub taken_task_ids: Vec<String>,
}

/// The vendor accepted a job.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub vendor_task_id: String,
    pub raw: Option<Value>,
}

/// What the vendor says about a task, mapped to the neutral model. Serialized as a
/// recorded callback's `progress` (the callback inbox).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "progress", rename_all = "snake_case")]
pub enum TaskProgress {
    /// Still working; `reason` is the neutral sub-stage (queued_at_vendor, rendering, …).
    Processing {
        reason: String,
    },
    Completed,
    Failed {
        error: JobError,
    },
    Canceled,
}

#[derive(Debug, Clone)]
pub struct TaskReport {
    pub progress: TaskProgress,
    /// The vendor's own status word, kept on the job (`vendor_status`).
    pub vendor_status: String,
    pub raw: Option<Value>,
}

/// Result of a cancel request at the vendor.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The vendor canceled the task.
    Canceled { raw: Option<Value> },
    /// The vendor is canceling (e.g. Lianke SET_REVOKE); the job stays processing.
    Requested { raw: Option<Value> },
}

/// A backend's answer to "did this job reach you?" for an unconfirmed submit.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found {
        vendor_task_id: String,
        report: TaskReport,
    },
    /// The vendor is sure it has no such task.
    NotFound,
}

/// What a vendor can say about a submit whose answer was lost (SPEC §2, "evidence").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// No way to ask: only a callback or an operator can settle the job (Zhimu).
    None,
    /// A lookup that matches something unique to the job (its id or name).
    Unique { horizon: Duration },
    /// Only "which tasks were created on the device around that time" (Lianke): the
    /// engine keeps other submits off the device while an outcome is unknown and gives a
    /// found task to the job only when nothing else could have created it.
    ByTime { horizon: Duration },
}

impl LookupKind {
    /// How long after the submit the vendor can still answer a lookup.
    pub fn horizon(self) -> Option<Duration> {
        match self {
            LookupKind::None => None,
            LookupKind::Unique { horizon } | LookupKind::ByTime { horizon } => Some(horizon),
        }
    }
}

/// How often the engine asks a vendor about an accepted task when no callback came.
#[derive(Debug, Clone, Copy)]
pub struct PollPlan {
    pub first_after: Duration,
    pub every: Duration,
}

/// Live printer status, neutral.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"online": true, "ready": false, "conditions": ["out_of_paper"], "vendor_status": "outOfPaper"}))]
pub struct PrinterStatus {
    pub online: Option<bool>,
    pub ready: Option<bool>,
    /// Neutral conditions such as `out_of_paper`, `paper_jam`, `door_open`, `no_printer`.
    pub conditions: Vec<String>,
    pub vendor_status: Option<String>,
}

/// A printer found behind a vendor device, ready to register.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "display_name": "Kyocera MA2000w GX (port 1)",
    "locator": {"device_id": "lk112312312312", "device_port": 1, "printer_model": "Kyocera MA2000w GX"},
    "model": "Kyocera MA2000w GX", "supported": true, "live_status": true, "state": "idle"
}))]
pub struct DiscoveredPrinter {
    pub display_name: String,
    /// The `locator` to register this printer with (add the secrets yourself).
    #[schema(value_type = Object)]
    pub locator: Value,
    pub model: String,
    /// Whether the vendor can drive this printer (Lianke `driver_type` 1).
    pub supported: bool,
    /// Whether live status (paper, jam, …) can be asked for.
    pub live_status: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The vendor's own description of the printer.
    #[schema(value_type = Object)]
    pub vendor: Value,
}

/// Vendor housekeeping an operator may trigger on a printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Housekeeping {
    /// Lift the vendor's suspension after too many failed tasks (Lianke
    /// `reset_printing_error_limit`).
    ResetErrorLimit,
    /// Drop the tasks queued at the vendor (Lianke `flush_jobs`).
    FlushQueue,
}

/// Capabilities as fetched from a vendor: the neutral document and the vendor's raw answer.
#[derive(Debug, Clone)]
pub struct CapabilitiesReport {
    pub capabilities: Capabilities,
    pub raw: Value,
}

/// An error from a vendor call, already classified by the backend's error catalog.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VendorError {
    pub code: ErrorCode,
    pub decision: Decision,
    pub message: String,
    pub vendor_code: Option<String>,
    pub vendor_message: Option<String>,
    /// The request may have reached the vendor and its outcome is unknown (timeout after
    /// sending, connection reset mid-response). For a submit this means `unconfirmed`.
    pub outcome_unknown: bool,
    /// Whether this failure says something about the printer's health (counts toward the
    /// circuit breaker). Document or option rejections do not.
    pub counts_for_breaker: bool,
    /// The vendor has suspended the device (Lianke 11203): open the printer's breaker at
    /// once instead of counting one more failure.
    pub opens_breaker: bool,
    pub raw: Option<Value>,
}

impl VendorError {
    pub fn new(code: ErrorCode, decision: Decision, message: impl Into<String>) -> VendorError {
        VendorError {
            code,
            decision,
            message: message.into(),
            vendor_code: None,
            vendor_message: None,
            outcome_unknown: false,
            counts_for_breaker: !matches!(decision, Decision::Fail | Decision::RefreshTokenOnce),
            opens_breaker: false,
            raw: None,
        }
    }

    pub fn with_vendor(mut self, code: impl ToString, message: impl Into<String>) -> VendorError {
        self.vendor_code = Some(code.to_string());
        self.vendor_message = Some(message.into());
        self
    }

    pub fn with_raw(mut self, raw: Value) -> VendorError {
        self.raw = Some(raw);
        self
    }

    pub fn outcome_unknown(mut self) -> VendorError {
        self.outcome_unknown = true;
        self
    }

    pub fn counting_for_breaker(mut self, counts: bool) -> VendorError {
        self.counts_for_breaker = counts;
        self
    }

    pub fn opening_breaker(mut self) -> VendorError {
        self.opens_breaker = true;
        self.counts_for_breaker = true;
        self
    }

    pub fn to_job_error(&self) -> JobError {
        JobError {
            code: self.code,
            message: self.message.clone(),
            vendor_code: self.vendor_code.clone(),
            vendor_message: self.vendor_message.clone(),
        }
    }

    /// Classifies a transport error from `reqwest`: a timeout or a broken connection after
    /// the request was sent leaves the outcome unknown; a failure to connect does not.
    pub fn from_transport(err: &reqwest::Error) -> VendorError {
        if err.is_timeout() {
            VendorError::new(
                ErrorCode::VendorTimeout,
                Decision::Retry,
                "the vendor did not answer in time",
            )
            .outcome_unknown()
        } else if err.is_connect() {
            VendorError::new(
                ErrorCode::VendorUnavailable,
                Decision::Retry,
                "the vendor could not be reached",
            )
        } else if err.is_decode() {
            VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                "the vendor's answer could not be read",
            )
        } else {
            VendorError::new(
                ErrorCode::VendorUnavailable,
                Decision::Retry,
                "the connection to the vendor broke before its answer arrived",
            )
            .outcome_unknown()
        }
    }
}

/// SPEC §4: what a failed submit means for the job. Each backend keeps its own table from
/// [`SubmitFailure`] to this (`mapping::submit_outcome`), pinned by tests against the
/// simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// The request never reached the vendor: safe to send again.
    NotSent,
    /// The vendor may have the job: never send it again; `unconfirmed` until evidence.
    Unknown,
    /// The vendor's own error envelope: the backend's error catalog decides.
    Catalog,
}

/// How a submit failed, before the vendor's envelope is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitFailure {
    /// No connection (refused, DNS, TLS handshake): the request did not leave.
    ConnectFailed,
    /// The request left and no answer came in time.
    TimedOut,
    /// The connection broke after the request left (reset mid-response, body cut short).
    ConnectionBroken,
    /// An HTTP status without the vendor's envelope (a proxy's or a crashed server's).
    HttpStatus(u16),
    /// A success status whose body is not the documented shape.
    UnreadableAnswer,
    /// The vendor's own error envelope.
    Envelope,
}

impl SubmitFailure {
    /// Classifies a transport error from `reqwest`.
    pub fn of_transport(err: &reqwest::Error) -> SubmitFailure {
        if err.is_connect() {
            SubmitFailure::ConnectFailed
        } else if err.is_timeout() {
            SubmitFailure::TimedOut
        } else {
            SubmitFailure::ConnectionBroken
        }
    }
}

impl VendorError {
    /// For a print-target call on a job source's printer (which never prints itself).
    pub fn not_a_print_target(backend: &str) -> VendorError {
        VendorError::new(
            ErrorCode::BackendUnavailable,
            Decision::Fail,
            format!(
                "a {backend} printer takes jobs only from {backend} users; its jobs print on its target printer"
            ),
        )
    }

    /// Marks the error by its outcome class: `Unknown` makes it outcome-unknown (the job
    /// becomes `unconfirmed`), anything else makes sure it is not.
    pub fn classed(mut self, class: OutcomeClass) -> VendorError {
        self.outcome_unknown = class == OutcomeClass::Unknown;
        self
    }
}

/// What every vendor's printers share, print target or job source: registration checks
/// and the device's status. Implementations hold their HTTP client, token caches and
/// configuration. (`Any`, which every `'static` type is, lets the API reach a backend's
/// own operations, such as Zhimu's share binding, through [`BackendRegistry::get_as`].)
#[async_trait]
pub trait Backend: Any + Send + Sync + 'static {
    /// The registry key, also stored on printers (`lianke`, `zhimu`, …).
    fn name(&self) -> &'static str;

    /// Checks a printer's backend configuration at registration and names its device.
    fn setup_printer(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig>;

    /// The secret fields of this backend's printers, removed from every API answer.
    fn secret_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Refuses documents this vendor cannot take, before anything is stored.
    fn check_document(
        &self,
        _kind: DocumentKind,
        _doc_type: Option<DocumentType>,
    ) -> Result<(), UnsupportedDocument> {
        Ok(())
    }

    /// Checks `vendor_options` against this vendor's allow-list.
    fn check_vendor_options(
        &self,
        options: &serde_json::Map<String, Value>,
    ) -> Result<(), UnsupportedOption> {
        match options.keys().next() {
            Some(key) => Err(format!(
                "vendor option `{key}` is not accepted by the {} backend",
                self.name()
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Whether apps may submit jobs to this backend's printers: true for a print target,
    /// false for a job source (WeCom: jobs come from WeCom users).
    fn accepts_jobs(&self) -> bool {
        true
    }

    /// Whether the backend sends pages the gateway rendered (`DocumentPayload::pages`,
    /// PNG) for a document type it cannot take itself (PDF). Zhimu: yes.
    fn takes_rendered_pages(&self) -> bool {
        false
    }

    /// For a source-only printer: the gateway printer that prints its jobs. It must exist
    /// and accept jobs.
    fn prints_on(&self, _locator: &Value) -> Option<String> {
        None
    }

    /// The device's live status (for a job source: whether its credentials work).
    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError>;
}

/// A vendor that prints (Lianke, Zhimu): submit, status, cancel, capabilities, lookup,
/// discovery and housekeeping. The engine knows vendors only through this trait (and the
/// job-source bridge through [`JobSource`]).
#[async_trait]
pub trait PrintTarget: Backend {
    /// Whether the vendor reports results to a callback URL.
    fn wants_callback(&self) -> bool {
        false
    }

    fn poll_plan(&self) -> PollPlan {
        PollPlan {
            first_after: Duration::from_secs(10),
            every: Duration::from_secs(10),
        }
    }

    /// The delay before the next poll of a task accepted `since_dispatch` ago (a backend
    /// may poll old tasks less often). Default: `poll_plan().every`.
    fn poll_interval(&self, _since_dispatch: Duration) -> Duration {
        self.poll_plan().every
    }

    /// Whether jobs already at the vendor can be canceled there.
    fn supports_cancel(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError>;

    async fn task_status(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError>;

    /// Reports on several tasks of one device (`printer`'s), one answer per id in order, in
    /// as few vendor calls as the vendor allows (confirming a batch of callbacks). By
    /// default one [`PrintTarget::task_status`] after another.
    async fn task_statuses(
        &self,
        printer: &PrinterContext,
        vendor_task_ids: &[String],
    ) -> Vec<Result<TaskReport, VendorError>> {
        let mut reports = Vec::with_capacity(vendor_task_ids.len());
        for id in vendor_task_ids {
            reports.push(self.task_status(printer, id).await);
        }
        reports
    }

    /// What [`Backend::find_task`] can tell (the engine never calls it for `None`).
    fn lookup_kind(&self) -> LookupKind {
        LookupKind::None
    }

    /// For an unconfirmed submit: asks the vendor whether the job reached it.
    async fn find_task(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Lookup, VendorError>;

    async fn cancel(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<CancelOutcome, VendorError>;

    async fn capabilities(
        &self,
        printer: &PrinterContext,
    ) -> Result<CapabilitiesReport, VendorError>;

    /// Lists the printers behind a vendor device, for registration. `None`: this backend
    /// has no discovery.
    async fn discover(
        &self,
        _locator: &Value,
        _secrets: &Value,
    ) -> Option<Result<Vec<DiscoveredPrinter>, VendorError>> {
        None
    }

    /// Runs vendor housekeeping on a printer. `None`: this backend does not offer it.
    async fn housekeeping(
        &self,
        _printer: &PrinterContext,
        _action: Housekeeping,
    ) -> Option<Result<Value, VendorError>> {
        None
    }
}

/// Backends by name. Each is registered behind [`Measured`], so every vendor call made
/// through the trait, by the engine, the API or a webhook, is counted and timed in one place.
/// Cloning it is one reference count (the API clones it with its state on every request).
#[derive(Clone, Default)]
pub struct BackendRegistry {
    maps: Arc<RegistryMaps>,
}

#[derive(Clone, Default)]
struct RegistryMaps {
    backends: BTreeMap<&'static str, Arc<dyn Backend>>,
    targets: BTreeMap<&'static str, Arc<dyn PrintTarget>>,
    concrete: BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>,
}

impl BackendRegistry {
    pub fn new() -> BackendRegistry {
        BackendRegistry::default()
    }

    /// Registers a print target (Lianke, Zhimu).
    pub fn with<B: PrintTarget>(mut self, backend: Arc<B>) -> BackendRegistry {
        let name = backend.name();
        let maps = Arc::make_mut(&mut self.maps);
        maps.concrete
            .insert(name, Arc::clone(&backend) as Arc<dyn Any + Send + Sync>);
        let measured = Arc::new(Measured { inner: backend });
        maps.backends
            .insert(name, Arc::clone(&measured) as Arc<dyn Backend>);
        maps.targets.insert(name, measured);
        self
    }

    /// Registers the printers of a job source (WeCom): they are checked and named, never
    /// printed on.
    pub fn with_source<B: Backend>(mut self, backend: Arc<B>) -> BackendRegistry {
        let name = backend.name();
        let maps = Arc::make_mut(&mut self.maps);
        maps.concrete
            .insert(name, Arc::clone(&backend) as Arc<dyn Any + Send + Sync>);
        maps.backends
            .insert(name, Arc::new(Measured { inner: backend }));
        maps.targets.remove(name);
        self
    }

    /// Any backend, print target or job source.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.maps.backends.get(name)
    }

    /// The print target registered as `name`.
    pub fn target(&self, name: &str) -> Option<&Arc<dyn PrintTarget>> {
        self.maps.targets.get(name)
    }

    /// The backend registered as `name`, as its concrete type (for vendor-specific
    /// operations the [`Backend`] trait does not cover).
    pub fn get_as<T: Backend>(&self, name: &str) -> Option<Arc<T>> {
        self.maps.concrete.get(name)?.clone().downcast::<T>().ok()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.maps.backends.keys().copied().collect()
    }
}

/// A backend whose calls are counted and timed by vendor, endpoint and outcome class.
struct Measured<B> {
    inner: Arc<B>,
}

/// Times one vendor call; a call dropped before it finished (the engine's timeout, a
/// client gone) counts as `abandoned`.
struct CallTimer {
    vendor: &'static str,
    endpoint: &'static str,
    started: std::time::Instant,
    outcome: Option<&'static str>,
}

impl CallTimer {
    fn start(vendor: &'static str, endpoint: &'static str) -> CallTimer {
        CallTimer {
            vendor,
            endpoint,
            started: std::time::Instant::now(),
            outcome: None,
        }
    }

    fn finish<T>(mut self, result: &Result<T, VendorError>) {
        self.outcome = Some(outcome_class(result));
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        crate::observe::vendor_call(
            self.vendor,
            self.endpoint,
            self.outcome.unwrap_or("abandoned"),
            self.started.elapsed(),
        );
    }
}

/// The outcome class of a vendor call: answered, refused in the vendor's own envelope,
/// outcome unknown (sent, no answer), or failed in transport before or while reading.
pub fn outcome_class<T>(result: &Result<T, VendorError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) if err.outcome_unknown => "outcome_unknown",
        Err(err) if err.vendor_code.is_some() => "vendor_error",
        Err(_) => "transport_error",
    }
}

macro_rules! measured {
    ($self:ident, $endpoint:literal, $call:expr) => {{
        let timer = CallTimer::start($self.inner.name(), $endpoint);
        let result = $call.await;
        timer.finish(&result);
        result
    }};
}

#[async_trait]
impl<B: Backend> Backend for Measured<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn setup_printer(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig> {
        self.inner.setup_printer(locator, secrets)
    }
    fn secret_fields(&self) -> &'static [&'static str] {
        self.inner.secret_fields()
    }
    fn check_document(
        &self,
        kind: DocumentKind,
        doc_type: Option<DocumentType>,
    ) -> Result<(), UnsupportedDocument> {
        self.inner.check_document(kind, doc_type)
    }
    fn check_vendor_options(
        &self,
        options: &serde_json::Map<String, Value>,
    ) -> Result<(), UnsupportedOption> {
        self.inner.check_vendor_options(options)
    }
    fn accepts_jobs(&self) -> bool {
        self.inner.accepts_jobs()
    }
    fn takes_rendered_pages(&self) -> bool {
        self.inner.takes_rendered_pages()
    }
    fn prints_on(&self, locator: &Value) -> Option<String> {
        self.inner.prints_on(locator)
    }
    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError> {
        measured!(self, "printer_status", self.inner.printer_status(printer))
    }
}

#[async_trait]
impl<B: PrintTarget> PrintTarget for Measured<B> {
    fn wants_callback(&self) -> bool {
        self.inner.wants_callback()
    }
    fn poll_plan(&self) -> PollPlan {
        self.inner.poll_plan()
    }
    fn poll_interval(&self, since_dispatch: Duration) -> Duration {
        self.inner.poll_interval(since_dispatch)
    }
    fn lookup_kind(&self) -> LookupKind {
        self.inner.lookup_kind()
    }

    fn supports_cancel(&self) -> bool {
        self.inner.supports_cancel()
    }
    async fn submit(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        measured!(self, "submit", self.inner.submit(printer, job))
    }
    async fn task_status(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError> {
        measured!(
            self,
            "task_status",
            self.inner.task_status(printer, vendor_task_id)
        )
    }
    async fn task_statuses(
        &self,
        printer: &PrinterContext,
        vendor_task_ids: &[String],
    ) -> Vec<Result<TaskReport, VendorError>> {
        let timer = CallTimer::start(self.inner.name(), "task_statuses");
        let reports = self.inner.task_statuses(printer, vendor_task_ids).await;
        // Counted as one call: failed when any task's answer did.
        let summary = reports
            .iter()
            .find_map(|r| r.as_ref().err().cloned())
            .map_or(Ok(()), Err);
        timer.finish(&summary);
        reports
    }
    async fn find_task(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Lookup, VendorError> {
        measured!(self, "find_task", self.inner.find_task(printer, job))
    }
    async fn cancel(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<CancelOutcome, VendorError> {
        measured!(self, "cancel", self.inner.cancel(printer, vendor_task_id))
    }
    async fn capabilities(
        &self,
        printer: &PrinterContext,
    ) -> Result<CapabilitiesReport, VendorError> {
        measured!(self, "capabilities", self.inner.capabilities(printer))
    }
    async fn discover(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Option<Result<Vec<DiscoveredPrinter>, VendorError>> {
        let timer = CallTimer::start(self.inner.name(), "discover");
        let result = self.inner.discover(locator, secrets).await;
        match &result {
            Some(result) => timer.finish(result),
            // Nothing was called: nothing to count.
            None => std::mem::forget(timer),
        }
        result
    }
    async fn housekeeping(
        &self,
        printer: &PrinterContext,
        action: Housekeeping,
    ) -> Option<Result<Value, VendorError>> {
        let timer = CallTimer::start(self.inner.name(), "housekeeping");
        let result = self.inner.housekeeping(printer, action).await;
        match &result {
            Some(result) => timer.finish(result),
            None => std::mem::forget(timer),
        }
        result
    }
}
