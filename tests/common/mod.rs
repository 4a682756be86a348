//! Shared set-up for the integration tests: a fresh Postgres database per test, the gateway
//! started on port 0, typed request helpers, and a scripted backend.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod db_proxy;
pub mod logs;
pub mod scripted;
pub mod wecom_world;

use std::str::FromStr;
use std::time::Duration;

use print_gateway::app::{Application, Role};
use print_gateway::backends::BackendRegistry;
use print_gateway::config::Config;
use print_gateway::store;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

/// The server tests run against: `DATABASE_URL` if set, else the local default.
fn base_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Test databases are named `pgw_test_<unix seconds>_<random>`; those older than this are
/// left over from earlier runs and dropped.
const STALE_AFTER_SECS: u64 = 30 * 60;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Drops test databases of earlier runs (once per test process, best effort): without it
/// every run would leave a few hundred databases behind.
async fn drop_stale_databases(base: &PgConnectOptions) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(mut conn) = base.clone().database("postgres").connect().await else {
        return;
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE starts_with(datname, 'pgw_test_')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    let now = unix_now();
    for name in names {
        let created = name
            .strip_prefix("pgw_test_")
            .and_then(|rest| rest.split('_').next())
            .filter(|secs| secs.len() == 10)
            .and_then(|secs| secs.parse::<u64>().ok());
        // Names without a timestamp come from an older harness: stale by definition.
        if created.is_none_or(|secs| now.saturating_sub(secs) > STALE_AFTER_SECS) {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = sqlx::query(&drop).execute(&mut conn).await;
        }
    }
}

/// Creates and migrates a database of its own for one test; returns its URL and a pool.
pub async fn fresh_database() -> (String, PgPool) {
    let base =
        PgConnectOptions::from_str(&base_url()).expect("DATABASE_URL must be a postgres URL");
    drop_stale_databases(&base).await;
    let random = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("pgw_test_{}_{}", unix_now(), &random[..12]);
    let url = base.clone().database(&name).to_url_lossy().to_string();
    let pool = store::connect(&url, 20, std::time::Duration::from_secs(10))
        .await
        .expect("create the test database");
    store::migrate(&pool)
        .await
        .expect("migrate the test database");
    (url, pool)
}

/// Test settings: fast retries and sweeps, nothing slow by default.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.database_url = database_url.to_owned().into();
    config.bind_addr = "127.0.0.1:0".parse().expect("literal address");
    config.worker_concurrency = 8;
    config.sweep_interval_ms = 50;
    config.retry_base_ms = 20;
    config.retry_max_ms = 200;
    config.lease_secs = 10;
    config.vendor_timeout_secs = 5;
    config.breaker_cooldown_secs = 3600;
    config.reconcile_every_secs = 1;
    config.callback_secrets = Some("test-callback-secret-0123456789".into());
    // Longer than any test's deadline: a revoked key stops working only if the change
    // notification reaches the cache.
    config.api_key_cache_secs = 300;
    // Likewise: a printer changed by another replica is seen only through the notification.
    config.printer_cache_secs = 300;
    // Background status checks would add vendor calls tests do not expect; the tests of
    // printer health turn them on.
    config.printer_status_every_secs = 0;
    config.metrics_refresh_ms = 0;
    config
}

pub struct TestApp {
    pub app: Option<Application>,
    pub base_url: String,
    pub database_url: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    /// A key of tenant `acme` with every scope.
    pub key: String,
}

/// Starts the API only (no workers): tests drive the engine with [`TestApp::run_engine`].
pub async fn spawn_app(backends: BackendRegistry) -> TestApp {
    spawn_app_with(backends, Role::Api, |_| {}).await
}

pub async fn spawn_app_with(
    backends: BackendRegistry,
    role: Role,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let (database_url, pool) = fresh_database().await;
    start_on(database_url, pool, backends, role, tweak).await
}

/// Starts another gateway process on an existing database (several replicas).
pub async fn start_on(
    database_url: String,
    pool: PgPool,
    backends: BackendRegistry,
    role: Role,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(&database_url);
    tweak(&mut config);
    let app = Application::start(config, pool.clone(), backends, role)
        .await
        .expect("start the gateway");
    let (_, key) = store::api_keys::create(
        &pool,
        "acme",
        &scopes(&["jobs:write", "jobs:read", "printers:admin"]),
    )
    .await
    .expect("create a key");
    TestApp {
        base_url: app.base_url(),
        app: Some(app),
        database_url,
        pool,
        client: reqwest::Client::new(),
        key,
    }
}

pub fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

impl TestApp {
    // ----- moving time forward without waiting for it: the tests set the timestamps the
    // gateway compares with now(), so nothing depends on how fast the machine is.

