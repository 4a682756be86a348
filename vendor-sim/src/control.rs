//! The control API under `/_sim/...`: the same operations as [`crate::SimControl`], over
//! JSON, for the binary (docker-compose, demo, benchmarks). Not recorded in the ledger.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SimControl;
use crate::faults::{CallbackFault, FaultRule};
use crate::ledger::{LedgerFilter, Vendor};
use crate::lianke::{LiankeDeviceSpec, LiankeOutcome, LiankePrinterSpec};
use crate::wecom::{WecomDeviceSpec, WecomJobSeed, WecomModelSpec, WecomPushConfig};
use crate::zhimu::{ZhimuAppSpec, ZhimuOutcome, ZhimuShareSpec};

type S = State<SimControl>;

fn ctl(control: &SimControl) -> &SimControl {
    control
}

fn found(ok: bool) -> Response {
    if ok {
        Json(json!({"ok": true})).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
    }
}

fn not_found(e: impl std::fmt::Display) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
}

pub(crate) fn router() -> Router<SimControl> {
    Router::new()
        .route("/_sim/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/_sim/reset", post(reset))
        .route("/_sim/ledger", get(ledger).delete(clear_ledger))
        .route("/_sim/ledger/count", get(ledger_count))
        .route("/_sim/callbacks", get(callbacks))
        .route(
            "/_sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/faults/{id}", axum::routing::delete(remove_fault))
        .route("/_sim/callback-faults", post(add_callback_fault))
        .route("/_sim/lianke/api-keys", post(add_api_key))
        .route("/_sim/lianke/devices", post(add_lianke_device))
        .route("/_sim/lianke/devices/{id}", get(lianke_device))
        .route("/_sim/lianke/devices/{id}/online", post(lianke_online))
        .route("/_sim/lianke/devices/{id}/paused", post(lianke_paused))
        .route("/_sim/lianke/devices/{id}/outcomes", post(lianke_outcomes))
        .route(
            "/_sim/lianke/devices/{id}/printers/{port}",
            put(lianke_plug).delete(lianke_unplug),
        )
        .route("/_sim/lianke/tasks", get(lianke_tasks))
        .route("/_sim/lianke/tasks/{id}", get(lianke_task))
        .route("/_sim/zhimu/apps", post(add_zhimu_app))
        .route("/_sim/zhimu/shares", post(add_zhimu_share))
        .route(
            "/_sim/zhimu/printers/{sn}/{name}/online",
            post(zhimu_online),
        )
        .route(
            "/_sim/zhimu/printers/{sn}/{name}/outcomes",
            post(zhimu_outcomes),
        )
        .route("/_sim/zhimu/tasks", get(zhimu_tasks))
        .route("/_sim/zhimu/tasks/{id}", get(zhimu_task))
        .route("/_sim/zhimu/tasks/{id}/cancel", post(zhimu_cancel))
        .route("/_sim/zhimu/tokens/expire", post(zhimu_expire))
        .route("/_sim/wecom/models", post(add_wecom_model))
        .route("/_sim/wecom/devices", post(add_wecom_device))
        .route("/_sim/wecom/devices/{sn}/auth-code", post(wecom_auth_code))
        .route("/_sim/wecom/push", put(wecom_push))
        .route("/_sim/wecom/jobs", post(wecom_seed))
        .route("/_sim/wecom/jobs/{id}", get(wecom_job).delete(wecom_delete))
        .route("/_sim/wecom/tokens/expire", post(wecom_expire))
}

async fn reset(State(core): S) -> Response {
    ctl(&core).reset();
    found(true)
}

/// `?vendor=lianke&endpoint=/api/print/job&method=POST&after_seq=10&field.deviceId=lk-1`
#[derive(Debug, Deserialize)]
struct LedgerQuery {
    vendor: Option<Vendor>,
    endpoint: Option<String>,
    method: Option<String>,
    after_seq: Option<u64>,
    #[serde(flatten)]
    rest: std::collections::HashMap<String, String>,
}

impl From<LedgerQuery> for LedgerFilter {
    fn from(q: LedgerQuery) -> Self {
        LedgerFilter {
            vendor: q.vendor,
            endpoint: q.endpoint,
            method: q.method,
            after_seq: q.after_seq,
            fields: q
                .rest
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("field.").map(|k| (k.to_owned(), v)))
                .collect(),
        }
    }
}

async fn ledger(State(core): S, Query(q): Query<LedgerQuery>) -> Response {
    Json(ctl(&core).ledger_filtered(&q.into())).into_response()
}

async fn ledger_count(State(core): S, Query(q): Query<LedgerQuery>) -> Response {
    Json(json!({"count": ctl(&core).ledger_count(&q.into())})).into_response()
}

async fn clear_ledger(State(core): S) -> Response {
    ctl(&core).clear_ledger();
    found(true)
}

async fn callbacks(State(core): S) -> Response {
    Json(ctl(&core).callbacks()).into_response()
}

async fn list_faults(State(core): S) -> Response {
    let list: Vec<Value> = ctl(&core)
        .faults()
        .into_iter()
        .map(|(id, rule)| json!({"id": id, "rule": rule}))
        .collect();
    Json(list).into_response()
}

async fn add_fault(State(core): S, Json(rule): Json<FaultRule>) -> Response {
    Json(json!({"id": ctl(&core).add_fault(rule)})).into_response()
}

async fn clear_faults(State(core): S) -> Response {
    ctl(&core).clear_faults();
    found(true)
}

async fn remove_fault(State(core): S, Path(id): Path<u64>) -> Response {
    found(ctl(&core).remove_fault(id))
}

async fn add_callback_fault(State(core): S, Json(f): Json<CallbackFault>) -> Response {
    ctl(&core).add_callback_fault(f);
    found(true)
}

