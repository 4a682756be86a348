//! Fake Zhimu Cloud OpenAPI (`zhimu-openapi.txt`): `/openapi/...`, JSON in and out,
//! `{success,message,data}` envelopes, an app token from a SHA-1 signature, shared printers,
//! `newPrintTask` and task status SUBMITTED → QUEUED → PRINTING → FINISHED/ERROR/CANCELED.
//!
//! Not in the doc (simulator's choice, see README): a missing, unknown or expired
//! `Api-Access-Token` is answered with HTTP 401 and the usual envelope (`success:false`), so
//! a client can tell "refresh the token" from other refusals; every other refusal is
//! HTTP 200 with `success:false`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use tokio::time::Instant;

use crate::core::Core;
use crate::form::{json_object, json_text};
use crate::ledger::{lock, sha256_hex};

/// The Zhimu simulator's state: its world and settings beside the shared [`Core`].
pub(crate) struct ZhimuSim {
    pub core: Arc<Core>,
    pub zhimu: std::sync::Mutex<ZhimuWorld>,
    pub config: ZhimuSettings,
}

/// The part of [`crate::SimConfig`] this vendor reads (same field names).
#[derive(Debug, Clone)]
pub(crate) struct ZhimuSettings {
    pub zhimu_token_ttl: std::time::Duration,
    pub zhimu_stage_delay: std::time::Duration,
}

impl std::ops::Deref for ZhimuSim {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// The Zhimu signature: lower-case hex SHA-1 of appid, timestamp, oncestr and appkey
/// concatenated in that order, without separators (doc §3.1.2).
pub fn zhimu_signature(appid: &str, timestamp: &str, oncestr: &str, appkey: &str) -> String {
    let mut h = Sha1::new();
    for part in [appid, timestamp, oncestr, appkey] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A developer app (AppID + AppKey).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZhimuAppSpec {
    pub appid: String,
    pub appkey: String,
}

/// A printer shared from a PC running the Zhimu service, addable by share code + password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZhimuShareSpec {
    pub share_ticket: String,
    pub password: String,
    /// The server SN (`sn` / `shareSn` / `controlSn`).
    pub sn: String,
    pub printer_name: String,
    #[serde(default)]
    pub printer_alias: Option<String>,
    #[serde(default = "printer")]
    pub device_type: String,
    /// Capabilities document returned (as a JSON string) by `queryPrinterDetail`; the doc's
    /// example when `None`.
    #[serde(default)]
    pub capabilities: Option<Value>,
    #[serde(default = "yes")]
    pub online: bool,
}

fn printer() -> String {
    "printer".to_owned()
}
fn yes() -> bool {
    true
}

impl ZhimuShareSpec {
    pub fn new(share_ticket: &str, password: &str, sn: &str, printer_name: &str) -> Self {
        ZhimuShareSpec {
            share_ticket: share_ticket.to_owned(),
            password: password.to_owned(),
            sn: sn.to_owned(),
            printer_name: printer_name.to_owned(),
            printer_alias: None,
            device_type: printer(),
            capabilities: None,
            online: true,
        }
    }
}

/// How a Zhimu task ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ZhimuOutcome {
    Finished,
    /// `taskStatus` ERROR with this `statusDetail`.
    Error {
        detail: String,
    },
    Canceled,
}

/// `taskStatus` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ZhimuTaskStatus {
    Submitted,
    Queued,
    Printing,
    Finished,
    Error,
    Canceled,
}

impl ZhimuTaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ZhimuTaskStatus::Submitted => "SUBMITTED",
            ZhimuTaskStatus::Queued => "QUEUED",
            ZhimuTaskStatus::Printing => "PRINTING",
            ZhimuTaskStatus::Finished => "FINISHED",
            ZhimuTaskStatus::Error => "ERROR",
            ZhimuTaskStatus::Canceled => "CANCELED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ZhimuTaskStatus::Finished | ZhimuTaskStatus::Error | ZhimuTaskStatus::Canceled
        )
    }
}

