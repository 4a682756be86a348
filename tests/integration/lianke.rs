//! The Lianke backend end to end: gateway ↔ vendor simulator over real HTTP(S), real
//! Postgres, one fresh database per test. Jobs are driven deterministically with
//! `run_engine`; callbacks arrive on their own, as Lianke sends them, and are applied when
//! the engine runs (the webhook only records them).

use crate::common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{TestApp, assert_problem, spawn_app_with, test_config};
use print_gateway::app::{Role, lianke_settings};
use print_gateway::backends::BackendRegistry;
use print_gateway::backends::lianke::LiankeBackend;
use print_gateway::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vendor_sim::{
    CallbackFault, CallbackMischief, DEFAULT_LIANKE_API_KEY, FaultAction, FaultRule, LedgerFilter,
    LiankeDeviceSpec, LiankeOutcome, Sim, SimConfig, Vendor,
};

const DEVICE: &str = "lk-test-1";
const DEVICE_KEY: &str = "lk-device-key-9f3a";
const MODEL: &str = "HP LaserJet P1007";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF\n";

/// How a test's gateway reaches Lianke and gets results back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Results {
    /// Plain-http callbacks (allowed for tests); polling only as a slow fallback.
    Callbacks,
    /// No callback URL; polling every 10 ms.
    Polling,
    /// The gateway serves HTTPS with a self-signed certificate; Lianke calls back over TLS.
    TlsCallbacks,
}

struct Lianke {
    sim: Sim,
    app: TestApp,
    _tls_dir: Option<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Writes a fresh self-signed certificate for 127.0.0.1/localhost.
fn self_signed() -> TempDir {
    let dir = std::env::temp_dir().join(format!("pgw-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate a certificate");
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).expect("write key");
    TempDir(dir)
}

async fn start(results: Results, tweak: impl Fn(&mut Config) + Clone) -> Lianke {
    start_as(results, Role::Api, tweak).await
}

/// [`start`] with the gateway in `role` (`Role::All` runs the engine's loops itself).
async fn start_as(results: Results, role: Role, tweak: impl Fn(&mut Config) + Clone) -> Lianke {
    let sim = Sim::start(SimConfig::default()).await.expect("simulator");
    sim.add_lianke_device(LiankeDeviceSpec::new(DEVICE, DEVICE_KEY));
    let tls_dir = (results == Results::TlsCallbacks).then(self_signed);
    let port = free_port();
    let sim_url = sim.base_url();
    let tls_paths = tls_dir
        .as_ref()
        .map(|d| (d.0.join("cert.pem"), d.0.join("key.pem")));
    let configure = move |c: &mut Config| {
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
        c.device_wait_retry_secs = 1;
        match results {
            Results::Callbacks => {
                c.public_base_url = Some(format!("http://127.0.0.1:{port}"));
                c.bind_addr = format!("127.0.0.1:{port}").parse().expect("addr");
                c.lianke.lianke_allow_http_callback = true;
                c.lianke.lianke_callback_wait_ms = 60_000;
                c.lianke.lianke_poll_interval_ms = 60_000;
            }
            Results::Polling => {
                c.public_base_url = None;
                c.lianke.lianke_poll_interval_ms = 10;
            }
            Results::TlsCallbacks => {
                c.public_base_url = Some(format!("https://127.0.0.1:{port}"));
                c.bind_addr = format!("127.0.0.1:{port}").parse().expect("addr");
                let (cert, key) = tls_paths.clone().expect("tls files");
                c.tls_cert_path = Some(cert);
                c.tls_key_path = Some(key);
                c.lianke.lianke_callback_wait_ms = 60_000;
                c.lianke.lianke_poll_interval_ms = 60_000;
            }
        }
        tweak(c);
    };
    let mut probe = test_config("postgres://unused/unused");
    configure(&mut probe);
    let backend = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    let mut app = spawn_app_with(
        BackendRegistry::new().with(Arc::new(backend)),
        role,
        configure,
    )
    .await;
    app.client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    Lianke {
        sim,
        app,
        _tls_dir: tls_dir,
    }
}

impl Lianke {
    async fn printer(&self, id: &str, device: &str) -> Value {
        self.app
            .create_printer_with(json!({
                "id": id,
                "backend": "lianke",
                "locator": {"device_id": device, "device_port": 1, "printer_model": MODEL},
                "secrets": {"device_key": DEVICE_KEY},
            }))
            .await
    }

