//! Fake Lianke cloud print v3 (`lianke-v3.readable.txt`): `/api/...`, `ApiKey` header,
//! `{code,msg,data}` envelopes (HTTP 200 even for errors), form-data task submit, a task
//! lifecycle READY → PARSING → SENDING → SUCCESS/FAILURE, revocation, result callbacks.
//!
//! Codes not given by the doc (chosen by the simulator, documented in the README):
//! 403 for a missing/unknown `ApiKey`, 400 for a missing or malformed parameter, 404 for an
//! unknown task.

mod fixtures;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::core::{Core, deliver};
use crate::form::{FormPart, json_object, json_text, parse_multipart, parse_query};
use crate::ledger::{LedgerFile, Vendor, field_value, lock, sha256_hex};

/// Lianke refuses files above 20 MB.
const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// `errLimitNum` default and maximum (doc: "默认为30，最大不超过30").
const ERR_LIMIT_MAX: u32 = 30;
/// `reset_printing_error_limit` may be called 10 times a day per device.
const RESETS_PER_DAY: u32 = 10;

/// The Lianke simulator's state: its world and settings beside the shared [`Core`].
pub(crate) struct LiankeSim {
    pub core: Arc<Core>,
    pub lianke: std::sync::Mutex<LiankeWorld>,
    pub config: LiankeSettings,
}

/// The part of [`crate::SimConfig`] this vendor reads (same field names).
#[derive(Debug, Clone)]
pub(crate) struct LiankeSettings {
    pub allow_http_callbacks: bool,
    pub lianke_stage_delay: std::time::Duration,
    pub lianke_status_query_delay: std::time::Duration,
    pub lianke_callback_schedule: Vec<std::time::Duration>,
}

impl std::ops::Deref for LiankeSim {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

// ---------------------------------------------------------------------------------------
// Public specs (control API and library)

/// A Lianke cloud box as registered with the simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiankeDeviceSpec {
    #[serde(rename = "deviceId", alias = "device_id")]
    pub device_id: String,
    #[serde(rename = "deviceKey", alias = "device_key")]
    pub device_key: String,
    /// `Some(true)` online, `Some(false)` offline (5002), `None` never configured (5001).
    #[serde(default = "some_true")]
    pub online: Option<bool>,
    /// Printers by USB port; default: one HP LaserJet P1007 on port 1.
    #[serde(default = "default_printers")]
    pub printers: Vec<LiankePrinterSpec>,
    #[serde(default = "three")]
    pub usb_port_num: u32,
}

impl LiankeDeviceSpec {
    /// An online box with the default printer on port 1.
    pub fn new(device_id: &str, device_key: &str) -> Self {
        LiankeDeviceSpec {
            device_id: device_id.to_owned(),
            device_key: device_key.to_owned(),
            online: Some(true),
            printers: default_printers(),
            usb_port_num: 3,
        }
    }
}

fn some_true() -> Option<bool> {
    Some(true)
}
fn three() -> u32 {
    3
}
fn default_printers() -> Vec<LiankePrinterSpec> {
    vec![LiankePrinterSpec::new(1, "HP LaserJet P1007")]
}

/// A printer plugged into a port of a box.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiankePrinterSpec {
    pub port: u32,
    /// The model (`driver_name`, the `printerModel` parameter).
    pub driver_name: String,
    /// Whether `printer_status` works for it.
    #[serde(default = "yes")]
    pub support_status: bool,
    /// Colour capable (adds 彩色 to `printer_params` Color).
    #[serde(default)]
    pub color: bool,
    /// Live status flags reported by `printer_status`.
    #[serde(default)]
    pub status: LiankePrinterStatus,
}

fn yes() -> bool {
    true
}

impl LiankePrinterSpec {
    pub fn new(port: u32, driver_name: &str) -> Self {
        LiankePrinterSpec {
            port,
            driver_name: driver_name.to_owned(),
            support_status: true,
            color: false,
            status: LiankePrinterStatus::default(),
        }
    }
}

/// The flags of `GET /api/device/printer_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LiankePrinterStatus {
    pub head_opened: bool,
    pub paper_jam: bool,
    pub out_of_paper: bool,
    pub out_of_ribbon: bool,
    pub out_of_ink: bool,
    pub pause: bool,
    pub printing: bool,
}

/// How a submitted task ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LiankeOutcome {
    /// `task_state` SUCCESS, `task_result.code` 200.
    Success {
        #[serde(default = "one_page")]
        total_page: u32,
    },
    /// `task_state` SUCCESS with another `task_result.code` (the doc's 502/503 examples).
    PrintError { code: i64, msg: String },
    /// `task_state` FAILURE.
    Failure { code: i64, msg: String },
}

fn one_page() -> u32 {
    1
}

impl Default for LiankeOutcome {
    fn default() -> Self {
        LiankeOutcome::Success { total_page: 1 }
    }
}

