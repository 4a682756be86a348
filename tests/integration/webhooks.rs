//! Outbound webhooks over real HTTP: a real axum receiver on a random port, the gateway's
//! delivery workers, and signatures checked by an implementation of the Standard Webhooks
//! spec written here from its text (not the gateway's own code).

use crate::common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use common::scripted::ScriptedBackend;
use common::{TestApp, assert_problem, spawn_app_with};
use hmac::{Hmac, Mac};
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

const ALL: [&str; 4] = [
    "jobs:write",
    "jobs:read",
    "printers:admin",
    "webhooks:admin",
];

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    r.log.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
    });
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    AxumStatus::from_u16(status).unwrap()
}

/// A receiver on a random port answering `statuses` first, then 200.
async fn start_receiver(statuses: &[u16]) -> (String, Receiver) {
    let receiver = Receiver::default();
    receiver.script.lock().unwrap().extend(statuses);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), receiver)
}

/// The Standard Webhooks check, from the spec's text: the secret is base64 after the
/// `whsec_` prefix; the signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the
/// signature is HMAC-SHA256 with the secret, base64-encoded, prefixed `v1,`; the header may
/// hold several space-delimited signatures, any one of which may match.
fn spec_signature(secret: &str, r: &Received) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", r.id, r.timestamp).as_bytes());
    mac.update(&r.body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn signed_by(secret: &str, r: &Received) -> bool {
    let expected = spec_signature(secret, r);
    r.signature.split(' ').any(|s| s == expected)
}

async fn app_with(tweak: impl FnOnce(&mut print_gateway::config::Config)) -> (TestApp, String) {
    let app = spawn_app_with(
        BackendRegistry::new().with(ScriptedBackend::new()),
        Role::Api,
        |config| {
            config.webhooks.webhook_allow_http = true;
            config.webhooks.webhook_allow_private_urls = true;
            config.webhooks.webhook_retry_schedule = "0ms,20ms,40ms".into();
            tweak(config);
        },
    )
    .await;
    app.create_printer("office", "scripted").await;
    let key = app.key_for("acme", &ALL).await;
    (app, key)
}

async fn create_endpoint(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app.post_as(key, "/v1/webhook-endpoints", &body).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap_or_default()
    );
    response.json().await.unwrap()
}