    fn submits(&self, device: &str) -> usize {
        self.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Lianke)
                .endpoint("POST", "/api/print/job")
                .field("deviceId", device),
        )
    }

    /// Runs the engine until the job's `state_reason` is `reason` (20 s at most).
    async fn drive_until_reason(&self, job: &str, reason: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.app.run_engine().await;
            let now = self.app.job(job).await;
            if now["state_reason"] == reason {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job} never got reason {reason}: {now:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn submit_entries(&self) -> Vec<vendor_sim::LedgerEntry> {
        self.sim.ledger_filtered(
            &LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/job"),
        )
    }

    /// The simulator's callback attempts, once there is one (it records an attempt after
    /// the receiver's answer reached it, which can be after the job moved).
    async fn callbacks(&self) -> Vec<vendor_sim::CallbackAttempt> {
        for _ in 0..200 {
            let attempts = self.sim.callbacks();
            if !attempts.is_empty() {
                return attempts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Vec::new()
    }

    async fn stop(self) {
        self.app.shutdown().await;
        self.sim.shutdown().await;
    }
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_owned()
}

#[tokio::test]
async fn submits_carry_the_documented_form_fields_for_every_document_kind() {
    let lk = start(Results::Callbacks, |_| {}).await;
    lk.printer("office", DEVICE).await;
    // Capabilities were fetched from Lianke when the printer was registered, and cached.
    let caps = lk.app.get("/v1/printers/office/capabilities").await;
    assert_eq!(caps.status(), StatusCode::OK);
    let caps: Value = caps.json().await.unwrap();
    assert_eq!(caps["source"], "cache");
    let a5 = caps["capabilities"]["papers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "A5")
        .cloned()
        .unwrap();
    assert_eq!(a5["id"], "11");
    assert_eq!(a5["width_mm"], 148.0);
    let cached: Value = lk
        .app
        .get("/v1/printers/office/capabilities")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cached["source"], "cache");

    let options = json!({
        "copies": 2, "paper": "A5", "orientation": "landscape", "color": "monochrome",
        "sides": "two_sided_short_edge", "page_ranges": "1-3,5", "scale": {"mode": "fit_width"},
        "tray": "纸盘 1", "vendor_options": {"jpAutoAlign": "z5", "pdfRev": 1}
    });
    let url_job = lk
        .app
        .submit(json!({"printer_id": "office",
        "document": {"url": "https://files.example.com/report.pdf"}, "options": options}))
        .await;
    let b64_job = lk.app.submit(json!({"printer_id": "office",
        "document": {"base64": base64::engine::general_purpose::STANDARD.encode(PDF), "filename": "scan"},
        "options": {"paper": {"width_mm": 80, "height_mm": 200}}})).await;
    let text_job = lk.app.submit_text("office", "hello <world>").await;
    let html_job = lk
        .app
        .submit(json!({"printer_id": "office",
        "document": {"html": "<h1>Hi</h1>", "filename": "page.html"}}))
        .await;
    for job in [&url_job, &b64_job, &text_job, &html_job] {
        lk.app
            .drive_until(&id(job), "completed", Duration::from_secs(10))
            .await;
    }
    let entries = lk.submit_entries();
    assert_eq!(entries.len(), 4, "one submit per job");
    let f = |i: usize, k: &str| entries[i].field(k).map(str::to_owned);

    // Every submit: the device, the ApiKey header, the callback with this job's token.
    for (i, job) in [&url_job, &b64_job, &text_job, &html_job]
        .iter()
        .enumerate()
    {
        assert_eq!(f(i, "deviceId").as_deref(), Some(DEVICE));
        assert!(f(i, "deviceKey").is_some());
        assert_eq!(f(i, "devicePort").as_deref(), Some("1"));
        assert_eq!(f(i, "printerModel").as_deref(), Some(MODEL));
        assert!(
            f(i, "header.ApiKey").is_some(),
            "ApiKey header on every call"
        );
        assert_eq!(f(i, "reportPrinterStatus").as_deref(), Some("1"));
        let callback = f(i, "callbackUrl").unwrap();
        assert!(
            callback.contains(&format!("/webhooks/lianke/{}?token=", id(job))),
            "{callback}"
        );
    }
    // URL document: jobFile as text, urlFileExt, and every neutral option mapped.
    assert_eq!(
        f(0, "jobFile").as_deref(),
        Some("https://files.example.com/report.pdf")
    );
    assert_eq!(f(0, "urlFileExt").as_deref(), Some(".pdf"));
    assert!(entries[0].files.is_empty());
    for (k, v) in [
        ("dmPaperSize", "11"),
        ("dmCopies", "2"),
        ("dmOrientation", "2"),
        ("dmColor", "1"),
        ("dmDuplex", "3"),
        ("jpPageRange", "1-3,5"),
        ("jpScale", "fitw"),
        ("dmDefaultSource", "1"),
        ("jpAutoAlign", "z5"),
        ("pdfRev", "1"),
    ] {
        assert_eq!(f(0, k).as_deref(), Some(v), "{k}");
    }
    // Base64 PDF: a file part named with its extension; custom paper in 0.1 mm.
    assert_eq!(entries[1].files[0].field, "jobFile");
    assert_eq!(entries[1].files[0].file_name.as_deref(), Some("scan.pdf"));
    assert_eq!(entries[1].files[0].size, PDF.len());
    assert_eq!(f(1, "dmPaperSize").as_deref(), Some("0"));
    assert_eq!(f(1, "dmPaperWidth").as_deref(), Some("800"));
    assert_eq!(f(1, "dmPaperLength").as_deref(), Some("2000"));
    assert_eq!(f(1, "jpScale").as_deref(), Some("fit"));
    assert_eq!(f(1, "urlFileExt"), None);
    // Text and HTML go as .html files (Lianke would take bare text for a link).
    assert_eq!(
        entries[2].files[0].file_name.as_deref(),
        Some("document.html")
    );
    assert_eq!(entries[3].files[0].file_name.as_deref(), Some("page.html"));
    assert_eq!(f(2, "dmPaperSize").as_deref(), Some("9"), "no paper: A4");
    lk.stop().await;
}

#[tokio::test]
async fn vendor_options_outside_the_allow_list_are_refused_with_422() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.printer("office", DEVICE).await;
    for bad in [
        json!({"deviceKey": "x"}),
        json!({"callbackUrl": "https://x"}),
        json!({"jpAutoAlign": "z0"}),
    ] {
        let response = lk
            .app
            .post(
                "/v1/jobs",
                &json!({"printer_id": "office",
            "document": {"text": "x"}, "options": {"vendor_options": bad}}),
            )
            .await;
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_option",
        )
        .await;
    }
    assert_eq!(lk.submits(DEVICE), 0);
    lk.stop().await;
}

#[tokio::test]
async fn a_callback_completes_the_job_without_polling() {
    let lk = start(Results::Callbacks, |_| {}).await;
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "callback me").await;
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["vendor_status"], "SUCCESS");
    let polls = lk
        .sim
        .ledger_count(&LedgerFilter::vendor(Vendor::Lianke).endpoint("GET", "/api/print/job"));
    assert_eq!(polls, 1, "only the callback's confirmation asked Lianke");
    let events = lk.app.events(&id(&job)).await;
    let last = events.last().unwrap();
    assert_eq!(last["source"], "callback");
    assert_eq!(last["to_state"], "completed");
    assert_eq!(
        last["vendor_payload"]["callback"]["task_id"],
        done["vendor_task_id"]
    );
    assert_eq!(lk.submits(DEVICE), 1);
    lk.stop().await;
}

#[tokio::test]
async fn polling_completes_the_job_when_callbacks_are_dropped() {
    let lk = start(Results::Callbacks, |c| {
        c.lianke.lianke_callback_wait_ms = 50;
        c.lianke.lianke_poll_interval_ms = 20;
    })
    .await;
    lk.sim.add_callback_fault(CallbackFault {
        vendor: Some(Vendor::Lianke),
        mischief: CallbackMischief::Drop,
        times: 1,
    });
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "no callback").await;
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["vendor_status"], "SUCCESS");
    let events = lk.app.events(&id(&job)).await;
    assert_eq!(events.last().unwrap()["source"], "poller");
    assert_eq!(
        lk.callbacks().await[0].error.as_deref(),
        Some("dropped by fault")
    );
    assert_eq!(lk.submits(DEVICE), 1);
    lk.stop().await;
}

#[tokio::test]
async fn a_failed_print_surfaces_liankes_code_and_message() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim.script_lianke_outcomes(
        DEVICE,
        vec![
            LiankeOutcome::PrintError {
                code: 502,
                msg: "转换文件格式失败".into(),
            },
            LiankeOutcome::Failure {
                code: 500,
                msg: "设备连接异常".into(),
            },
        ],
    );
    lk.printer("office", DEVICE).await;
    let a = lk.app.submit_text("office", "a").await;
    let failed = lk
        .app
        .drive_until(&id(&a), "failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["error"]["code"], "vendor_rejected");
    assert_eq!(failed["error"]["vendor_code"], "502");
    assert_eq!(failed["error"]["vendor_message"], "转换文件格式失败");
    assert_eq!(
        failed["vendor_status"], "SUCCESS",
        "SUCCESS with task_result 502 is a failure"
    );
    let b = lk.app.submit_text("office", "b").await;
    let failed = lk
        .app
        .drive_until(&id(&b), "failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["error"]["vendor_code"], "500");
    assert_eq!(failed["vendor_status"], "FAILURE");
    lk.stop().await;
}

#[tokio::test]
async fn cancel_revokes_the_task_at_lianke() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "cancel me").await;
    let processing = lk
        .app
        .drive_until(&id(&job), "processing", Duration::from_secs(10))
        .await;
    let task = processing["vendor_task_id"].as_str().unwrap().to_owned();
    let response = lk
        .app
        .post(&format!("/v1/jobs/{}/cancel", id(&job)), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let canceled = lk
        .app
        .drive_until(&id(&job), "canceled", Duration::from_secs(10))
        .await;
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(
        lk.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Lianke)
                .endpoint("DELETE", "/api/print/job")
                .field("task_id", &task)
        ),
        1
    );
    assert_eq!(
        lk.sim.lianke_task(&task).unwrap().state,
        vendor_sim::LiankeTaskState::Revoked
    );
    lk.stop().await;
}

