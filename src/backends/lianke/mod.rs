//! Lianke cloud print v3 (链科云打印, `lianke-v3.readable.txt`): the HTTP client and the
//! [`Backend`] implementation. Wire structs live in [`wire`], every vendor fact that maps
//! to the neutral model in [`mapping`], the result callback in [`webhook`].
//!
//! Lianke facts that shape this client: every call carries the `ApiKey` header; replies
//! are `{code,msg,data}` with HTTP 200 even for errors; a submit is multipart form-data;
//! several calls allow one at a time per device (the gateway's device slots and
//! `max_in_flight` 1 see to that); results arrive by callback or by polling no more often
//! than every 10 s.

pub mod mapping;
pub mod webhook;
pub mod wire;

use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backends::PrintTarget;
use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use reqwest::multipart::{Form, Part};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::backends::{
    Accepted, Backend, BackendSetupError, CancelOutcome, CapabilitiesReport, DiscoveredPrinter,
    Housekeeping, InvalidPrinterConfig, Lookup, LookupKind, PollPlan, PrinterContext, PrinterSetup,
    PrinterStatus, SubmitFailure, SubmitRequest, TaskReport, UnsupportedDocument,
    UnsupportedOption, VendorError,
};
use crate::domain::{Decision, DocumentKind, DocumentType, ErrorCode};
use mapping::Call;
use wire::{Envelope, LiankeTaskState};

/// The registry name.
pub const NAME: &str = "lianke";

/// Most tasks of one device `task_statuses` asks about one by one rather than by the
/// device's task list.
const ONE_BY_ONE: usize = 4;

/// How the Lianke backend behaves; built from the `LIANKE_*` settings.
#[derive(Debug, Clone)]
pub struct LiankeSettings {
    pub base_url: String,
    pub timeout: Duration,
    /// Whether the gateway hands Lianke a `callbackUrl` (PUBLIC_BASE_URL is https, or http
    /// was allowed for tests).
    pub callbacks: bool,
    /// Between two polls of one task (Lianke: ≥ 10 s).
    pub poll_interval: Duration,
    /// With callbacks on: the first poll comes this long after the submit.
    pub callback_wait: Duration,
    /// 5011/497 (no printer on the port): wait for one (true) or fail the job (false).
    pub no_printer_waits: bool,
}

/// A Lianke printer's locator, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub device_id: String,
    pub device_port: u32,
    pub printer_model: Option<String>,
    pub target_ip: Option<String>,
}

impl Locator {
    pub fn parse(locator: &Value) -> Result<Locator, InvalidPrinterConfig> {
        let obj = locator
            .as_object()
            .ok_or("the lianke locator must be an object")?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "device_id" | "device_port" | "printer_model" | "target_ip"
            ) {
                return Err(format!(
                    "unknown lianke locator field `{key}`; fields: device_id, device_port, printer_model, target_ip"
                )
                .into());
            }
        }
        let device_id = obj
            .get("device_id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .ok_or("a lianke printer needs `locator.device_id` (the box's cloud account)")?
            .to_owned();
        let device_port = match obj.get("device_port") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|p| (1..=64).contains(p))
                .ok_or("`locator.device_port` must be the USB port number, 1-64 (1 for network printers)")?
                as u32,
        };
        let text = |k: &str| -> Result<Option<String>, InvalidPrinterConfig> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => {
                    Ok(Some(s.trim().to_owned()))
                }
                Some(_) => Err(format!("`locator.{k}` must be a non-empty string").into()),
            }
        };
        let printer_model = text("printer_model")?;
        let target_ip = text("target_ip")?;
        if let Some(ip) = &target_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!("`locator.target_ip` must be an IP address, got {ip:?}").into());
        }
        Ok(Locator {
            device_id,
            device_port,
            printer_model,
            target_ip,
        })
    }
}

fn device_key(secrets: &Value) -> Result<String, InvalidPrinterConfig> {
    secrets
        .get("device_key")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            "a lianke printer needs `secrets.device_key` (the box's cloud password)".into()
        })
}

