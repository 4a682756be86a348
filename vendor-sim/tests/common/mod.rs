//! Shared set-up for the simulator's conformance tests: a started simulator, a Lianke
//! form-data submit helper and a small axum receiver for callbacks and pushes.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use vendor_sim::{DEFAULT_LIANKE_API_KEY, LiankeDeviceSpec, Sim, SimConfig};

pub const DEVICE: &str = "lk-test-1";
pub const DEVICE_KEY: &str = "lk-secret-key";

pub async fn start(config: SimConfig) -> Sim {
    let sim = Sim::start(config).await.expect("simulator starts");
    sim.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    sim
}

pub async fn sim() -> Sim {
    start(SimConfig::default()).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The documented basic submit: deviceId, deviceKey, devicePort, jobFile (file), dmPaperSize,
/// jpAutoScale, plus `extra` text fields.
pub fn job_form(file: &[u8], extra: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .text("deviceId", DEVICE)
        .text("deviceKey", DEVICE_KEY)
        .text("devicePort", "1")
        .part(
            "jobFile",
            reqwest::multipart::Part::bytes(file.to_vec()).file_name("doc.pdf"),
        )
        .text("dmPaperSize", "9")
        .text("jpAutoScale", "4");
    for (k, v) in extra {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    form
}

pub async fn lianke_submit(sim: &Sim, form: reqwest::multipart::Form) -> Value {
    client()
        .post(format!("{}/api/print/job", sim.base_url()))
        .header("ApiKey", DEFAULT_LIANKE_API_KEY)
        .multipart(form)
        .send()
        .await
        .expect("submit sent")
        .json()
        .await
        .expect("json reply")
}

pub async fn lianke_get(sim: &Sim, path_and_query: &str) -> Value {
    client()
        .get(format!("{}{path_and_query}", sim.base_url()))
        .header("ApiKey", DEFAULT_LIANKE_API_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json reply")
}

pub async fn lianke_post_json(sim: &Sim, path: &str, body: Value) -> Value {
    client()
        .post(format!("{}{path}", sim.base_url()))
        .header("ApiKey", DEFAULT_LIANKE_API_KEY)
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json reply")
}

pub async fn task_state(sim: &Sim, task_id: &str) -> Value {
    lianke_get(
        sim,
        &format!(
            "/api/print/job?deviceId={DEVICE}&deviceKey={DEVICE_KEY}&devicePort=1&task_id={task_id}"
        ),
    )
    .await
}

/// Polls the task until it reaches a terminal state (or panics after 5 s).
pub async fn wait_terminal(sim: &Sim, task_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = task_state(sim, task_id).await;
        let state = v["data"]["task_state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if ["SUCCESS", "FAILURE", "REVOKED"].contains(&state.as_str()) {
            return v;
        }
        assert!(Instant::now() < deadline, "task {task_id} stuck in {state}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One request seen by a [`Receiver`].
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub query: String,
    pub body: Bytes,
}

/// An HTTP receiver answering the scripted statuses in order, then 200.
pub struct Receiver {
    pub url: String,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        while self.hits().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.hits()
    }
}

#[derive(Clone)]
struct RecvState {
    hits: Arc<Mutex<Vec<Hit>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

async fn record(State(s): State<RecvState>, RawQuery(q): RawQuery, body: Bytes) -> StatusCode {
    s.hits.lock().expect("lock").push(Hit {
        at: Instant::now(),
        query: q.unwrap_or_default(),
        body,
    });
    let mut statuses = s.statuses.lock().expect("lock");
    let code = if statuses.is_empty() {
        200
    } else {
        statuses.remove(0)
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

pub async fn receiver(statuses: Vec<u16>) -> Receiver {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = RecvState {
        hits: Arc::clone(&hits),
        statuses: Arc::new(Mutex::new(statuses)),
    };
    let app = Router::new().route("/hook", post(record)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        hits,
    }
}