/// `POST /v1/printers/{id}/flush-queue` is Lianke `flush_jobs`: the documented JSON body
/// (deviceId, deviceKey, devicePort as a number), queued tasks revoked, and their jobs end
/// `canceled` as the gateway learns of it.
#[tokio::test]
async fn flush_queue_calls_flush_jobs_and_the_queued_jobs_end_canceled() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let mut tasks = Vec::new();
    let mut jobs = Vec::new();
    for text in ["queued one", "queued two"] {
        let job = lk.app.submit_text("office", text).await;
        let processing = lk
            .app
            .drive_until(&id(&job), "processing", Duration::from_secs(10))
            .await;
        tasks.push(processing["vendor_task_id"].as_str().unwrap().to_owned());
        jobs.push(id(&job));
    }
    let response = lk
        .app
        .post("/v1/printers/office/flush-queue", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["action"], "flush_queue");
    assert_eq!(body["vendor_data"]["queue_num"], 2, "{body}");
    let calls = lk.sim.ledger_filtered(
        &LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/flush_jobs"),
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].field("deviceId"), Some(DEVICE));
    assert_eq!(calls[0].field("devicePort"), Some("1"));
    assert!(calls[0].field("deviceKey").is_some(), "{:?}", calls[0]);
    for (job, task) in jobs.iter().zip(&tasks) {
        assert_eq!(
            lk.sim.lianke_task(task).unwrap().state,
            vendor_sim::LiankeTaskState::Revoked
        );
        let canceled = lk
            .app
            .drive_until(job, "canceled", Duration::from_secs(10))
            .await;
        assert_eq!(canceled["state"], "canceled");
    }
    lk.stop().await;
}

#[tokio::test]
async fn an_offline_box_holds_the_job_until_it_comes_back() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim.set_lianke_online(DEVICE, Some(false));
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "wait for me").await;
    lk.app.run_engine().await;
    let waiting = lk.app.job(&id(&job)).await;
    assert_eq!(waiting["state"], "pending");
    assert_eq!(waiting["state_reason"], "waiting_for_device");
    assert_eq!(waiting["error"]["code"], "device_offline");
    assert_eq!(waiting["error"]["vendor_code"], "5002");
    lk.sim.set_lianke_online(DEVICE, Some(true));
    lk.app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(
        lk.sim.ledger_count(
            &LedgerFilter::vendor(Vendor::Lianke)
                .endpoint("POST", "/api/print/job")
                .field("deviceId", DEVICE)
        ),
        2,
        "one refused, one accepted"
    );
    assert_eq!(lk.sim.lianke_tasks().len(), 1);
    lk.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_long_before_liankes_30_failure_lock() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim.script_lianke_outcomes(
        DEVICE,
        (0..20)
            .map(|i| LiankeOutcome::Failure {
                code: 503,
                msg: format!("fail {i}"),
            })
            .collect(),
    );
    lk.printer("office", DEVICE).await;
    let mut jobs = Vec::new();
    for i in 0..8 {
        let job = id(&lk.app.submit_text("office", &format!("job {i}")).await);
        // Each job to its end (or, once the breaker is open, until it is plainly held).
        for _ in 0..50 {
            lk.app.run_engine().await;
            let state = lk.app.job(&job).await["state"].clone();
            if state == "failed" || (i >= 5 && state == "pending") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        jobs.push(job);
    }
    let mut states = Vec::new();
    for job in &jobs {
        states.push(lk.app.job(job).await["state"].clone());
    }
    // BREAKER_THRESHOLD (5) failed tasks open the breaker; later jobs are held.
    assert_eq!(
        states[..5],
        [
            json!("failed"),
            json!("failed"),
            json!("failed"),
            json!("failed"),
            json!("failed")
        ]
    );
    assert_eq!(
        states[5..],
        [json!("pending"), json!("pending"), json!("pending")]
    );
    let printer: Value = lk
        .app
        .get("/v1/printers/office")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(printer["health"]["circuit"], "open", "{printer:#}");
    assert_eq!(lk.submits(DEVICE), 5);
    assert_eq!(lk.sim.lianke_consecutive_failures(DEVICE), Some(5));
    lk.stop().await;
}

#[tokio::test]
async fn suspension_11203_opens_the_breaker_leaves_other_printers_alone_and_reset_lifts_it() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.sim
        .add_lianke_device(LiankeDeviceSpec::new("lk-other", DEVICE_KEY));
    lk.printer("office", DEVICE).await;
    lk.printer("other", "lk-other").await;
    // One failed task on the box (so Lianke has something to reset), then the suspension.
    lk.sim.script_lianke_outcomes(
        DEVICE,
        vec![LiankeOutcome::Failure {
            code: 503,
            msg: "x".into(),
        }],
    );
    let first = lk.app.submit_text("office", "fails").await;
    lk.app
        .drive_until(&id(&first), "failed", Duration::from_secs(10))
        .await;
    lk.sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 11203,
            msg: None,
        })
        .vendor(Vendor::Lianke)
        .endpoint("POST", "/api/print/job")
        .device(DEVICE)
        .times(1),
    );
    let held = lk.app.submit_text("office", "held").await;
    lk.app.run_engine().await;
    let job = lk.app.job(&id(&held)).await;
    assert_eq!(job["state"], "pending");
    assert_eq!(job["error"]["code"], "device_suspended");
    assert_eq!(job["error"]["vendor_code"], "11203");
    let printer: Value = lk
        .app
        .get("/v1/printers/office")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(printer["health"]["circuit"], "open");
    // Other printers print on.
    let elsewhere = lk.app.submit_text("other", "unaffected").await;
    lk.app
        .drive_until(&id(&elsewhere), "completed", Duration::from_secs(10))
        .await;
    // Nothing more reaches the suspended box while the breaker is open.
    lk.app.run_engine().await;
    assert_eq!(lk.submits(DEVICE), 2);

    let reset = lk
        .app
        .post("/v1/printers/office/reset-error-limit", &json!({}))
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    let reset: Value = reset.json().await.unwrap();
    assert_eq!(reset["jobs_resumed"], 1);
    let printer: Value = lk
        .app
        .get("/v1/printers/office")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(printer["health"]["circuit"], "closed");
    lk.app
        .drive_until(&id(&held), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(lk.submits(DEVICE), 3);
    // Nothing left to reset: Lianke 11201 → 409.
    let again = lk
        .app
        .post("/v1/printers/office/reset-error-limit", &json!({}))
        .await;
    let problem = assert_problem(again, StatusCode::CONFLICT, "vendor_rejected").await;
    assert!(problem["detail"].as_str().unwrap().contains("11201"));
    lk.stop().await;
}

#[tokio::test]
async fn a_hung_submit_becomes_unconfirmed_and_is_reconciled_without_a_resubmit() {
    let lk = start(Results::Polling, |c| {
        c.vendor_timeout_secs = 1;
        c.lease_secs = 5;
    })
    .await;
    lk.sim.add_fault(
        FaultRule::new(FaultAction::HangAfter)
            .vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "hung").await;
    lk.app.run_engine().await;
    let unconfirmed = lk.app.job(&id(&job)).await;
    assert_eq!(unconfirmed["state"], "unconfirmed", "{unconfirmed:#}");
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(20))
        .await;
    let task = lk.sim.lianke_tasks().pop().unwrap();
    assert_eq!(
        done["vendor_task_id"],
        task.task_id.as_str(),
        "found the task the hung submit made"
    );
    assert_eq!(lk.submits(DEVICE), 1, "never resubmitted");
    lk.stop().await;
}

