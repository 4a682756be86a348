//! Zhimu (智睦云 Cloud OpenAPI, `vendor-docs/zhimu-openapi.txt`): printers shared from a PC
//! running the Zhimu service, one app token for the whole gateway, JSON task submit,
//! status by polling.
//!
//! A Zhimu printer's locator: `share_sn` (the sharing PC's server SN, `controlSn`),
//! `printer_name`, `device_type` (default `printer`). The app credentials are the
//! gateway's (`ZHIMU_APP_ID`, `ZHIMU_APP_KEY`), so printers carry no secrets.
//!
//! Every call goes through [`ZhimuBackend::call`]: app token from the shared
//! [`TokenCache`] (refreshed ahead of expiry, one refresh at a time), the documented
//! 3000 ms timeout, the `{success,message,data}` envelope classified by
//! [`mapping`]'s catalog, and on a token rejection one refresh and one retry at the call
//! site, which knows which token was refused (so 50 calls refused together cause one
//! refresh).

pub mod mapping;
pub mod token;
pub mod wire;

use std::time::Duration;

use crate::backends::PrintTarget;
use async_trait::async_trait;
use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::pacing::{PollCadence, RateLimiter};
use super::token_cache::TokenCache;
use super::{
    Accepted, Backend, BackendSetupError, CancelOutcome, CapabilitiesReport, InvalidPrinterConfig,
    Lookup, PollPlan, PrinterContext, PrinterSetup, PrinterStatus, SubmitFailure, SubmitRequest,
    TaskReport, UnsupportedDocument, UnsupportedOption, VendorError,
};
use crate::domain::{Decision, DocumentKind, DocumentType, ErrorCode};
use mapping::MediaSource;
use token::{AppCredentials, AppToken};
use wire::{
    AddShareRequest, Envelope, NewPrintTask, NewPrintTaskData, PrintTask, PrinterRef,
    SharedPrinter, SubmitData, TaskData, TaskGetRequest, TokenData,
};

/// The registry name.
pub const NAME: &str = "zhimu";

/// Vendor calls in flight per sharing PC unless the printer says otherwise (the doc
/// names no limit; a PC spooling many jobs at once gains nothing).
const DEFAULT_MAX_IN_FLIGHT: u32 = 4;

/// The Zhimu backend's settings (from the `ZHIMU_*` variables).
#[derive(Clone, Debug)]
pub struct ZhimuSettings {
    pub base_url: String,
    pub credentials: AppCredentials,
    /// Per call; the doc says 3000 ms.
    pub timeout: Duration,
    pub poll: PollCadence,
    /// Process-wide bound on `task/get` calls per second (0: none).
    pub max_polls_per_second: u32,
    /// How long before the token's expiry a new one is fetched.
    pub token_refresh_ahead: Duration,
}

/// Where a Zhimu printer is: parsed from a printer's locator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ZhimuLocator {
    /// The sharing PC's server SN (`sn` / `shareSn` / `controlSn`).
    pub share_sn: String,
    pub printer_name: String,
    /// `printer` for printers.
    pub device_type: String,
}

const LOCATOR_KEYS: [&str; 4] = ["share_sn", "printer_name", "device_type", "printer_alias"];

