//! The WeCom test world: the simulator with a WeCom model and device, the gateway with a
//! scripted target printer, and helpers to seed, push, print and count. Shared by the WeCom
//! integration tests and the WeCom no-secrets test in the log-capturing binary.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scripted::ScriptedBackend;
use super::{TestApp, spawn_app_with};
use print_gateway::app::Role;
use print_gateway::backends::BackendRegistry;
use print_gateway::config::Config;
use print_gateway::service::sources::WecomBridge;
use print_gateway::store;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use vendor_sim::wecom::crypto as sim_crypto;
use vendor_sim::{
    LedgerFilter, Sim, SimConfig, Vendor, WecomDeviceSpec, WecomJobSeed, WecomModelSpec,
    WecomPushConfig, WecomSetting,
};

pub const MODEL: &str = "model-1";
pub const MODEL_SECRET: &str = "model-secret-value";
pub const TICKET: &str = "ticket-value-1";
pub const SN: &str = "wecom-sn-1";
pub const DEVICE_SECRET: &str = "device-secret-value";
pub const CALLBACK_TOKEN: &str = "callback-token";
pub const TARGET: &str = "office";
pub const WECOM_PRINTER: &str = "wecom-1";

pub const LIST: &str = "/cgi-bin/openhw/device/get_printer_job_list";
pub const DOWNLOAD_URL: &str = "/cgi-bin/openhw/device/get_printer_job_download_url";
pub const REPORT: &str = "/cgi-bin/openhw/device/report_printer_job_status";

pub struct World {
    pub sim: Sim,
    pub app: TestApp,
    pub target: Arc<ScriptedBackend>,
    pub aes_key: String,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Push {
    Off,
    On,
}

pub fn wecom_config(config: &mut Config, sim: &Sim, push: Push, aes_key: &str) {
    config.wecom.wecom_base_url = sim.base_url();
    config.wecom.wecom_model_id = Some(MODEL.into());
    config.wecom.wecom_model_secret = Some(SecretString::from(MODEL_SECRET));
    config.wecom.wecom_model_ticket = Some(SecretString::from(TICKET));
    // Pulls only when a test asks (`sync_now`), unless it says otherwise.
    config.wecom.wecom_sync_interval_secs = 0;
    config.wecom.wecom_tenant = "acme".into();
    config.wecom.wecom_rate_limit_pause_secs = 1;
    if push == Push::On {
        config.wecom.wecom_callback_token = Some(SecretString::from(CALLBACK_TOKEN));
        config.wecom.wecom_callback_aes_key = Some(SecretString::from(aes_key));
    }
}

pub async fn world(role: Role, push: Push, tweak: impl FnOnce(&mut Config)) -> World {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    sim.add_wecom_model(WecomModelSpec {
        model_id: MODEL.into(),
        model_secret: MODEL_SECRET.into(),
        model_ticket: TICKET.into(),
    });
    sim.add_wecom_device(WecomDeviceSpec {
        model_id: MODEL.into(),
        device_sn: SN.into(),
        device_secret: DEVICE_SECRET.into(),
    });
    let aes_key = sim_crypto::new_encoding_aes_key();
    let target = ScriptedBackend::named("scripted");
    let registry = BackendRegistry::new().with(target.clone());
    let app = spawn_app_with(registry, role, |config| {
        wecom_config(config, &sim, push, &aes_key);
        tweak(config);
    })
    .await;
    if push == Push::On {
        sim.set_wecom_push(Some(WecomPushConfig {
            url: app.url("/webhooks/wecom"),
            token: CALLBACK_TOKEN.into(),
            encoding_aes_key: aes_key.clone(),
            receive_id: MODEL.into(),
        }));
    }
    // No capabilities cached: WeCom's settings reach the job's options as asked.
    app.create_unverified_printer(
        json!({"id": TARGET, "backend": "scripted", "locator": {"device": TARGET}}),
    )
    .await;
    World {
        sim,
        app,
        target,
        aes_key,
    }
}

impl World {
    pub async fn add_wecom_printer(&self, users: &[&str], with_secret: bool) -> Value {
        let mut body = json!({
            "id": WECOM_PRINTER,
            "backend": "wecom",
            "locator": {"device_sn": SN, "open_userids": users, "target_printer_id": TARGET},
        });
        if with_secret {
            body["secrets"] = json!({"device_secret": DEVICE_SECRET});
        }
        self.app.create_printer_with(body).await
    }

