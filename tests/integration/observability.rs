//! What operators see: the Prometheus exposition (every family, histograms and gauges that
//! move when jobs run), printer health that tells the truth, and the `admin` scope.
//! (Its own test binary: the metrics recorder is process-wide, and only the metrics test
//! here scrapes, so the database gauges are this test's own.)

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::scripted::{ScriptedBackend, Step, permanent, transient};
use common::{spawn_app, spawn_app_with};
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One scrape: `name{labels}` → value, labels sorted as `k="v"` joined by commas.
#[derive(Debug, Default)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a number in {line:?}"));
            let key = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    let mut pairs: Vec<&str> = labels.split("\",").collect();
                    for pair in &mut pairs {
                        *pair = pair.trim_end_matches('"');
                    }
                    pairs.sort_unstable();
                    let joined: Vec<String> = pairs.iter().map(|p| format!("{p}\"")).collect();
                    format!("{name}{{{}}}", joined.join(","))
                }
                None => series.to_owned(),
            };
            samples.insert(key, value);
        }
        Scrape(samples)
    }

    /// The sample of `name` with exactly these labels (any order), 0 when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or(0.0)
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        pairs.sort_unstable();
        let key = if pairs.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", pairs.join(","))
        };
        self.0.get(&key).copied()
    }

    fn has_family(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|k| k == name || k.starts_with(&format!("{name}{{")))
    }
}