impl ZhimuLocator {
    pub fn parse(locator: &Value) -> Result<ZhimuLocator, InvalidPrinterConfig> {
        let map = locator
            .as_object()
            .ok_or("a zhimu locator must be an object")?;
        if let Some(key) = map.keys().find(|k| !LOCATOR_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "zhimu locator field `{key}` is unknown; a zhimu locator has share_sn, printer_name and optionally device_type (default \"printer\")"
            )
            .into());
        }
        let text = |key: &str| -> Result<Option<String>, InvalidPrinterConfig> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(format!(
                    "zhimu locator `{key}` must be a non-empty string of at most 256 characters"
                )
                .into()),
            }
        };
        let missing = |key: &str| {
            InvalidPrinterConfig(format!(
                "a zhimu locator needs `{key}` (GET /v1/backends/zhimu/printers lists the printers the app can use)"
            ))
        };
        Ok(ZhimuLocator {
            share_sn: text("share_sn")?.ok_or_else(|| missing("share_sn"))?,
            printer_name: text("printer_name")?.ok_or_else(|| missing("printer_name"))?,
            device_type: text("device_type")?.unwrap_or_else(|| "printer".to_owned()),
        })
    }

    /// The locator to register this printer with.
    pub fn to_value(&self) -> Value {
        json!({"share_sn": self.share_sn, "printer_name": self.printer_name, "device_type": self.device_type})
    }

    fn printer_ref(&self) -> PrinterRef {
        PrinterRef {
            printer_name: self.printer_name.clone(),
            share_sn: self.share_sn.clone(),
            device_type: self.device_type.clone(),
        }
    }
}

/// A printer the Zhimu app can use, as the gateway API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "locator": {"share_sn": "pkDgrqeA", "printer_name": "佳能复合机", "device_type": "printer"},
    "printer_alias": "1 楼公区打印机"
}))]
pub struct ZhimuPrinter {
    /// The `locator` to register a gateway printer with (`POST /v1/printers`).
    pub locator: ZhimuLocator,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printer_alias: Option<String>,
}

impl From<SharedPrinter> for ZhimuPrinter {
    fn from(p: SharedPrinter) -> ZhimuPrinter {
        ZhimuPrinter {
            locator: ZhimuLocator {
                share_sn: p.sn,
                printer_name: p.printer_name,
                device_type: p.device_type,
            },
            printer_alias: p.printer_alias,
        }
    }
}

/// Whether a lost answer leaves the call's effect unknown (a submit) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Query,
    Submit,
}

pub struct ZhimuBackend {
    http: reqwest::Client,
    base_url: String,
    credentials: AppCredentials,
    settings: ZhimuSettings,
    token: TokenCache<AppToken>,
    polls: RateLimiter,
}

