//! Printer secrets never reach a log line, an error or an API answer, even at trace level.

use crate::common;

use std::time::Duration;

use common::scripted::{ScriptedBackend, Step, permanent};
use common::spawn_app;
use print_gateway::backends::BackendRegistry;
use serde_json::json;

const SECRET: &str = "device-key-5b1e0c77aa";

#[tokio::test]
async fn printer_secrets_never_appear_in_logs_or_answers() {
    let logs = common::logs::global();

    let backend = ScriptedBackend::new();
    let app = spawn_app(BackendRegistry::new().with(backend.clone())).await;
    let created = app
        .create_printer_with(json!({"id": "office", "backend": "scripted", "locator": {"device": "box"}, "secrets": {"device_key": SECRET}}))
        .await;
    backend.script("office", [Step::Fail(permanent())]);
    let failing = app.submit_text("office", "will fail").await;
    let working = app.submit_text("office", "will print").await;
    for job in [&failing, &working] {
        let id = job["id"].as_str().unwrap();
        for _ in 0..50 {
            app.run_engine().await;
            if ["failed", "completed"].contains(&app.job(id).await["state"].as_str().unwrap()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut answers = created.to_string();
    for path in ["/v1/printers", "/v1/printers/office", "/v1/jobs"] {
        answers.push_str(&app.get(path).await.text().await.unwrap());
    }
    for job in [&failing, &working] {
        answers.push_str(
            &app.get(&format!("/v1/jobs/{}/events", job["id"].as_str().unwrap()))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(!answers.contains(SECRET), "an API answer leaked the secret");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("scripted submit") && text.contains("Secrets([redacted])"),
        "the backend's log line with the printer was captured"
    );
    assert!(!text.contains(SECRET), "a log line leaked the secret");
}
