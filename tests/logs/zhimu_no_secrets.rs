//! The Zhimu AppKey and app tokens never appear in a log line, an error or an API answer,
//! even at trace level and through a token rejection. (Its own test binary: it installs
//! the process-wide log subscriber.)

use crate::common;

use std::time::Duration;

use common::spawn_app_with;
use print_gateway::app::{self, Role};
use print_gateway::backends::BackendRegistry;
use print_gateway::config::Config;
use serde_json::{Value, json};
use vendor_sim::{Sim, SimConfig, ZhimuAppSpec, ZhimuShareSpec};

const APP_KEY: &str = "zhimu-appkey-c0ffee5ecret";

/// Every 32-hex-digit word of `text` (the simulator's tokens look like that).
fn hex_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 32)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_app_key_and_tokens_never_appear_in_logs_or_answers() {
    let logs = common::logs::global();

    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.add_zhimu_app(ZhimuAppSpec {
        appid: "secret-test-app".into(),
        appkey: APP_KEY.into(),
    });
    sim.add_zhimu_share(ZhimuShareSpec::new("830487711", "2598", "pkDgrqeA", "P1"));
    let mut config = Config::defaults();
    config.zhimu.zhimu_base_url = sim.base_url();
    config.zhimu.zhimu_app_id = Some("secret-test-app".into());
    config.zhimu.zhimu_app_key = Some(APP_KEY.into());
    config.zhimu.zhimu_poll_first_ms = 20;
    config.zhimu.zhimu_poll_every_ms = 20;
    let zhimu = app::zhimu_backend(&config).unwrap().unwrap();
    let app = spawn_app_with(BackendRegistry::new().with(zhimu), Role::Api, |c| {
        c.zhimu = config.zhimu.clone();
    })
    .await;

    let mut answers = String::new();
    let bound = app
        .post(
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": "830487711", "password": "2598"}),
        )
        .await;
    let bound: Value = bound.json().await.unwrap();
    answers.push_str(&bound.to_string());
    app.create_printer_with(
        json!({"id": "office", "backend": "zhimu", "locator": bound["locator"]}),
    )
    .await;
    sim.expire_zhimu_tokens();
    let job = app.submit_text("office", "hello").await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.drive_until(&id, "completed", Duration::from_secs(10))
        .await;
    for path in [
        "/v1/printers".to_owned(),
        "/v1/printers/office/capabilities".to_owned(),
        "/v1/backends/zhimu/printers".to_owned(),
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/events"),
    ] {
        answers.push_str(&app.get(&path).await.text().await.unwrap());
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("rejected the app token"),
        "the token rejection was logged"
    );
    for (what, haystack) in [("answers", &answers), ("logs", &text)] {
        assert!(!haystack.contains(APP_KEY), "the AppKey leaked in {what}");
        // Any 32-hex word that Zhimu accepts as a token is a leaked token.
        for word in hex_words(haystack) {
            let probe: Value = reqwest::Client::new()
                .post(format!("{}/openapi/control/queryPrinters", sim.base_url()))
                .header("Api-Access-Token", &word)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_ne!(probe["success"], true, "a live token leaked in {what}");
        }
    }
}