pub struct LiankeBackend {
    http: reqwest::Client,
    /// The Lianke `ApiKey`.
    api_key: SecretString,
    settings: LiankeSettings,
    /// `printer_params` per model: the doc asks callers to cache it.
    params: Mutex<HashMap<String, Arc<wire::PrinterParams>>>,
    /// `printer_status` allows one call per device at a time.
    status_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for LiankeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiankeBackend")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The printer's id, key and locator, ready for a call.
struct Device {
    locator: Locator,
    key: SecretString,
}

fn device(printer: &PrinterContext) -> Result<Device, VendorError> {
    let bad =
        |detail: String| VendorError::new(ErrorCode::PrinterAuthFailed, Decision::Fail, detail);
    Ok(Device {
        locator: Locator::parse(&printer.locator).map_err(|err| bad(err.into()))?,
        key: printer
            .secrets
            .get_str("device_key")
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| {
                bad("a lianke printer needs `secrets.device_key` (the box's cloud password)".into())
            })?,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LiankeBackend {
    pub fn new(
        api_key: SecretString,
        settings: LiankeSettings,
    ) -> Result<LiankeBackend, BackendSetupError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("print-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                BackendSetupError(format!("cannot build the Lianke HTTP client: {err}"))
            })?;
        Ok(LiankeBackend {
            http,
            api_key,
            settings: LiankeSettings {
                base_url: settings.base_url.trim_end_matches('/').to_owned(),
                ..settings
            },
            params: Mutex::new(HashMap::new()),
            status_locks: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    /// Sends a request with the `ApiKey` header and opens the envelope: `Ok(data)` for
    /// `code` 200, the classified error otherwise. Transport errors never carry the URL
    /// (it holds the device key).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        call: Call,
    ) -> Result<(Option<Value>, Value), VendorError> {
        // Only a submit's failures are classed (SPEC §4): whether the job may exist at
        // Lianke decides between sending it again and `unconfirmed`.
        let classed = |err: VendorError, failure: SubmitFailure| {
            if call == Call::Submit {
                err.classed(mapping::submit_outcome(failure))
            } else {
                err
            }
        };
        let response = request
            .header("ApiKey", self.api_key.expose_secret())
            .send()
            .await
            .map_err(|err| {
                let err = err.without_url();
                classed(
                    VendorError::from_transport(&err),
                    SubmitFailure::of_transport(&err),
                )
            })?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(classed(
                mapping::classify_http(status.as_u16()),
                SubmitFailure::HttpStatus(status.as_u16()),
            ));
        }
        let raw: Value = response.json().await.map_err(|err| {
            let err = err.without_url();
            let failure = if err.is_decode() {
                SubmitFailure::UnreadableAnswer
            } else {
                SubmitFailure::of_transport(&err)
            };
            classed(VendorError::from_transport(&err), failure)
        })?;
        let envelope: Envelope = serde_json::from_value(raw.clone()).map_err(|err| {
            let err = VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!("Lianke's reply is not its {{code,msg,data}} envelope: {err}"),
            )
            .with_raw(raw.clone());
            classed(err, SubmitFailure::UnreadableAnswer)
        })?;
        if envelope.code == 200 {
            Ok((envelope.data, raw))
        } else {
            Err(mapping::classify(
                envelope.code,
                envelope.msg.as_deref().unwrap_or(""),
                call,
                self.settings.no_printer_waits,
            )
            .with_raw(raw))
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        call: Call,
    ) -> Result<(T, Value), VendorError> {
        let (data, raw) = self.send(request, call).await?;
        let data = data.unwrap_or(Value::Null);
        let parsed = serde_json::from_value(data).map_err(|err| {
            VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!("Lianke's reply has an unexpected `data`: {err}"),
            )
            .with_raw(raw.clone())
        })?;
        Ok((parsed, raw))
    }

    fn device_query(d: &Device) -> Vec<(&'static str, String)> {
        vec![
            ("deviceId", d.locator.device_id.clone()),
            ("deviceKey", d.key.expose_secret().to_owned()),
        ]
    }

    async fn task(&self, d: &Device, task_id: &str) -> Result<TaskReport, VendorError> {
        let mut query = Self::device_query(d);
        query.push(("devicePort", d.locator.device_port.to_string()));
        query.push(("task_id", task_id.to_owned()));
        let (data, raw): (wire::TaskData, Value) = self
            .call(
                self.http.get(self.url("/api/print/job")).query(&query),
                Call::TaskQuery,
            )
            .await?;
        Ok(TaskReport {
            progress: mapping::task_progress(&data.task_state, data.task_result.as_ref()),
            vendor_status: data.task_state.as_str().to_owned(),
            raw: Some(raw),
        })
    }

    /// `printer_params` of a model, from the in-process cache when there.
    async fn printer_params(
        &self,
        model: &str,
    ) -> Result<(Arc<wire::PrinterParams>, Value), VendorError> {
        let (params, raw): (wire::PrinterParams, Value) = self
            .call(
                self.http
                    .get(self.url("/api/print/printer_params"))
                    .query(&[("printerModel", model)]),
                Call::PrinterParams,
            )
            .await?;
        let params = Arc::new(params);
        lock(&self.params).insert(model.to_owned(), Arc::clone(&params));
        Ok((params, raw))
    }

    fn cached_params(&self, model: &str) -> Option<Arc<wire::PrinterParams>> {
        lock(&self.params).get(model).cloned()
    }

    async fn printer_list(&self, d: &Device) -> Result<(wire::PrinterList, Value), VendorError> {
        let mut query = Self::device_query(d);
        query.push(("printerType", "1".into()));
        self.call(
            self.http
                .get(self.url("/api/external_api/printer_list"))
                .query(&query),
            Call::PrinterList,
        )
        .await
    }

    fn status_lock(&self, device_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            lock(&self.status_locks)
                .entry(device_id.to_owned())
                .or_default(),
        )
    }

