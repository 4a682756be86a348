//! Health, readiness, metrics, the OpenAPI document and Swagger UI.

use crate::common;

use common::scripted::ScriptedBackend;
use common::spawn_app;
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_readiness_and_metrics_need_no_key() {
    let app = spawn_app(BackendRegistry::new().with(ScriptedBackend::new())).await;
    app.create_printer("office", "scripted").await;
    app.submit_text("office", "x").await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            response.headers().contains_key("x-request-id"),
            "request ids are set and returned"
        );
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("print_gateway_jobs{state=\"pending\"} 1"),
        "{metrics}"
    );

    // Not ready once a migration this binary knows is missing.
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    common::assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
}

#[tokio::test]
async fn a_given_request_id_is_echoed() {
    let app = spawn_app(BackendRegistry::new()).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn the_committed_openapi_document_equals_the_served_one() {
    let app = spawn_app(BackendRegistry::new()).await;
    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json is committed"),
    )
    .expect("openapi/openapi.json is JSON");
    assert!(
        served == committed,
        "openapi/openapi.json is stale: regenerate it with `cargo run -q -- openapi > openapi/openapi.json`"
    );
    // Every route is documented with its errors, and bearer auth is declared.
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
    let paths = served["paths"].as_object().unwrap();
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/cancel",
        "/v1/printers",
        "/v1/printers/{id}",
        "/v1/printers/{id}/capabilities",
        "/v1/printers/{id}/status",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the spec");
    }
    let create = &served["paths"]["/v1/jobs"]["post"];
    for status in ["202", "400", "401", "403", "409", "413", "415", "422"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /v1/jobs lacks {status}"
        );
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_vendored_assets() {
    let app = spawn_app(BackendRegistry::new()).await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(
        bundle.bytes().await.unwrap().len() > 100_000,
        "the bundle is served from the binary"
    );
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"));
}

/// Postgres away: routes that need it answer 503 with `Retry-After` (never 500, never a
/// hang until a 10 s pool timeout), `/readyz` says not ready, `/healthz` stays up; once the
/// database is back, new jobs are accepted and dispatched without a restart.
#[tokio::test]
async fn a_database_outage_answers_503_and_the_gateway_recovers_by_itself() {
    use common::db_proxy::DbProxy;
    use sqlx::ConnectOptions;
    use std::str::FromStr;

    let (database_url, _direct) = common::fresh_database().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(&database_url).unwrap();
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = DbProxy::start(upstream).await;
    let proxied = options.clone().host("127.0.0.1").port(proxy.port());
    let proxied_url = proxied.to_url_lossy().to_string();
    let pool =
        print_gateway::store::connect(&proxied_url, 5, std::time::Duration::from_millis(500))
            .await
            .unwrap();
    let backend = ScriptedBackend::new();
    let app = common::start_on(
        proxied_url,
        pool,
        BackendRegistry::new().with(backend.clone()),
        print_gateway::app::Role::Api,
        |_| {},
    )
    .await;
    app.create_printer("office", "scripted").await;
    let before = app.submit_text("office", "before").await;

    proxy.cut();
    let body = serde_json::json!({"printer_id": "office", "document": {"text": "during"}});
    for _ in 0..3 {
        let response = app.post("/v1/jobs", &body).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "service_unavailable");
    }
    let response = app
        .get(&format!("/v1/jobs/{}", before["id"].as_str().unwrap()))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let alive = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    // The engine meets the outage too, and reports it instead of crashing.
    assert!(
        app.app
            .as_ref()
            .unwrap()
            .engine()
            .run_due_now()
            .await
            .is_err()
    );

    proxy.restore();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let response = app.post("/v1/jobs", &body).await;
        if response.status() == StatusCode::ACCEPTED {
            break response.json::<Value>().await.unwrap();
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    for job in [&before, &after] {
        app.drive_until(
            job["id"].as_str().unwrap(),
            "completed",
            std::time::Duration::from_secs(20),
        )
        .await;
    }
}