impl std::fmt::Debug for ZhimuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZhimuBackend")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ZhimuBackend {
    /// The app token's cache (one per backend), e.g. to let its lifetime pass in tests.
    pub fn token_cache(&self) -> &TokenCache<AppToken> {
        &self.token
    }

    pub fn new(settings: ZhimuSettings) -> Result<ZhimuBackend, BackendSetupError> {
        let base = reqwest::Url::parse(&settings.base_url)
            .map_err(|err| BackendSetupError(format!("ZHIMU_BASE_URL is not a URL ({err})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err("ZHIMU_BASE_URL must be an http(s) URL".into());
        }
        if settings.credentials.app_id.trim().is_empty()
            || secrecy::ExposeSecret::expose_secret(&settings.credentials.app_key)
                .trim()
                .is_empty()
        {
            return Err("ZHIMU_APP_ID and ZHIMU_APP_KEY must not be empty".into());
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|err| {
                BackendSetupError(format!("cannot build the Zhimu HTTP client: {err}"))
            })?;
        Ok(ZhimuBackend {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            credentials: settings.credentials.clone(),
            token: TokenCache::new(settings.token_refresh_ahead).for_vendor(NAME),
            polls: RateLimiter::per_second(settings.max_polls_per_second),
            settings,
        })
    }

    /// One POST, its envelope classified: the `data` on success, a catalog error otherwise.
    async fn post<B: Serialize>(
        &self,
        path: &str,
        token: Option<&AppToken>,
        body: &B,
        effect: Effect,
    ) -> Result<(Value, Value), VendorError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body);
        if let Some(token) = token {
            request = request.header("Api-Access-Token", token.expose());
        }
        // Only a submit's failures are classed (SPEC §4): whether Zhimu may have the task
        // decides between sending it again and `unconfirmed`.
        let submit = effect == Effect::Submit;
        let classed = |err: VendorError, failure: SubmitFailure| {
            if submit {
                err.classed(mapping::submit_outcome(failure))
            } else {
                err
            }
        };
        let response = request.send().await.map_err(|err| {
            classed(
                transport_error(&err, effect),
                SubmitFailure::of_transport(&err),
            )
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|err| {
            classed(
                transport_error(&err, effect),
                SubmitFailure::of_transport(&err),
            )
        })?;
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&bytes) else {
            return Err(if (200..300).contains(&status) {
                classed(
                    mapping::unreadable_answer("not the {success,message,data} envelope", submit),
                    SubmitFailure::UnreadableAnswer,
                )
            } else {
                classed(
                    mapping::http_error(status),
                    SubmitFailure::HttpStatus(status),
                )
            });
        };
        let raw: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if envelope.success && (200..300).contains(&status) {
            return Ok((envelope.data.unwrap_or(Value::Null), raw));
        }
        if envelope.success {
            return Err(classed(
                mapping::http_error(status),
                SubmitFailure::HttpStatus(status),
            ));
        }
        let message = envelope.message.unwrap_or_default();
        let refusal = mapping::classify(status, &message);
        Err(mapping::refusal_error(refusal, status, &message).with_raw(raw))
    }

    /// The app token: cached, or fetched with a fresh signature (one fetch at a time).
    async fn app_token(&self) -> Result<AppToken, VendorError> {
        self.token
            .get(|| async {
                let request =
                    token::token_request(&self.credentials, chrono::Utc::now().timestamp_millis());
                // The answer holds the token: never attach it to anything.
                let (data, _raw) = self
                    .post("/openapi/getToken", None, &request, Effect::Query)
                    .await
                    .map_err(token_fetch_error)?;
                let data: TokenData = serde_json::from_value(data)
                    .map_err(|_| mapping::unreadable_answer("getToken returned no token", false))?;
                tracing::debug!(
                    expires_in_ms = data.expires_in,
                    "obtained a Zhimu app token"
                );
                Ok((AppToken::new(data.token), token::lifetime(data.expires_in)))
            })
            .await
    }

    /// An authenticated call. A token rejection drops that token, fetches a new one and
    /// retries once; a second rejection fails with `vendor_auth_failed`.
    async fn call<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        effect: Effect,
    ) -> Result<(Value, Value), VendorError> {
        let mut refreshed = false;
        loop {
            let token = self.app_token().await?;
            match self.post(path, Some(&token), body, effect).await {
                Err(err)
                    if err.decision == Decision::RefreshTokenOnce
                        && self.token.refresh_once(&token, &mut refreshed) =>
                {
                    tracing::info!(path, "Zhimu rejected the app token; refreshing it once");
                }
                Err(mut err) if err.decision == Decision::RefreshTokenOnce => {
                    err.decision = Decision::Fail;
                    err.message =
                        "Zhimu rejected a freshly issued app token (check ZHIMU_APP_ID and ZHIMU_APP_KEY)"
                            .into();
                    return Err(err);
                }
                other => return other,
            }
        }
    }

    async fn call_as<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        effect: Effect,
    ) -> Result<(T, Value), VendorError> {
        let (data, raw) = self.call(path, body, effect).await?;
        let parsed = serde_json::from_value(data).map_err(|err| {
            mapping::unreadable_answer(&format!("{path}: {err}"), effect == Effect::Submit)
                .with_raw(raw.clone())
        })?;
        Ok((parsed, raw))
    }

    /// Binds a shared printer to the app by its share code and verification code
    /// (`addSharePrinter`, §3.2).
    pub async fn bind_share(
        &self,
        share_ticket: &str,
        password: &str,
    ) -> Result<ZhimuPrinter, VendorError> {
        let body = AddShareRequest {
            share_ticket: share_ticket.to_owned(),
            password: password.to_owned(),
        };
        let (printer, _) = self
            .call_as::<_, SharedPrinter>("/openapi/control/addSharePrinter", &body, Effect::Query)
            .await?;
        Ok(printer.into())
    }

    /// Unbinds a printer from the app (`revokeSharePrinter`, §3.3).
    pub async fn unbind(&self, printer: &ZhimuLocator) -> Result<(), VendorError> {
        self.call(
            "/openapi/control/revokeSharePrinter",
            &printer.printer_ref(),
            Effect::Query,
        )
        .await
        .map(|_| ())
    }

    /// The printers bound to the app (`queryPrinters`, §3.4).
    pub async fn bound_printers(&self) -> Result<Vec<ZhimuPrinter>, VendorError> {
        let (printers, _) = self
            .call_as::<_, Vec<SharedPrinter>>(
                "/openapi/control/queryPrinters",
                &json!({}),
                Effect::Query,
            )
            .await?;
        Ok(printers.into_iter().map(ZhimuPrinter::from).collect())
    }

    /// Drops the cached app token.
    pub fn forget_token(&self) {
        self.token.clear();
    }
}