    pub fn bridge(&self) -> Arc<WecomBridge> {
        Arc::clone(
            self.app
                .app
                .as_ref()
                .expect("running")
                .wecom()
                .expect("WeCom is configured"),
        )
    }

    pub fn seed(&self, user: &str, name: &str, content: &[u8]) -> String {
        let mut seed = WecomJobSeed::new(SN, user, name, content);
        seed.setting_list.push(WecomSetting {
            key: "份数".into(),
            value: vec!["2".into()],
        });
        self.sim.seed_wecom_job(seed).expect("seeded")
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.sim
            .ledger_count(&LedgerFilter::vendor(Vendor::Wecom).endpoint("POST", endpoint))
    }

    /// Token calls WeCom answered with a token (a refused call is not a refresh).
    pub fn tokens_issued(&self, endpoint: &str) -> usize {
        self.sim
            .ledger_filtered(&LedgerFilter::vendor(Vendor::Wecom).endpoint("POST", endpoint))
            .iter()
            .filter(|e| e.http_status == Some(200) && e.vendor_code.unwrap_or(0) == 0)
            .count()
    }

    pub fn count_for(&self, endpoint: &str, jobid: &str) -> usize {
        self.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Wecom)
                .endpoint("POST", endpoint)
                .field("jobid", jobid),
        )
    }

    /// The gateway job imported for a WeCom jobid.
    pub async fn job_of(&self, jobid: &str) -> Option<Uuid> {
        store::wecom::get_job(&self.app.pool, jobid)
            .await
            .expect("query")
            .map(|row| row.job_id)
    }

    /// Runs the engine (and the reporter) until every imported job has finished.
    pub async fn print_everything(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.app.run_engine().await;
            let live: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE source = 'wecom' AND state IN ('pending','processing','unconfirmed')",
            )
            .fetch_one(&self.app.pool)
            .await
            .expect("count");
            if live == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{live} jobs did not finish");
            tokio::time::sleep(Duration::from_millis(35)).await;
        }
        self.bridge().report_now().await.expect("reports");
    }

    /// Waits until the simulator delivered `n` pushes that the gateway answered 200.
    pub async fn pushes_delivered(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = self
                .sim
                .callbacks()
                .iter()
                .filter(|c| c.http_status == Some(200))
                .count();
            if ok >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {ok} of {n} pushes delivered"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wecom_jobs(&self, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/jobs?source=wecom&limit=200{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self.app.get(&path).await.json().await.expect("page");
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }

    /// Posts a push the way WeCom does, signed with `token` and encrypted with `key`.
    pub async fn post_push(&self, message: &Value, token: &str, key: &str) -> reqwest::Response {
        let key = sim_crypto::aes_key(key).expect("key");
        let encrypt = sim_crypto::encrypt_message(&key, message.to_string().as_bytes(), MODEL);
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = sim_crypto::msg_signature(token, &timestamp, "nonce1", &encrypt);
        self.app
            .client
            .post(self.app.url(&format!(
                "/webhooks/wecom?msg_signature={signature}&timestamp={timestamp}&nonce=nonce1"
            )))
            .json(&json!({"tousername": MODEL, "encrypt": encrypt}))
            .send()
            .await
            .expect("POST")
    }

    pub async fn inbox_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM wecom_inbox")
            .fetch_one(&self.app.pool)
            .await
            .expect("count")
    }
}

pub fn pdf(n: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..n).map(|i| (i * 7 % 256) as u8));
    bytes
}
