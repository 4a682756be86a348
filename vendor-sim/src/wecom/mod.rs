//! Fake WeCom hardware cloud access for printers (`wecom-get-printer-job-list.md`,
//! `wecom-cloud-printer-reference.md`): `/cgi-bin/openhw/...`, JSON bodies, tokens in the
//! query string, `{errcode,errmsg}` replies (token calls omit `errcode` on success), cursor
//! pages of jobs, AES-encrypted downloads and signed, encrypted push callbacks.
//!
//! Codes the docs do not give (simulator's choice, see README): 41001 missing token,
//! 40001 wrong model/device secret or ticket, 40029 bad `auth_code`, 40058 invalid
//! parameter (including unknown `jobid`).

pub mod crypto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::core::{Core, deliver};
use crate::form::{json_object, parse_query};
use crate::ledger::{Vendor, lock};

const MAX_LIMIT: u64 = 200;
const DEFAULT_LIMIT: u64 = 100;
const MAX_JOBID_LIST: usize = 200;
/// `auth_code` from a bind event is valid 10 minutes, once.
const AUTH_CODE_TTL: Duration = Duration::from_secs(600);

/// The WeCom simulator's state: its world, push target and settings beside the shared [`Core`].
pub(crate) struct WecomSim {
    pub core: Arc<Core>,
    pub wecom: std::sync::Mutex<WecomWorld>,
    pub wecom_push: std::sync::Mutex<Option<WecomPushConfig>>,
    pub config: WecomSettings,
}

/// The part of [`crate::SimConfig`] this vendor reads (same field names).
#[derive(Debug, Clone)]
pub(crate) struct WecomSettings {
    pub wecom_token_ttl: std::time::Duration,
    pub wecom_retention: std::time::Duration,
    pub wecom_download_ttl: std::time::Duration,
    pub wecom_push_schedule: Vec<std::time::Duration>,
}

impl std::ops::Deref for WecomSim {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// A hardware model registered with WeCom.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WecomModelSpec {
    pub model_id: String,
    pub model_secret: String,
    /// The newest `model_ticket` (the one `get_model_token` accepts).
    pub model_ticket: String,
}

/// A device (printer) of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WecomDeviceSpec {
    pub model_id: String,
    pub device_sn: String,
    pub device_secret: String,
}

/// Where and how WeCom pushes go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WecomPushConfig {
    pub url: String,
    /// The callback Token used in `msg_signature`.
    pub token: String,
    /// The 43-character EncodingAESKey.
    pub encoding_aes_key: String,
    /// Appended to every encrypted message and sent as `tousername`.
    #[serde(default)]
    pub receive_id: String,
}

/// One `setting_list` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WecomSetting {
    pub key: String,
    pub value: Vec<String>,
}

/// A job "as if a WeCom user submitted it".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WecomJobSeed {
    pub device_sn: String,
    pub open_userid: String,
    pub doc_name: String,
    /// The document bytes (base64 in JSON).
    #[serde(with = "b64")]
    pub content: Vec<u8>,
    #[serde(default)]
    pub setting_list: Vec<WecomSetting>,
    /// Submit time (unix seconds); now when `None`. Older than 7 days = already expired.
    #[serde(default)]
    pub createtime: Option<i64>,
    /// Push `printer_job_submit` (when pushes are configured). Default true.
    #[serde(default = "yes")]
    pub push: bool,
}

fn yes() -> bool {
    true
}

