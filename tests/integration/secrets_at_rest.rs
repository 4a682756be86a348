//! Secrets at rest: printer secrets and webhook signing secrets are sealed in Postgres
//! (read back here with raw SQL), open for the calls that need them (a job prints through
//! the vendor simulator, a webhook delivery verifies), and `secrets rotate` re-seals every
//! row under the active key. Clear rows from before encryption keep working and are sealed
//! at the next start.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestApp, spawn_app_with, start_on};
use print_gateway::app::{Role, lianke_settings};
use print_gateway::backends::BackendRegistry;
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::config::Config;
use print_gateway::secrets_at_rest::Keyring;
use print_gateway::store::secrets::{Reseal, Resealed, reseal};
use serde_json::{Value, json};
use vendor_sim::{DEFAULT_LIANKE_API_KEY, LiankeDeviceSpec, Sim, SimConfig};

const DEVICE: &str = "lk-sealed-1";
const DEVICE_KEY: &str = "lk-device-key-plaintext-7c1e";
const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn lianke_config(sim: &Sim, keys: Option<&str>) -> impl Fn(&mut Config) + Clone + use<> {
    let sim_url = sim.base_url();
    let keys = keys.map(str::to_owned);
    move |c: &mut Config| {
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
        c.public_base_url = None;
        c.lianke.lianke_poll_interval_ms = 10;
        c.secrets.secrets_keys = keys.clone().map(secrecy::SecretString::from);
        c.secrets.secrets_active_key = None;
        c.webhooks.webhook_allow_http = true;
        c.webhooks.webhook_allow_private_urls = true;
    }
}

fn lianke_backends(configure: &impl Fn(&mut Config)) -> BackendRegistry {
    let mut probe = common::test_config("postgres://unused/unused");
    configure(&mut probe);
    let backend = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    BackendRegistry::new().with(Arc::new(backend))
}

async fn start(keys: Option<&str>) -> (Sim, TestApp) {
    let sim = Sim::start(SimConfig::default()).await.expect("simulator");
    sim.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    let configure = lianke_config(&sim, keys);
    let app = spawn_app_with(lianke_backends(&configure), Role::Api, configure).await;
    (sim, app)
}

async fn register(app: &TestApp, id: &str) {
    app.create_printer_with(json!({
        "id": id,
        "backend": "lianke",
        "locator": {"device_id": DEVICE, "device_port": 1, "printer_model": "HP LaserJet P1007"},
        "secrets": {"device_key": DEVICE_KEY},
    }))
    .await;
}