/// The simulator's view of a Zhimu task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZhimuTaskView {
    pub task_id: String,
    pub appid: String,
    pub control_sn: String,
    pub device_name: String,
    pub name: String,
    pub media_source: String,
    pub media_format: String,
    /// Lower-case hex SHA-256 of `content` as sent (URL, Base64 text or the string
    /// itself): ties a task to the document it prints.
    pub content_sha256: String,
    /// The `content` as sent, kept when at most [`KEEP_CONTENT_MAX`] bytes (tests compare
    /// what a printer would print, e.g. the pages a gateway rendered from a PDF).
    pub content: Option<String>,
    pub status: ZhimuTaskStatus,
    pub status_detail: String,
    pub config: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Printer {
    spec: ZhimuShareSpec,
    bound: HashSet<String>,
    outcomes: VecDeque<ZhimuOutcome>,
}

/// Task contents up to this size are kept in full on the task's view.
pub const KEEP_CONTENT_MAX: usize = 8 * 1024 * 1024;

#[derive(Debug)]
struct Task {
    view: ZhimuTaskView,
    outcome: ZhimuOutcome,
}

#[derive(Debug, Default)]
pub(crate) struct ZhimuWorld {
    apps: HashMap<String, String>,
    tokens: HashMap<String, (String, Instant)>,
    /// By (sn, printerName).
    printers: HashMap<(String, String), Printer>,
    tasks: HashMap<String, Task>,
}

impl ZhimuWorld {
    pub(crate) fn new(apps: &[ZhimuAppSpec], shares: &[ZhimuShareSpec]) -> Self {
        let mut w = ZhimuWorld::default();
        for a in apps {
            w.add_app(a.clone());
        }
        for s in shares {
            w.add_share(s.clone());
        }
        w
    }

    pub(crate) fn add_app(&mut self, app: ZhimuAppSpec) {
        self.apps.insert(app.appid, app.appkey);
    }

    pub(crate) fn add_share(&mut self, spec: ZhimuShareSpec) {
        let key = (spec.sn.clone(), spec.printer_name.clone());
        self.printers.insert(
            key,
            Printer {
                spec,
                bound: HashSet::new(),
                outcomes: VecDeque::new(),
            },
        );
    }

    pub(crate) fn set_online(&mut self, sn: &str, printer_name: &str, online: bool) -> bool {
        self.printers
            .get_mut(&(sn.to_owned(), printer_name.to_owned()))
            .map(|p| p.spec.online = online)
            .is_some()
    }

    pub(crate) fn script_outcomes(
        &mut self,
        sn: &str,
        printer_name: &str,
        outcomes: Vec<ZhimuOutcome>,
    ) -> bool {
        self.printers
            .get_mut(&(sn.to_owned(), printer_name.to_owned()))
            .map(|p| p.outcomes.extend(outcomes))
            .is_some()
    }

    pub(crate) fn cancel(&mut self, task_id: &str) -> bool {
        match self.tasks.get_mut(task_id) {
            Some(t) if !t.view.status.is_terminal() => {
                t.view.status = ZhimuTaskStatus::Canceled;
                t.view.status_detail = "CANCELED".to_owned();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn expire_tokens(&mut self) {
        let now = Instant::now();
        for (_, exp) in self.tokens.values_mut() {
            *exp = now;
        }
    }

    pub(crate) fn task(&self, task_id: &str) -> Option<ZhimuTaskView> {
        self.tasks.get(task_id).map(|t| t.view.clone())
    }

    pub(crate) fn tasks(&self) -> Vec<ZhimuTaskView> {
        let mut v: Vec<_> = self.tasks.values().map(|t| t.view.clone()).collect();
        v.sort_by_key(|t| t.created_at);
        v
    }
}

// ---------------------------------------------------------------------------------------

enum ZmError {
    Token(&'static str),
    Refused(String),
}

impl IntoResponse for ZmError {
    fn into_response(self) -> Response {
        match self {
            ZmError::Token(m) => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"success": false, "message": m, "data": null})),
            )
                .into_response(),
            ZmError::Refused(m) => {
                axum::Json(json!({"success": false, "message": m, "data": null})).into_response()
            }
        }
    }
}

fn refused(m: impl Into<String>) -> ZmError {
    ZmError::Refused(m.into())
}

/// The Zhimu envelope for a scripted fault.
pub(crate) fn fault_reply(code: i64, msg: Option<String>) -> Response {
    refused(msg.unwrap_or_else(|| format!("模拟错误 {code}"))).into_response()
}

type ZmResult = Result<Response, ZmError>;

fn ok(data: Value) -> ZmResult {
    Ok(axum::Json(json!({"success": true, "message": "", "data": data})).into_response())
}

fn body_json(body: &[u8]) -> Result<Value, ZmError> {
    json_object(body).ok_or_else(|| refused("请求体必须为JSON对象"))
}