impl WecomJobSeed {
    pub fn new(device_sn: &str, open_userid: &str, doc_name: &str, content: &[u8]) -> Self {
        WecomJobSeed {
            device_sn: device_sn.to_owned(),
            open_userid: open_userid.to_owned(),
            doc_name: doc_name.to_owned(),
            content: content.to_vec(),
            setting_list: vec![
                WecomSetting {
                    key: "纸张大小".to_owned(),
                    value: vec!["A4".to_owned()],
                },
                WecomSetting {
                    key: "单双面".to_owned(),
                    value: vec!["单面".to_owned()],
                },
            ],
            createtime: None,
            push: true,
        }
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The simulator's view of a WeCom job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WecomJobView {
    pub jobid: String,
    pub device_sn: String,
    pub open_userid: String,
    pub doc_name: String,
    pub doc_size: usize,
    pub createtime: i64,
    /// Job-list status: 0 unprinted, 1 printed, 2 failed.
    pub status: u32,
    pub errcode: i64,
    pub errmsg: String,
    pub deleted: bool,
    /// How many times `report_printer_job_status` was called for it.
    pub reports: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Model,
    Device,
}

#[derive(Debug)]
struct Token {
    kind: TokenKind,
    /// model_id or device_sn.
    owner: String,
    expires: Instant,
}

#[derive(Debug)]
struct Job {
    seq: u64,
    view: WecomJobView,
    content: Bytes,
    setting_list: Vec<WecomSetting>,
}

#[derive(Debug)]
struct Download {
    cipher: Bytes,
    expires: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct WecomWorld {
    models: HashMap<String, WecomModelSpec>,
    devices: HashMap<String, WecomDeviceSpec>,
    auth_codes: HashMap<String, (String, Instant)>,
    tokens: HashMap<String, Token>,
    jobs: Vec<Job>,
    downloads: HashMap<String, Download>,
    next_seq: u64,
}

impl WecomWorld {
    pub(crate) fn new(models: &[WecomModelSpec], devices: &[WecomDeviceSpec]) -> Self {
        let mut w = WecomWorld::default();
        for m in models {
            w.add_model(m.clone());
        }
        for d in devices {
            w.add_device(d.clone());
        }
        w
    }

    pub(crate) fn add_model(&mut self, m: WecomModelSpec) {
        self.models.insert(m.model_id.clone(), m);
    }

    pub(crate) fn add_device(&mut self, d: WecomDeviceSpec) {
        self.devices.insert(d.device_sn.clone(), d);
    }

    pub(crate) fn expire_tokens(&mut self) {
        let now = Instant::now();
        for t in self.tokens.values_mut() {
            t.expires = now;
        }
    }

    pub(crate) fn job(&self, jobid: &str) -> Option<WecomJobView> {
        self.jobs
            .iter()
            .find(|j| j.view.jobid == jobid)
            .map(|j| j.view.clone())
    }

    fn issue_token(&mut self, kind: TokenKind, owner: &str, ttl: Duration) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.tokens.insert(
            token.clone(),
            Token {
                kind,
                owner: owner.to_owned(),
                expires: Instant::now() + ttl,
            },
        );
        token
    }

    fn check_token(
        &self,
        query: &HashMap<String, String>,
        name: &str,
        kind: TokenKind,
    ) -> Result<String, WxError> {
        let token = query
            .get(name)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WxError::new(41001, format!("{name} missing")))?;
        match self.tokens.get(token) {
            Some(t) if t.kind == kind && t.expires > Instant::now() => Ok(t.owner.clone()),
            Some(t) if t.kind == kind => Err(WxError::new(42001, "access_token expired")),
            _ => Err(WxError::new(40014, "invalid access_token")),
        }
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct WxError {
    code: i64,
    msg: String,
}

impl WxError {
    fn new(code: i64, msg: impl Into<String>) -> Self {
        WxError {
            code,
            msg: msg.into(),
        }
    }
    fn param(msg: impl Into<String>) -> Self {
        WxError::new(40058, msg)
    }
}

impl IntoResponse for WxError {
    fn into_response(self) -> Response {
        axum::Json(json!({"errcode": self.code, "errmsg": self.msg})).into_response()
    }
}

/// The WeCom envelope for a scripted fault.
pub(crate) fn fault_reply(code: i64, msg: Option<String>) -> Response {
    WxError::new(code, msg.unwrap_or_else(|| "simulated error".to_owned())).into_response()
}

type WxResult = Result<Response, WxError>;

/// A success reply of a printer call: `errcode` 0 and `errmsg` "ok" merged into `fields`.
fn ok(fields: Value) -> WxResult {
    let mut body = json!({"errcode": 0, "errmsg": "ok"});
    if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            b.insert(k.clone(), v.clone());
        }
    }
    Ok(axum::Json(body).into_response())
}

fn body_json(body: &[u8]) -> Result<Value, WxError> {
    json_object(body).ok_or_else(|| WxError::param("request body must be a JSON object"))
}

