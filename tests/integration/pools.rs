//! Printer pools end to end: a pool of a Lianke and a Zhimu printer over the vendor
//! simulator (routing around an open breaker and an offline member, failover of a pending
//! job, a submitted job that never moves, waiting when no member can print), the pool API,
//! and `least_loaded` spreading 1,000 jobs over three scripted members.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::scripted::ScriptedBackend;
use common::{TestApp, assert_problem, spawn_app, spawn_app_with, test_config};
use print_gateway::app::{self, Role, lianke_settings};
use print_gateway::backends::BackendRegistry;
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vendor_sim::{
    DEFAULT_LIANKE_API_KEY, LedgerFilter, LiankeDeviceSpec, Sim, SimConfig, Vendor, ZhimuAppSpec,
    ZhimuShareSpec,
};

const DEVICE: &str = "lk-pool-1";
const DEVICE_KEY: &str = "lk-device-key-9f3a";
const APP_ID: &str = "gateway-app";
const APP_KEY: &str = "gateway-appkey-7f3c9e21";
const SN: &str = "pkDgrqeA";
const ZHIMU_PRINTER: &str = "佳能复合机";
const TICKET: &str = "830487711";
const PASSWORD: &str = "2598";

pub struct World {
    pub sim: Sim,
    pub app: TestApp,
}

fn configure(c: &mut Config, sim_url: &str) {
    c.lianke.lianke_base_url = sim_url.to_owned();
    c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
    c.public_base_url = None;
    c.lianke.lianke_poll_interval_ms = 10;
    c.device_wait_retry_secs = 1;
    c.zhimu.zhimu_base_url = sim_url.to_owned();
    c.zhimu.zhimu_app_id = Some(APP_ID.into());
    c.zhimu.zhimu_app_key = Some(APP_KEY.into());
    c.zhimu.zhimu_poll_first_ms = 10;
    c.zhimu.zhimu_poll_every_ms = 20;
    c.zhimu.zhimu_poll_max_ms = 100;
    c.zhimu.zhimu_max_polls_per_sec = 0;
}

/// A simulator with one Lianke box and one Zhimu share, a gateway with both backends,
/// printers `lk` and `zm` registered on them.
pub async fn world() -> World {
    let sim = Sim::start(SimConfig::default()).await.expect("simulator");
    sim.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    sim.add_zhimu_app(ZhimuAppSpec {
        appid: APP_ID.into(),
        appkey: APP_KEY.into(),
    });
    sim.add_zhimu_share(ZhimuShareSpec::new(TICKET, PASSWORD, SN, ZHIMU_PRINTER));
    let url = sim.base_url();
    let mut probe = test_config("postgres://unused/unused");
    configure(&mut probe, &url);
    let lianke = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    let zhimu = app::zhimu_backend(&probe)
        .expect("zhimu settings")
        .expect("zhimu credentials");
    let registry = BackendRegistry::new().with(Arc::new(lianke)).with(zhimu);
    let app = spawn_app_with(registry, Role::Api, |c| configure(c, &url)).await;
    app.create_printer_with(json!({
        "id": "lk", "backend": "lianke",
        "locator": {"device_id": DEVICE, "device_port": 1, "printer_model": "HP LaserJet P1007"},
        "secrets": {"device_key": DEVICE_KEY},
    }))
    .await;
    let bound = app
        .post(
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": TICKET, "password": PASSWORD}),
        )
        .await;
    assert_eq!(bound.status(), StatusCode::CREATED);
    let bound: Value = bound.json().await.expect("share JSON");
    app.create_printer_with(json!({"id": "zm", "backend": "zhimu", "locator": bound["locator"]}))
        .await;
    World { sim, app }
}

pub async fn create_pool(app: &TestApp, id: &str, policy: &str, members: &[&str]) -> Value {
    let response = app
        .post(
            "/v1/pools",
            &json!({"id": id, "policy": policy, "members": members}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "create pool: {}",
        response.text().await.unwrap_or_default()
    );
    response.json().await.expect("pool JSON")
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_owned()
}

impl World {
    fn lianke_submits(&self) -> usize {
        self.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Lianke)
                .endpoint("POST", "/api/print/job")
                .field("deviceId", DEVICE),
        )
    }

    fn zhimu_submits_of(&self, job: &str) -> usize {
        self.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Zhimu)
                .endpoint("POST", "/openapi")
                .field("data.task.name", job),
        )
    }

    async fn open_breaker(&self, printer: &str) {
        sqlx::query(
            "UPDATE printers SET breaker_failures = 1000, breaker_open_until = now() + interval '1 hour' WHERE id = $1",
        )
        .bind(printer)
        .execute(&self.app.pool)
        .await
        .expect("open the breaker");
    }

    async fn close_breaker(&self, printer: &str) {
        sqlx::query(
            "UPDATE printers SET breaker_failures = 0, breaker_open_until = NULL WHERE id = $1",
        )
        .bind(printer)
        .execute(&self.app.pool)
        .await
        .expect("close the breaker");
    }

    /// The gateway learns the Lianke box's state from a live status check.
    async fn lianke_online(&self, online: bool) {
        self.sim.set_lianke_online(DEVICE, Some(online));
        let status: Value = self
            .app
            .get("/v1/printers/lk/status")
            .await
            .json()
            .await
            .expect("status JSON");
        assert_eq!(status["status"]["online"], online, "{status}");
    }

    async fn submit_to_pool(&self, pool: &str, text: &str) -> Value {
        self.app
            .submit(json!({"pool_id": pool, "document": {"text": text}}))
            .await
    }
}