    /// The `jobFile` part: a URL as text (+ `urlFileExt`), or a file with a name whose
    /// extension says its type.
    fn job_file(job: &SubmitRequest) -> Result<(Part, Option<String>), VendorError> {
        let doc = &job.document;
        let rejected = |m: &str| {
            VendorError::new(ErrorCode::VendorRejected, Decision::Fail, m)
                .counting_for_breaker(false)
        };
        if doc.kind == DocumentKind::Url {
            let url = doc
                .url
                .clone()
                .ok_or_else(|| rejected("the URL document has no URL"))?;
            let ext = doc
                .doc_type
                .map(|t| format!(".{}", t.extension()))
                .ok_or_else(|| rejected("Lianke needs the type of a URL document (urlFileExt)"))?;
            return Ok((Part::text(url), Some(ext)));
        }
        let bytes = doc
            .bytes
            .clone()
            .ok_or_else(|| rejected("the document's content is missing"))?;
        // Lianke treats text as a link: text and HTML go as files. Plain text is not among
        // the formats the doc lists (images, Office, PDF, HTML), so it is sent as HTML.
        let (doc_type, bytes) = match doc.kind {
            DocumentKind::Text => (
                DocumentType::Html,
                text_as_html(&String::from_utf8_lossy(&bytes))
                    .into_bytes()
                    .into(),
            ),
            DocumentKind::Html => (DocumentType::Html, bytes),
            _ => (doc.doc_type.unwrap_or(DocumentType::Pdf), bytes),
        };
        let filename = file_name(doc.filename.as_deref(), doc_type);
        let part = Part::stream(reqwest::Body::from(bytes))
            .file_name(filename)
            .mime_str(doc_type.content_type())
            .map_err(|_| rejected("the document's content type is malformed"))?;
        Ok((part, None))
    }

