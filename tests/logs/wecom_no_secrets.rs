//! WeCom's secrets never reach a log line or an API answer.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::wecom_world::*;
use print_gateway::app::Role;

/// WeCom's secrets (model secret, ticket, device secret, callback token and AES key, and the
/// tokens WeCom hands out) never reach a log line or an API answer. The log sink is
/// process-wide, so this also watches every other test of this binary running meanwhile.
#[tokio::test]
async fn wecom_secrets_never_appear_in_logs_or_answers() {
    let logs = common::logs::global();
    let w = world(Role::All, Push::On, |_| {}).await;
    let created = w.add_wecom_printer(&["erin"], true).await;
    let jobid = w.seed("erin", "secret-check.pdf", &pdf(64));
    let started = Instant::now();
    let job_id = loop {
        if let Some(id) = w.job_of(&jobid).await {
            break id;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not imported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    w.app
        .drive_until(&job_id.to_string(), "completed", Duration::from_secs(10))
        .await;
    w.bridge().sync_now().await.expect("sync");
    w.bridge().report_now().await.expect("reports");

    let mut answers = created.to_string();
    for path in [
        "/v1/printers".to_owned(),
        format!("/v1/printers/{WECOM_PRINTER}"),
        "/v1/jobs?source=wecom".to_owned(),
        format!("/v1/jobs/{job_id}/events"),
    ] {
        answers.push_str(&w.app.get(&path).await.text().await.unwrap());
    }
    let text = logs.text();
    assert!(text.contains("wecom"), "WeCom activity was logged");
    for secret in [
        MODEL_SECRET,
        TICKET,
        DEVICE_SECRET,
        CALLBACK_TOKEN,
        w.aes_key.as_str(),
    ] {
        assert!(!answers.contains(secret), "an API answer leaked {secret}");
        assert!(!text.contains(secret), "a log line leaked {secret}");
    }
    // Tokens travel in query strings: no logged URL may carry one.
    assert!(
        !text.contains("access_token="),
        "a log line carried a token-bearing URL"
    );
}