#[tokio::test]
async fn a_pool_routes_jobs_to_the_healthy_member() {
    let w = world().await;
    create_pool(&w.app, "floor-2", "first_healthy", &["lk", "zm"]).await;

    // Both healthy: the first member.
    let job = w.submit_to_pool("floor-2", "first").await;
    assert_eq!(job["pool_id"], "floor-2");
    assert_eq!(job["printer_id"], "lk");
    let done = w
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["printer_id"], "lk");
    assert_eq!(w.lianke_submits(), 1);

    // Lianke's breaker open: the Zhimu member, and the event says why.
    w.open_breaker("lk").await;
    let job = w.submit_to_pool("floor-2", "around the breaker").await;
    assert_eq!(job["printer_id"], "zm");
    let done = w
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["printer_id"], "zm");
    let events = w.app.events(&id(&job)).await;
    let chosen = events
        .iter()
        .find(|e| e["kind"] == "member_chosen")
        .expect("a member_chosen event");
    let why = chosen["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("lk: breaker open") && why.contains("zm"),
        "{why}"
    );
    assert_eq!(w.zhimu_submits_of(&id(&job)), 1);
    assert_eq!(w.lianke_submits(), 1, "nothing more went to Lianke");

    // Breaker closed, but the box is known to be offline: Zhimu again.
    w.close_breaker("lk").await;
    w.lianke_online(false).await;
    let job = w.submit_to_pool("floor-2", "around the offline box").await;
    assert_eq!(job["printer_id"], "zm");
    w.app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(w.zhimu_submits_of(&id(&job)), 1);
    assert_eq!(w.lianke_submits(), 1, "nothing more went to Lianke");

    // Back online: the first member again.
    w.lianke_online(true).await;
    let job = w.submit_to_pool("floor-2", "back").await;
    assert_eq!(job["printer_id"], "lk");
    w.app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(w.lianke_submits(), 2);
    w.app.shutdown().await;
}

#[tokio::test]
async fn a_pending_job_moves_when_its_member_fails_before_submit() {
    let w = world().await;
    create_pool(&w.app, "floor-2", "first_healthy", &["lk", "zm"]).await;
    // The box went offline; the gateway does not know yet.
    w.sim.set_lianke_online(DEVICE, Some(false));
    let job = w.submit_to_pool("floor-2", "fail over").await;
    assert_eq!(job["printer_id"], "lk");
    let done = w
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["printer_id"], "zm");
    assert_eq!(w.lianke_submits(), 1, "Lianke refused the one submit");
    assert_eq!(w.zhimu_submits_of(&id(&job)), 1);
    let events = w.app.events(&id(&job)).await;
    let failover = events
        .iter()
        .find(|e| e["kind"] == "failover")
        .expect("a failover event");
    assert_eq!(failover["from_state"], "pending");
    let message = failover["message"].as_str().unwrap_or_default();
    assert!(message.contains("from lk to zm"), "{message}");
    w.app.shutdown().await;
}

#[tokio::test]
async fn a_submitted_job_never_moves() {
    let w = world().await;
    create_pool(&w.app, "floor-2", "first_healthy", &["lk", "zm"]).await;
    // The box takes the task but does not print it yet.
    w.sim.set_lianke_paused(DEVICE, true);
    let job = w.submit_to_pool("floor-2", "stay").await;
    w.app.run_engine().await;
    let submitted = w.app.job(&id(&job)).await;
    assert_eq!(submitted["state"], "processing", "{submitted}");
    assert_eq!(submitted["printer_id"], "lk");
    // Now the member fails every way the router knows.
    w.open_breaker("lk").await;
    sqlx::query("UPDATE printers SET online = false WHERE id = 'lk'")
        .execute(&w.app.pool)
        .await
        .expect("mark offline");
    for _ in 0..5 {
        w.app.make_due(&id(&job)).await;
        w.app.run_engine().await;
    }
    let after = w.app.job(&id(&job)).await;
    assert_eq!(after["printer_id"], "lk", "{after}");
    assert_ne!(after["state"], "pending");
    assert_eq!(w.lianke_submits(), 1, "one submit of the job, ever");
    assert_eq!(
        w.zhimu_submits_of(&id(&job)),
        0,
        "never sent to another member"
    );
    let events = w.app.events(&id(&job)).await;
    assert!(events.iter().all(|e| e["kind"] != "failover"));
    w.app.shutdown().await;
}