    /// The device's tasks of the last day (`query_device_task`), each with its raw row.
    async fn device_tasks(
        &self,
        d: &Device,
    ) -> Result<Vec<(wire::DeviceTask, Value)>, VendorError> {
        let body = json!({"deviceId": d.locator.device_id, "deviceKey": d.key.expose_secret()});
        let (data, _raw): (wire::DeviceTaskRows, Value) = self
            .call(
                self.http
                    .post(self.url("/api/print/query_device_task"))
                    .json(&body),
                Call::DeviceTasks,
            )
            .await?;
        data.task_list
            .into_iter()
            .map(|row| {
                let task = serde_json::from_value(row.clone()).map_err(|err| {
                    VendorError::new(
                        ErrorCode::VendorProtocolError,
                        Decision::Retry,
                        format!("Lianke's task list has an unreadable task: {err}"),
                    )
                    .with_raw(row.clone())
                })?;
                Ok((task, row))
            })
            .collect()
    }

    /// Tasks of the device created between `from` and `to`, from `query_device_task`.
    async fn tasks_near(
        &self,
        d: &Device,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<wire::DeviceTask>, VendorError> {
        Ok(self
            .device_tasks(d)
            .await?
            .into_iter()
            .map(|(task, _row)| task)
            .filter(|t| {
                t.create_at
                    .as_deref()
                    .and_then(china_time)
                    .is_some_and(|at| at >= from && at <= to)
            })
            .collect())
    }
}

/// The gateway's name of a Lianke box (`printers.device`): every printer on one box shares
/// its device slots.
pub fn device_name(device_id: &str) -> String {
    format!("lianke:{device_id}")
}

/// Lianke's times are China Standard Time, `YYYY-MM-DD HH:MM:SS`.
pub fn china_time(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    let cst = FixedOffset::east_opt(8 * 3600)?;
    naive
        .and_local_timezone(cst)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn text_as_html(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><pre style=\"white-space: pre-wrap\">{escaped}</pre></body></html>"
    )
}

/// A file name ending in the extension of `doc_type` (Lianke decides the format by it).
fn file_name(given: Option<&str>, doc_type: DocumentType) -> String {
    let stem = given
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .filter(|n| !n.trim().is_empty())
        .unwrap_or("document");
    if DocumentType::from_extension(stem) == Some(doc_type) {
        stem.to_owned()
    } else {
        let base = stem.rsplit_once('.').map_or(stem, |(b, _)| b);
        let base = if base.is_empty() { "document" } else { base };
        format!("{base}.{}", doc_type.extension())
    }
}

#[async_trait]
impl Backend for LiankeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn setup_printer(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig> {
        let locator = Locator::parse(locator)?;
        device_key(secrets)?;
        if let Some(obj) = secrets.as_object()
            && let Some(other) = obj.keys().find(|k| *k != "device_key")
        {
            return Err(
                format!("unknown lianke secret `{other}`; the only secret is device_key").into(),
            );
        }
        Ok(PrinterSetup {
            device: device_name(&locator.device_id),
            // Lianke allows one concurrent call per device on several endpoints.
            max_in_flight: 1,
        })
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["device_key"]
    }

    fn check_document(
        &self,
        kind: DocumentKind,
        doc_type: Option<DocumentType>,
    ) -> Result<(), UnsupportedDocument> {
        if kind == DocumentKind::Url && doc_type.is_none() {
            return Err("Lianke needs to know the type of a URL document (it sends `urlFileExt`): give `document.content_type`, or a URL whose path ends in an extension such as .pdf".into());
        }
        Ok(())
    }

    fn check_vendor_options(
        &self,
        options: &serde_json::Map<String, Value>,
    ) -> Result<(), UnsupportedOption> {
        for (name, value) in options {
            mapping::vendor_option_value(name, value)?;
        }
        Ok(())
    }

    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError> {
        let d = device(printer)?;
        let (info, _): (wire::DeviceInfo, Value) = self
            .call(
                self.http
                    .get(self.url("/api/device/device_info"))
                    .query(&Self::device_query(&d)),
                Call::DeviceInfo,
            )
            .await?;
        let online = info.info.online.map(|o| o == 1);
        if online != Some(true) {
            return Ok(PrinterStatus {
                online,
                ready: Some(false),
                conditions: vec!["device_offline".into()],
                vendor_status: Some(match info.info.online {
                    Some(0) => "offline".into(),
                    Some(other) => format!("online={other}"),
                    None => "never_online".into(),
                }),
            });
        }
        let (list, _) = self.printer_list(&d).await?;
        let Some(row) = list
            .row
            .into_iter()
            .find(|r| port_of(r) == d.locator.device_port)
        else {
            return Ok(PrinterStatus {
                online,
                ready: Some(false),
                conditions: vec!["no_printer".into()],
                vendor_status: None,
            });
        };
        let mut conditions: Vec<String> = row
            .printer_state
            .as_deref()
            .and_then(mapping::printer_state_condition)
            .map(|c| vec![c.to_owned()])
            .unwrap_or_default();
        let mut vendor_status = row.printer_state.clone();
        if row.support_status == Some(true) {
            // One live status query per device at a time (10009 otherwise).
            let lock = self.status_lock(&d.locator.device_id);
            let _guard = lock.lock().await;
            let mut query = Self::device_query(&d);
            query.push(("usbPort", d.locator.device_port.to_string()));
            let (status, _): (wire::PrinterStatusData, Value) = self
                .call(
                    self.http
                        .get(self.url("/api/device/printer_status"))
                        .query(&query),
                    Call::PrinterStatus,
                )
                .await?;
            conditions = mapping::status_conditions(&status);
            vendor_status = status.msg.clone().or(vendor_status);
        }
        let ready = !conditions
            .iter()
            .any(|c| !matches!(c.as_str(), "printing" | "low_ink"));
        Ok(PrinterStatus {
            online,
            ready: Some(ready),
            conditions,
            vendor_status,
        })
    }
}

#[async_trait]
impl PrintTarget for LiankeBackend {
    /// `query_device_task` lists a device's tasks of the last day, by creation time only.
    fn lookup_kind(&self) -> LookupKind {
        LookupKind::ByTime {
            horizon: Duration::from_secs(24 * 3600),
        }
    }

