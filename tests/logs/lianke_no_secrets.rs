//! Lianke secrets (the box's device key, the gateway's ApiKey) never reach a log line or an
//! API answer, even at trace level, though both travel on every Lianke call (query strings,
//! form fields, headers). Its own test binary: it installs the process-wide log subscriber.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{spawn_app_with, test_config};
use print_gateway::app::{Role, lianke_settings};
use print_gateway::backends::BackendRegistry;
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::config::Config;
use serde_json::json;
use vendor_sim::{LiankeDeviceSpec, LiankeOutcome, Sim, SimConfig};

const DEVICE_KEY: &str = "lk-device-key-7c2d9e41";
const API_KEY: &str = "lianke-api-key-0e5f8a93";

#[tokio::test]
async fn lianke_keys_never_appear_in_logs_or_answers() {
    let logs = common::logs::global();

    let sim = Sim::start(SimConfig {
        lianke_api_keys: vec![API_KEY.into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_lianke_device(LiankeDeviceSpec::new("lk-secret", DEVICE_KEY));
    sim.script_lianke_outcomes(
        "lk-secret",
        vec![LiankeOutcome::Failure {
            code: 500,
            msg: "x".into(),
        }],
    );
    let sim_url = sim.base_url();
    let configure = move |c: &mut Config| {
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(API_KEY.into());
        c.lianke.lianke_poll_interval_ms = 10;
    };
    let mut probe = test_config("postgres://unused/unused");
    configure(&mut probe);
    let backend = LiankeBackend::new(API_KEY.into(), lianke_settings(&probe)).unwrap();
    let app = spawn_app_with(
        BackendRegistry::new().with(Arc::new(backend)),
        Role::Api,
        configure,
    )
    .await;
    let created = app
        .create_printer_with(json!({"id": "office", "backend": "lianke",
            "locator": {"device_id": "lk-secret", "printer_model": "HP LaserJet P1007"},
            "secrets": {"device_key": DEVICE_KEY}}))
        .await;
    let mut answers = created.to_string();
    let failing = app.submit_text("office", "will fail").await;
    let working = app.submit_text("office", "will print").await;
    for (job, end) in [(&failing, "failed"), (&working, "completed")] {
        let id = job["id"].as_str().unwrap();
        app.drive_until(id, end, Duration::from_secs(10)).await;
        answers.push_str(
            &app.get(&format!("/v1/jobs/{id}/events"))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    for path in [
        "/v1/printers",
        "/v1/printers/office",
        "/v1/printers/office/status",
        "/v1/printers/office/capabilities",
        "/v1/jobs",
    ] {
        answers.push_str(&app.get(path).await.text().await.unwrap());
    }
    // A wrong key answered by Lianke: its error must not echo the key either.
    let wrong = app
        .post(
            "/v1/printers/discover",
            &json!({"backend": "lianke",
            "locator": {"device_id": "lk-secret"}, "secrets": {"device_key": "not-the-key"}}),
        )
        .await;
    answers.push_str(&wrong.text().await.unwrap());
    assert!(answers.contains("lk-secret"), "the answers were captured");
    for secret in [DEVICE_KEY, API_KEY] {
        assert!(!answers.contains(secret), "an API answer leaked {secret}");
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("lianke task accepted"),
        "the simulator's and gateway's logs were captured"
    );
    for secret in [DEVICE_KEY, API_KEY] {
        assert!(!text.contains(secret), "a log line leaked {secret}");
    }
    app.shutdown().await;
    sim.shutdown().await;
}