#[tokio::test]
async fn a_job_waits_when_no_member_can_print_then_prints_on_the_first_that_can() {
    let w = world().await;
    create_pool(&w.app, "floor-2", "first_healthy", &["lk", "zm"]).await;
    w.open_breaker("lk").await;
    w.open_breaker("zm").await;
    let job = w.submit_to_pool("floor-2", "wait").await;
    w.app.run_engine().await;
    let waiting = w.app.job(&id(&job)).await;
    assert_eq!(waiting["state"], "pending");
    assert_eq!(waiting["state_reason"], "no_member_available");
    assert_eq!(w.lianke_submits(), 0);
    assert_eq!(w.zhimu_submits_of(&id(&job)), 0);
    w.close_breaker("zm").await;
    w.app.make_due(&id(&job)).await;

    let done = w
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["printer_id"], "zm");
    w.app.shutdown().await;
}

#[tokio::test]
async fn the_pool_api_checks_members_and_is_per_tenant() {
    let w = world().await;
    let pool = create_pool(&w.app, "floor-2", "least_loaded", &["lk", "zm"]).await;
    assert_eq!(pool["members"], json!(["lk", "zm"]));
    assert_eq!(pool["policy"], "least_loaded");
    // Unknown member, duplicate, bad policy, taken id.
    for (body, status, code) in [
        (
            json!({"id": "p2", "members": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_printer",
        ),
        (
            json!({"id": "p2", "members": ["lk", "lk"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"id": "p2", "members": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"id": "floor-2", "members": ["lk"]}),
            StatusCode::CONFLICT,
            "pool_exists",
        ),
        (
            json!({"id": "lk", "members": ["zm"]}),
            StatusCode::CONFLICT,
            "pool_exists",
        ),
    ] {
        assert_problem(w.app.post("/v1/pools", &body).await, status, code).await;
    }
    // Another tenant sees nothing and cannot print on it.
    let other = w
        .app
        .key_for("globex", &["jobs:write", "jobs:read", "printers:admin"])
        .await;
    let listed: Value = w
        .app
        .get_as(&other, "/v1/pools")
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(listed["items"], json!([]));
    assert_eq!(
        w.app.get_as(&other, "/v1/pools/floor-2").await.status(),
        StatusCode::NOT_FOUND
    );
    let refused = w
        .app
        .post_as(
            &other,
            "/v1/jobs",
            &json!({"pool_id": "floor-2", "document": {"text": "x"}}),
        )
        .await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "unknown_pool").await;
    // Exactly one of printer_id and pool_id.
    let both = w
        .app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "lk", "pool_id": "floor-2", "document": {"text": "x"}}),
        )
        .await;
    assert_problem(both, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    // Change and delete.
    let changed = w
        .app
        .client
        .put(w.app.url("/v1/pools/floor-2"))
        .bearer_auth(&w.app.key)
        .json(&json!({"policy": "first_healthy", "members": ["zm", "lk"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.expect("pool");
    assert_eq!(changed["members"], json!(["zm", "lk"]));
    let deleted = w
        .app
        .client
        .delete(w.app.url("/v1/pools/floor-2"))
        .bearer_auth(&w.app.key)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        w.app.get("/v1/pools/floor-2").await.status(),
        StatusCode::NOT_FOUND
    );
    w.app.shutdown().await;
}

#[tokio::test]
async fn least_loaded_spreads_a_thousand_jobs_evenly_over_three_members() {
    // A backend name of its own: the metrics other tests count are process-wide.
    let backend = ScriptedBackend::named("pool-members");
    let app = spawn_app(BackendRegistry::new().with(backend.clone())).await;
    for printer in ["m1", "m2", "m3"] {
        app.create_printer(printer, "pool-members").await;
    }
    create_pool(&app, "trio", "least_loaded", &["m1", "m2", "m3"]).await;
    let mut jobs = Vec::new();
    // In waves, the engine working between them, so loads rise and fall.
    for wave in 0..20 {
        for n in 0..50 {
            let job = app
                .submit(json!({"pool_id": "trio", "document": {"text": format!("{wave}/{n}")}}))
                .await;
            jobs.push(id(&job));
        }
        app.run_engine().await;
    }
    for _ in 0..50 {
        if app.run_engine().await == 0 {
            break;
        }
    }
    let per_member: Vec<u32> = ["m1", "m2", "m3"]
        .iter()
        .map(|p| backend.submits_to(p))
        .collect();
    assert_eq!(per_member.iter().sum::<u32>(), 1000, "{per_member:?}");
    let even = 1000.0 / 3.0;
    for count in &per_member {
        assert!(
            (f64::from(*count) - even).abs() <= even * 0.10,
            "within 10% of even: {per_member:?}"
        );
    }
    // Each job was submitted once.
    assert!(backend.submits_per_job().values().all(|n| *n == 1));
    app.shutdown().await;
}