async fn scrape(app: &common::TestApp) -> Scrape {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Scrape::parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn the_exposition_has_every_family_and_its_histograms_and_gauges_move_when_jobs_run() {
    // A backend name of its own: the metrics are process-wide, and other tests in this
    // binary run jobs on "scripted" at the same time.
    let backend = ScriptedBackend::named("observed");
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::Api,
        |c| c.breaker_threshold = 2,
    )
    .await;
    app.create_printer("office", "observed").await;
    app.create_printer("flaky", "observed").await;
    let before = scrape(&app).await;

    let printed = app.submit_text("office", "prints").await;
    let refused = app.submit_text("flaky", "refused").await;
    backend.script("flaky", [Step::Fail(permanent())]);
    // The two jobs wait: gauges show them, with the age of the oldest.
    let mut waiting = scrape(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while waiting.get(
        "print_gateway_job_oldest_age_seconds",
        &[("state", "pending")],
    ) <= 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the oldest pending age never rose"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting = scrape(&app).await;
    }
    assert_eq!(
        waiting.get("print_gateway_jobs", &[("state", "pending")]),
        2.0
    );

    let id = |job: &Value| job["id"].as_str().unwrap().to_owned();
    app.drive_until(&id(&printed), "completed", Duration::from_secs(10))
        .await;
    app.drive_until(&id(&refused), "failed", Duration::from_secs(10))
        .await;
    // A forged callback: refused, counted.
    let forged = app
        .client
        .post(app.url(&format!(
            "/webhooks/lianke/{}?token=not-the-token",
            id(&printed)
        )))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // Two transient failures open the breaker of a third printer.
    app.create_printer("broken", "observed").await;
    backend.always("broken", Step::Fail(transient()));
    app.submit_text("broken", "never").await;
    for _ in 0..5 {
        app.run_engine().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = scrape(&app).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);

    for family in [
        "print_gateway_http_requests_total",
        "print_gateway_http_request_duration_seconds_bucket",
        "print_gateway_jobs_accepted_total",
        "print_gateway_jobs_ended_total",
        "print_gateway_job_duration_seconds_bucket",
        "print_gateway_jobs",
        "print_gateway_job_oldest_age_seconds",
        "print_gateway_jobs_unconfirmed",
        "print_gateway_vendor_calls_total",
        "print_gateway_vendor_call_duration_seconds_bucket",
        "print_gateway_callbacks_total",
        "print_gateway_breaker_transitions_total",
        "print_gateway_printer_breaker_state",
        "print_gateway_printer_online",
        "print_gateway_printers_by_circuit",
        "print_gateway_printers_by_online",
        "print_gateway_db_pool_connections",
        "print_gateway_db_pool_max_connections",
        "print_gateway_db_up",
    ] {
        assert!(after.has_family(family), "{family} is missing");
    }

    let post_jobs = [("route", "/v1/jobs"), ("method", "POST"), ("status", "202")];
    assert!(delta("print_gateway_http_requests_total", &post_jobs) >= 3.0);
    assert!(
        delta(
            "print_gateway_http_request_duration_seconds_count",
            &post_jobs
        ) >= 3.0
    );
    assert!(
        after
            .find(
                "print_gateway_http_requests_total",
                &[
                    ("route", "/v1/jobs/{id}"),
                    ("method", "GET"),
                    ("status", "200")
                ]
            )
            .is_some(),
        "routes are templates, never raw paths"
    );
    assert!(
        !after
            .0
            .keys()
            .any(|k| k.contains(&id(&printed)) && k.contains("http_requests")),
        "no job id in an HTTP label"
    );
    let accepted = [("backend", "observed"), ("source", "api")];
    assert_eq!(delta("print_gateway_jobs_accepted_total", &accepted), 3.0);
    let completed = [
        ("backend", "observed"),
        ("state", "completed"),
        ("error_code", "none"),
    ];
    assert_eq!(delta("print_gateway_jobs_ended_total", &completed), 1.0);
    let failed = [
        ("backend", "observed"),
        ("state", "failed"),
        ("error_code", "printer_auth_failed"),
    ];
    assert_eq!(delta("print_gateway_jobs_ended_total", &failed), 1.0);
    let took = [("backend", "observed"), ("state", "completed")];
    assert_eq!(
        delta("print_gateway_job_duration_seconds_count", &took),
        1.0
    );
    assert!(delta("print_gateway_job_duration_seconds_sum", &took) > 0.0);
    let submit_ok = [
        ("vendor", "observed"),
        ("endpoint", "submit"),
        ("outcome", "ok"),
    ];
    assert!(delta("print_gateway_vendor_calls_total", &submit_ok) >= 1.0);
    assert!(
        delta(
            "print_gateway_vendor_call_duration_seconds_count",
            &submit_ok
        ) >= 1.0
    );
    let submit_refused = [
        ("vendor", "observed"),
        ("endpoint", "submit"),
        ("outcome", "vendor_error"),
    ];
    assert!(delta("print_gateway_vendor_calls_total", &submit_refused) >= 3.0);
    assert_eq!(
        delta(
            "print_gateway_callbacks_total",
            &[("vendor", "lianke"), ("result", "forged")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "print_gateway_breaker_transitions_total",
            &[("backend", "observed"), ("to", "open")]
        ),
        1.0
    );

    // Gauges: the finished jobs left the live counts; the third job waits behind the breaker.
    assert_eq!(
        after.get("print_gateway_jobs", &[("state", "pending")]),
        1.0
    );
    assert_eq!(
        after.get("print_gateway_jobs", &[("state", "processing")]),
        0.0
    );
    assert_eq!(after.get("print_gateway_jobs_unconfirmed", &[]), 0.0);
    let breaker = |p: &str| {
        after.get(
            "print_gateway_printer_breaker_state",
            &[("printer", p), ("backend", "observed")],
        )
    };
    assert_eq!(breaker("broken"), 2.0, "open");
    assert_eq!(breaker("office"), 0.0, "closed");
    assert_eq!(
        after.get(
            "print_gateway_printer_online",
            &[("printer", "office"), ("backend", "observed")]
        ),
        1.0,
        "a printed job shows the printer online"
    );
    assert_eq!(
        after.get("print_gateway_printers_by_circuit", &[("circuit", "open")]),
        1.0
    );
    assert_eq!(
        after.get(
            "print_gateway_printers_by_circuit",
            &[("circuit", "closed")]
        ),
        2.0
    );
    assert_eq!(after.get("print_gateway_db_up", &[]), 1.0);
    assert_eq!(
        after.get("print_gateway_db_pool_max_connections", &[]),
        20.0
    );
    assert!(after.get("print_gateway_db_pool_connections", &[("state", "idle")]) >= 0.0);
}

#[tokio::test]
async fn per_printer_series_stop_above_the_label_limit() {
    // Its own process-wide recorder is shared, so this checks the switch, not absence:
    // with a limit of 1 and two printers, only the aggregate counts are refreshed.
    let backend = ScriptedBackend::named("limited");
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::Api,
        |c| c.metrics_printer_labels_max = 1,
    )
    .await;
    app.create_printer("limited-a", "limited").await;
    app.create_printer("limited-b", "limited").await;
    let scraped = scrape(&app).await;
    assert!(
        !scraped.0.keys().any(|k| k.contains("printer=\"limited-")),
        "no per-printer series above METRICS_PRINTER_LABELS_MAX"
    );
}