fn text(v: &Value, k: &str) -> Result<String, WxError> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| WxError::param(format!("{k} missing or not a string")))
}

pub(crate) fn router() -> Router<Arc<WecomSim>> {
    Router::new()
        .route("/cgi-bin/openhw/get_model_token", post(get_model_token))
        .route("/cgi-bin/openhw/get_device_secret", post(get_device_secret))
        .route("/cgi-bin/openhw/get_device_token", post(get_device_token))
        .route(
            "/cgi-bin/openhw/device/get_printer_job_list",
            post(get_job_list),
        )
        .route(
            "/cgi-bin/openhw/device/get_printer_job_download_url",
            post(get_download_url),
        )
        .route(
            "/cgi-bin/openhw/device/report_printer_job_status",
            post(report_job_status),
        )
        .route(
            "/cgi-bin/openhw/device/report_device_status",
            post(report_device_status),
        )
        .route("/wecom-download/{token}", get(download))
}

fn ttl_secs(d: Duration) -> u64 {
    d.as_secs()
}

async fn get_model_token(State(core): State<Arc<WecomSim>>, body: Bytes) -> WxResult {
    let v = body_json(&body)?;
    let model_id = text(&v, "model_id")?;
    let secret = text(&v, "model_secret")?;
    let ticket = text(&v, "model_ticket")?;
    let mut world = lock(&core.wecom);
    match world.models.get(&model_id) {
        Some(m) if m.model_secret == secret && m.model_ticket == ticket => {}
        Some(m) if m.model_secret == secret => {
            return Err(WxError::new(40001, "invalid model_ticket"));
        }
        _ => return Err(WxError::new(40001, "invalid credential")),
    }
    let ttl = core.config.wecom_token_ttl;
    let token = world.issue_token(TokenKind::Model, &model_id, ttl);
    // Documented quirk: token calls carry no errcode on success.
    Ok(
        axum::Json(json!({"model_access_token": token, "expires_in": ttl_secs(ttl)}))
            .into_response(),
    )
}

async fn get_device_secret(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let mut world = lock(&core.wecom);
    let model_id = world.check_token(&query, "model_access_token", TokenKind::Model)?;
    let v = body_json(&body)?;
    let code = text(&v, "auth_code")?;
    let device_sn = match world.auth_codes.remove(&code) {
        Some((sn, exp)) if exp > Instant::now() => sn,
        _ => return Err(WxError::new(40029, "invalid auth_code")),
    };
    let secret = match world.devices.get(&device_sn) {
        Some(d) if d.model_id == model_id => d.device_secret.clone(),
        _ => return Err(WxError::new(40029, "invalid auth_code")),
    };
    let ttl = core.config.wecom_token_ttl;
    let token = world.issue_token(TokenKind::Device, &device_sn, ttl);
    Ok(axum::Json(json!({
        "device_secret": secret,
        "device_access_token": token,
        "expires_in": ttl_secs(ttl)
    }))
    .into_response())
}

async fn get_device_token(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let mut world = lock(&core.wecom);
    let model_id = world.check_token(&query, "model_access_token", TokenKind::Model)?;
    let v = body_json(&body)?;
    let sn = text(&v, "device_sn")?;
    let secret = text(&v, "device_secret")?;
    match world.devices.get(&sn) {
        Some(d) if d.model_id == model_id && d.device_secret == secret => {}
        _ => return Err(WxError::new(40001, "invalid device_sn or device_secret")),
    }
    let ttl = core.config.wecom_token_ttl;
    let token = world.issue_token(TokenKind::Device, &sn, ttl);
    Ok(
        axum::Json(json!({"device_access_token": token, "expires_in": ttl_secs(ttl)}))
            .into_response(),
    )
}

fn job_json(j: &Job) -> Value {
    let v = &j.view;
    json!({
        "open_userid": v.open_userid,
        "createtime": v.createtime,
        "submitted": 1,
        "status": v.status,
        "errcode": v.errcode,
        "errmsg": v.errmsg,
        "doc_name": v.doc_name,
        "doc_size": v.doc_size,
        "jobid": v.jobid,
        "setting_list": j.setting_list,
    })
}