/// A transport failure: a timeout or a broken connection after sending leaves a submit's
/// outcome unknown; for a query it is just a failed call.
fn transport_error(err: &reqwest::Error, effect: Effect) -> VendorError {
    let mut error = VendorError::from_transport(err);
    if err.is_timeout() {
        error.message = "Zhimu did not answer within its timeout (the doc's 3000 ms)".into();
    }
    if effect == Effect::Query {
        error.outcome_unknown = false;
    }
    error
}

/// A failure to get a token: the business call never left, so its outcome is known. A
/// refusal (the doc gives no codes: a wrong AppKey reads like any other refusal) is
/// retried with backoff like other refusals and ends the job with the vendor's words.
fn token_fetch_error(mut err: VendorError) -> VendorError {
    err.outcome_unknown = false;
    if err.vendor_code.as_deref() == Some("success:false")
        || err.decision == Decision::RefreshTokenOnce
    {
        err.code = ErrorCode::VendorAuthFailed;
        err.decision = Decision::Retry;
        err.message = format!(
            "Zhimu refused to issue an app token (check ZHIMU_APP_ID and ZHIMU_APP_KEY): {}",
            err.vendor_message.as_deref().unwrap_or("")
        );
        err.counts_for_breaker = false;
    }
    err
}

/// The `content` of a task for its media source.
fn content(job: &SubmitRequest, source: MediaSource) -> Result<String, VendorError> {
    let document = &job.document;
    let missing = || {
        VendorError::new(
            ErrorCode::DocumentUnavailable,
            Decision::Fail,
            "the job's document has no content to send",
        )
    };
    match source {
        MediaSource::Url => document.url.clone().ok_or_else(missing),
        MediaSource::Base64 => document
            .bytes
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .ok_or_else(missing),
        MediaSource::String => document
            .bytes
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(missing),
    }
}

/// One task: the submit and status calls the trait's methods are made of.
impl ZhimuBackend {
    async fn submit_one(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        let locator = ZhimuLocator::parse(&printer.locator).map_err(|detail| {
            VendorError::new(ErrorCode::PrinterNotFound, Decision::Fail, detail)
        })?;
        let (format, source) =
            mapping::media(job.document.kind, job.document.doc_type).map_err(|detail| {
                VendorError::new(ErrorCode::VendorRejected, Decision::Fail, detail)
            })?;
        let (config, extras) = mapping::task_config(&job.options, printer.capabilities.as_ref());
        let body = NewPrintTask {
            command: "newPrintTask",
            data: NewPrintTaskData {
                task: PrintTask {
                    // The job id, so an operator can match the task on the sharing PC.
                    name: job.job_id.to_string(),
                    device_name: locator.printer_name.clone(),
                    device_type: locator.device_type.clone(),
                    control_sn: locator.share_sn.clone(),
                    media_source: source.as_str(),
                    media_format: format.as_str(),
                    content: content(job, source)?,
                    extras,
                    config,
                },
            },
        };
        let (data, raw) = self
            .call_as::<_, SubmitData>("/openapi", &body, Effect::Submit)
            .await?;
        if data.task_id.trim().is_empty() {
            return Err(mapping::unreadable_answer("an empty taskId", true).with_raw(raw));
        }
        Ok(Accepted {
            vendor_task_id: data.task_id,
            raw: Some(raw),
        })
    }