#[tokio::test]
async fn a_lost_submit_is_never_confirmed_with_the_previous_jobs_task() {
    let lk = start(Results::Polling, |c| {
        c.vendor_timeout_secs = 1;
        c.lease_secs = 5;
        c.reconcile_every_secs = 1;
        c.unconfirmed_give_up_secs = 3;
    })
    .await;
    lk.printer("office", DEVICE).await;
    // B reaches Lianke; right after, A's submit is lost before Lianke sees it.
    let b = lk.app.submit_text("office", "b").await;
    lk.app.run_engine().await;
    let b_task = lk.app.job(&id(&b)).await["vendor_task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    lk.sim.add_fault(
        FaultRule::new(FaultAction::Hang)
            .vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    let a = lk.app.submit_text("office", "a").await;
    lk.app.run_engine().await;
    assert_eq!(lk.app.job(&id(&a)).await["state"], "unconfirmed");
    // B's task sits in A's time window, but it is B's: A must not take it. With nothing
    // found, A is not guessed either way: it waits for an operator.
    let waiting = lk.drive_until_reason(&id(&a), "awaiting_operator").await;
    assert_eq!(waiting["state"], "unconfirmed");
    assert!(waiting["vendor_task_id"].is_null(), "{waiting:#}");
    assert_eq!(lk.app.job(&id(&b)).await["vendor_task_id"], b_task.as_str());
    lk.stop().await;
}

/// The issue's deterministic repro: A's submit is answered 502 without a task; B's submit
/// creates a task and hangs. B's task must never become A's.
#[tokio::test]
async fn a_502_submit_never_takes_the_next_jobs_task_and_the_next_job_keeps_its_own() {
    let lk = start(Results::Polling, |c| {
        c.vendor_timeout_secs = 1;
        c.lease_secs = 5;
        c.reconcile_every_secs = 1;
        c.unconfirmed_give_up_secs = 3;
        c.device_hold_after_unknown_secs = 1;
    })
    .await;
    lk.printer("office", DEVICE).await;
    lk.sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 502 })
            .vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    let a = lk.app.submit_text("office", "a").await;
    lk.app.run_engine().await;
    assert_eq!(lk.app.job(&id(&a)).await["state"], "unconfirmed");
    lk.sim.add_fault(
        FaultRule::new(FaultAction::HangAfter)
            .vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    let b = lk.app.submit_text("office", "b").await;
    lk.app.run_engine().await;
    // B waits while A's outcome is unknown: nothing new reaches the box.
    let held = lk.app.job(&id(&b)).await;
    assert_eq!(held["state"], "pending", "{held:#}");
    assert_eq!(held["state_reason"], "device_held_unknown_outcome");
    assert_eq!(lk.submits(DEVICE), 1);

    let done = lk
        .app
        .drive_until(&id(&b), "completed", Duration::from_secs(30))
        .await;
    let tasks = lk.sim.lianke_tasks();
    assert_eq!(tasks.len(), 1, "only B's submit created a task");
    assert_eq!(
        done["vendor_task_id"],
        tasks[0].task_id.as_str(),
        "B has its own task"
    );
    assert_eq!(lk.submits(DEVICE), 2, "nothing was sent twice");

    let a_now = lk.drive_until_reason(&id(&a), "awaiting_operator").await;
    assert_eq!(
        a_now["state"], "unconfirmed",
        "A is never completed with B's task"
    );
    assert!(a_now["vendor_task_id"].is_null(), "{a_now:#}");

    // An operator who checked the tray settles A.
    let resolved = lk
        .app
        .post(
            &format!("/v1/jobs/{}/resolve", id(&a)),
            &json!({"outcome": "not_printed", "note": "tray empty"}),
        )
        .await;
    assert_eq!(resolved.status(), StatusCode::OK);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["state"], "failed");
    assert_eq!(resolved["error"]["code"], "operator_not_printed");
    lk.stop().await;
}

/// SPEC §4 outcome classes for Lianke's `POST /api/print/job`, each row against the
/// simulator: a request that never arrived is sent again; one whose fate is unknown never is.
#[tokio::test]
async fn lianke_submit_failures_follow_the_outcome_class_table() {
    let lk = start(Results::Polling, |c| {
        c.vendor_timeout_secs = 1;
        c.lease_secs = 5;
        c.retry_base_ms = 1000;
        c.retry_max_ms = 1000;
    })
    .await;
    let rows: Vec<(FaultAction, &str)> = vec![
        (FaultAction::HttpStatusAfter { status: 502 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 500 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 503 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 504 }, "unconfirmed"),
        (FaultAction::HangAfter, "unconfirmed"),
        (FaultAction::HttpStatus { status: 429 }, "pending"),
        (FaultAction::HttpStatus { status: 413 }, "pending"),
        (
            FaultAction::VendorError {
                code: 10009,
                msg: None,
            },
            "pending",
        ),
    ];
    // One device per row, so that each unknown outcome holds only its own box.
    for (n, (fault, expected)) in rows.into_iter().enumerate() {
        let device = format!("lk-class-{n}");
        lk.sim
            .add_lianke_device(LiankeDeviceSpec::new(&device, DEVICE_KEY));
        let printer = format!("p{n}");
        lk.printer(&printer, &device).await;
        lk.sim.add_fault(
            FaultRule::new(fault.clone())
                .vendor(Vendor::Lianke)
                .endpoint("POST", "/api/print/job")
                .device(&device)
                .times(1),
        );
        let job = id(&lk.app.submit_text(&printer, &format!("{fault:?}")).await);
        lk.app.run_engine().await;
        let now = lk.app.job(&job).await;
        assert_eq!(now["state"], expected, "{fault:?}: {now:#}");
        if expected == "pending" {
            lk.app
                .drive_until(&job, "completed", Duration::from_secs(20))
                .await;
            assert_eq!(lk.submits(&device), 2, "{fault:?}: sent again once");
        } else {
            assert_eq!(lk.submits(&device), 1, "{fault:?}: never sent again");
        }
    }
    lk.stop().await;
}