async fn stored_printer_secrets(app: &TestApp, id: &str) -> Value {
    sqlx::query_scalar("SELECT secrets FROM printers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("printer row")
}

async fn stored_endpoint_secret(app: &TestApp) -> (String, Option<String>) {
    sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints")
        .fetch_one(&app.pool)
        .await
        .expect("endpoint row")
}

async fn prints(app: &TestApp, printer: &str) {
    let job = app.submit_text(printer, "sealed at rest").await;
    let done = app
        .drive_until(
            job["id"].as_str().unwrap(),
            "completed",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(done["state"], "completed");
}

async fn create_endpoint(app: &TestApp) -> String {
    let key = app
        .key_for(
            "acme",
            &[
                "webhooks:admin",
                "jobs:read",
                "jobs:write",
                "printers:admin",
            ],
        )
        .await;
    let response = app
        .post_as(
            &key,
            "/v1/webhook-endpoints",
            &json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["secret"].as_str().unwrap().to_owned()
}

fn keyring(keys: &str, active: &str) -> Keyring {
    Keyring::parse(Some(keys), Some(active)).expect("keys")
}

#[tokio::test]
async fn registered_secrets_are_sealed_in_the_database_and_still_print() {
    let (_sim, app) = start(Some(K1)).await;
    register(&app, "lk-sealed").await;
    let stored = stored_printer_secrets(&app, "lk-sealed").await;
    let text = stored.to_string();
    assert!(
        !text.contains(DEVICE_KEY),
        "the device key is not in clear: {text}"
    );
    let value = stored["device_key"].as_str().expect("the name stays");
    assert!(value.starts_with("enc:v1:k1:"), "{value}");
    // The API still lists the secret by name only.
    let printer: Value = app
        .get("/v1/printers/lk-sealed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(printer["secrets_set"], json!(["device_key"]));
    assert!(!printer.to_string().contains("enc:v1"));

    let secret = create_endpoint(&app).await;
    let (sealed, previous) = stored_endpoint_secret(&app).await;
    assert!(sealed.starts_with("enc:v1:k1:"), "{sealed}");
    assert!(!sealed.contains(secret.trim_start_matches("whsec_")));
    assert_eq!(previous, None);

    prints(&app, "lk-sealed").await;

    // A PATCH that changes something else keeps the (sealed) key working.
    let response = app
        .patch(
            "/v1/printers/lk-sealed",
            &json!({"display_name": "renamed"}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(
        !stored_printer_secrets(&app, "lk-sealed")
            .await
            .to_string()
            .contains(DEVICE_KEY)
    );
    prints(&app, "lk-sealed").await;

    // A PATCH of the secrets is checked with the vendor in clear and stored sealed again;
    // a wrong key is refused (the vendor saw the clear value, not the sealed text).
    let response = app
        .patch(
            "/v1/printers/lk-sealed",
            &json!({"secrets": {"device_key": "not-the-device-key"}}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .patch(
            "/v1/printers/lk-sealed",
            &json!({"secrets": {"device_key": DEVICE_KEY}}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let stored = stored_printer_secrets(&app, "lk-sealed").await;
    let value = stored["device_key"].as_str().expect("the name stays");
    assert!(value.starts_with("enc:v1:k1:"), "{value}");
    assert!(!value.contains(DEVICE_KEY));
    assert_eq!(
        keyring(K1, "k1")
            .open_printer_secrets_json("lk-sealed", &stored)
            .expect("opens")["device_key"],
        DEVICE_KEY
    );
    prints(&app, "lk-sealed").await;
    app.shutdown().await;
}

#[tokio::test]
async fn rotation_reseals_every_row_under_the_active_key() {
    let both = format!("{K1},{K2}");
    // The gateway knows both keys and seals with k1 (the first).
    let (_sim, app) = start(Some(&both)).await;
    register(&app, "lk-a").await;
    register(&app, "lk-b").await;
    let signing = create_endpoint(&app).await;
    let key = app.key_for("acme", &["webhooks:admin"]).await;
    let id: String = sqlx::query_scalar("SELECT id::text FROM webhook_endpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let rotated = app
        .post_as(
            &key,
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), reqwest::StatusCode::OK);
    let before_a = stored_printer_secrets(&app, "lk-a").await;

    let done = reseal(&app.pool, &keyring(&both, "k2"), Reseal::All)
        .await
        .expect("rotate");
    assert_eq!(
        done,
        Resealed {
            printers: 2,
            webhook_endpoints: 1
        }
    );
    for id in ["lk-a", "lk-b"] {
        let value = stored_printer_secrets(&app, id).await["device_key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(value.starts_with("enc:v1:k2:"), "{id}: {value}");
    }
    assert_ne!(stored_printer_secrets(&app, "lk-a").await, before_a);
    let (secret, previous) = stored_endpoint_secret(&app).await;
    assert!(secret.starts_with("enc:v1:k2:"), "{secret}");
    assert!(previous.unwrap().starts_with("enc:v1:k2:"));
    // The values still open: the old signing secret is the one the create answer showed.
    let ring = keyring(&both, "k2");
    let uuid: uuid::Uuid = id.parse().unwrap();
    let (_, previous) = stored_endpoint_secret(&app).await;
    let opened = ring
        .open(
            &print_gateway::secrets_at_rest::endpoint_context(uuid),
            &previous.unwrap(),
        )
        .unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), signing);
    // A second run has nothing left to do.
    assert_eq!(
        reseal(&app.pool, &ring, Reseal::All).await.unwrap(),
        Resealed::default()
    );
    // Printing still works through the simulator with the re-sealed key.
    prints(&app, "lk-a").await;
    prints(&app, "lk-b").await;

    // Once the old key is dropped, a gateway with k2 alone still prints.
    let url = app.database_url.clone();
    let pool = app.pool.clone();
    app.shutdown().await;
    let sim2 = Sim::start(SimConfig::default()).await.unwrap();
    sim2.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    let configure = lianke_config(&sim2, Some(K2));
    let again = start_on(url, pool, lianke_backends(&configure), Role::Api, configure).await;
    prints(&again, "lk-a").await;
    again.shutdown().await;
}

#[tokio::test]
async fn the_rotate_command_reseals_with_the_active_key() {
    let (_sim, app) = start(Some(K1)).await;
    register(&app, "lk-cli").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_print-gateway"))
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &app.database_url)
        .env("SECRETS_KEYS", format!("{K1},{K2}"))
        .env("SECRETS_ACTIVE_KEY", "k2")
        .output()
        .await
        .expect("run secrets rotate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("re-sealed with key `k2`: 1 printers, 0 webhook endpoints"),
        "{stdout}"
    );
    assert!(!stdout.contains("MDEy") && !stderr.contains("MDEy"));
    let value = stored_printer_secrets(&app, "lk-cli").await["device_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(value.starts_with("enc:v1:k2:"), "{value}");

    // Without keys the command refuses, naming the variable.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_print-gateway"))
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &app.database_url)
        .env_remove("SECRETS_KEYS")
        .env_remove("SECRETS_ACTIVE_KEY")
        .output()
        .await
        .expect("run secrets rotate");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SECRETS_KEYS"));
    app.shutdown().await;
}

#[tokio::test]
async fn clear_rows_from_before_keep_working_and_are_sealed_at_the_next_start() {
    // A gateway without keys stores in clear (as every gateway did before this change).
    let (sim, app) = start(None).await;
    register(&app, "lk-old").await;
    create_endpoint(&app).await;
    let stored = stored_printer_secrets(&app, "lk-old").await;
    assert_eq!(stored["device_key"], DEVICE_KEY);
    assert!(stored_endpoint_secret(&app).await.0.starts_with("whsec_"));
    let (url, pool) = (app.database_url.clone(), app.pool.clone());
    app.shutdown().await;

    // The upgraded gateway starts with a key: the clear rows are sealed at start.
    let configure = lianke_config(&sim, Some(K1));
    let app = start_on(url, pool, lianke_backends(&configure), Role::Api, configure).await;
    let value = stored_printer_secrets(&app, "lk-old").await["device_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(value.starts_with("enc:v1:k1:"), "{value}");
    assert!(
        stored_endpoint_secret(&app)
            .await
            .0
            .starts_with("enc:v1:k1:")
    );
    prints(&app, "lk-old").await;

    // A clear value written behind the gateway's back still opens (read as it is).
    sqlx::query("UPDATE printers SET secrets = $2 WHERE id = $1")
        .bind("lk-old")
        .bind(json!({"device_key": DEVICE_KEY}))
        .execute(&app.pool)
        .await
        .unwrap();
    prints(&app, "lk-old").await;
    app.shutdown().await;
}