fn required(v: &Value, k: &str) -> Result<String, ZmError> {
    json_text(v, k)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused(format!("参数{k}不能为空")))
}

/// The app owning the request's `Api-Access-Token`.
fn authorize(core: &ZhimuSim, headers: &HeaderMap) -> Result<String, ZmError> {
    let token = headers
        .get("Api-Access-Token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or(ZmError::Token("Api-Access-Token 缺失"))?;
    let world = lock(&core.zhimu);
    match world.tokens.get(token) {
        None => Err(ZmError::Token("Api-Access-Token 无效")),
        Some((_, exp)) if *exp <= Instant::now() => Err(ZmError::Token("Api-Access-Token 已过期")),
        Some((app, _)) => Ok(app.clone()),
    }
}

pub(crate) fn router() -> Router<Arc<ZhimuSim>> {
    Router::new()
        .route("/openapi/getToken", post(get_token))
        .route("/openapi/control/addSharePrinter", post(add_share_printer))
        .route(
            "/openapi/control/revokeSharePrinter",
            post(revoke_share_printer),
        )
        .route("/openapi/control/queryPrinters", post(query_printers))
        .route(
            "/openapi/control/queryPrinterDetail",
            post(query_printer_detail),
        )
        .route("/openapi", post(command))
        .route("/openapi/task/get", post(get_task))
}

async fn get_token(State(core): State<Arc<ZhimuSim>>, body: Bytes) -> ZmResult {
    let v = body_json(&body)?;
    let appid = required(&v, "appid")?;
    let timestamp = required(&v, "timestamp")?;
    let oncestr = required(&v, "oncestr")?;
    let signature = required(&v, "signature")?;
    let mut world = lock(&core.zhimu);
    let appkey = world
        .apps
        .get(&appid)
        .cloned()
        .ok_or_else(|| refused("appid 不存在"))?;
    let expected = zhimu_signature(&appid, &timestamp, &oncestr, &appkey);
    if !expected.eq_ignore_ascii_case(signature.trim()) {
        return Err(refused("签名校验失败"));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let ttl = core.config.zhimu_token_ttl;
    world
        .tokens
        .insert(token.clone(), (appid, Instant::now() + ttl));
    ok(json!({"token": token, "expiresIn": u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)}))
}

fn printer_json(p: &ZhimuShareSpec) -> Value {
    json!({
        "sn": p.sn,
        "printerName": p.printer_name,
        "deviceType": p.device_type,
        "printerAlias": p.printer_alias.clone().unwrap_or_else(|| format!("{}-{}", p.printer_name, p.sn)),
    })
}

async fn add_share_printer(
    State(core): State<Arc<ZhimuSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let v = body_json(&body)?;
    let ticket = required(&v, "shareTicket")?;
    let password = required(&v, "password")?;
    let mut world = lock(&core.zhimu);
    let printer = world
        .printers
        .values_mut()
        .find(|p| p.spec.share_ticket == ticket)
        .ok_or_else(|| refused("共享码不存在"))?;
    if printer.spec.password != password {
        return Err(refused("验证码错误"));
    }
    printer.bound.insert(app);
    ok(printer_json(&printer.spec))
}

fn bound_printer<'a>(
    world: &'a mut ZhimuWorld,
    app: &str,
    v: &Value,
) -> Result<&'a mut Printer, ZmError> {
    let name = required(v, "printerName")?;
    let sn = required(v, "shareSn")?;
    let device_type = required(v, "deviceType")?;
    match world.printers.get_mut(&(sn, name)) {
        Some(p) if p.bound.contains(app) && p.spec.device_type == device_type => Ok(p),
        _ => Err(refused("设备不存在或未绑定")),
    }
}

async fn revoke_share_printer(
    State(core): State<Arc<ZhimuSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let v = body_json(&body)?;
    let mut world = lock(&core.zhimu);
    let p = bound_printer(&mut world, &app, &v)?;
    p.bound.remove(&app);
    Ok(axum::Json(json!({"success": true})).into_response())
}

async fn query_printers(State(core): State<Arc<ZhimuSim>>, headers: HeaderMap) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let world = lock(&core.zhimu);
    let mut list: Vec<&ZhimuShareSpec> = world
        .printers
        .values()
        .filter(|p| p.bound.contains(&app))
        .map(|p| &p.spec)
        .collect();
    list.sort_by(|a, b| (&a.sn, &a.printer_name).cmp(&(&b.sn, &b.printer_name)));
    ok(Value::Array(list.into_iter().map(printer_json).collect()))
}