    async fn task_status_one(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError> {
        let locator = ZhimuLocator::parse(&printer.locator).map_err(|detail| {
            VendorError::new(ErrorCode::PrinterNotFound, Decision::Fail, detail)
        })?;
        self.polls.acquire().await;
        let body = TaskGetRequest {
            task_id: vendor_task_id.to_owned(),
            control_sn: locator.share_sn,
        };
        let (data, raw) = self
            .call_as::<_, TaskData>("/openapi/task/get", &body, Effect::Query)
            .await?;
        Ok(TaskReport {
            progress: mapping::task_progress(&data),
            vendor_status: mapping::vendor_status(&data),
            raw: Some(raw.get("data").cloned().unwrap_or(raw)),
        })
    }
}

#[async_trait]
impl Backend for ZhimuBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn setup_printer(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig> {
        let locator = ZhimuLocator::parse(locator)?;
        if secrets.as_object().is_some_and(|m| !m.is_empty()) {
            return Err("zhimu printers take no secrets: the app credentials are the gateway's (ZHIMU_APP_ID, ZHIMU_APP_KEY)".into());
        }
        Ok(PrinterSetup {
            device: format!("zhimu:{}", locator.share_sn),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        })
    }

    fn check_document(
        &self,
        kind: DocumentKind,
        doc_type: Option<DocumentType>,
    ) -> Result<(), UnsupportedDocument> {
        mapping::media(kind, doc_type).map(|_| ())
    }

    fn check_vendor_options(
        &self,
        options: &serde_json::Map<String, Value>,
    ) -> Result<(), UnsupportedOption> {
        mapping::check_vendor_options(options)
    }

    /// PDF is not in the doc's list; PNG is, so the gateway renders PDFs to PNG pages.
    fn takes_rendered_pages(&self) -> bool {
        true
    }

    /// The doc has no live status call: the printer is reported by whether it is still
    /// bound to the app (`queryPrinters`); `online` stays unknown.
    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError> {
        let locator = ZhimuLocator::parse(&printer.locator).map_err(|detail| {
            VendorError::new(ErrorCode::PrinterNotFound, Decision::Fail, detail)
        })?;
        let bound = self
            .bound_printers()
            .await?
            .into_iter()
            .any(|p| p.locator == locator);
        Ok(PrinterStatus {
            online: None,
            ready: None,
            conditions: if bound {
                Vec::new()
            } else {
                vec!["not_bound".to_owned()]
            },
            vendor_status: Some(if bound { "bound" } else { "not_bound" }.to_owned()),
        })
    }
}

#[async_trait]
impl PrintTarget for ZhimuBackend {
    fn poll_plan(&self) -> PollPlan {
        PollPlan {
            first_after: self.settings.poll.first,
            every: self.settings.poll.every,
        }
    }

    fn poll_interval(&self, since_dispatch: Duration) -> Duration {
        self.settings.poll.next_after(since_dispatch)
    }

    /// The doc has no cancel call.
    fn supports_cancel(&self) -> bool {
        false
    }