/// `task_state` values, as the doc lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LiankeTaskState {
    Ready,
    Parsing,
    Sending,
    Success,
    Failure,
    SetRevoke,
    Revoked,
}

impl LiankeTaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            LiankeTaskState::Ready => "READY",
            LiankeTaskState::Parsing => "PARSING",
            LiankeTaskState::Sending => "SENDING",
            LiankeTaskState::Success => "SUCCESS",
            LiankeTaskState::Failure => "FAILURE",
            LiankeTaskState::SetRevoke => "SET_REVOKE",
            LiankeTaskState::Revoked => "REVOKED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            LiankeTaskState::Success | LiankeTaskState::Failure | LiankeTaskState::Revoked
        )
    }
}

/// What the simulator knows about one task (control API / library view).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiankeTaskView {
    pub task_id: String,
    pub device_id: String,
    pub device_port: u32,
    pub state: LiankeTaskState,
    /// `task_result` code and msg once ended.
    pub result: Option<(i64, String)>,
    pub callback_url: Option<String>,
    /// Submitted text fields (secrets masked).
    pub fields: BTreeMap<String, String>,
    /// The uploaded file, or `None` for URL jobs.
    pub file: Option<LedgerFile>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------
// World

#[derive(Debug)]
struct Device {
    spec: LiankeDeviceSpec,
    consecutive_failures: u32,
    resets: (chrono::NaiveDate, u32),
    outcomes: VecDeque<LiankeOutcome>,
    paused: bool,
    busy: HashSet<&'static str>,
}

#[derive(Debug)]
struct Task {
    view: LiankeTaskView,
    outcome: LiankeOutcome,
    file_total: usize,
}

#[derive(Debug, Default)]
pub(crate) struct LiankeWorld {
    api_keys: HashSet<String>,
    devices: HashMap<String, Device>,
    tasks: HashMap<String, Task>,
    /// Each device's task ids, oldest first: a device's task list is read without going
    /// through every task of every device (benchmarks make tens of thousands).
    device_tasks: HashMap<String, Vec<String>>,
}

impl LiankeWorld {
    pub(crate) fn new(api_keys: &[String], devices: &[LiankeDeviceSpec]) -> Self {
        let mut w = LiankeWorld {
            api_keys: api_keys.iter().cloned().collect(),
            ..LiankeWorld::default()
        };
        for d in devices {
            w.add_device(d.clone());
        }
        w
    }

    pub(crate) fn add_api_key(&mut self, key: &str) {
        self.api_keys.insert(key.to_owned());
    }

    pub(crate) fn add_device(&mut self, spec: LiankeDeviceSpec) {
        let id = spec.device_id.clone();
        self.devices.insert(
            id,
            Device {
                spec,
                consecutive_failures: 0,
                resets: (Utc::now().date_naive(), 0),
                outcomes: VecDeque::new(),
                paused: false,
                busy: HashSet::new(),
            },
        );
    }

    pub(crate) fn set_online(&mut self, device_id: &str, online: Option<bool>) -> bool {
        self.devices
            .get_mut(device_id)
            .map(|d| d.spec.online = online)
            .is_some()
    }

    pub(crate) fn set_paused(&mut self, device_id: &str, paused: bool) -> bool {
        self.devices
            .get_mut(device_id)
            .map(|d| d.paused = paused)
            .is_some()
    }

    pub(crate) fn script_outcomes(
        &mut self,
        device_id: &str,
        outcomes: Vec<LiankeOutcome>,
    ) -> bool {
        self.devices
            .get_mut(device_id)
            .map(|d| d.outcomes.extend(outcomes))
            .is_some()
    }

    /// Plugs (or replaces) a printer on a port; `None` unplugs whatever is on `port`.
    pub(crate) fn set_printer(
        &mut self,
        device_id: &str,
        port: u32,
        printer: Option<LiankePrinterSpec>,
    ) -> bool {
        let Some(d) = self.devices.get_mut(device_id) else {
            return false;
        };
        d.spec.printers.retain(|p| p.port != port);
        if let Some(mut p) = printer {
            p.port = port;
            d.spec.printers.push(p);
        }
        true
    }

    pub(crate) fn consecutive_failures(&self, device_id: &str) -> Option<u32> {
        self.devices.get(device_id).map(|d| d.consecutive_failures)
    }

    pub(crate) fn task(&self, task_id: &str) -> Option<LiankeTaskView> {
        self.tasks.get(task_id).map(|t| t.view.clone())
    }

    pub(crate) fn tasks(&self) -> Vec<LiankeTaskView> {
        let mut v: Vec<_> = self.tasks.values().map(|t| t.view.clone()).collect();
        v.sort_by_key(|t| t.created_at);
        v
    }

