//! The printer API: registration with write-only secrets, updates, deletion, and the
//! capability and status calls routed through the backend seam.

use crate::common;

use common::scripted::ScriptedBackend;
use common::{TestApp, assert_problem, spawn_app};
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "dk-very-secret-7f3a9c";

async fn app() -> TestApp {
    spawn_app(BackendRegistry::new().with(ScriptedBackend::new())).await
}

#[tokio::test]
async fn secrets_are_write_only() {
    let app = app().await;
    let created = app
        .create_printer_with(json!({"id": "office", "display_name": "Office", "backend": "scripted", "locator": {"device": "box-1"}, "secrets": {"device_key": SECRET}}))
        .await;
    assert_eq!(created["secrets_set"], json!(["device_key"]));
    assert_eq!(created["device"], "box-1");
    assert_eq!(created["health"]["circuit"], "closed");
    for path in [
        "/v1/printers",
        "/v1/printers/office",
        "/v1/printers/office/capabilities",
        "/v1/printers/office/status",
    ] {
        let body = app.get(path).await.text().await.unwrap();
        assert!(!body.contains(SECRET), "{path} leaked the secret");
    }
    // PATCH merges secrets; null removes one.
    let patched: Value = app
        .patch(
            "/v1/printers/office",
            &json!({"secrets": {"api_token": "t-123456"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["secrets_set"], json!(["api_token", "device_key"]));
    let stored: Value = sqlx::query_scalar("SELECT secrets FROM printers WHERE id = 'office'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored["device_key"], SECRET, "kept for the backend");
    let patched: Value = app
        .patch(
            "/v1/printers/office",
            &json!({"secrets": {"api_token": null}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["secrets_set"], json!(["device_key"]));
    assert!(!patched.to_string().contains(SECRET));
}

#[tokio::test]
async fn registration_refuses_bad_printers() {
    let app = app().await;
    app.create_printer("office", "scripted").await;
    let post = |body: Value| {
        let request = app
            .client
            .post(app.url("/v1/printers"))
            .bearer_auth(&app.key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    assert_problem(
        post(json!({"id": "office", "backend": "scripted"})).await,
        StatusCode::CONFLICT,
        "printer_exists",
    )
    .await;
    assert_problem(
        post(json!({"id": "Bad Id", "backend": "scripted"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2", "backend": "hp"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_backend",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2", "backend": "scripted", "locator": {"reject": true}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_printer_config",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2", "backend": "scripted", "locator": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2", "backend": "scripted", "max_in_flight": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2", "backend": "scripted", "default_options": {"copies": 0}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_option",
    )
    .await;
    assert_problem(
        post(json!({"id": "p2"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_problem(
        app.get("/v1/printers/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.patch("/v1/printers/nope", &json!({"enabled": false}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn default_options_apply_to_jobs_that_leave_them_out() {
    let app = app().await;
    app.create_printer_with(json!({"id": "office", "backend": "scripted", "default_options": {"copies": 3, "sides": "two_sided_long_edge"}})).await;
    let job = app
        .submit(
            json!({"printer_id": "office", "document": {"text": "x"}, "options": {"copies": 1}}),
        )
        .await;
    assert_eq!(job["options"]["copies"], 1);
    assert_eq!(job["options"]["sides"], "two_sided_long_edge");
}

#[tokio::test]
async fn a_printer_with_jobs_cannot_be_deleted_but_can_be_disabled() {
    let app = app().await;
    app.create_printer("empty", "scripted").await;
    let deleted = app
        .client
        .delete(app.url("/v1/printers/empty"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get("/v1/printers/empty").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    app.create_printer("busy", "scripted").await;
    app.submit_text("busy", "x").await;
    let refused = app
        .client
        .delete(app.url("/v1/printers/busy"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_problem(refused, StatusCode::CONFLICT, "printer_has_jobs").await;
    let disabled: Value = app
        .patch("/v1/printers/busy", &json!({"enabled": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["enabled"], false);
    assert_eq!(app.run_engine().await, 0, "jobs of a disabled printer wait");
}

#[tokio::test]
async fn capabilities_are_cached_until_refreshed_and_status_is_live() {
    let app = app().await;
    // Registered without asking the vendor: nothing cached, the first read asks.
    app.create_unverified_printer(
        json!({"id": "office", "backend": "scripted", "locator": {"device": "office"}}),
    )
    .await;
    let fresh: Value = app
        .get("/v1/printers/office/capabilities")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["source"], "vendor");
    assert_eq!(fresh["capabilities"]["papers"][0]["name"], "A4");
    assert_eq!(fresh["capabilities"]["copies_max"], 10);
    let cached: Value = app
        .get("/v1/printers/office/capabilities")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cached["source"], "cache");
    let refreshed: Value = app
        .get("/v1/printers/office/capabilities?refresh=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["source"], "vendor");
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert!(printer["capabilities_fetched_at"].is_string());

    let status: Value = app
        .get("/v1/printers/office/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"]["online"], true);
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert_eq!(
        printer["health"]["online"], true,
        "the live answer updates the printer's health"
    );

    // A locator change drops the cache: it may describe another printer now.
    let before = printer["capabilities_fetched_at"].clone();
    assert!(before.is_string());
    app.patch(
        "/v1/printers/office?verify=false",
        &json!({"locator": {"device": "box-2"}}),
    )
    .await;
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert!(printer.get("capabilities_fetched_at").is_none());
    // Checked with the vendor, a new device has its capabilities fetched at once.
    app.patch(
        "/v1/printers/office",
        &json!({"locator": {"device": "box-3"}}),
    )
    .await;
    let printer: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert!(
        printer["capabilities_fetched_at"].is_string(),
        "{printer:#}"
    );
}

/// The read behind callback confirmations leaves the capability documents out and keeps
/// everything a vendor call needs as `get_many` reads it.
#[tokio::test]
async fn printers_read_for_task_calls_leave_capabilities_out() {
    let app = app().await;
    app.create_unverified_printer(
        json!({"id": "office", "backend": "scripted", "locator": {"device": "office"}}),
    )
    .await;
    // the first read of the capabilities caches them
    let fresh = app.get("/v1/printers/office/capabilities").await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let store = print_gateway::store::printers::get_many(&app.pool, ["office", "absent"])
        .await
        .unwrap();
    let full = &store["office"];
    assert!(
        full.capabilities.is_some(),
        "the cache holds the capabilities"
    );
    let light =
        print_gateway::store::printers::get_many_for_task_calls(&app.pool, ["office", "absent"])
            .await
            .unwrap();
    assert_eq!(
        light.len(),
        1,
        "only printers that exist: {:?}",
        light.keys()
    );
    let office = &light["office"];
    assert!(office.capabilities.is_none());
    assert_eq!(office.capabilities_at, full.capabilities_at);
    assert_eq!(
        (
            &office.backend,
            &office.device,
            &office.locator,
            &office.secrets
        ),
        (&full.backend, &full.device, &full.locator, &full.secrets)
    );
}

/// The background status round fetches again the capabilities of a printer whose cache is
/// older than `CAPABILITIES_REFRESH_SECS`, and leaves a fresher cache alone.
#[tokio::test]
async fn a_status_round_asks_printers_together_and_stops_starting_checks_at_shutdown() {
    let scripted = ScriptedBackend::new();
    let app = spawn_app(BackendRegistry::new().with(scripted.clone())).await;
    for n in 0..20 {
        app.create_printer_with(json!({"id": format!("p{n}"), "backend": "scripted", "locator": {"device": format!("box-{n}")}}))
            .await;
    }
    let engine = app.app.as_ref().expect("running").engine().clone();
    let round = |stop: tokio_util::sync::CancellationToken| {
        let engine = engine.clone();
        async move {
            engine
                .check_printers_due(
                    std::time::Duration::ZERO,
                    std::time::Duration::from_secs(30),
                    std::time::Duration::ZERO,
                    &stop,
                )
                .await
                .unwrap()
        }
    };
    // A process already stopping starts no check.
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    let before = scripted.printer_status_calls();
    assert_eq!(round(stopped).await, 0);
    assert_eq!(scripted.printer_status_calls(), before);

    // Slow answers: the round asks several printers at once; a shutdown during it lets
    // the checks under way finish and starts no other.
    scripted.set_printer_status_pause(std::time::Duration::from_secs(2));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(round(stop.clone()));
    while scripted.printer_status_calls() < before + 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.cancel();
    let checked = running.await.unwrap();
    assert!(
        (2..20).contains(&checked),
        "checked {checked} of 20 (the ones under way when shutdown came)"
    );
    assert_eq!((scripted.printer_status_calls() - before) as usize, checked);
}

#[tokio::test]
async fn the_status_round_refreshes_capabilities_older_than_the_refresh_age() {
    let app = app().await;
    app.create_printer("old", "scripted").await;
    app.create_printer("fresh", "scripted").await;
    // Both caches say something the vendor does not (copies_max 1); only `old` is aged.
    sqlx::query(
        "UPDATE printers SET capabilities = jsonb_set(capabilities, '{copies_max}', '1'),
                capabilities_at = CASE id WHEN 'old' THEN now() - interval '2 days' ELSE now() END",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let engine = app.app.as_ref().expect("running").engine();
    let checked = engine
        .check_printers_due(
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(86_400),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(checked, 2);
    let caps = |id: &'static str| {
        let app = &app;
        async move {
            let v: Value = app
                .get(&format!("/v1/printers/{id}/capabilities"))
                .await
                .json()
                .await
                .unwrap();
            v
        }
    };
    let old = caps("old").await;
    assert_eq!(old["source"], "cache");
    assert_eq!(
        old["capabilities"]["copies_max"], 10,
        "fetched again: {old:#}"
    );
    let fresh = caps("fresh").await;
    assert_eq!(
        fresh["capabilities"]["copies_max"], 1,
        "left alone: {fresh:#}"
    );
}