#[tokio::test]
async fn three_authentication_failures_show_in_the_printers_health() {
    let backend = ScriptedBackend::new();
    let app = spawn_app(BackendRegistry::new().with(backend.clone())).await;
    app.create_printer("office", "scripted").await;
    backend.always("office", Step::Fail(permanent()));
    for n in 0..3 {
        let job = app.submit_text("office", &format!("attempt {n}")).await;
        app.drive_until(
            job["id"].as_str().unwrap(),
            "failed",
            Duration::from_secs(10),
        )
        .await;
    }
    let waiting = app.submit_text("office", "queued").await;
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    let health = &printer["health"];
    assert_eq!(health["consecutive_failures"], 3, "{health:#}");
    assert_eq!(
        health["last_error"]["code"], "printer_auth_failed",
        "{health:#}"
    );
    assert_eq!(health["last_error"]["vendor_code"], "404");
    assert!(
        health["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("device key")
    );
    assert!(health["last_error"]["at"].is_string());
    assert_eq!(
        health["breaker_failures"], 0,
        "authentication failures do not count toward the breaker"
    );
    assert_eq!(health["circuit"], "closed");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["queue"]["pending"], 1);
    // The list shows the same health.
    let list: Value = app.get("/v1/printers").await.json().await.unwrap();
    assert_eq!(list["items"][0]["health"]["consecutive_failures"], 3);
    assert_eq!(list["items"][0]["health"]["queue"]["pending"], 1);

    // A printed job resets the count and marks the printer seen.
    backend.always("office", Step::Accept);
    app.drive_until(
        waiting["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(10),
    )
    .await;
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert_eq!(printer["health"]["consecutive_failures"], 0);
    assert_eq!(printer["health"]["status"], "ok");
    assert_eq!(printer["health"]["online"], true);
    assert!(printer["health"]["last_seen_at"].is_string());
}

#[tokio::test]
async fn status_checks_record_a_printer_going_offline_and_back() {
    let backend = ScriptedBackend::new();
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::All,
        |c| c.printer_status_every_secs = 1,
    )
    .await;
    app.create_printer("office", "scripted").await;
    let online = wait_for_online(&app, true).await;
    assert!(online["status_checked_at"].is_string());
    assert!(online["last_seen_at"].is_string());
    backend.set_online("office", Some(false));
    let offline = wait_for_online(&app, false).await;
    assert_eq!(offline["status"], "failing");
    backend.set_online("office", Some(true));
    wait_for_online(&app, true).await;
}

async fn wait_for_online(app: &common::TestApp, want: bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
        let health = printer["health"].clone();
        if health["online"] == want {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online never became {want}: {health:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_admin_key_reads_every_tenant_and_a_tenant_key_only_its_own() {
    let backend = ScriptedBackend::new();
    let app = spawn_app(BackendRegistry::new().with(backend.clone())).await;
    // acme's printer, shared with globex (printers belong to a tenant)
    app.create_printer_with(json!({
        "id": "office", "backend": "scripted", "locator": {"device": "office"},
        "shared_with": ["globex"]
    }))
    .await;
    let acme_job = app.submit_text("office", "acme's").await;
    let globex = app.key_for("globex", &["jobs:write", "jobs:read"]).await;
    let response = app
        .post_as(
            &globex,
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "globex's"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let globex_job: Value = response.json().await.unwrap();
    let admin = app.key_for("ops", &["admin"]).await;

    let list: Value = app.get_as(&admin, "/v1/jobs").await.json().await.unwrap();
    let tenants: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["tenant"].as_str().unwrap())
        .collect();
    assert!(
        tenants.contains(&"acme") && tenants.contains(&"globex"),
        "{tenants:?}"
    );
    for job in [&acme_job, &globex_job] {
        let id = job["id"].as_str().unwrap();
        assert_eq!(
            app.get_as(&admin, &format!("/v1/jobs/{id}")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            app.get_as(&admin, &format!("/v1/jobs/{id}/events"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        app.get_as(&admin, "/v1/printers").await.status(),
        StatusCode::OK
    );
    // A tenant key still sees only its own.
    let own: Value = app.get_as(&globex, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    let acme_id = acme_job["id"].as_str().unwrap();
    assert_eq!(
        app.get_as(&globex, &format!("/v1/jobs/{acme_id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Admin reads; it does not write.
    let write = app
        .post_as(
            &admin,
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "x"}}),
        )
        .await;
    common::assert_problem(write, StatusCode::FORBIDDEN, "forbidden").await;

    // Free search by id and by idempotency key.
    let found: Value = app
        .get_as(&admin, &format!("/v1/jobs?q={acme_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["id"], acme_id);
    let keyed = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", "invoice-77")
        .json(&json!({"printer_id": "office", "document": {"text": "keyed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::ACCEPTED);
    let found: Value = app.get("/v1/jobs?q=invoice-77").await.json().await.unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get_as(&globex, "/v1/jobs?q=invoice-77")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        none["items"].as_array().unwrap().len(),
        0,
        "search stays within the tenant"
    );
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_and_loads_nothing_from_elsewhere() {
    let app = spawn_app(BackendRegistry::new()).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = no_redirects.get(app.url("/")).send().await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/console");
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
        let body = response.text().await.unwrap();
        // The only absolute URL is the SVG namespace (an identifier, never fetched).
        let external = body
            .match_indices("http")
            .filter(|(i, _)| !body[*i..].starts_with("http://www.w3.org/2000/svg"))
            .count();
        assert_eq!(external, 0, "{path} refers to another origin");
    }
    let html = app
        .client
        .get(app.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"<label for="api-key">API key</label>"#),
        "the key field is labelled"
    );
    assert!(html.contains(r#"name="viewport""#), "sized for phones");
}