#[tokio::test]
async fn discovery_lists_the_boxs_printers_ready_to_register() {
    let lk = start(Results::Polling, |_| {}).await;
    let response = lk
        .app
        .post(
            "/v1/printers/discover",
            &json!({"backend": "lianke",
        "locator": {"device_id": DEVICE}, "secrets": {"device_key": DEVICE_KEY}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let found: Value = response.json().await.unwrap();
    let first = &found["items"][0];
    assert_eq!(
        first["locator"],
        json!({"device_id": DEVICE, "device_port": 1, "printer_model": MODEL})
    );
    assert_eq!(first["live_status"], true);
    let text = found.to_string();
    assert!(!text.contains(DEVICE_KEY));
    let wrong = lk
        .app
        .post(
            "/v1/printers/discover",
            &json!({"backend": "lianke",
        "locator": {"device_id": DEVICE}, "secrets": {"device_key": "wrong"}}),
        )
        .await;
    assert_problem(
        wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "vendor_auth_failed",
    )
    .await;
    let reader = lk.app.key_for("acme", &["jobs:read"]).await;
    let forbidden = lk
        .app
        .post_as(
            &reader,
            "/v1/printers/discover",
            &json!({"backend": "lianke",
        "locator": {"device_id": DEVICE}, "secrets": {"device_key": DEVICE_KEY}}),
        )
        .await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    lk.stop().await;
}

#[tokio::test]
async fn live_status_reports_the_box_and_the_printer() {
    let lk = start(Results::Polling, |_| {}).await;
    lk.printer("office", DEVICE).await;
    let status: Value = lk
        .app
        .get("/v1/printers/office/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"]["online"], true);
    assert_eq!(status["status"]["ready"], true);
    lk.sim.set_lianke_online(DEVICE, Some(false));
    let status: Value = lk
        .app
        .get("/v1/printers/office/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"]["online"], false);
    assert_eq!(status["status"]["conditions"], json!(["device_offline"]));
    lk.stop().await;
}

#[tokio::test]
async fn printer_answers_never_contain_the_device_key() {
    let lk = start(Results::Polling, |_| {}).await;
    let created = lk.printer("office", DEVICE).await;
    assert_eq!(created["secrets_set"], json!(["device_key"]));
    let job = lk.app.submit_text("office", "x").await;
    lk.app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    for path in [
        "/v1/printers",
        "/v1/printers/office",
        "/v1/printers/office/status",
        &format!("/v1/jobs/{}", id(&job)),
        &format!("/v1/jobs/{}/events", id(&job)),
    ] {
        let body = lk.app.get(path).await.text().await.unwrap();
        assert!(!body.contains(DEVICE_KEY), "{path}");
        assert!(!body.contains(DEFAULT_LIANKE_API_KEY), "{path}");
    }
    lk.stop().await;
}

// ---------------------------------------------------------------------------------------
// The webhook, over real TLS with a self-signed certificate

async fn completed_over_tls() -> (Lianke, Value) {
    let lk = start(Results::TlsCallbacks, |_| {}).await;
    assert!(lk.app.base_url.starts_with("https://"));
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "over tls").await;
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    (lk, done)
}

fn callback_url(lk: &Lianke, job: &Value) -> String {
    lk.sim
        .lianke_task(job["vendor_task_id"].as_str().unwrap())
        .and_then(|t| t.callback_url)
        .expect("the task's callbackUrl")
}

fn body_for(task: &str, device: &str, state: &str, code: i64) -> Value {
    json!({"device_id": device, "task_id": task, "task_state": state,
        "create_time": "2026-11-23 10:00:00", "finish_time": "2026-11-23 10:00:05",
        "task_result": {"code": code, "msg": "m"}})
}

#[tokio::test]
async fn a_callback_over_tls_completes_the_job() {
    let (lk, done) = completed_over_tls().await;
    let mut attempts = lk.callbacks().await;
    for _ in 0..200 {
        if attempts.iter().any(|a| a.http_status == Some(200)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        attempts = lk.sim.callbacks();
    }
    assert!(attempts.iter().all(|a| a.url.starts_with("https://")));
    // A first delivery may meet a submit not yet recorded (503: Lianke retries); the
    // delivery that settles the job gets 200.
    assert_eq!(
        attempts.last().and_then(|a| a.http_status),
        Some(200),
        "{attempts:#?}"
    );
    assert!(attempts.len() <= 3);
    assert_eq!(done["vendor_status"], "SUCCESS");
    lk.stop().await;
}

/// A callback on the job's own URL is evidence of its task even while the submit's answer
/// is still awaited: it is applied (not refused with 503), and the lost answer changes
/// nothing afterwards.
#[tokio::test]
async fn a_callback_during_a_hung_submit_settles_the_job_with_its_own_task() {
    let lk = start(Results::Callbacks, |c| {
        c.vendor_timeout_secs = 3;
        c.lease_secs = 10;
    })
    .await;
    lk.printer("office", DEVICE).await;
    lk.sim.add_fault(
        FaultRule::new(FaultAction::HangAfter)
            .vendor(Vendor::Lianke)
            .endpoint("POST", "/api/print/job")
            .times(1),
    );
    let job = lk.app.submit_text("office", "hung but called back").await;
    // The submit hangs until the vendor timeout; Lianke's callback arrives meanwhile.
    lk.app.run_engine().await;
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    let tasks = lk.sim.lianke_tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(done["vendor_task_id"], tasks[0].task_id.as_str());
    let attempts = lk.sim.callbacks();
    assert_eq!(
        attempts.first().and_then(|a| a.http_status),
        Some(200),
        "the first delivery was taken: {attempts:#?}"
    );
    assert_eq!(lk.submits(DEVICE), 1);
    let sources: Vec<String> = lk
        .app
        .events(&id(&job))
        .await
        .iter()
        .filter(|e| e["to_state"] == "processing")
        .map(|e| e["source"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sources, vec!["callback"], "the callback confirmed the task");
    lk.stop().await;
}

#[tokio::test]
async fn a_forged_callback_changes_nothing() {
    let lk = start(Results::TlsCallbacks, |_| {}).await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "forged").await;
    let processing = lk
        .app
        .drive_until(&id(&job), "processing", Duration::from_secs(10))
        .await;
    let task = processing["vendor_task_id"].as_str().unwrap();
    let events_before = lk.app.events(&id(&job)).await.len();
    let body = body_for(task, DEVICE, "SUCCESS", 200);
    for token in ["", "?token=00", "?token=zz", "?token=deadbeef"] {
        let url = lk.app.url(&format!("/webhooks/lianke/{}{token}", id(&job)));
        let response = lk.app.client.post(url).json(&body).send().await.unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let still = lk.app.job(&id(&job)).await;
    assert_eq!(still["state"], "processing");
    assert_eq!(lk.app.events(&id(&job)).await.len(), events_before);
    lk.stop().await;
}

#[tokio::test]
async fn a_callback_for_an_unknown_job_is_404() {
    let (lk, done) = completed_over_tls().await;
    let url = callback_url(&lk, &done);
    let token = url.split("token=").nth(1).unwrap();
    let other = uuid::Uuid::now_v7();
    let body = body_for(
        done["vendor_task_id"].as_str().unwrap(),
        DEVICE,
        "SUCCESS",
        200,
    );
    // A garbage job id is unknown; another job's id with this token is forged.
    let garbage = lk
        .app
        .client
        .post(
            lk.app
                .url(&format!("/webhooks/lianke/not-a-job?token={token}")),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(garbage, StatusCode::NOT_FOUND, "unknown_job").await;
    let forged = lk
        .app
        .client
        .post(
            lk.app
                .url(&format!("/webhooks/lianke/{other}?token={token}")),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(forged, StatusCode::UNAUTHORIZED, "unauthorized").await;
    lk.stop().await;
}

#[tokio::test]
async fn a_callback_replayed_for_another_job_is_refused() {
    let (lk, done) = completed_over_tls().await;
    lk.sim.set_lianke_paused(DEVICE, true);
    let second = lk.app.submit_text("office", "second").await;
    let second = lk
        .app
        .drive_until(&id(&second), "processing", Duration::from_secs(10))
        .await;
    let before = lk.app.events(&id(&second)).await.len();
    // The first job's body sent to the second job's (valid) URL.
    let url = callback_url(&lk, &second);
    let body = body_for(
        done["vendor_task_id"].as_str().unwrap(),
        DEVICE,
        "SUCCESS",
        200,
    );
    let response = lk.app.client.post(&url).json(&body).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "callback_mismatch").await;
    assert_eq!(lk.app.job(&id(&second)).await["state"], "processing");
    assert_eq!(lk.app.events(&id(&second)).await.len(), before);
    lk.stop().await;
}

#[tokio::test]
async fn a_callback_naming_another_device_is_refused() {
    let lk = start(Results::TlsCallbacks, |_| {}).await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "x").await;
    let processing = lk
        .app
        .drive_until(&id(&job), "processing", Duration::from_secs(10))
        .await;
    let url = callback_url(&lk, &processing);
    let body = body_for(
        processing["vendor_task_id"].as_str().unwrap(),
        "lk-someone-else",
        "SUCCESS",
        200,
    );
    let response = lk.app.client.post(&url).json(&body).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "callback_mismatch").await;
    assert_eq!(lk.app.job(&id(&job)).await["state"], "processing");
    lk.stop().await;
}

#[tokio::test]
async fn a_duplicated_callback_is_answered_200_and_recorded_once() {
    let (lk, done) = completed_over_tls().await;
    let before = lk.app.events(&id(&done)).await;
    let url = callback_url(&lk, &done);
    let body = body_for(
        done["vendor_task_id"].as_str().unwrap(),
        DEVICE,
        "SUCCESS",
        200,
    );
    for _ in 0..3 {
        let response = lk.app.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let ack: Value = response.json().await.unwrap();
        assert_eq!(ack["status"], "duplicate");
    }
    assert_eq!(lk.app.events(&id(&done)).await.len(), before.len());
    let callbacks: Vec<_> = before
        .iter()
        .filter(|e| e["source"] == "callback")
        .collect();
    assert_eq!(callbacks.len(), 1);
    lk.stop().await;
}

#[tokio::test]
async fn out_of_order_callbacks_never_move_a_job_backward() {
    let (lk, done) = completed_over_tls().await;
    let url = callback_url(&lk, &done);
    let task = done["vendor_task_id"].as_str().unwrap();
    for (state, code) in [("SENDING", 200), ("READY", 200), ("FAILURE", 500)] {
        let response = lk
            .app
            .client
            .post(&url)
            .json(&body_for(task, DEVICE, state, code))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{state}");
    }
    let job = lk.app.job(&id(&done)).await;
    assert_eq!(job["state"], "completed");
    assert!(job.get("error").is_none() || job["error"].is_null());
    lk.stop().await;
}

#[tokio::test]
async fn a_callback_body_that_lianke_contradicts_does_not_end_the_job() {
    let lk = start(Results::TlsCallbacks, |_| {}).await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "x").await;
    let processing = lk
        .app
        .drive_until(&id(&job), "processing", Duration::from_secs(10))
        .await;
    let url = callback_url(&lk, &processing);
    // A valid URL (leaked, say) with a body claiming failure; Lianke says READY.
    let body = body_for(
        processing["vendor_task_id"].as_str().unwrap(),
        DEVICE,
        "FAILURE",
        500,
    );
    let response = lk.app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["status"], "recorded");
    lk.app.run_engine().await;
    let job = lk.app.job(&id(&job)).await;
    assert_eq!(job["state"], "processing");
    assert_eq!(
        job["vendor_status"], "READY",
        "Lianke's word, not the body's"
    );
    lk.stop().await;
}