/// Runs the delivery workers until `done` holds (generous deadline, no fixed sleeps).
async fn deliver_until(app: &TestApp, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let outbox = app.app.as_ref().unwrap().outbox();
    loop {
        outbox.run_due_now().await.expect("deliveries run");
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn deliveries(app: &TestApp, key: &str, endpoint: &str) -> Vec<Value> {
    let response = app
        .get_as(key, &format!("/v1/webhook-endpoints/{endpoint}/deliveries"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_completed_job_is_delivered_once_as_a_signed_job_completed_event() {
    let (app, key) = app_with(|_| {}).await;
    let (url, receiver) = start_receiver(&[]).await;
    let endpoint = create_endpoint(
        &app,
        &key,
        json!({"url": url, "description": "billing", "event_types": ["job.completed"]}),
    )
    .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(
        key_bytes.len() >= 24,
        "the secret carries at least 24 bytes"
    );

    let job = app.submit_text("office", "hello").await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    app.drive_until(&job_id, "completed", Duration::from_secs(10))
        .await;
    deliver_until(&app, "the job.completed delivery", || {
        !receiver.received().is_empty()
    })
    .await;
    // Nothing else is due: exactly one delivery, and it is not sent again.
    let outbox = app.app.as_ref().unwrap().outbox();
    assert_eq!(outbox.run_due_now().await.unwrap(), 0);
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one delivery: {received:?}");
    let delivery = &received[0];
    assert!(signed_by(&secret, delivery), "the signature verifies");
    let body = delivery.json();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(
        body["id"],
        delivery.id.as_str(),
        "webhook-id is the event id"
    );
    assert_eq!(body["data"]["id"], job_id.as_str());
    assert_eq!(body["data"]["state"], "completed");
    assert_eq!(
        body["data"],
        app.job(&job_id).await,
        "the job as the API shows it"
    );
    assert_eq!(body["sequence"], 2, "processing was 1, completed is 2");
    let now = chrono::Utc::now().timestamp();
    let ts: i64 = delivery.timestamp.parse().unwrap();
    assert!((now - ts).abs() < 300, "webhook-timestamp is unix seconds");

    let log = deliveries(&app, &key, endpoint["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"][0]["status"], 200);

    // The feed has the same events, in order (once older transactions on the shared
    // server have ended).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let feed: Value = app.get_as(&key, "/v1/events").await.json().await.unwrap();
        let types: Vec<(String, i64)> = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["id"] == job_id.as_str())
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["sequence"].as_i64().unwrap(),
                )
            })
            .collect();
        if types.len() == 2 {
            assert_eq!(
                types,
                vec![
                    ("job.processing".to_owned(), 1),
                    ("job.completed".to_owned(), 2)
                ]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not show the job's events: {feed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_receiver_answering_500_twice_then_200_gets_three_attempts_on_the_schedule() {
    // Gaps of hours: the test moves each delivery's clock forward instead of waiting, and
    // checks the time the gateway set for the next attempt (not a measured duration).
    let (app, key) = app_with(|c| {
        c.webhooks.webhook_retry_schedule = "0ms,1h,2h,10h".into();
    })
    .await;
    let (url, receiver) = start_receiver(&[500, 500]).await;
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    let id = endpoint["id"].as_str().unwrap();
    let sent = app
        .post_as(
            &key,
            &format!("/v1/webhook-endpoints/{id}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: Value = sent.json().await.unwrap();
    let outbox = app.app.as_ref().unwrap().outbox();
    for (attempt, gap_secs) in [(1_usize, 3_600_i64), (2, 7_200)] {
        deliver_until(&app, "the next attempt", || {
            receiver.received().len() >= attempt
        })
        .await;
        let log = deliveries(&app, &key, id).await;
        assert_eq!(log[0]["state"], "pending", "{log:?}");
        assert_eq!(log[0]["attempt_count"], attempt);
        let at = |v: &Value| v.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
        let last = at(&log[0]["attempts"][attempt - 1]["at"]);
        let next = at(&log[0]["next_attempt_at"]);
        // The schedule's gap, with its ±20 % jitter.
        let gap = (next - last).num_seconds();
        assert!(
            (gap_secs * 8 / 10 - 1..=gap_secs * 12 / 10 + 1).contains(&gap),
            "attempt {attempt}: next in {gap} s, schedule says {gap_secs} s ± 20 %"
        );
        outbox.run_due_now().await.expect("deliveries run");
        assert_eq!(
            receiver.received().len(),
            attempt,
            "nothing before it is due"
        );
        let moved = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1 AND state = 'pending'",
        )
        .bind(log[0]["id"].as_i64().unwrap())
        .execute(&app.pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(moved, 1);
    }
    deliver_until(&app, "three attempts", || receiver.received().len() >= 3).await;
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(|r| r.id == received[0].id),
        "one message id throughout"
    );
    assert!(
        received
            .iter()
            .all(|r| signed_by(endpoint["secret"].as_str().unwrap(), r))
    );
    assert_eq!(received[0].json()["type"], "ping");

    let log = deliveries(&app, &key, id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["id"], sent["delivery_id"]);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempt_count"], 3);
    let statuses: Vec<i64> = log[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    app.shutdown().await;
}

#[tokio::test]
async fn a_receiver_down_for_the_whole_schedule_leaves_the_endpoint_failing_with_every_attempt_logged()
 {
    let (app, key) = app_with(|_| {}).await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!(endpoint["status"], "active");
    app.post_as(
        &key,
        &format!("/v1/webhook-endpoints/{id}/test"),
        &json!({}),
    )
    .await;
    let pool = app.pool.clone();
    let mut failed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !failed {
        app.app
            .as_ref()
            .unwrap()
            .outbox()
            .run_due_now()
            .await
            .unwrap();
        failed = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state = 'failed')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(Instant::now() < deadline, "the schedule did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = deliveries(&app, &key, &id).await;
    assert_eq!(log[0]["state"], "failed");
    assert_eq!(log[0]["attempt_count"], 3, "every attempt of the schedule");
    let attempts = log[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for attempt in attempts {
        assert!(attempt["status"].is_null());
        assert!(
            attempt["error"].as_str().unwrap().contains("connect"),
            "{attempt}"
        );
    }
    let now: Value = app
        .get_as(&key, &format!("/v1/webhook-endpoints/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["status"], "failing");
    assert!(now["failing_since"].is_string());
    assert_eq!(
        now["enabled"], true,
        "disabled only after WEBHOOK_DISABLE_AFTER_SECS"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_failing_longer_than_the_disable_time_is_disabled_and_a_manual_retry_works() {
    let (app, key) = app_with(|c| {
        c.webhooks.webhook_disable_after_secs = 0;
        c.webhooks.webhook_retry_schedule = "0ms".into();
    })
    .await;
    let (url, receiver) = start_receiver(&[503]).await;
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let sent: Value = app
        .post_as(
            &key,
            &format!("/v1/webhook-endpoints/{id}/test"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    deliver_until(&app, "the failed attempt", || {
        receiver.received().len() == 1
    })
    .await;
    let now: Value = app
        .get_as(&key, &format!("/v1/webhook-endpoints/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["status"], "disabled");
    assert_eq!(now["disabled_reason"], "failing");
    // Enabled again and retried by hand: the receiver now answers 200.
    let enabled = app
        .client
        .patch(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(&key)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    let retry = app
        .post_as(
            &key,
            &format!(
                "/v1/webhook-endpoints/{id}/deliveries/{}/retry",
                sent["delivery_id"]
            ),
            &json!({}),
        )
        .await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    deliver_until(&app, "the manual retry", || receiver.received().len() == 2).await;
    let log = deliveries(&app, &key, &id).await;
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_during_the_overlap_and_alone_after() {
    let (app, key) = app_with(|_| {}).await;
    let (url, receiver) = start_receiver(&[]).await;
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let rotated = app
        .post_as(
            &key,
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        until > chrono::Utc::now() + chrono::Duration::hours(23),
        "24 h by default"
    );

    app.post_as(
        &key,
        &format!("/v1/webhook-endpoints/{id}/test"),
        &json!({}),
    )
    .await;
    deliver_until(&app, "the first ping", || receiver.received().len() == 1).await;
    let during = &receiver.received()[0];
    assert_eq!(during.signature.split(' ').count(), 2);
    assert!(signed_by(&old, during) && signed_by(&new, during));

    // The overlap ends.
    sqlx::query("UPDATE webhook_endpoints SET previous_secret_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.post_as(
        &key,
        &format!("/v1/webhook-endpoints/{id}/test"),
        &json!({}),
    )
    .await;
    deliver_until(&app, "the second ping", || receiver.received().len() == 2).await;
    let after = &receiver.received()[1];
    assert_eq!(after.signature.split(' ').count(), 1);
    assert!(signed_by(&new, after));
    assert!(!signed_by(&old, after));
    app.shutdown().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_endpoints_or_events() {
    let (app, key) = app_with(|_| {}).await;
    let other_key = app.key_for("globex", &ALL).await;
    let (url, mine) = start_receiver(&[]).await;
    let (other_url, theirs) = start_receiver(&[]).await;
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    create_endpoint(&app, &other_key, json!({"url": other_url})).await;
    let id = endpoint["id"].as_str().unwrap();

    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/webhook-endpoints/{id}")),
        (
            reqwest::Method::PATCH,
            format!("/v1/webhook-endpoints/{id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/webhook-endpoints/{id}"),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/webhook-endpoints/{id}/deliveries"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{id}/test"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&other_key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed: Value = app
        .get_as(&other_key, "/v1/webhook-endpoints")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_ne!(listed["items"][0]["id"], endpoint["id"]);

    let job = app.submit_text("office", "acme only").await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    app.drive_until(&job_id, "completed", Duration::from_secs(10))
        .await;
    deliver_until(&app, "acme's events", || mine.received().len() >= 2).await;
    assert!(theirs.received().is_empty(), "globex got acme's events");
    let feed: Value = app
        .get_as(&other_key, "/v1/events")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["data"]["id"] != job_id.as_str()),
        "globex's feed shows acme's job"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn endpoint_input_is_checked() {
    let (app, key) = app_with(|c| {
        c.webhooks.webhook_allow_http = false;
        c.webhooks.webhook_allow_private_urls = false;
    })
    .await;
    let no_scope = app.key_for("acme", &["jobs:read", "jobs:write"]).await;
    let response = app
        .post_as(
            &no_scope,
            "/v1/webhook-endpoints",
            &json!({"url": "https://example.com/h"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    for (body, code) in [
        (
            json!({"url": "http://example.com/h"}),
            "invalid_webhook_url",
        ),
        (json!({"url": "ftp://example.com/h"}), "invalid_webhook_url"),
        (json!({"url": "not a url"}), "invalid_webhook_url"),
        (json!({"url": "https://127.0.0.1/h"}), "invalid_webhook_url"),
        (json!({"url": "https://10.0.0.8/h"}), "invalid_webhook_url"),
        (json!({"url": "https://[::1]/h"}), "invalid_webhook_url"),
        (
            json!({"url": "https://169.254.169.254/latest"}),
            "invalid_webhook_url",
        ),
        (json!({"url": "https://localhost/h"}), "invalid_webhook_url"),
        (
            json!({"url": "https://user:pw@example.com/h"}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "https://93.184.216.34/h", "event_types": ["job.exploded"]}),
            "unknown_event_type",
        ),
        (
            json!({"url": "https://93.184.216.34/h", "description": "x".repeat(501)}),
            "invalid_field",
        ),
    ] {
        let response = app.post_as(&key, "/v1/webhook-endpoints", &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let response = app
        .post_as(
            &key,
            "/v1/webhook-endpoints",
            &json!({"url": "https://93.184.216.34/h", "surprise": 1}),
        )
        .await;
    assert!(response.status().is_client_error());

    let created = create_endpoint(
        &app,
        &key,
        json!({"url": "https://93.184.216.34/hooks", "event_types": ["printer.offline"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let shown = app
        .get_as(&key, &format!("/v1/webhook-endpoints/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !shown.contains(secret) && !shown.contains("secret\""),
        "{shown}"
    );
    let response = app.get_as(&key, "/v1/events?cursor=garbage").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let response = app.get_as(&key, "/v1/events?type=job.nope").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    let response = app
        .get_as(
            &key,
            &format!("/v1/webhook-endpoints/{id}/deliveries?cursor=-4"),
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    app.shutdown().await;
}

#[tokio::test]
async fn printer_breaker_changes_are_events_without_secrets_and_the_feed_pages() {
    let (app, key) = app_with(|_| {}).await;
    app.create_printer_with(json!({
        "id": "secretive", "backend": "scripted", "locator": {"device": "secretive"},
        "secrets": {"device_key": "very-secret-device-key"}
    }))
    .await;
    let pool = &app.pool;
    let cooldown = Duration::from_secs(60);
    let threshold = app
        .app
        .as_ref()
        .unwrap()
        .engine()
        .settings()
        .breaker_threshold;
    for _ in 0..threshold + 1 {
        print_gateway::store::printers::record_failure(
            pool,
            "secretive",
            print_gateway::store::printers::Failure {
                code: "vendor_unavailable",
                vendor_code: None,
                message: "boom",
            },
            print_gateway::store::printers::BreakerEffect::Count {
                threshold,
                cooldown,
            },
        )
        .await
        .unwrap();
    }
    print_gateway::store::printers::record_success(pool, "secretive")
        .await
        .unwrap();
    print_gateway::store::printers::record_success(pool, "secretive")
        .await
        .unwrap();
    print_gateway::store::printers::save_online(pool, "secretive", Some(false))
        .await
        .unwrap();
    print_gateway::store::printers::save_online(pool, "secretive", Some(false))
        .await
        .unwrap();
    print_gateway::store::printers::save_online(pool, "secretive", Some(true))
        .await
        .unwrap();

    // The feed shows an event once every transaction older than it has ended (other
    // tests share the server): wait for all four, then read them page by page.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = app
            .get_as(&key, "/v1/events?type=printer.circuit_opened,printer.circuit_closed,printer.offline,printer.online")
            .await
            .json()
            .await
            .unwrap();
        if page["items"].as_array().unwrap().len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not show the events: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?type=printer.circuit_opened,printer.circuit_closed,printer.offline,printer.online&limit=1&cursor={c}"),
            None => "/v1/events?type=printer.circuit_opened,printer.circuit_closed,printer.offline,printer.online&limit=1".into(),
        };
        let response = app.get_as(&key, &path).await;
        let text = response.text().await.unwrap();
        assert!(!text.contains("very-secret-device-key"));
        let page: Value = serde_json::from_str(&text).unwrap();
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            assert_eq!(
                page["next_cursor"].as_str(),
                cursor.as_deref(),
                "an empty page keeps the cursor"
            );
            break;
        }
        seen.push(items[0].clone());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "printer.circuit_opened",
            "printer.circuit_closed",
            "printer.offline",
            "printer.online"
        ]
    );
    assert_eq!(seen[0]["data"]["health"]["circuit"], "open");
    assert_eq!(seen[0]["data"]["secrets_set"], json!(["device_key"]));
    assert_eq!(seen[1]["data"]["health"]["circuit"], "closed");
    assert_eq!(seen[2]["data"]["health"]["online"], false);
    let sequences: Vec<i64> = seen
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_operator_resolve_sends_the_outcome_and_job_resolved() {
    let backend = ScriptedBackend::new();
    let app = spawn_app_with(
        BackendRegistry::new().with(backend.clone()),
        Role::Api,
        |config| {
            config.webhooks.webhook_allow_http = true;
            config.webhooks.webhook_allow_private_urls = true;
        },
    )
    .await;
    app.create_printer("office", "scripted").await;
    let key = app.key_for("acme", &ALL).await;
    let (url, receiver) = start_receiver(&[]).await;
    let endpoint = create_endpoint(&app, &key, json!({"url": url})).await;
    backend.script("office", [common::scripted::Step::LoseRequest]);
    let job = app.submit_text("office", "lost on the way").await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.run_engine().await;
    assert_eq!(app.job(&id).await["state"], "unconfirmed");
    let resolved = app
        .post_as(
            &key,
            &format!("/v1/jobs/{id}/resolve"),
            &json!({"outcome": "printed", "note": "seen in the tray"}),
        )
        .await;
    assert_eq!(resolved.status(), StatusCode::OK);
    deliver_until(&app, "three events", || receiver.received().len() >= 3).await;
    let mut events: Vec<Value> = receiver.received().iter().map(Received::json).collect();
    events.sort_by_key(|e| e["sequence"].as_i64());
    let seen: Vec<(&str, i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["sequence"].as_i64().unwrap(),
                e["data"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("job.unconfirmed", 1, "unconfirmed"),
            ("job.completed", 2, "completed"),
            ("job.resolved", 3, "completed"),
        ]
    );
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| signed_by(endpoint["secret"].as_str().unwrap(), r))
    );
    app.shutdown().await;
}