#[derive(Deserialize)]
struct KeyBody {
    key: String,
}

async fn add_api_key(State(core): S, Json(b): Json<KeyBody>) -> Response {
    ctl(&core).add_lianke_api_key(&b.key);
    found(true)
}

async fn add_lianke_device(State(core): S, Json(spec): Json<LiankeDeviceSpec>) -> Response {
    ctl(&core).add_lianke_device(spec);
    found(true)
}

async fn lianke_device(State(core): S, Path(id): Path<String>) -> Response {
    match ctl(&core).lianke_consecutive_failures(&id) {
        Some(n) => Json(json!({"deviceId": id, "consecutive_failures": n})).into_response(),
        None => found(false),
    }
}

#[derive(Deserialize)]
struct OnlineBody {
    online: Option<bool>,
}

async fn lianke_online(
    State(core): S,
    Path(id): Path<String>,
    Json(b): Json<OnlineBody>,
) -> Response {
    found(ctl(&core).set_lianke_online(&id, b.online))
}

#[derive(Deserialize)]
struct PausedBody {
    paused: bool,
}

async fn lianke_paused(
    State(core): S,
    Path(id): Path<String>,
    Json(b): Json<PausedBody>,
) -> Response {
    found(ctl(&core).set_lianke_paused(&id, b.paused))
}

#[derive(Deserialize)]
struct Outcomes<T> {
    outcomes: Vec<T>,
}

async fn lianke_outcomes(
    State(core): S,
    Path(id): Path<String>,
    Json(b): Json<Outcomes<LiankeOutcome>>,
) -> Response {
    found(ctl(&core).script_lianke_outcomes(&id, b.outcomes))
}

async fn lianke_plug(
    State(core): S,
    Path((id, port)): Path<(String, u32)>,
    Json(p): Json<LiankePrinterSpec>,
) -> Response {
    found(ctl(&core).set_lianke_printer(&id, port, Some(p)))
}

async fn lianke_unplug(State(core): S, Path((id, port)): Path<(String, u32)>) -> Response {
    found(ctl(&core).set_lianke_printer(&id, port, None))
}

async fn lianke_tasks(State(core): S) -> Response {
    Json(ctl(&core).lianke_tasks()).into_response()
}

async fn lianke_task(State(core): S, Path(id): Path<String>) -> Response {
    match ctl(&core).lianke_task(&id) {
        Some(t) => Json(t).into_response(),
        None => found(false),
    }
}

async fn add_zhimu_app(State(core): S, Json(app): Json<ZhimuAppSpec>) -> Response {
    ctl(&core).add_zhimu_app(app);
    found(true)
}

async fn add_zhimu_share(State(core): S, Json(s): Json<ZhimuShareSpec>) -> Response {
    ctl(&core).add_zhimu_share(s);
    found(true)
}

#[derive(Deserialize)]
struct ZhimuOnline {
    online: bool,
}

async fn zhimu_online(
    State(core): S,
    Path((sn, name)): Path<(String, String)>,
    Json(b): Json<ZhimuOnline>,
) -> Response {
    found(ctl(&core).set_zhimu_online(&sn, &name, b.online))
}

async fn zhimu_outcomes(
    State(core): S,
    Path((sn, name)): Path<(String, String)>,
    Json(b): Json<Outcomes<ZhimuOutcome>>,
) -> Response {
    found(ctl(&core).script_zhimu_outcomes(&sn, &name, b.outcomes))
}

async fn zhimu_tasks(State(core): S) -> Response {
    Json(ctl(&core).zhimu_tasks()).into_response()
}

async fn zhimu_task(State(core): S, Path(id): Path<String>) -> Response {
    match ctl(&core).zhimu_task(&id) {
        Some(t) => Json(t).into_response(),
        None => found(false),
    }
}

async fn zhimu_cancel(State(core): S, Path(id): Path<String>) -> Response {
    found(ctl(&core).cancel_zhimu_task(&id))
}

async fn zhimu_expire(State(core): S) -> Response {
    ctl(&core).expire_zhimu_tokens();
    found(true)
}

async fn add_wecom_model(State(core): S, Json(m): Json<WecomModelSpec>) -> Response {
    ctl(&core).add_wecom_model(m);
    found(true)
}

async fn add_wecom_device(State(core): S, Json(d): Json<WecomDeviceSpec>) -> Response {
    ctl(&core).add_wecom_device(d);
    found(true)
}

async fn wecom_auth_code(State(core): S, Path(sn): Path<String>) -> Response {
    match ctl(&core).wecom_auth_code(&sn) {
        Ok(code) => Json(json!({"auth_code": code})).into_response(),
        Err(e) => not_found(e),
    }
}

async fn wecom_push(State(core): S, Json(cfg): Json<Option<WecomPushConfig>>) -> Response {
    ctl(&core).set_wecom_push(cfg);
    found(true)
}

async fn wecom_seed(State(core): S, Json(seed): Json<WecomJobSeed>) -> Response {
    match ctl(&core).seed_wecom_job(seed) {
        Ok(jobid) => Json(json!({"jobid": jobid})).into_response(),
        Err(e) => not_found(e),
    }
}

async fn wecom_job(State(core): S, Path(id): Path<String>) -> Response {
    match ctl(&core).wecom_job(&id) {
        Some(j) => Json(j).into_response(),
        None => found(false),
    }
}

async fn wecom_delete(State(core): S, Path(id): Path<String>) -> Response {
    match ctl(&core).delete_wecom_job(&id) {
        Ok(()) => found(true),
        Err(e) => not_found(e),
    }
}

async fn wecom_expire(State(core): S) -> Response {
    ctl(&core).expire_wecom_tokens();
    found(true)
}