async fn query_printer_detail(
    State(core): State<Arc<ZhimuSim>>,
    headers: HeaderMap,
    body: Bytes,
) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let v = body_json(&body)?;
    let mut world = lock(&core.zhimu);
    let p = bound_printer(&mut world, &app, &v)?;
    let caps = p
        .spec
        .capabilities
        .clone()
        .unwrap_or_else(default_capabilities);
    // Documented quirk: `data` is the capabilities document as a JSON *string*.
    ok(Value::String(caps.to_string()))
}

/// Every documented (mediaFormat, mediaSource) pair (doc §3.6.2).
const MEDIA_COMBINATIONS: &[(&str, &str)] = &[
    ("HTML", "STRING"),
    ("HTML", "URL"),
    ("PNG", "URL"),
    ("PNG", "BASE64"),
    ("JPG", "URL"),
    ("JPG", "BASE64"),
    ("BMP", "URL"),
    ("BMP", "BASE64"),
    ("WORD", "URL"),
    ("WORD", "BASE64"),
    ("EXCEL", "URL"),
    ("EXCEL", "BASE64"),
    ("PPT", "URL"),
    ("PPT", "BASE64"),
    ("TEXT", "STRING"),
];

fn check_config(config: &Value) -> Result<(), ZmError> {
    let allowed: &[(&str, &[&str])] = &[
        ("color", &["COLOR", "MONOCHROME"]),
        ("side", &["ONESIDE", "DUPLEX", "TUMBLE"]),
        ("orientation", &["PORTRAIT", "LANDSCAPE"]),
        ("quality", &["HIGH", "NORMAL", "LOW", "DRAFT"]),
        ("collate", &["COLLATE", "UNCOLLATE"]),
    ];
    for (key, values) in allowed {
        match config.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if values.contains(&s.as_str()) => {}
            Some(other) => return Err(refused(format!("config.{key} 取值无效: {other}"))),
        }
    }
    if let Some(c) = config.get("copies").filter(|c| !c.is_null())
        && !c.as_u64().is_some_and(|n| (1..=9999).contains(&n))
    {
        return Err(refused("config.copies 取值无效"));
    }
    if let Some(p) = config.get("paperConfig").filter(|p| !p.is_null()) {
        let dim_ok = |k: &str| {
            p.get(k)
                .is_none_or(|d| d.is_null() || d.as_f64().is_some_and(|x| x > 0.0))
        };
        if !p.is_object() || !dim_ok("width") || !dim_ok("height") {
            return Err(refused("config.paperConfig 无效"));
        }
    }
    Ok(())
}

async fn command(State(core): State<Arc<ZhimuSim>>, headers: HeaderMap, body: Bytes) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let v = body_json(&body)?;
    let command = required(&v, "command")?;
    if command != "newPrintTask" {
        return Err(refused(format!("不支持的 command: {command}")));
    }
    let task = v
        .get("data")
        .and_then(|d| d.get("task"))
        .filter(|t| t.is_object())
        .ok_or_else(|| refused("缺少 data.task"))?;
    let device_name = required(task, "deviceName")?;
    let device_type = required(task, "deviceType")?;
    let control_sn = required(task, "controlSn")?;
    let source = required(task, "mediaSource")?;
    let format = required(task, "mediaFormat")?;
    let content = required(task, "content")?;
    let name = json_text(task, "name").unwrap_or_default();
    if !MEDIA_COMBINATIONS.contains(&(format.as_str(), source.as_str())) {
        return Err(refused(format!(
            "不支持的 mediaFormat+mediaSource 组合: {format}+{source}"
        )));
    }
    match source.as_str() {
        "URL" if !(content.starts_with("http://") || content.starts_with("https://")) => {
            return Err(refused("content 不是有效的链接"));
        }
        "BASE64" => {
            let engine = base64::engine::general_purpose::STANDARD;
            let raw = content
                .split_once("base64,")
                .map_or(content.as_str(), |(_, b)| b);
            if engine.decode(raw.trim()).is_err() {
                return Err(refused("content 不是有效的 Base64"));
            }
        }
        _ => {}
    }
    let config = task.get("config").cloned().unwrap_or(Value::Null);
    if !config.is_null() {
        check_config(&config)?;
    }

    let task_id = {
        let mut world = lock(&core.zhimu);
        let printer = match world
            .printers
            .get_mut(&(control_sn.clone(), device_name.clone()))
        {
            Some(p) if p.bound.contains(&app) && p.spec.device_type == device_type => p,
            _ => return Err(refused("设备不存在或未绑定")),
        };
        if !printer.spec.online {
            return Err(refused("打印机离线"));
        }
        let outcome = printer
            .outcomes
            .pop_front()
            .unwrap_or(ZhimuOutcome::Finished);
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(12)
            .collect();
        let task_id = format!("{control_sn}-{suffix}");
        world.tasks.insert(
            task_id.clone(),
            Task {
                view: ZhimuTaskView {
                    task_id: task_id.clone(),
                    appid: app,
                    control_sn,
                    device_name,
                    name,
                    media_source: source,
                    media_format: format,
                    content_sha256: sha256_hex(content.as_bytes()),
                    content: (content.len() <= KEEP_CONTENT_MAX).then(|| content.clone()),
                    status: ZhimuTaskStatus::Submitted,
                    status_detail: "SUBMITTED".to_owned(),
                    config: full_config(&config),
                    created_at: Utc::now(),
                },
                outcome,
            },
        );
        task_id
    };
    let runner = Arc::clone(&core);
    let id = task_id.clone();
    tokio::spawn(async move { run_task(runner, id).await });
    ok(json!({"taskId": task_id}))
}