    fn wants_callback(&self) -> bool {
        self.settings.callbacks
    }

    fn poll_plan(&self) -> PollPlan {
        PollPlan {
            first_after: if self.settings.callbacks {
                self.settings.callback_wait
            } else {
                self.settings.poll_interval
            },
            every: self.settings.poll_interval,
        }
    }

    async fn submit(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Accepted, VendorError> {
        let d = device(printer)?;
        let needs_params = job.options.tray.is_some() || job.options.paper.is_none();
        let params = match (&d.locator.printer_model, needs_params) {
            (Some(model), true) => match self.cached_params(model) {
                Some(p) => Some(p),
                None if job.options.tray.is_some() => Some(self.printer_params(model).await?.0),
                None => None,
            },
            _ => None,
        };
        let option_fields = mapping::option_fields(
            &job.options,
            printer.capabilities.as_ref(),
            params.as_deref(),
        )?;
        let (file, url_ext) = Self::job_file(job)?;

        // Field order follows the doc's "进阶参数" listing.
        let mut form = Form::new()
            .text("deviceId", d.locator.device_id.clone())
            .text("deviceKey", d.key.expose_secret().to_owned())
            .text("devicePort", d.locator.device_port.to_string());
        if let Some(model) = &d.locator.printer_model {
            form = form.text("printerModel", model.clone());
        }
        form = form.part("jobFile", file);
        if let Some(ext) = url_ext {
            form = form.text("urlFileExt", ext);
        }
        for (name, value) in option_fields {
            form = form.text(name, value);
        }
        if let Some(ip) = &d.locator.target_ip {
            form = form.text("targetIp", ip.clone());
        }
        let mut vendor: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &job.options.vendor_options {
            let value = mapping::vendor_option_value(name, value).map_err(|m| {
                VendorError::new(ErrorCode::VendorRejected, Decision::Fail, m)
                    .counting_for_breaker(false)
            })?;
            vendor.insert(name.as_str(), value);
        }
        // Refuse a task up front when the port has no printer (5011) rather than let it
        // fail: failed tasks count toward Lianke's 30-failure suspension.
        vendor
            .entry("reportPrinterStatus")
            .or_insert_with(|| "1".into());
        for (name, value) in vendor {
            form = form.text(name.to_owned(), value);
        }
        if let Some(url) = &job.callback_url {
            form = form.text("callbackUrl", url.clone());
        }
        let (data, raw): (wire::SubmitData, Value) = self
            .call(
                self.http.post(self.url("/api/print/job")).multipart(form),
                Call::Submit,
            )
            .await
            .map_err(|err| {
                if err.code == ErrorCode::VendorProtocolError {
                    // Lianke answered but we cannot read the task id: it may have the task.
                    err.outcome_unknown()
                } else {
                    err
                }
            })?;
        Ok(Accepted {
            vendor_task_id: data.task_id,
            raw: Some(raw),
        })
    }

    async fn task_status(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<TaskReport, VendorError> {
        let d = device(printer)?;
        self.task(&d, vendor_task_id).await
    }

    /// A few tasks (up to [`ONE_BY_ONE`]): `GET /api/print/job` for each, at once. More: one
    /// `query_device_task` (the device's tasks of the last day, with the same state and
    /// result words as the task query), then the task query for any the list does not show
    /// (a task older than a day). The list holds every task of the box's day — a busy box's
    /// hundreds — so for a few tasks their own small answers are less work on both sides.
    async fn task_statuses(
        &self,
        printer: &PrinterContext,
        vendor_task_ids: &[String],
    ) -> Vec<Result<TaskReport, VendorError>> {
        let d = match device(printer) {
            Ok(d) => d,
            Err(err) => return vendor_task_ids.iter().map(|_| Err(err.clone())).collect(),
        };
        if vendor_task_ids.len() <= ONE_BY_ONE {
            return futures::future::join_all(vendor_task_ids.iter().map(|id| self.task(&d, id)))
                .await;
        }
        let listed = match self.device_tasks(&d).await {
            Ok(tasks) => tasks,
            Err(err) => return vendor_task_ids.iter().map(|_| Err(err.clone())).collect(),
        };
        let mut by_id: HashMap<&str, &(wire::DeviceTask, Value)> = listed
            .iter()
            .map(|entry| (entry.0.task_id.as_str(), entry))
            .collect();
        let mut reports = Vec::with_capacity(vendor_task_ids.len());
        for id in vendor_task_ids {
            let report = match by_id.remove(id.as_str()) {
                Some((task, row)) => Ok(TaskReport {
                    progress: mapping::task_progress(&task.status, task.result.as_ref()),
                    vendor_status: task.status.as_str().to_owned(),
                    raw: Some(row.clone()),
                }),
                None => self.task(&d, id).await,
            };
            reports.push(report);
        }
        reports
    }

    /// Lianke's task list carries no reference of ours, so an unconfirmed submit is found
    /// by time: a task created on the device while the submit was in flight. Submits on
    /// one device are serialised (max_in_flight 1), so at most one gateway task can fall
    /// in that window; more than one (another client on the box) is ambiguous and left
    /// to the reconciler's give-up.
    async fn find_task(
        &self,
        printer: &PrinterContext,
        job: &SubmitRequest,
    ) -> Result<Lookup, VendorError> {
        let d = device(printer)?;
        let started = job.submit_started_at.unwrap_or(job.created_at);
        // Lianke's times have whole seconds; the next submit on the device starts only
        // after this one's timeout.
        let from = started - chrono::Duration::seconds(2);
        let to = started
            + chrono::Duration::from_std(self.settings.timeout).unwrap_or(chrono::Duration::zero());
        let mut tasks = self.tasks_near(&d, from, to).await?;
        // A neighbour's task (the previous submit on the box finished just before this
        // one started) is not a candidate.
        tasks.retain(|task| !job.taken_task_ids.contains(&task.task_id));
        match tasks.as_slice() {
            [] => Ok(Lookup::NotFound),
            [task] => {
                let report = match self.task(&d, &task.task_id).await {
                    Ok(report) => report,
                    Err(_) => TaskReport {
                        progress: mapping::task_progress(&task.status, task.result.as_ref()),
                        vendor_status: task.status.as_str().to_owned(),
                        raw: None,
                    },
                };
                Ok(Lookup::Found {
                    vendor_task_id: task.task_id.clone(),
                    report,
                })
            }
            many => Err(VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!(
                    "{} Lianke tasks were created on the device while the submit was in flight; which one is this job's cannot be told",
                    many.len()
                ),
            )),
        }
    }

    async fn cancel(
        &self,
        printer: &PrinterContext,
        vendor_task_id: &str,
    ) -> Result<CancelOutcome, VendorError> {
        let d = device(printer)?;
        let mut query = Self::device_query(&d);
        query.push(("devicePort", d.locator.device_port.to_string()));
        query.push(("task_id", vendor_task_id.to_owned()));
        let revoke = self
            .send(
                self.http.delete(self.url("/api/print/job")).query(&query),
                Call::Cancel,
            )
            .await;
        // Whatever the answer (the task may have ended meanwhile: 400), the task's state
        // says what happened: REVOKED is canceled, anything else is still to be watched.
        let report = self.task(&d, vendor_task_id).await;
        match (revoke, report) {
            (_, Ok(r)) if r.vendor_status == LiankeTaskState::Revoked.as_str() => {
                Ok(CancelOutcome::Canceled { raw: r.raw })
            }
            (Ok((_, raw)), _) => Ok(CancelOutcome::Requested { raw: Some(raw) }),
            (Err(_), Ok(r)) => Ok(CancelOutcome::Requested { raw: r.raw }),
            (Err(err), Err(_)) => Err(err),
        }
    }

    async fn capabilities(
        &self,
        printer: &PrinterContext,
    ) -> Result<CapabilitiesReport, VendorError> {
        let d = device(printer)?;
        let model = match &d.locator.printer_model {
            Some(model) => model.clone(),
            None => {
                // Ask the box which printer sits on the port.
                let (list, _) = self.printer_list(&d).await?;
                list.row
                    .into_iter()
                    .find(|r| port_of(r) == d.locator.device_port)
                    .map(|r| r.driver_name)
                    .ok_or_else(|| {
                        mapping::classify(
                            5011,
                            "",
                            Call::PrinterList,
                            self.settings.no_printer_waits,
                        )
                    })?
            }
        };
        let (params, params_raw) = self.printer_params(&model).await?;
        let (dimensions, dims_raw): (BTreeMap<String, wire::PaperDimension>, Value) = self
            .call(
                self.http
                    .get(self.url("/api/print/paper_dimension_list"))
                    .query(&[("printerModel", model.as_str())]),
                Call::PrinterParams,
            )
            .await?;
        Ok(CapabilitiesReport {
            capabilities: mapping::capabilities(&params, &dimensions),
            raw: json!({"printer_model": model, "printer_params": params_raw, "paper_dimension_list": dims_raw}),
        })
    }

    async fn discover(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Option<Result<Vec<DiscoveredPrinter>, VendorError>> {
        let found = async {
            let device_id = locator
                .get("device_id")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    VendorError::new(
                        ErrorCode::VendorRejected,
                        Decision::Fail,
                        "discovery needs `locator.device_id`",
                    )
                })?;
            let key = device_key(secrets)
                .map_err(|m| VendorError::new(ErrorCode::VendorRejected, Decision::Fail, m))?;
            let d = Device {
                locator: Locator {
                    device_id: device_id.trim().to_owned(),
                    device_port: 1,
                    printer_model: None,
                    target_ip: None,
                },
                key: SecretString::from(key),
            };
            let (list, _) = self.printer_list(&d).await?;
            Ok(list
                .row
                .into_iter()
                .map(|r| {
                    let port = port_of(&r);
                    let mut locator = json!({
                        "device_id": d.locator.device_id,
                        "device_port": port,
                        "printer_model": r.driver_name,
                    });
                    if let (Some(ip), Some(obj)) = (&r.ip_addr, locator.as_object_mut()) {
                        obj.insert("target_ip".into(), json!(ip));
                    }
                    let name = r
                        .printer_name
                        .clone()
                        .unwrap_or_else(|| r.driver_name.clone());
                    DiscoveredPrinter {
                        display_name: format!("{name} (port {port})"),
                        locator,
                        model: r.driver_name.clone(),
                        supported: r.driver_type == Some(1),
                        live_status: r.support_status == Some(true),
                        state: r.printer_state.clone(),
                        vendor: json!({
                            "port": r.port,
                            "driver_type": r.driver_type,
                            "printer_state": r.printer_state,
                            "ip_addr": r.ip_addr,
                        }),
                    }
                })
                .collect())
        };
        Some(found.await)
    }