fn opt_u64(v: &Value, k: &str) -> Result<Option<u64>, WxError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| WxError::param(format!("{k} must be an unsigned integer"))),
    }
}

/// Cursor = "<createtime>_<seq>" of the last job returned (opaque to clients).
fn parse_cursor(v: &Value) -> Result<Option<(i64, u64)>, WxError> {
    let raw = match v.get("cursor") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() || s == "0" => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(WxError::param("invalid cursor")),
    };
    raw.split_once('_')
        .and_then(|(t, s)| Some((t.parse().ok()?, s.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| WxError::param("invalid cursor"))
}

async fn get_job_list(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let world = lock(&core.wecom);
    let device_sn = world.check_token(&query, "device_access_token", TokenKind::Device)?;
    let v = body_json(&body)?;
    // Required, but not a filter: the doc's own example reply lists several members' jobs.
    text(&v, "open_userid")?;
    let oldest = Utc::now().timestamp()
        - i64::try_from(core.config.wecom_retention.as_secs()).unwrap_or(i64::MAX);
    let visible =
        |j: &&Job| j.view.device_sn == device_sn && !j.view.deleted && j.view.createtime >= oldest;

    let jobid_list: Vec<String> = match v.get("jobid_list") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| WxError::param("jobid_list must hold strings"))?,
        Some(_) => return Err(WxError::param("jobid_list must be an array")),
    };
    if !jobid_list.is_empty() {
        // A jobid_list overrides every other filter (doc note 2).
        if jobid_list.len() > MAX_JOBID_LIST {
            return Err(WxError::param("jobid_list exceeds 200"));
        }
        let list: Vec<Value> = world
            .jobs
            .iter()
            .filter(visible)
            .filter(|j| jobid_list.contains(&j.view.jobid))
            .map(job_json)
            .collect();
        return ok(json!({"printer_job_list": list}));
    }

    let status = opt_u64(&v, "status")?;
    if status.is_some_and(|s| s > 2) {
        return Err(WxError::param("status must be 0, 1 or 2"));
    }
    let limit = match opt_u64(&v, "limit")? {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) => n.min(MAX_LIMIT),
    };
    let begin = opt_u64(&v, "begin_time")?.filter(|t| *t > 0);
    let end = opt_u64(&v, "end_time")?.filter(|t| *t > 0);
    let cursor = parse_cursor(&v)?;

    let mut matching: Vec<&Job> = world
        .jobs
        .iter()
        .filter(visible)
        .filter(|j| status.is_none_or(|s| u64::from(j.view.status) == s))
        .filter(|j| begin.is_none_or(|b| j.view.createtime >= i64::try_from(b).unwrap_or(i64::MAX)))
        .filter(|j| end.is_none_or(|e| j.view.createtime <= i64::try_from(e).unwrap_or(i64::MAX)))
        .filter(|j| cursor.is_none_or(|c| (j.view.createtime, j.seq) > c))
        .collect();
    matching.sort_by_key(|j| (j.view.createtime, j.seq));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = matching.len() > limit;
    matching.truncate(limit);
    let mut reply =
        json!({"printer_job_list": matching.iter().map(|j| job_json(j)).collect::<Vec<_>>()});
    if more && let (Some(last), Some(map)) = (matching.last(), reply.as_object_mut()) {
        map.insert(
            "next_cursor".into(),
            json!(format!("{}_{}", last.view.createtime, last.seq)),
        );
    }
    ok(reply)
}

async fn get_download_url(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let mut world = lock(&core.wecom);
    let device_sn = world.check_token(&query, "device_access_token", TokenKind::Device)?;
    let v = body_json(&body)?;
    let jobid = text(&v, "jobid")?;
    let content = world
        .jobs
        .iter()
        .find(|j| j.view.jobid == jobid && j.view.device_sn == device_sn && !j.view.deleted)
        .map(|j| j.content.clone())
        .ok_or_else(|| WxError::param("invalid jobid"))?;
    let encoding_aeskey = crypto::new_encoding_aes_key();
    let key = crypto::aes_key(&encoding_aeskey).map_err(|e| WxError::new(-1, e.to_string()))?;
    let cipher = Bytes::from(crypto::encrypt(&key, &content));
    let token = uuid::Uuid::new_v4().simple().to_string();
    world.downloads.insert(
        token.clone(),
        Download {
            cipher,
            expires: Instant::now() + core.config.wecom_download_ttl,
        },
    );
    ok(json!({
        "download_url": format!("{}/wecom-download/{token}", core.base_url),
        "encoding_aeskey": encoding_aeskey
    }))
}