/// Moves a task one stage forward; `false` once it is terminal.
fn advance(world: &mut ZhimuWorld, task_id: &str) -> bool {
    let Some(task) = world.tasks.get(task_id) else {
        return false;
    };
    let online = world
        .printers
        .get(&(task.view.control_sn.clone(), task.view.device_name.clone()))
        .is_some_and(|p| p.spec.online);
    let Some(task) = world.tasks.get_mut(task_id) else {
        return false;
    };
    let (status, detail) = match (task.view.status, &task.outcome) {
        (ZhimuTaskStatus::Submitted, _) => (ZhimuTaskStatus::Queued, "QUEUED".to_owned()),
        // Waits in the queue while the sharing PC is offline.
        (ZhimuTaskStatus::Queued, _) if !online => return true,
        (ZhimuTaskStatus::Queued, _) => (ZhimuTaskStatus::Printing, "PRINTING".to_owned()),
        (ZhimuTaskStatus::Printing, ZhimuOutcome::Finished) => {
            (ZhimuTaskStatus::Finished, "FINISHED".to_owned())
        }
        (ZhimuTaskStatus::Printing, ZhimuOutcome::Error { detail }) => {
            (ZhimuTaskStatus::Error, detail.clone())
        }
        (ZhimuTaskStatus::Printing, ZhimuOutcome::Canceled) => {
            (ZhimuTaskStatus::Canceled, "CANCELED".to_owned())
        }
        (ZhimuTaskStatus::Finished | ZhimuTaskStatus::Error | ZhimuTaskStatus::Canceled, _) => {
            return false;
        }
    };
    task.view.status = status;
    task.view.status_detail = detail;
    !status.is_terminal()
}

async fn run_task(core: Arc<ZhimuSim>, task_id: String) {
    loop {
        if !core.sleep(core.config.zhimu_stage_delay).await {
            return;
        }
        if !advance(&mut lock(&core.zhimu), &task_id) {
            return;
        }
    }
}

async fn get_task(State(core): State<Arc<ZhimuSim>>, headers: HeaderMap, body: Bytes) -> ZmResult {
    let app = authorize(&core, &headers)?;
    let v = body_json(&body)?;
    let task_id = required(&v, "taskId")?;
    let control_sn = required(&v, "controlSn")?;
    let world = lock(&core.zhimu);
    let t = match world.tasks.get(&task_id) {
        Some(t) if t.view.appid == app && t.view.control_sn == control_sn => &t.view,
        _ => return Err(refused("任务不存在")),
    };
    let copies = t.config.get("copies").and_then(Value::as_u64).unwrap_or(1);
    ok(json!({
        "taskId": t.task_id,
        "taskName": t.name,
        "copies": copies,
        "deviceName": t.device_name,
        "deviceType": "printer",
        "mediaSource": t.media_source,
        "mediaFormat": t.media_format,
        "taskStatus": t.status.as_str(),
        "createdTime": t.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        "approveStatus": 2,
        "config": t.config,
        "taskType": "PRINT",
        "statusDetail": t.status_detail,
        "unimsn": t.control_sn
    }))
}