// ---------------------------------------------------------------------------------------
// Volume

#[tokio::test]
async fn a_thousand_jobs_on_ten_boxes_with_transient_errors_each_print_exactly_once() {
    let lk = start(Results::Callbacks, |c| {
        c.lianke.lianke_callback_wait_ms = 2_000;
        c.lianke.lianke_poll_interval_ms = 500;
        c.lianke.lianke_confirm_callbacks = false;
        c.breaker_threshold = 29;
    })
    .await;
    let devices: Vec<String> = (0..10).map(|i| format!("lk-bulk-{i}")).collect();
    for (i, d) in devices.iter().enumerate() {
        lk.sim
            .add_lianke_device(LiankeDeviceSpec::new(d, DEVICE_KEY));
        lk.printer(&format!("bulk-{i}"), d).await;
    }
    // 5% of submits refused with a transient error before they take effect.
    lk.sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 10009,
            msg: None,
        })
        .vendor(Vendor::Lianke)
        .endpoint("POST", "/api/print/job")
        .probability(0.05),
    );
    let mut ids = Vec::new();
    for n in 0..1000 {
        let job = lk
            .app
            .submit_text(&format!("bulk-{}", n % 10), &format!("job {n}"))
            .await;
        ids.push(id(&job));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let engine = lk.app.app.as_ref().unwrap().engine().clone();
        engine.apply_callbacks_now().await.unwrap();
        let mut workers = Vec::new();
        for _ in 0..8 {
            let engine = engine.clone();
            workers.push(tokio::spawn(async move {
                engine.run_due_now().await.map(|_| ())
            }));
        }
        for w in workers {
            w.await.unwrap().unwrap();
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE state NOT IN ('completed','failed','canceled')",
        )
        .fetch_one(&lk.app.pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} jobs not terminal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
        .fetch_one(&lk.app.pool)
        .await
        .unwrap();
    assert_eq!(completed, 1000);
    let accepted: Vec<_> = lk
        .submit_entries()
        .into_iter()
        .filter(|e| e.vendor_code == Some(200))
        .collect();
    assert_eq!(accepted.len(), 1000, "exactly one accepted submit per job");
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT vendor_task_id) FROM jobs")
        .fetch_one(&lk.app.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 1000);
    assert_eq!(lk.sim.lianke_tasks().len(), 1000);
    lk.stop().await;
}

#[tokio::test]
async fn printer_credentials_are_checked_with_lianke_on_create_and_change() {
    let lk = start(Results::Polling, |_| {}).await;
    let body = |key: &str| {
        json!({"id": "checked", "backend": "lianke",
            "locator": {"device_id": DEVICE, "device_port": 1},
            "secrets": {"device_key": key}})
    };
    // A wrong device key: 422 naming the vendor's refusal, nothing stored.
    let wrong = lk.app.post("/v1/printers", &body("wrong-key")).await;
    let problem = assert_problem(
        wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "vendor_auth_failed",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("verify=false"),
        "{problem:#}"
    );
    assert!(!problem.to_string().contains("wrong-key"));
    let missing = lk.app.get("/v1/printers/checked").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // ?verify=false saves it without asking (offline set-up)…
    let asked_before = lk.sim.ledger_count(&LedgerFilter::vendor(Vendor::Lianke));
    let saved = lk
        .app
        .post("/v1/printers?verify=false", &body("wrong-key"))
        .await;
    assert_eq!(saved.status(), StatusCode::CREATED);
    assert_eq!(
        lk.sim.ledger_count(&LedgerFilter::vendor(Vendor::Lianke)),
        asked_before,
        "nothing was asked of Lianke"
    );
    // …and a credential change is checked again: still wrong → 422, right → 200.
    let still_wrong = lk
        .app
        .patch(
            "/v1/printers/checked",
            &json!({"secrets": {"device_key": "also-wrong"}}),
        )
        .await;
    assert_problem(
        still_wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "vendor_auth_failed",
    )
    .await;
    let fixed = lk
        .app
        .patch(
            "/v1/printers/checked",
            &json!({"secrets": {"device_key": DEVICE_KEY}}),
        )
        .await;
    assert_eq!(fixed.status(), StatusCode::OK);
    // A change that touches no credential is not checked (the box may be offline).
    lk.sim.set_lianke_online(DEVICE, Some(false));
    let renamed = lk
        .app
        .patch("/v1/printers/checked", &json!({"display_name": "Checked"}))
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    lk.stop().await;
}

