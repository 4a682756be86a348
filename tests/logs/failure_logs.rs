//! Operators' log lines: exactly one WARN per job failure, unconfirmed submit, breaker
//! change and printer going offline or online, with job, printer, backend and codes; job
//! work in a span with its id; JSON lines carry the request id; no secret ever.

use crate::common;

use std::time::Duration;

use common::logs::Captured;
use common::scripted::{ScriptedBackend, Step, permanent, transient};
use common::spawn_app_with;
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use serde_json::{Value, json};

const SECRET: &str = "device-key-91f0a7c3e2";

fn logs() -> Captured {
    common::logs::global()
}

/// The WARN lines whose `message` is `message` and whose fields match `field = value`.
fn warns(logs: &Captured, message: &str, field: &str, value: &str) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["level"] == "WARN" && line["message"] == message && line[field] == value
        })
        .collect()
}

async fn wait_for_lines(logs: &Captured, message: &str, field: &str, value: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = warns(logs, message, field, value);
        if !found.is_empty() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WARN {message:?} with {field}={value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_job_failure_an_unconfirmed_submit_and_a_breaker_opening_each_log_one_warn_line() {
    let logs = logs();
    let backend = ScriptedBackend::named("logged");
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::Api,
        |c| {
            c.breaker_threshold = 2;
            c.retry_base_ms = 1;
            c.retry_max_ms = 2;
        },
    )
    .await;
    app.create_printer_with(json!({"id": "log-refusing", "backend": "logged", "locator": {"device": "d-ref"}, "secrets": {"device_key": SECRET}}))
        .await;
    app.create_printer_with(json!({"id": "log-breaking", "backend": "logged", "locator": {"device": "d-brk"}, "secrets": {"device_key": SECRET}}))
        .await;
    app.create_printer_with(
        json!({"id": "log-lossy", "backend": "logged", "locator": {"device": "d-lossy"}}),
    )
    .await;

    // A failure.
    backend.script("log-refusing", [Step::Fail(permanent())]);
    let failing = app.submit_text("log-refusing", "refused").await;
    let failing_id = failing["id"].as_str().unwrap();
    app.drive_until(failing_id, "failed", Duration::from_secs(10))
        .await;
    let lines = wait_for_lines(&logs, "job failed", "job_id", failing_id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(line["printer_id"], "log-refusing");
    assert_eq!(line["backend"], "logged");
    assert_eq!(line["code"], "printer_auth_failed");
    assert_eq!(line["vendor_code"], "404");
    assert_eq!(
        line["span"]["job_id"], failing_id,
        "the job's work runs in a span carrying its id"
    );

    // An unconfirmed submit.
    backend.script("log-lossy", [Step::LoseRequest]);
    let lost = app.submit_text("log-lossy", "lost").await;
    let lost_id = lost["id"].as_str().unwrap();
    app.drive_until(lost_id, "unconfirmed", Duration::from_secs(10))
        .await;
    let lines = wait_for_lines(
        &logs,
        "job unconfirmed: the submit's outcome is unknown; it will not be sent again",
        "job_id",
        lost_id,
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["printer_id"], "log-lossy");
    assert_eq!(lines[0]["backend"], "logged");

    // A breaker opening, once, although more failures follow.
    backend.always("log-breaking", Step::Fail(transient()));
    app.submit_text("log-breaking", "a").await;
    app.submit_text("log-breaking", "b").await;
    for _ in 0..6 {
        app.run_engine().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines = wait_for_lines(
        &logs,
        "circuit breaker opened",
        "printer_id",
        "log-breaking",
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["backend"], "logged");
    assert_eq!(lines[0]["code"], "vendor_unavailable");
    assert_eq!(lines[0]["vendor_code"], "503");
    assert!(
        lines[0]["reopen_at"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    assert!(
        !logs.text().contains(SECRET),
        "a log line leaked a printer secret"
    );
}

#[tokio::test]
async fn a_printer_going_offline_and_back_logs_one_warn_line_each() {
    let logs = logs();
    let backend = ScriptedBackend::named("watched");
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::Api,
        |_| {},
    )
    .await;
    app.create_printer_with(json!({"id": "log-watched", "backend": "watched", "locator": {"device": "d-w"}, "secrets": {"device_key": SECRET}}))
        .await;
    let check = || async {
        let response = app.get("/v1/printers/log-watched/status").await;
        assert_eq!(response.status(), 200);
    };
    check().await;
    backend.set_online("log-watched", Some(false));
    check().await;
    check().await;
    let offline = wait_for_lines(&logs, "printer offline", "printer_id", "log-watched").await;
    assert_eq!(
        offline.len(),
        1,
        "one line per change, not per check: {offline:#?}"
    );
    assert_eq!(offline[0]["backend"], "watched");
    backend.set_online("log-watched", Some(true));
    check().await;
    check().await;
    let back = wait_for_lines(&logs, "printer back online", "printer_id", "log-watched").await;
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(!logs.text().contains(SECRET));
}

#[tokio::test]
async fn json_lines_logged_during_a_request_carry_its_request_id() {
    let logs = logs();
    let app = spawn_app_with(BackendRegistry::new(), Role::Api, |_| {}).await;
    let response = app
        .client
        .post(app.url(&format!(
            "/webhooks/lianke/{}?token=forged",
            uuid::Uuid::now_v7()
        )))
        .header("x-request-id", "req-7c1e-forged")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let lines: Vec<Value> = logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "Lianke callback with a wrong token refused")
        .filter(|line| line["span"]["request_id"] == "req-7c1e-forged")
        .collect();
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(
        !logs.text().contains('\u{1b}'),
        "no colour codes in JSON lines"
    );
}