    fn device(&mut self, q: &Params) -> Result<&mut Device, LkError> {
        let id = q.required("deviceId")?;
        let key = q.required("deviceKey")?;
        match self.devices.get_mut(&id) {
            Some(d) if d.spec.device_key == key => Ok(d),
            _ => Err(LkError::new(404, "设备id或密码错误")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Envelope

/// A Lianke error reply: `{code,msg}` with HTTP 200, as Lianke answers.
#[derive(Debug)]
pub(crate) struct LkError {
    code: i64,
    msg: String,
}

impl LkError {
    fn new(code: i64, msg: impl Into<String>) -> Self {
        LkError {
            code,
            msg: msg.into(),
        }
    }
    fn bad(msg: impl Into<String>) -> Self {
        LkError::new(400, msg)
    }
    fn offline() -> Self {
        LkError::new(5002, "设备已离线，请检查云指示灯")
    }
    fn busy() -> Self {
        LkError::new(10009, "请求频繁，单个设备同时只允许调用一次")
    }
}

impl IntoResponse for LkError {
    fn into_response(self) -> Response {
        axum::Json(json!({"code": self.code, "msg": self.msg})).into_response()
    }
}

/// The Lianke error envelope for a scripted fault.
pub(crate) fn fault_reply(code: i64, msg: Option<String>) -> Response {
    LkError::new(code, msg.unwrap_or_else(|| "模拟错误".to_owned())).into_response()
}

type LkResult = Result<Response, LkError>;

fn ok(data: Value) -> LkResult {
    Ok(axum::Json(json!({"code": 200, "msg": "success", "data": data})).into_response())
}

fn ok_empty() -> LkResult {
    Ok(axum::Json(json!({"code": 200, "msg": "success"})).into_response())
}

/// Request parameters from the query string or a JSON body, read as text.
struct Params(HashMap<String, String>);

impl Params {
    fn from_query(q: Option<String>) -> Self {
        Params(parse_query(q.as_deref().unwrap_or("")))
    }

    fn from_json(body: &[u8]) -> Result<Self, LkError> {
        let v = json_object(body).ok_or_else(|| LkError::bad("请求体必须为JSON对象"))?;
        let map = v
            .as_object()
            .map(|m| {
                m.keys()
                    .filter_map(|k| json_text(&v, k).map(|t| (k.clone(), t)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Params(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn required(&self, k: &str) -> Result<String, LkError> {
        self.get(k)
            .map(str::to_owned)
            .ok_or_else(|| LkError::bad(format!("缺少参数{k}")))
    }

    fn port(&self, k: &str) -> Result<u32, LkError> {
        match self.get(k) {
            None => Ok(1),
            Some(p) => p
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| LkError::bad(format!("{k}必须为正整数"))),
        }
    }
}

fn check_api_key(core: &LiankeSim, headers: &HeaderMap) -> Result<(), LkError> {
    let key = headers.get("ApiKey").and_then(|v| v.to_str().ok());
    match key {
        Some(k) if lock(&core.lianke).api_keys.contains(k) => Ok(()),
        _ => Err(LkError::new(403, "ApiKey无效或缺失")),
    }
}

/// Marks an exclusive call on a device (10009 for a second one) until dropped.
struct Exclusive {
    core: Arc<LiankeSim>,
    device_id: String,
    what: &'static str,
}

impl Exclusive {
    fn acquire(
        core: &Arc<LiankeSim>,
        device: &mut Device,
        what: &'static str,
    ) -> Result<Self, LkError> {
        if !device.busy.insert(what) {
            return Err(LkError::busy());
        }
        Ok(Exclusive {
            core: Arc::clone(core),
            device_id: device.spec.device_id.clone(),
            what,
        })
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(d) = lock(&self.core.lianke).devices.get_mut(&self.device_id) {
            d.busy.remove(self.what);
        }
    }
}

/// Lianke's callback times are China Standard Time, `YYYY-MM-DD HH:MM:SS`.
fn china_time(t: DateTime<Utc>) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
    match FixedOffset::east_opt(8 * 3600) {
        Some(cst) => t.with_timezone(&cst).format(FORMAT).to_string(),
        None => t.format(FORMAT).to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Router

pub(crate) fn router() -> Router<Arc<LiankeSim>> {
    Router::new()
        .route("/api/external_api/printer_list", get(printer_list))
        .route("/api/print/printer_params", get(printer_params))
        .route("/api/print/paper_dimension_list", get(paper_dimension_list))
        .route(
            "/api/print/job",
            post(submit_job).get(get_job).delete(revoke_job),
        )
        .route("/api/device/device_info", get(device_info))
        .route("/api/device/printer_status", get(printer_status))
        .route("/api/print/query_device_task", post(query_device_task))
        .route(
            "/api/print/reset_printing_error_limit",
            post(reset_error_limit),
        )
        .route("/api/print/flush_jobs", post(flush_jobs))
        .route(
            "/api/print/printer_enum",
            get(printer_enum).post(search_printer_enum),
        )
        .route(
            "/api/driver/uninstall_driver_event",
            post(uninstall_driver_event),
        )
        .route("/api/device/async_refresh_device_info", get(async_refresh))
        .route(
            "/api/printer/refresh_network_printer",
            get(refresh_network_printer),
        )
        .route("/api/print/file_pages", post(file_pages))
        .route("/api/device/async_device_reboot", post(async_reboot))
}

fn printer_state(p: &LiankePrinterSpec) -> &'static str {
    if p.status.out_of_paper {
        "outOfPaper"
    } else if p.status.printing {
        "printing"
    } else if p.status.paper_jam || p.status.head_opened || p.status.pause {
        "stopped"
    } else {
        "idle"
    }
}

async fn printer_list(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let mut world = lock(&core.lianke);
    let device = world.device(&q)?;
    let mut printers = device.spec.printers.clone();
    printers.sort_by_key(|p| p.port);
    let rows: Vec<Value> = printers
        .iter()
        .map(|p| {
            json!({
                "MDL": p.driver_name,
                "device": null,
                "drivce_name": p.driver_name,
                "driver_name": p.driver_name,
                "driver_type": 1,
                "id": 611_000 + p.port,
                "idProduct": null,
                "idVendor": null,
                "isPrinter": 1,
                "port": p.port,
                "printer_name": p.driver_name,
                "printer_state": printer_state(p),
                "product": p.driver_name,
                "species": 4,
                "support_status": p.support_status,
                "vendor": null
            })
        })
        .collect();
    ok(json!({"row": rows, "total": printers.len()}))
}

fn known_model(world: &LiankeWorld, model: &str) -> Option<bool> {
    let color = world
        .devices
        .values()
        .flat_map(|d| d.spec.printers.iter())
        .find(|p| p.driver_name == model)
        .map(|p| p.color);
    color.or_else(|| fixtures::PRINTER_MODELS.contains(&model).then_some(false))
}

async fn printer_params(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let model = q.required("printerModel")?;
    let color = known_model(&lock(&core.lianke), &model)
        .ok_or_else(|| LkError::new(404, "未找到该打印机型号"))?;
    ok(fixtures::printer_params(&model, color))
}

async fn paper_dimension_list(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let model = q.required("printerModel")?;
    known_model(&lock(&core.lianke), &model)
        .ok_or_else(|| LkError::new(404, "未找到该打印机型号"))?;
    ok(fixtures::paper_dimensions())
}

// ---------------------------------------------------------------------------------------
// Task submit

/// Checks one documented `dm*`/`jp*`/switch field; `Err` names the field.
fn validate_field(name: &str, value: &str) -> Result<(), LkError> {
    let v = value.trim();
    let int = || v.parse::<i64>().ok();
    let percent = || {
        v.strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=1000).contains(&n))
    };
    let valid = match name {
        "dmPaperSize" | "dmMediaType" | "dmDefaultSource" => int().is_some_and(|n| n >= 0),
        "dmPaperLength" | "dmPaperWidth" => int().is_some_and(|n| n > 0),
        "dmOrientation" | "dmColor" => matches!(v, "1" | "2"),
        "dmDuplex" => matches!(v, "1" | "2" | "3"),
        "dmCopies" => int().is_some_and(|n| (1..=999).contains(&n)),
        "dmPrintQuality" => matches!(v, "-1" | "-2" | "-3" | "-4"),
        "jpAutoScale" => matches!(v, "0" | "1" | "2" | "3" | "4") || percent(),
        "jpScale" => matches!(v, "fit" | "fitw" | "fith" | "fill" | "cover" | "none") || percent(),
        "jpAutoAlign" => {
            v.is_empty()
                || matches!(
                    v,
                    "z1" | "z2" | "z3" | "z4" | "z5" | "z6" | "z7" | "z8" | "z9"
                )
        }
        "jpPageRange" => v.is_empty() || v == "-1" || v == "-2" || page_range_ok(v),
        "htmlKernel" => matches!(v, "wkhtml" | "chrometopdf" | "wkhtmltopdf"),
        "isPreview" | "reportDeviceStatus" | "reportPrinterStatus" | "pdfRev" | "jpAutoRotate" => {
            matches!(v, "0" | "1")
        }
        "errLimitNum" => v
            .parse::<u32>()
            .is_ok_and(|n| (1..=ERR_LIMIT_MAX).contains(&n)),
        "urlFileExt" => v.starts_with('.') && v.len() > 1,
        _ => true,
    };
    if valid {
        Ok(())
    } else {
        Err(LkError::bad(format!("参数{name}取值无效: {value}")))
    }
}

fn page_range_ok(v: &str) -> bool {
    v.split(',').all(|part| {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) => a >= 1 && a <= b,
                _ => false,
            },
            None => part.parse::<u32>().is_ok_and(|n| n >= 1),
        }
    })
}

async fn submit_job(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("multipart/form-data") {
        return Err(LkError::bad("请使用form-data格式提交，非JSON"));
    }
    let parts = parse_multipart(content_type, body)
        .await
        .map_err(|e| LkError::bad(format!("form-data解析失败: {e}")))?;

    let mut text: HashMap<String, String> = HashMap::new();
    let mut file: Option<FormPart> = None;
    for part in parts {
        if part.file_name.is_some() {
            if part.name == "jobFile" {
                file = Some(part);
            }
        } else {
            text.insert(
                part.name.clone(),
                String::from_utf8_lossy(&part.data).into_owned(),
            );
        }
    }
    let q = Params(text);

    // The job document: a file part, or URL text (one per line) with urlFileExt, or a
    // taskTicket from a preview.
    let urls: Option<Vec<String>> = q.get("jobFile").map(|t| {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    });
    match (&file, &urls, q.get("taskTicket")) {
        (Some(f), _, _) => {
            if f.data.is_empty() {
                return Err(LkError::bad("jobFile文件为空"));
            }
            if f.data.len() > MAX_FILE_BYTES {
                return Err(LkError::bad("jobFile文件大小超过20M限制"));
            }
        }
        (None, Some(urls), _) => {
            if urls.is_empty()
                || !urls
                    .iter()
                    .all(|u| u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(LkError::bad("jobFile链接无效，纯文本参数会被当作链接处理"));
            }
            if q.get("urlFileExt").is_none() {
                return Err(LkError::bad("使用链接时需传urlFileExt参数"));
            }
        }
        (None, None, Some(_)) => {}
        (None, None, None) => return Err(LkError::bad("缺少参数jobFile")),
    }

    let paper = q.required("dmPaperSize")?;
    if q.get("jpAutoScale").is_none() && q.get("jpScale").is_none() {
        return Err(LkError::bad("缺少参数jpAutoScale"));
    }
    for (name, value) in &q.0 {
        validate_field(name, value)?;
    }
    if paper.trim() == "0" && (q.get("dmPaperLength").is_none() || q.get("dmPaperWidth").is_none())
    {
        return Err(LkError::bad(
            "自定义纸张(dmPaperSize=0)需传dmPaperLength和dmPaperWidth",
        ));
    }
    let port = q.port("devicePort")?;
    let callback_url = q.get("callbackUrl").map(str::to_owned);
    if let Some(url) = &callback_url {
        let https = url.starts_with("https://");
        let http = url.starts_with("http://");
        if !(https || http && core.config.allow_http_callbacks) {
            return Err(LkError::bad("callbackUrl必须为https链接"));
        }
    }
    let err_limit = q
        .get("errLimitNum")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(ERR_LIMIT_MAX);
    let report_device = q.get("reportDeviceStatus") != Some("0");
    let report_printer = q.get("reportPrinterStatus") == Some("1");

    let task_id = uuid::Uuid::new_v4().to_string();
    {
        let mut world = lock(&core.lianke);
        let device = world.device(&q)?;
        if report_device {
            match device.spec.online {
                None => return Err(LkError::new(5001, "设备未配网")),
                Some(false) => return Err(LkError::offline()),
                Some(true) => {}
            }
        }
        if report_printer && !device.spec.printers.iter().any(|p| p.port == port) {
            return Err(LkError::new(5011, "该USB接口未插入打印机"));
        }
        if device.consecutive_failures >= err_limit {
            return Err(LkError::new(
                11203,
                format!(
                    "连续发送失败任务大于{err_limit}次，该设备已被暂停使用，请30分钟后再试或联系客服人员解除"
                ),
            ));
        }
        let outcome = device.outcomes.pop_front().unwrap_or_default();
        let device_id = device.spec.device_id.clone();
        let fields =
            q.0.iter()
                .map(|(k, v)| (k.clone(), field_value(k, v)))
                .collect();
        let ledger_file = file.as_ref().map(|f| LedgerFile {
            field: f.name.clone(),
            file_name: f.file_name.clone(),
            size: f.data.len(),
            sha256: sha256_hex(&f.data),
        });
        let file_total = file.as_ref().map_or(4096, |f| f.data.len());
        world
            .device_tasks
            .entry(device_id.clone())
            .or_default()
            .push(task_id.clone());
        world.tasks.insert(
            task_id.clone(),
            Task {
                view: LiankeTaskView {
                    task_id: task_id.clone(),
                    device_id,
                    device_port: port,
                    state: LiankeTaskState::Ready,
                    result: None,
                    callback_url,
                    fields,
                    file: ledger_file,
                    created_at: Utc::now(),
                    finished_at: None,
                },
                outcome,
                file_total,
            },
        );
    }
    tracing::info!(%task_id, "lianke task accepted");
    let runner = Arc::clone(&core);
    let id = task_id.clone();
    tokio::spawn(async move { run_task(runner, id).await });
    ok(json!({"task_id": task_id}))
}

enum Step {
    Wait,
    Finished(Option<(String, Value)>),
}

/// Moves a task one stage forward (the only place task states change, besides DELETE).
fn advance(world: &mut LiankeWorld, task_id: &str) -> Step {
    let Some(task) = world.tasks.get(task_id) else {
        return Step::Finished(None);
    };
    let state = task.view.state;
    let device = world.devices.get(&task.view.device_id);
    let device_ready = device.is_some_and(|d| !d.paused && d.spec.online == Some(true));
    let has_printer = device.is_some_and(|d| {
        d.spec
            .printers
            .iter()
            .any(|p| p.port == task.view.device_port)
    });
    let next = match state {
        LiankeTaskState::Ready if !device_ready => return Step::Wait,
        LiankeTaskState::Ready => LiankeTaskState::Parsing,
        LiankeTaskState::Parsing => LiankeTaskState::Sending,
        LiankeTaskState::Sending => {
            let outcome = if has_printer {
                task.outcome.clone()
            } else {
                LiankeOutcome::PrintError {
                    code: 497,
                    msg: "未检测到打印机，请插好打印机并刷新再试".to_owned(),
                }
            };
            let (state, code, msg) = match outcome {
                LiankeOutcome::Success { .. } => {
                    (LiankeTaskState::Success, 200, "success".to_owned())
                }
                LiankeOutcome::PrintError { code, msg } => (LiankeTaskState::Success, code, msg),
                LiankeOutcome::Failure { code, msg } => (LiankeTaskState::Failure, code, msg),
            };
            let failed = code != 200;
            let device_id = task.view.device_id.clone();
            if let Some(d) = world.devices.get_mut(&device_id) {
                d.consecutive_failures = if failed {
                    d.consecutive_failures + 1
                } else {
                    0
                };
            }
            let Some(task) = world.tasks.get_mut(task_id) else {
                return Step::Finished(None);
            };
            let now = Utc::now();
            task.view.state = state;
            task.view.result = Some((code, msg.clone()));
            task.view.finished_at = Some(now);
            let callback = task.view.callback_url.clone().map(|url| {
                let body = json!({
                    "device_id": task.view.device_id,
                    "task_id": task.view.task_id,
                    "task_state": state.as_str(),
                    "create_time": china_time(task.view.created_at),
                    "finish_time": china_time(now),
                    "task_result": {"code": code, "msg": msg}
                });
                (url, body)
            });
            return Step::Finished(callback);
        }
        LiankeTaskState::SetRevoke => {
            if let Some(task) = world.tasks.get_mut(task_id) {
                task.view.state = LiankeTaskState::Revoked;
                task.view.finished_at = Some(Utc::now());
            }
            return Step::Finished(None);
        }
        LiankeTaskState::Success | LiankeTaskState::Failure | LiankeTaskState::Revoked => {
            return Step::Finished(None);
        }
    };
    if let Some(task) = world.tasks.get_mut(task_id) {
        task.view.state = next;
    }
    Step::Wait
}

async fn run_task(core: Arc<LiankeSim>, task_id: String) {
    loop {
        if !core.sleep(core.config.lianke_stage_delay).await {
            return;
        }
        let step = advance(&mut lock(&core.lianke), &task_id);
        match step {
            Step::Wait => {}
            Step::Finished(None) => return,
            Step::Finished(Some((url, body))) => {
                let bytes = Bytes::from(body.to_string());
                deliver(
                    &core.core,
                    Vendor::Lianke,
                    url,
                    bytes,
                    core.config.lianke_callback_schedule.clone(),
                );
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Task query / revoke

fn task_data(task: &Task) -> Value {
    let v = &task.view;
    let mut data = json!({"task_state": v.state.as_str()});
    if let (Some(done), Some(map)) = (v.finished_at, data.as_object_mut()) {
        map.insert(
            "task_done_time".into(),
            json!(done.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        );
        map.insert("task_done_timestamp".into(), json!(done.timestamp_millis()));
        if let Some((code, msg)) = &v.result {
            let result = if *code == 200 {
                let pages = match &task.outcome {
                    LiankeOutcome::Success { total_page } => *total_page,
                    _ => 0,
                };
                json!({
                    "code": code,
                    "data": {"file_total": task.file_total, "send_total": task.file_total, "total_page": pages},
                    "msg": msg
                })
            } else {
                json!({"code": code, "msg": msg})
            };
            map.insert("task_result".into(), result);
        }
    }
    data
}

async fn get_job(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let mut world = lock(&core.lianke);
    let device_id = world.device(&q)?.spec.device_id.clone();
    let task_id = q.required("task_id")?;
    match world.tasks.get(&task_id) {
        Some(t) if t.view.device_id == device_id => ok(task_data(t)),
        _ => Err(LkError::new(404, "任务不存在")),
    }
}

async fn revoke_job(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let mut world = lock(&core.lianke);
    let device_id = world.device(&q)?.spec.device_id.clone();
    let task_id = q.required("task_id")?;
    let task = match world.tasks.get_mut(&task_id) {
        Some(t) if t.view.device_id == device_id => t,
        _ => return Err(LkError::new(404, "任务不存在")),
    };
    match task.view.state {
        LiankeTaskState::Ready | LiankeTaskState::Parsing | LiankeTaskState::Sending => {
            task.view.state = LiankeTaskState::SetRevoke;
            ok_empty()
        }
        LiankeTaskState::SetRevoke | LiankeTaskState::Revoked => ok_empty(),
        LiankeTaskState::Success | LiankeTaskState::Failure => {
            Err(LkError::bad("任务已结束，无法撤回"))
        }
    }
}

async fn query_device_task(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    let mut world = lock(&core.lianke);
    let device_id = world.device(&q)?.spec.device_id.clone();
    let since = Utc::now() - chrono::Duration::days(1);
    let mut tasks: Vec<&Task> = world
        .device_tasks
        .get(&device_id)
        .into_iter()
        .flatten()
        .rev()
        .filter_map(|id| world.tasks.get(id))
        .take_while(|t| t.view.created_at >= since)
        .collect();
    tasks.sort_by_key(|t| std::cmp::Reverse(t.view.created_at));
    let list: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let v = &t.view;
            let result = v.result.as_ref().map(|(c, m)| json!({"code": c, "msg": m}));
            json!({
                "task_id": v.task_id,
                "result": result,
                "job_id": "",
                "job_status": i32::from(v.result.as_ref().is_some_and(|(c, _)| *c == 200)),
                "status": v.state.as_str(),
                "create_at": china_time(v.created_at),
                "updated_at": china_time(v.finished_at.unwrap_or(v.created_at)),
            })
        })
        .collect();
    ok(json!({"task_list": list}))
}

// ---------------------------------------------------------------------------------------
// Device calls

async fn device_info(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let mut world = lock(&core.lianke);
    let d = world.device(&q)?;
    let online = d.spec.online.map(i32::from);
    ok(json!({
        "info": {
            "api_support": 1,
            "device_type": 2,
            "expire_date": "2099年12月31日",
            "is_expire": false,
            "mobile_support": 1,
            "online": online,
            "remote_support": 1,
            "usb_port_num": d.spec.usb_port_num
        },
        "network": {
            "lan": {"dns": "", "gateway": "", "ipaddr": "169.254.1.188", "link": [false],
                    "macaddr": "", "netmask": "255.255.0.0", "proto": "dhcp"},
            "wwan": {"dns": ["192.0.2.1"], "gateway": "192.0.2.1", "ipaddr": "192.0.2.10",
                     "macaddr": "", "netmask": "255.255.255.0", "proto": "dhcp"}
        },
        "version": {"hardware": "LK300EW_D2", "software": "2.1.113"}
    }))
}

async fn printer_status(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let port = q.port("usbPort")?;
    let (guard, device_id) = {
        let mut world = lock(&core.lianke);
        let d = world.device(&q)?;
        if d.spec.online != Some(true) {
            return Err(LkError::offline());
        }
        (
            Exclusive::acquire(&core, d, "printer_status")?,
            d.spec.device_id.clone(),
        )
    };
    // The real call asks the printer live and is slow; the device stays busy meanwhile.
    core.sleep(core.config.lianke_status_query_delay).await;
    let printer = lock(&core.lianke)
        .devices
        .get(&device_id)
        .and_then(|d| d.spec.printers.iter().find(|p| p.port == port).cloned());
    drop(guard);
    let Some(p) = printer else {
        return Err(LkError::new(497, "未检测到打印机，请插好打印机并刷新再试"));
    };
    if !p.support_status {
        return Err(LkError::bad("该打印机不支持状态查询(support_status=false)"));
    }
    let s = &p.status;
    let msg = if s.out_of_paper {
        "Cannot feed paper."
    } else if s.paper_jam {
        "Paper jam."
    } else if s.head_opened {
        "Cover open."
    } else {
        "Ready."
    };
    ok(json!({
        "errCode": null,
        "headOpened": s.head_opened,
        "msg": msg,
        "outOfInk": s.out_of_ink,
        "outOfPaper": s.out_of_paper,
        "outOfRibbon": s.out_of_ribbon,
        "paperJam": s.paper_jam,
        "pause": s.pause || s.out_of_paper || s.paper_jam || s.head_opened,
        "printing": s.printing,
        "statusCode": if s.out_of_paper { "41208" } else { "10001" }
    }))
}

async fn reset_error_limit(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    let guard = {
        let mut world = lock(&core.lianke);
        let d = world.device(&q)?;
        Exclusive::acquire(&core, d, "reset_printing_error_limit")?
    };
    // Hold the device briefly so that a concurrent call on it sees 10009.
    core.sleep(core.config.lianke_stage_delay).await;
    let result = {
        let mut world = lock(&core.lianke);
        let d = world.device(&q)?;
        let today = Utc::now().date_naive();
        if d.resets.0 != today {
            d.resets = (today, 0);
        }
        if d.resets.1 >= RESETS_PER_DAY {
            Err(LkError::new(
                11200,
                "重置打印失败限制失败，当天重置次数超过限制",
            ))
        } else if d.consecutive_failures == 0 {
            Err(LkError::new(11201, "暂无打印失败记录，无法重置"))
        } else {
            d.resets.1 += 1;
            d.consecutive_failures = 0;
            ok_empty()
        }
    };
    drop(guard);
    result
}

async fn flush_jobs(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    let port = q.port("devicePort")?;
    let mut world = lock(&core.lianke);
    let device_id = world.device(&q)?.spec.device_id.clone();
    let now = Utc::now();
    let mut queue_num = 0u32;
    for t in world.tasks.values_mut() {
        if t.view.device_id == device_id
            && t.view.device_port == port
            && t.view.state == LiankeTaskState::Ready
        {
            t.view.state = LiankeTaskState::Revoked;
            t.view.finished_at = Some(now);
            queue_num += 1;
        }
    }
    ok(json!({"queue_num": queue_num}))
}

async fn printer_enum(State(core): State<Arc<LiankeSim>>, headers: HeaderMap) -> LkResult {
    check_api_key(&core, &headers)?;
    ok(json!(fixtures::PRINTER_MODELS))
}

async fn search_printer_enum(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    let query = q.required("query")?.to_lowercase();
    let tokens: Vec<&str> = query.split_whitespace().collect();
    let mut hits: Vec<(usize, &str)> = fixtures::PRINTER_MODELS
        .iter()
        .map(|m| {
            let lower = m.to_lowercase();
            (tokens.iter().filter(|t| lower.contains(**t)).count(), *m)
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    ok(json!(hits.into_iter().map(|(_, m)| m).collect::<Vec<_>>()))
}

async fn uninstall_driver_event(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    lock(&core.lianke).device(&q)?;
    let phone = q.get("phone").unwrap_or("");
    if phone.len() != 11 || !phone.starts_with('1') || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LkError::new(403, "无效手机号"));
    }
    ok_empty()
}

async fn async_refresh(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let guard = {
        let mut world = lock(&core.lianke);
        let d = world.device(&q)?;
        Exclusive::acquire(&core, d, "async_refresh_device_info")?
    };
    core.sleep(core.config.lianke_stage_delay).await;
    drop(guard);
    ok_empty()
}

async fn refresh_network_printer(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_query(q);
    let mut world = lock(&core.lianke);
    let d = world.device(&q)?;
    if d.spec.online != Some(true) {
        return Err(LkError::offline());
    }
    ok(json!({"total": 0}))
}

async fn file_pages(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = parse_multipart(content_type, body)
        .await
        .map_err(|e| LkError::bad(format!("form-data解析失败: {e}")))?;
    let file = parts.iter().find(|p| p.name == "jobFile");
    let Some(file) = file else {
        return Err(LkError::bad("缺少参数jobFile"));
    };
    if file.data.len() > MAX_FILE_BYTES {
        return Err(LkError::bad("jobFile文件大小超过20M限制"));
    }
    // A rough page count: PDF page objects, or one page for anything else.
    let pages = file
        .data
        .windows(b"/Type /Page".len() + 1)
        .filter(|w| w.starts_with(b"/Type /Page") && w.last() != Some(&b's'))
        .count()
        .max(1);
    ok(json!({"pages": pages}))
}

async fn async_reboot(
    State(core): State<Arc<LiankeSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> LkResult {
    check_api_key(&core, &headers)?;
    let q = Params::from_json(&body)?;
    let guard = {
        let mut world = lock(&core.lianke);
        let d = world.device(&q)?;
        if d.spec.online != Some(true) {
            return Err(LkError::offline());
        }
        Exclusive::acquire(&core, d, "async_device_reboot")
            .map_err(|_| LkError::new(401, "正在重启中"))?
    };
    core.sleep(core.config.lianke_stage_delay).await;
    drop(guard);
    ok_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_field_values_are_accepted_and_others_refused() {
        for (k, v) in [
            ("dmPaperSize", "9"),
            ("jpAutoScale", "4"),
            ("jpAutoScale", "80%"),
            ("jpScale", "fitw"),
            ("dmDuplex", "3"),
            ("jpPageRange", "1,2,3,4,5-10"),
            ("jpPageRange", "-1"),
            ("jpAutoAlign", "z5"),
            ("errLimitNum", "30"),
            ("htmlKernel", "chrometopdf"),
        ] {
            assert!(validate_field(k, v).is_ok(), "{k}={v}");
        }
        for (k, v) in [
            ("dmPaperSize", "A4"),
            ("dmColor", "3"),
            ("jpScale", "stretch"),
            ("errLimitNum", "31"),
            ("jpPageRange", "5-2"),
            ("dmCopies", "0"),
        ] {
            assert!(validate_field(k, v).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn callback_times_are_china_local() {
        let t = DateTime::parse_from_rfc3339("2022-03-01T09:15:02Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(t.map(china_time).as_deref(), Some("2022-03-01 17:15:02"));
    }
}