    /// The job's backoff has ended: it is due now.
    pub async fn make_due(&self, job_id: &str) {
        sqlx::query("UPDATE jobs SET due_at = now() WHERE id = $1::uuid")
            .bind(job_id)
            .execute(&self.pool)
            .await
            .expect("make the job due");
    }

    /// Waits until a session of this test's database LISTENs on `channel` (what a test
    /// must know before it relies on a NOTIFY reaching a worker).
    pub async fn wait_for_listener(&self, channel: &str) {
        let statement = format!("LISTEN \"{channel}\"");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = $1",
            )
            .bind(&statement)
            .fetch_one(&self.pool)
            .await
            .expect("read pg_stat_activity");
            if listening > 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nobody LISTENs on {channel}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The job's `expires_at` has come (and with it its next look, which the gateway never
    /// schedules past `expires_at`).
    pub async fn reach_expiry(&self, job_id: &str) {
        let set = sqlx::query(
            "UPDATE jobs SET expires_at = now(), due_at = LEAST(due_at, now()) WHERE id = $1::uuid",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await
        .expect("move expires_at")
        .rows_affected();
        assert_eq!(set, 1);
    }

    /// The lease on the job (held by a worker that died) has run out.
    pub async fn expire_lease(&self, job_id: &str) {
        let expired = sqlx::query(
            "UPDATE jobs SET lease_until = now() - interval '1 second'
             WHERE id = $1::uuid AND lease_until IS NOT NULL",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await
        .expect("expire the lease")
        .rows_affected();
        assert_eq!(expired, 1, "the job had a lease to expire");
    }

    /// The printer's open breaker has cooled down: the next claim is its half-open trial.
    pub async fn end_breaker_cooldown(&self, printer_id: &str) {
        let open = sqlx::query(
            "UPDATE printers SET breaker_open_until = now()
             WHERE id = $1 AND breaker_open_until IS NOT NULL",
        )
        .bind(printer_id)
        .execute(&self.pool)
        .await
        .expect("end the cooldown")
        .rows_affected();
        assert_eq!(open, 1, "the breaker was open");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn key_for(&self, tenant: &str, scopes_: &[&str]) -> String {
        store::api_keys::create(&self.pool, tenant, &scopes(scopes_))
            .await
            .expect("create a key")
            .1
    }

    pub async fn get(&self, path: &str) -> Response {
        self.get_as(&self.key, path).await
    }

    pub async fn get_as(&self, key: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_as(&self.key, path, body).await
    }

    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    /// Registers a printer on `backend` and returns its JSON.
    pub async fn create_printer(&self, id: &str, backend: &str) -> Value {
        self.create_printer_with(json!({"id": id, "backend": backend, "locator": {"device": id}}))
            .await
    }

    /// Registers a printer without asking its vendor (`?verify=false`): no credentials
    /// check and no capabilities cached, as in an offline set-up.
    pub async fn create_unverified_printer(&self, body: Value) -> Value {
        self.register_printer("/v1/printers?verify=false", body)
            .await
    }

    pub async fn create_printer_with(&self, body: Value) -> Value {
        self.register_printer("/v1/printers", body).await
    }

    async fn register_printer(&self, path: &str, body: Value) -> Value {
        let response = self.post(path, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create printer: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("printer JSON")
    }

    /// Submits a text job to `printer` and returns the job JSON.
    pub async fn submit_text(&self, printer: &str, text: &str) -> Value {
        self.submit(json!({"printer_id": printer, "document": {"text": text}}))
            .await
    }

    pub async fn submit(&self, body: Value) -> Value {
        let response = self.post("/v1/jobs", &body).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "submit: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("job JSON")
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("job JSON")
    }

    pub async fn events(&self, id: &str) -> Vec<Value> {
        let response = self.get(&format!("/v1/jobs/{id}/events")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("events JSON");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Handles everything due now, deterministically.
    /// Applies the recorded vendor callbacks, then handles every job due now; returns how
    /// many jobs were handled.
    pub async fn run_engine(&self) -> usize {
        let engine = self.app.as_ref().expect("running").engine();
        engine
            .apply_callbacks_now()
            .await
            .expect("applying recorded callbacks");
        engine.run_due_now().await.expect("engine run")
    }

    /// Runs the engine until `job` reaches `state` or `limit` passes.
    pub async fn drive_until(&self, job: &str, state: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.run_engine().await;
            let current = self.job(job).await;
            if current["state"] == state {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job} did not reach {state} in {limit:?}: {current:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["code"], code, "{body:#}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], format!("/problems/{code}"));
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 10),
        "detail should explain: {body:#}"
    );
    body
}