/// Issue 18: a U+0000 in a callback body is stored escaped (`\u0000`) with the job's event,
/// and the state change it carries applies: never a 500.
#[tokio::test]
async fn a_callback_with_a_nul_character_still_applies_and_is_stored_escaped() {
    let lk = start(Results::Callbacks, |c| {
        c.lianke.lianke_confirm_callbacks = false
    })
    .await;
    lk.sim.set_lianke_paused(DEVICE, true);
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "nul").await;
    let processing = lk
        .app
        .drive_until(&id(&job), "processing", Duration::from_secs(10))
        .await;
    let task = processing["vendor_task_id"].as_str().unwrap();
    let token = lk
        .app
        .app
        .as_ref()
        .unwrap()
        .engine()
        .callback_keys()
        .sign(uuid::Uuid::parse_str(&id(&job)).unwrap());
    let mut body = body_for(task, DEVICE, "SUCCESS", 200);
    body["task_result"]["msg"] = json!("ok\u{0}done");
    body["extra\u{0}key"] = json!("v\u{0}");
    let url = lk
        .app
        .url(&format!("/webhooks/lianke/{}?token={token}", id(&job)));
    let response = lk.app.client.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["status"], "recorded");
    lk.app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT vendor_payload::text FROM job_events WHERE job_id = $1 AND vendor_payload IS NOT NULL",
    )
    .bind(uuid::Uuid::parse_str(&id(&job)).unwrap())
    .fetch_all(&lk.app.pool)
    .await
    .unwrap();
    assert!(
        stored.iter().any(|p| p.contains(r"ok\\u0000done")),
        "{stored:?}"
    );
    lk.stop().await;
}

// ---------------------------------------------------------------------------------------
// The callback inbox: answered once recorded, confirmed and applied by the engine

/// Callbacks recorded and not yet applied.
/// What another replica's inbox loop would claim now (under a ten-minute lease).
async fn rival_claim(lk: &Lianke) -> Vec<print_gateway::store::callbacks::RecordedCallback> {
    print_gateway::store::callbacks::claim(
        &lk.app.pool,
        uuid::Uuid::new_v4(),
        10,
        Duration::from_secs(600),
        &["lianke"],
    )
    .await
    .unwrap()
}

async fn inbox(lk: &Lianke) -> i64 {
    print_gateway::store::callbacks::waiting(&lk.app.pool)
        .await
        .expect("count the inbox")
}

fn task_queries(lk: &Lianke) -> usize {
    lk.sim
        .ledger_count(&LedgerFilter::vendor(Vendor::Lianke).endpoint("GET", "/api/print/job"))
}

/// A job whose task ended at Lianke, and whose callback was answered (recorded, not
/// applied: no engine runs meanwhile).
async fn called_back(lk: &Lianke) -> Value {
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "inbox").await;
    lk.app.run_engine().await;
    let attempts = lk.callbacks().await;
    assert_eq!(
        attempts.first().and_then(|a| a.http_status),
        Some(200),
        "{attempts:#?}"
    );
    lk.app.job(&id(&job)).await
}