async fn download(
    State(core): State<Arc<WecomSim>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let cipher = {
        let world = lock(&core.wecom);
        match world.downloads.get(&token) {
            Some(d) if d.expires > Instant::now() => d.cipher.clone(),
            Some(_) => return (StatusCode::FORBIDDEN, "download url expired").into_response(),
            None => return (StatusCode::NOT_FOUND, "no such download").into_response(),
        }
    };
    let total = cipher.len();
    let range = headers.get(header::RANGE).and_then(|r| r.to_str().ok());
    let Some(range) = range else {
        return (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
            ],
            cipher,
        )
            .into_response();
    };
    match parse_range(range, total) {
        Some((start, end)) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
                (
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
            ],
            cipher.slice(start..=end),
        )
            .into_response(),
        None => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response(),
    }
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range, as inclusive (start, end).
fn parse_range(range: &str, total: usize) -> Option<(usize, usize)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            if n == 0 {
                return None;
            }
            (total.saturating_sub(n), total - 1)
        }
        (s, "") => (s.parse().ok()?, total - 1),
        (s, e) => (s.parse().ok()?, e.parse::<usize>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

async fn report_job_status(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let mut world = lock(&core.wecom);
    let device_sn = world.check_token(&query, "device_access_token", TokenKind::Device)?;
    let v = body_json(&body)?;
    let jobid = text(&v, "jobid")?;
    let status = opt_u64(&v, "status")?.ok_or_else(|| WxError::param("status missing"))?;
    // Note the numbering: 1 = failed, 2 = succeeded (unlike the job list's 1 ok / 2 failed).
    let (list_status, errcode, errmsg) = match status {
        2 => (1, 0, "ok".to_owned()),
        1 => {
            let code = v
                .get("errcode")
                .and_then(Value::as_i64)
                .ok_or_else(|| WxError::param("errcode required when status is 1 (failed)"))?;
            let msg = text(&v, "errmsg")
                .map_err(|_| WxError::param("errmsg required when status is 1 (failed)"))?;
            (2, code, msg)
        }
        _ => return Err(WxError::param("status must be 1 (failed) or 2 (succeeded)")),
    };
    let job = world
        .jobs
        .iter_mut()
        .find(|j| j.view.jobid == jobid && j.view.device_sn == device_sn && !j.view.deleted)
        .ok_or_else(|| WxError::param("invalid jobid"))?;
    job.view.status = list_status;
    job.view.errcode = errcode;
    job.view.errmsg = errmsg;
    job.view.reports += 1;
    ok(json!({}))
}

async fn report_device_status(
    State(core): State<Arc<WecomSim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> WxResult {
    let query = parse_query(q.as_deref().unwrap_or(""));
    let world = lock(&core.wecom);
    world.check_token(&query, "device_access_token", TokenKind::Device)?;
    let v = body_json(&body)?;
    match opt_u64(&v, "online_status")? {
        Some(1 | 2) => ok(json!({})),
        _ => Err(WxError::param("online_status must be 1 or 2")),
    }
}

// ---------------------------------------------------------------------------------------
// Control side: seeding jobs, deleting them, bind codes, pushes.

/// Why a WeCom control call failed.
#[derive(Debug, thiserror::Error)]
pub enum WecomControlError {
    #[error("unknown device_sn {0}")]
    UnknownDevice(String),
    #[error("unknown jobid {0}")]
    UnknownJob(String),
}

pub(crate) fn seed_job(
    core: &Arc<WecomSim>,
    seed: WecomJobSeed,
) -> Result<String, WecomControlError> {
    let (jobid, model_id) = {
        let mut world = lock(&core.wecom);
        let model_id = world
            .devices
            .get(&seed.device_sn)
            .map(|d| d.model_id.clone())
            .ok_or_else(|| WecomControlError::UnknownDevice(seed.device_sn.clone()))?;
        world.next_seq += 1;
        let seq = world.next_seq;
        let jobid = format!("job_{}", uuid::Uuid::new_v4().simple());
        world.jobs.push(Job {
            seq,
            view: WecomJobView {
                jobid: jobid.clone(),
                device_sn: seed.device_sn.clone(),
                open_userid: seed.open_userid.clone(),
                doc_name: seed.doc_name.clone(),
                doc_size: seed.content.len(),
                createtime: seed.createtime.unwrap_or_else(|| Utc::now().timestamp()),
                status: 0,
                errcode: 0,
                errmsg: "ok".to_owned(),
                deleted: false,
                reports: 0,
            },
            content: Bytes::from(seed.content),
            setting_list: seed.setting_list,
        });
        (jobid, model_id)
    };
    if seed.push {
        push(
            core,
            &model_id,
            &seed.device_sn,
            "printer_job_submit",
            json!({"open_userid": seed.open_userid, "jobid": jobid}),
        );
    }
    Ok(jobid)
}

pub(crate) fn delete_job(core: &Arc<WecomSim>, jobid: &str) -> Result<(), WecomControlError> {
    let (model_id, device_sn) = {
        let mut world = lock(&core.wecom);
        let job = world
            .jobs
            .iter_mut()
            .find(|j| j.view.jobid == jobid && !j.view.deleted)
            .ok_or_else(|| WecomControlError::UnknownJob(jobid.to_owned()))?;
        job.view.deleted = true;
        let sn = job.view.device_sn.clone();
        let model = world
            .devices
            .get(&sn)
            .map(|d| d.model_id.clone())
            .unwrap_or_default();
        (model, sn)
    };
    push(
        core,
        &model_id,
        &device_sn,
        "printer_job_del",
        json!({"jobid": jobid}),
    );
    Ok(())
}

pub(crate) fn new_auth_code(
    core: &Arc<WecomSim>,
    device_sn: &str,
) -> Result<String, WecomControlError> {
    let model_id = {
        let mut world = lock(&core.wecom);
        let model_id = world
            .devices
            .get(device_sn)
            .map(|d| d.model_id.clone())
            .ok_or_else(|| WecomControlError::UnknownDevice(device_sn.to_owned()))?;
        let code = uuid::Uuid::new_v4().simple().to_string();
        world.auth_codes.insert(
            code.clone(),
            (device_sn.to_owned(), Instant::now() + AUTH_CODE_TTL),
        );
        (model_id, code)
    };
    push(
        core,
        &model_id.0,
        device_sn,
        "bind",
        json!({"auth_code": model_id.1}),
    );
    Ok(model_id.1)
}

/// Encrypts, signs and sends one push message (when pushes are configured).
fn push(core: &Arc<WecomSim>, model_id: &str, device_sn: &str, event: &str, fields: Value) {
    let Some(cfg) = lock(&core.wecom_push).clone() else {
        return;
    };
    let key = match crypto::aes_key(&cfg.encoding_aes_key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "wecom push not sent: bad EncodingAESKey");
            return;
        }
    };
    let mut msg = json!({
        "base_info": {
            "req_id": uuid::Uuid::new_v4().to_string(),
            "create_time": Utc::now().timestamp(),
            "model_id": model_id,
            "device_sn": device_sn
        },
        "event": event
    });
    if let (Some(m), Some(f)) = (msg.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            m.insert(k.clone(), v.clone());
        }
    }
    let encrypt = crypto::encrypt_message(&key, msg.to_string().as_bytes(), &cfg.receive_id);
    let timestamp = Utc::now().timestamp().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let signature = crypto::msg_signature(&cfg.token, &timestamp, &nonce, &encrypt);
    let sep = if cfg.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}msg_signature={signature}&timestamp={timestamp}&nonce={nonce}",
        cfg.url
    );
    let body = json!({"tousername": cfg.receive_id, "encrypt": encrypt}).to_string();
    deliver(
        &core.core,
        Vendor::Wecom,
        url,
        Bytes::from(body),
        core.config.wecom_push_schedule.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_7233() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