    /// One `newPrintTask`; a job of rendered pages is one task per page, in order (the doc's
    /// task has one `content`). The task ids are kept together, comma-separated. When a
    /// page after the first is refused, the pages before it are already at Zhimu: the
    /// outcome is reported unknown (the job becomes `unconfirmed`, never sent again) with
    /// the task ids that were accepted.
    async fn submit(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        if job.document.pages.is_empty() {
            return self.submit_one(printer, job).await;
        }
        let mut task_ids: Vec<String> = Vec::new();
        let mut answers: Vec<Value> = Vec::new();
        let total = job.document.pages.len();
        for (n, page) in job.document.pages.iter().enumerate() {
            let mut one = job.clone();
            one.document.pages = Vec::new();
            one.document.bytes = Some(page.clone());
            one.document.doc_type = Some(DocumentType::Png);
            one.document.kind = DocumentKind::Base64;
            match self.submit_one(printer, &one).await {
                Ok(accepted) => {
                    task_ids.push(accepted.vendor_task_id);
                    answers.extend(accepted.raw);
                }
                Err(err) if task_ids.is_empty() => return Err(err),
                Err(mut err) => {
                    err.outcome_unknown = true;
                    err.message = format!(
                        "pages 1-{} of {total} were accepted as tasks {} but page {} was not ({}); the job is not sent again",
                        n,
                        task_ids.join(", "),
                        n + 1,
                        err.message
                    );
                    err.raw =
                        Some(serde_json::json!({"accepted_tasks": task_ids, "answers": answers}));
                    return Err(err);
                }
            }
        }
        Ok(Accepted {
            vendor_task_id: task_ids.join(&mapping::TASK_SEPARATOR.to_string()),
            raw: Some(serde_json::json!({"pages": answers})),
        })
    }

    async fn task_status(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError> {
        if !vendor_task_id.contains(mapping::TASK_SEPARATOR) {
            return self.task_status_one(printer, vendor_task_id).await;
        }
        let mut progress = Vec::new();
        let mut statuses = Vec::new();
        let mut raws = Vec::new();
        for task in vendor_task_id.split(mapping::TASK_SEPARATOR) {
            let report = self.task_status_one(printer, task).await?;
            progress.push(report.progress);
            statuses.push(report.vendor_status);
            raws.extend(report.raw);
        }
        Ok(TaskReport {
            progress: mapping::combined_progress(&progress),
            vendor_status: statuses.join(","),
            raw: Some(Value::Array(raws)),
        })
    }

    /// Zhimu offers no way to find a task by its name (or anything but its id), so a
    /// submit whose answer was lost cannot be confirmed: the backend's lookup kind is
    /// `None`, the engine never asks, and the job stays `unconfirmed` until an operator
    /// settles it. "Not found" would be a guess; so would `failed`.
    async fn find_task(
        &self,
        _printer: &PrinterContext,
        _job: &SubmitRequest,
    ) -> Result<Lookup, VendorError> {
        Err(VendorError::new(
            ErrorCode::DispatchUnconfirmed,
            Decision::Fail,
            "Zhimu offers no task lookup by name, so whether the task arrived cannot be checked",
        ))
    }

    async fn cancel(
        &self,
        _printer: &PrinterContext,
        _vendor_task_id: &str,
    ) -> Result<CancelOutcome, VendorError> {
        Err(VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "Zhimu offers no way to cancel a task it has accepted",
        ))
    }

    async fn capabilities(
        &self,
        printer: &PrinterContext,
    ) -> Result<CapabilitiesReport, VendorError> {
        let locator = ZhimuLocator::parse(&printer.locator).map_err(|detail| {
            VendorError::new(ErrorCode::PrinterNotFound, Decision::Fail, detail)
        })?;
        let (data, _) = self
            .call(
                "/openapi/control/queryPrinterDetail",
                &locator.printer_ref(),
                Effect::Query,
            )
            .await?;
        let (detail, raw) = mapping::parse_detail(&data)
            .map_err(|what| mapping::unreadable_answer(&what.to_string(), false))?;
        Ok(CapabilitiesReport {
            capabilities: mapping::capabilities(&detail),
            raw,
        })
    }
}