/// The task `config` as `task/get` shows it: every documented key, submitted values over
/// nulls.
fn full_config(submitted: &Value) -> Value {
    let mut base = json!({
        "pagesPerSheet": null, "paperConfig": null, "copies": null, "header": null,
        "footer": null, "marginTop": null, "marginBottom": null, "marginLeft": null,
        "marginRight": null, "orientation": null, "color": null, "side": null,
        "quality": null, "collate": null, "repeats": null, "pageRanges": null,
        "scale": null, "xdpi": null, "ydpi": null, "autofit": true, "fullfill": null,
        "booklet": null, "inputSlot": null, "mediaType": null, "monoPages": null,
        "pageRotate": null, "contentAdaptive": false, "finishings": null, "labels": null,
        "watermark": null
    });
    if let (Some(map), Some(sub)) = (base.as_object_mut(), submitted.as_object()) {
        for (k, v) in sub {
            if k == "paperConfig" && v.is_object() {
                let mut paper = json!({"name": null, "width": null, "height": null, "left": null,
                                       "top": null, "description": null, "system": false});
                if let (Some(p), Some(given)) = (paper.as_object_mut(), v.as_object()) {
                    for (pk, pv) in given {
                        let pv = match pv.as_f64() {
                            Some(f)
                                if pk == "width"
                                    || pk == "height"
                                    || pk == "left"
                                    || pk == "top" =>
                            {
                                json!(f)
                            }
                            _ => pv.clone(),
                        };
                        p.insert(pk.clone(), pv);
                    }
                }
                map.insert(k.clone(), paper);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

/// The capabilities example of doc §3.5.3.
fn default_capabilities() -> Value {
    let paper = |name: &str, w: f64, h: f64| json!({"name": name, "width": w, "height": h, "left": 5.08, "top": 5.08, "system": false});
    json!({
        "supportedColors": ["MONOCHROME"],
        "defaultColor": "MONOCHROME",
        "supportsCopies": false,
        "upperCopies": 9999,
        "lowerCopies": 1,
        "supportedDpis": [[300, 300], [600, 600], [1200, 1200]],
        "supportedOrientations": ["PORTRAIT", "LANDSCAPE"],
        "defaultOrientation": "PORTRAIT",
        "supportedCollates": ["COLLATE", "UNCOLLATE"],
        "defaultCollate": "COLLATE",
        "supportedQualities": ["HIGH", "NORMAL", "LOW", "DRAFT"],
        "defaultQuality": "NORMAL",
        "supportedSides": ["ONESIDE", "DUPLEX", "TUMBLE"],
        "defaultSide": "ONESIDE",
        "dpi": 300,
        "defaultPagesPerSheet": 1,
        "supportedPapers": [
            paper("Letter", 215.9, 279.4),
            paper("11x17", 279.4, 431.8),
            paper("Legal", 215.9, 355.6),
            paper("Statement", 139.7, 215.9),
            paper("Executive", 184.15, 266.7),
            paper("A5", 148.0, 210.0),
            paper("B5", 182.118, 257.048),
            paper("A4", 210.0, 297.0),
            paper("B4", 257.048, 363.98199999999997),
            paper("A3", 297.0, 420.0),
            paper("Envelope Monarch", 98.29799999999999, 190.5),
            paper("Envelope No. 10 (COM10)", 104.648, 241.3),
            paper("Envelope DL", 109.98199999999999, 219.96399999999997),
            paper("Envelope C5", 162.052, 229.108)
        ],
        "defaultPaper": paper("A4", 210.0, 297.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_signature_example_verifies() {
        assert_eq!(
            zhimu_signature(
                "f03e4012f1b7471f8ab9b3e9429ed67b",
                "1753366712000",
                "2154214",
                "cdd916a412844758a63672461c85f354"
            ),
            "aadc59381dc1ff8e55595be6b5707fc871dae6de"
        );
    }

    #[test]
    fn pdf_is_not_a_documented_submit_format() {
        assert!(!MEDIA_COMBINATIONS.contains(&("PDF", "URL")));
        assert!(MEDIA_COMBINATIONS.contains(&("TEXT", "STRING")));
        assert_eq!(MEDIA_COMBINATIONS.len(), 15);
    }
}