#[tokio::test]
async fn a_recorded_callback_survives_a_restart_and_is_applied_once() {
    let lk = start(Results::Callbacks, |_| {}).await;
    let job = called_back(&lk).await;
    assert_eq!(job["state"], "processing", "answered, not yet applied");
    assert_eq!(inbox(&lk).await, 1);
    // Lianke's retry of the same callback is a duplicate.
    let url = callback_url(&lk, &job);
    let body = body_for(
        job["vendor_task_id"].as_str().unwrap(),
        DEVICE,
        "SUCCESS",
        200,
    );
    let response = lk.app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["status"], "duplicate");
    // A replica claimed it and died before applying it: its lease keeps others off…
    let claimed = rival_claim(&lk).await;
    assert_eq!(claimed.len(), 1);
    lk.app.run_engine().await;
    assert_eq!(lk.app.job(&id(&job)).await["state"], "processing");
    // …until it runs out. The process stops; another one, with its workers, starts on the
    // same database and applies the callback.
    sqlx::query("UPDATE callback_inbox SET lease_until = now() - interval '1 second'")
        .execute(&lk.app.pool)
        .await
        .unwrap();
    let Lianke { sim, app, .. } = lk;
    let (database_url, pool) = (app.database_url.clone(), app.pool.clone());
    app.shutdown().await;
    let sim_url = sim.base_url();
    let configure = move |c: &mut Config| {
        c.lianke.lianke_base_url = sim_url.clone();
        c.lianke.lianke_api_key = Some(DEFAULT_LIANKE_API_KEY.into());
    };
    let mut probe = test_config("postgres://unused/unused");
    configure(&mut probe);
    let backend = LiankeBackend::new(DEFAULT_LIANKE_API_KEY.into(), lianke_settings(&probe))
        .expect("lianke backend");
    let worker = common::start_on(
        database_url,
        pool,
        BackendRegistry::new().with(Arc::new(backend)),
        Role::Worker,
        configure,
    )
    .await;
    // A worker process serves no HTTP: the job is read from the database. The callback is
    // forgotten right after the apply, in a statement of its own.
    let job_id = uuid::Uuid::parse_str(&id(&job)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let done = loop {
        let now = print_gateway::store::jobs::get_any(&worker.pool, job_id)
            .await
            .unwrap()
            .expect("the job");
        let waiting = print_gateway::store::callbacks::waiting(&worker.pool)
            .await
            .unwrap();
        if now.state.as_str() == "completed" && waiting == 0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recorded callback was not applied ({waiting} waiting): {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.vendor_status.as_deref(), Some("SUCCESS"));
    let completions: Vec<String> = sqlx::query_scalar(
        "SELECT source FROM job_events WHERE job_id = $1 AND to_state = 'completed'",
    )
    .bind(job_id)
    .fetch_all(&worker.pool)
    .await
    .unwrap();
    assert_eq!(completions, ["callback"], "applied once, from the callback");
    let queries =
        sim.ledger_count(&LedgerFilter::vendor(Vendor::Lianke).endpoint("GET", "/api/print/job"));
    assert_eq!(queries, 1, "confirmed once");
    worker.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_process_running_inbox_loops_records_a_callback_already_leased_to_itself() {
    let lk = start_as(Results::Callbacks, Role::All, |_| {}).await;
    // The confirmation takes a while: the callback waits in the inbox meanwhile.
    lk.sim.add_fault(
        FaultRule::new(FaultAction::Latency {
            fixed_ms: 1_500,
            jitter_ms: 0,
        })
        .vendor(Vendor::Lianke)
        .endpoint("GET", "/api/print/job")
        .times(1),
    );
    lk.printer("office", DEVICE).await;
    let job = lk.app.submit_text("office", "handed over").await;
    let job_id = uuid::Uuid::parse_str(&id(&job)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (owner, attempts): (Option<uuid::Uuid>, i32) = loop {
        let row =
            sqlx::query_as("SELECT lease_owner, attempts FROM callback_inbox WHERE job_id = $1")
                .bind(job_id)
                .fetch_optional(&lk.app.pool)
                .await
                .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no callback was recorded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Recorded under a lease in the statement that recorded it, for this process's own
    // loops: another replica's claim finds nothing to take.
    assert!(owner.is_some(), "recorded without a lease");
    assert_eq!(attempts, 1);
    let rival = rival_claim(&lk).await;
    assert!(rival.is_empty(), "another replica claimed it: {rival:?}");
    // The process's own loop confirms and applies it, once.
    // (The callback is forgotten right after the apply, in a statement of its own.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = lk.app.job(&id(&job)).await;
        let waiting = inbox(&lk).await;
        if now["state"] == "completed" && waiting == 0 {
            assert_eq!(now["vendor_status"], "SUCCESS");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the callback was not applied and forgotten ({waiting} waiting): {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(task_queries(&lk), 1, "confirmed once");
}

#[tokio::test]
async fn a_confirmation_that_fails_keeps_the_callback_for_a_later_try() {
    // A backoff far beyond the test: the failed confirmation is tried again only when the
    // test makes it due (a 20 ms backoff let a loaded run_engine try twice).
    let lk = start(Results::Callbacks, |c| {
        c.retry_base_ms = 600_000;
        c.retry_max_ms = 600_000;
    })
    .await;
    let fault = lk.sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 503 })
            .vendor(Vendor::Lianke)
            .endpoint("GET", "/api/print/job"),
    );
    let job = called_back(&lk).await;
    lk.app.run_engine().await;
    assert_eq!(task_queries(&lk), 1);
    let kept: (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM callback_inbox WHERE job_id = $1")
            .bind(uuid::Uuid::parse_str(&id(&job)).unwrap())
            .fetch_one(&lk.app.pool)
            .await
            .expect("the callback is kept");
    assert_eq!(kept.0, 1);
    assert!(kept.1.is_some());
    assert_eq!(
        lk.app.job(&id(&job)).await["state"],
        "processing",
        "no outcome guessed"
    );
    // Lianke answers again, and the kept callback's retry comes due.
    assert!(lk.sim.remove_fault(fault));
    sqlx::query("UPDATE callback_inbox SET due_at = now() WHERE job_id = $1")
        .bind(uuid::Uuid::parse_str(&id(&job)).unwrap())
        .execute(&lk.app.pool)
        .await
        .unwrap();
    let done = lk
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["vendor_status"], "SUCCESS");
    assert_eq!(task_queries(&lk), 2);
    assert_eq!(inbox(&lk).await, 0);
    lk.stop().await;
}

/// Callbacks of one box confirmed together, each job ending with its own task's outcome:
/// (calls of the box's task list, single task queries) they took.
async fn confirm_together(outcomes: Vec<LiankeOutcome>) -> (usize, usize) {
    let lk = start(Results::Callbacks, |_| {}).await;
    let expected: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            LiankeOutcome::Success { .. } => "completed",
            _ => "failed",
        })
        .collect();
    let n = outcomes.len();
    lk.sim.script_lianke_outcomes(DEVICE, outcomes.clone());
    lk.printer("office", DEVICE).await;
    let mut jobs = Vec::new();
    for i in 0..n {
        let job = lk.app.submit_text("office", &format!("job {i}")).await;
        jobs.push(id(&job));
    }
    // Dispatch only: the callbacks stay recorded until the engine applies them below.
    let engine = lk.app.app.as_ref().expect("running").engine().clone();
    assert_eq!(engine.run_due_now().await.unwrap(), n);
    for _ in 0..500 {
        if inbox(&lk).await == n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(inbox(&lk).await, n as i64, "every callback recorded");
    lk.app.run_engine().await;
    let mut states = Vec::new();
    for job in &jobs {
        states.push(lk.app.job(job).await["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, expected);
    assert_eq!(inbox(&lk).await, 0);
    let lists = lk.sim.ledger_count(
        &LedgerFilter::vendor(Vendor::Lianke).endpoint("POST", "/api/print/query_device_task"),
    );
    let queries = task_queries(&lk);
    lk.stop().await;
    (lists, queries)
}

fn no_printer() -> LiankeOutcome {
    LiankeOutcome::PrintError {
        code: 497,
        msg: "no printer".into(),
    }
}

/// Many callbacks of one box are confirmed with one `query_device_task` call.
#[tokio::test]
async fn a_boxs_callbacks_are_confirmed_together_and_each_job_gets_its_own_outcome() {
    let printed = LiankeOutcome::Success { total_page: 1 };
    let outcomes = vec![
        printed.clone(),
        no_printer(),
        printed.clone(),
        printed.clone(),
        no_printer(),
        printed,
    ];
    assert_eq!(
        confirm_together(outcomes).await,
        (1, 0),
        "one list call for the box"
    );
}

/// A few callbacks of one box are confirmed with a task query each: the box's list holds
/// every task of its day.
#[tokio::test]
async fn a_boxs_few_callbacks_are_confirmed_one_task_query_each() {
    let printed = LiankeOutcome::Success { total_page: 1 };
    assert_eq!(
        confirm_together(vec![printed.clone(), no_printer(), printed]).await,
        (0, 3),
        "three task queries, no list"
    );
}

#[tokio::test]
async fn callbacks_arriving_together_are_each_recorded_once() {
    let lk = start(Results::Callbacks, |_| {}).await;
    // Lianke's own callbacks are dropped: the test sends them itself, all at once.
    lk.sim.add_callback_fault(CallbackFault {
        vendor: Some(Vendor::Lianke),
        mischief: CallbackMischief::Drop,
        times: 3,
    });
    lk.printer("office", DEVICE).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(id(&lk.app.submit_text("office", &format!("job {n}")).await));
    }
    let engine = lk.app.app.as_ref().expect("running").engine().clone();
    assert_eq!(engine.run_due_now().await.unwrap(), 3);
    // Lianke finished the three tasks (its dropped callbacks say so).
    for _ in 0..500 {
        if lk.sim.callbacks().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lk.sim.callbacks().len(), 3);
    // Five copies of each job's terminal callback, fifteen requests at the same moment: the
    // webhook records them in shared statements, where one job's copies meet.
    let mut sends = Vec::new();
    for job_id in &ids {
        let job = lk.app.job(job_id).await;
        assert_eq!(job["state"], "processing");
        let url = callback_url(&lk, &job);
        let body = body_for(
            job["vendor_task_id"].as_str().unwrap(),
            DEVICE,
            "SUCCESS",
            200,
        );
        for _ in 0..5 {
            let request = lk.app.client.post(&url).json(&body);
            let job_id = job_id.clone();
            sends.push(tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let ack: Value = response.json().await.unwrap();
                (job_id, status, ack)
            }));
        }
    }
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for send in sends {
        let (job_id, status, ack) = send.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{ack}");
        match ack["status"].as_str() {
            Some("recorded") => *recorded.entry(job_id).or_default() += 1,
            Some("duplicate") => {}
            other => panic!("unexpected answer {other:?}: {ack}"),
        }
    }
    for job_id in &ids {
        assert_eq!(recorded.get(job_id), Some(&1), "{job_id}: {recorded:?}");
    }
    assert_eq!(inbox(&lk).await, 3);
    lk.app.run_engine().await;
    for job_id in &ids {
        let job = lk.app.job(job_id).await;
        assert_eq!(job["state"], "completed");
        let events = lk.app.events(job_id).await;
        let from_callbacks = events.iter().filter(|e| e["source"] == "callback").count();
        assert_eq!(from_callbacks, 1, "{events:#?}");
    }
    assert_eq!(inbox(&lk).await, 0);
    lk.stop().await;
}