    async fn housekeeping(
        &self,
        printer: &PrinterContext,
        action: Housekeeping,
    ) -> Option<Result<Value, VendorError>> {
        let d = match device(printer) {
            Ok(d) => d,
            Err(err) => return Some(Err(err)),
        };
        // Both take a JSON body (the doc's "raw" mode).
        let body = json!({
            "deviceId": d.locator.device_id,
            "deviceKey": d.key.expose_secret(),
            "devicePort": d.locator.device_port,
        });
        let (path, call) = match action {
            Housekeeping::ResetErrorLimit => (
                "/api/print/reset_printing_error_limit",
                Call::ResetErrorLimit,
            ),
            Housekeeping::FlushQueue => ("/api/print/flush_jobs", Call::FlushJobs),
        };
        let result = self
            .send(self.http.post(self.url(path)).json(&body), call)
            .await
            .map(|(data, _)| json!({"vendor_data": data}));
        Some(result)
    }
}

/// `printer_list` reports network printers on port 631; they are sent to port 1.
fn port_of(row: &wire::PrinterListRow) -> u32 {
    match row.port {
        Some(wire::NETWORK_PRINTER_PORT) | None => 1,
        Some(p) => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_parse_and_refuse() {
        let l = Locator::parse(&json!({"device_id": "lk1", "device_port": "2", "printer_model": "HP", "target_ip": "192.0.2.7"})).unwrap();
        assert_eq!(l.device_port, 2);
        assert_eq!(
            Locator::parse(&json!({"device_id": "lk1"}))
                .unwrap()
                .device_port,
            1
        );
        for bad in [
            json!({}),
            json!({"device_id": ""}),
            json!({"device_id": "x", "device_port": 0}),
            json!({"device_id": "x", "target_ip": "printer.local"}),
            json!({"device_id": "x", "device_key": "secret-in-the-wrong-place"}),
        ] {
            assert!(Locator::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_carry_the_type_extension() {
        assert_eq!(file_name(Some("r.pdf"), DocumentType::Pdf), "r.pdf");
        assert_eq!(
            file_name(Some("dir/scan.jpeg"), DocumentType::Jpeg),
            "scan.jpeg"
        );
        assert_eq!(
            file_name(Some("notes.txt"), DocumentType::Html),
            "notes.html"
        );
        assert_eq!(file_name(None, DocumentType::Png), "document.png");
        assert_eq!(file_name(Some("noext"), DocumentType::Docx), "noext.docx");
    }

    #[test]
    fn china_times_parse() {
        let t = china_time("2022-03-01 17:15:02").unwrap();
        assert_eq!(t.to_rfc3339(), "2022-03-01T09:15:02+00:00");
        assert!(china_time("yesterday").is_none());
    }

    #[test]
    fn text_is_escaped_into_html() {
        assert!(text_as_html("<b>&").contains("&lt;b&gt;&amp;"));
    }
}
