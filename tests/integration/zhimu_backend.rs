//! The Zhimu backend end to end: the gateway over real HTTP and Postgres against the vendor
//! simulator's Zhimu. Tokens, shares, capabilities, every document kind, every task status,
//! cancels, the error catalog, timeouts, and 1,000 jobs under injected errors.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{TestApp, assert_problem, spawn_app_with, start_on};
use futures::StreamExt;
use print_gateway::app::{self, Role};
use print_gateway::backends::BackendRegistry;
use print_gateway::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vendor_sim::{
    FaultAction, FaultRule, LedgerEntry, LedgerFilter, Sim, SimConfig, Vendor, ZhimuAppSpec,
    ZhimuOutcome, ZhimuShareSpec,
};

const APP_ID: &str = "gateway-app";
const APP_KEY: &str = "gateway-appkey-7f3c9e21";
const SN: &str = "pkDgrqeA";
const PRINTER: &str = "佳能复合机";
const TICKET: &str = "830487711";
const PASSWORD: &str = "2598";

const GET_TOKEN: &str = "/openapi/getToken";
const SUBMIT: &str = "/openapi";
const TASK_GET: &str = "/openapi/task/get";

async fn sim_with(config: SimConfig) -> Sim {
    let sim = Sim::start(config).await.expect("the simulator starts");
    sim.add_zhimu_app(ZhimuAppSpec {
        appid: APP_ID.into(),
        appkey: APP_KEY.into(),
    });
    sim.add_zhimu_share(ZhimuShareSpec::new(TICKET, PASSWORD, SN, PRINTER));
    sim
}

/// The gateway's Zhimu settings for tests: the simulator, fast polls, no rate bound.
fn zhimu_config(config: &mut Config, sim: &Sim) {
    config.zhimu.zhimu_base_url = sim.base_url();
    config.zhimu.zhimu_app_id = Some(APP_ID.into());
    config.zhimu.zhimu_app_key = Some(APP_KEY.into());
    config.zhimu.zhimu_poll_first_ms = 20;
    config.zhimu.zhimu_poll_every_ms = 30;
    config.zhimu.zhimu_poll_max_ms = 200;
    config.zhimu.zhimu_max_polls_per_sec = 0;
}

/// A registry holding a Zhimu backend built from `config` as `serve` builds it.
fn registry(config: &Config) -> BackendRegistry {
    let backend = app::zhimu_backend(config)
        .expect("valid Zhimu settings")
        .expect("credentials set");
    BackendRegistry::new().with(backend)
}

async fn gateway(sim: &Sim, role: Role, tweak: impl Fn(&mut Config)) -> TestApp {
    let mut config = Config::defaults();
    zhimu_config(&mut config, sim);
    tweak(&mut config);
    spawn_app_with(registry(&config), role, |c| {
        zhimu_config(c, sim);
        tweak(c);
    })
    .await
}

/// Binds the simulator's share through the gateway and registers printer `id` on it.
async fn bind_and_register(app: &TestApp, id: &str, max_in_flight: u32) -> Value {
    let locator = bind(app).await;
    app.create_printer_with(json!({
        "id": id, "backend": "zhimu", "locator": locator, "max_in_flight": max_in_flight
    }))
    .await
}

/// Binds the share and returns the locator.
async fn bind(app: &TestApp) -> Value {
    let bound = app
        .post(
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": TICKET, "password": PASSWORD}),
        )
        .await;
    assert_eq!(bound.status(), StatusCode::CREATED);
    let bound: Value = bound.json().await.unwrap();
    bound["locator"].clone()
}

async fn setup() -> (Sim, TestApp) {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |_| {}).await;
    bind_and_register(&app, "office", 4).await;
    (sim, app)
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_owned()
}

fn zhimu(method: &str, path: &str) -> LedgerFilter {
    LedgerFilter::vendor(Vendor::Zhimu).endpoint(method, path)
}

fn submits_of(sim: &Sim, job: &str) -> Vec<LedgerEntry> {
    sim.ledger_filtered(&zhimu("POST", SUBMIT).field("data.task.name", job))
}

async fn finish(app: &TestApp, job: &str, state: &str) -> Value {
    app.drive_until(job, state, Duration::from_secs(10)).await
}

// ----- tokens ---------------------------------------------------------------------------

#[tokio::test]
async fn one_signed_token_serves_binding_and_many_jobs() {
    let (sim, app) = setup().await;
    let mut jobs = Vec::new();
    for n in 0..10 {
        jobs.push(id(&app.submit_text("office", &format!("page {n}")).await));
    }
    for job in &jobs {
        finish(&app, job, "completed").await;
    }
    let tokens = sim.ledger_filtered(&zhimu("POST", GET_TOKEN));
    assert_eq!(tokens.len(), 1, "one getToken for the bind and ten jobs");
    let request = &tokens[0];
    assert_eq!(
        request.vendor_code,
        Some(1),
        "the simulator verified the signature"
    );
    assert_eq!(request.field("appid"), Some(APP_ID));
    let timestamp: i64 = request.field("timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp_millis() - timestamp).abs() < 60_000);
    assert!(request.field("oncestr").is_some_and(|n| n.len() >= 8));
    let submits = sim.ledger_filtered(&zhimu("POST", SUBMIT));
    assert_eq!(submits.len(), 10);
    assert!(
        submits
            .iter()
            .all(|s| s.field("header.Api-Access-Token").is_some() && s.vendor_code == Some(1))
    );
}

#[tokio::test]
async fn a_wrong_app_key_fails_jobs_with_the_vendors_words() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |c| {
        c.zhimu.zhimu_app_key = Some("not-the-key".into());
        c.retry_max_attempts = 3;
    })
    .await;
    // Registering asks Zhimu, which refuses the app: 502 naming it; offline set-up skips it.
    let body = json!({"id": "office", "backend": "zhimu",
        "locator": {"share_sn": SN, "printer_name": PRINTER}});
    let refused = app.post("/v1/printers", &body).await;
    assert_problem(refused, StatusCode::BAD_GATEWAY, "vendor_app_auth_failed").await;
    let saved = app.post("/v1/printers?verify=false", &body).await;
    assert_eq!(saved.status(), StatusCode::CREATED);
    let job = id(&app.submit_text("office", "hello").await);
    let failed = finish(&app, &job, "failed").await;
    assert_eq!(failed["error"]["code"], "retries_exhausted");
    assert_eq!(failed["error"]["vendor_message"], "签名校验失败");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ZHIMU_APP_KEY")
    );
    assert_eq!(sim.ledger_count(&zhimu("POST", SUBMIT)), 0, "nothing sent");
    // One token request for the refused registration, then one per submit attempt.
    assert_eq!(sim.ledger_count(&zhimu("POST", GET_TOKEN)), 1 + 3);
}

#[tokio::test]
async fn the_token_is_renewed_when_its_lifetime_ends_without_a_rejection() {
    // The token lives an hour (Zhimu's `expiresIn`); the gateway's clock for it is moved
    // on past that instead of waiting.
    let sim = sim_with(SimConfig {
        zhimu_token_ttl: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await;
    let app = gateway(&sim, Role::Api, |_| {}).await;
    bind_and_register(&app, "office", 4).await;
    let first = id(&app.submit_text("office", "one").await);
    finish(&app, &first, "completed").await;
    assert_eq!(sim.ledger_count(&zhimu("POST", GET_TOKEN)), 1);
    let zhimu_backend = app
        .app
        .as_ref()
        .expect("running")
        .state()
        .backends
        .get_as::<print_gateway::backends::zhimu::ZhimuBackend>("zhimu")
        .expect("the zhimu backend");
    zhimu_backend
        .token_cache()
        .advance(Duration::from_secs(3600));
    let second = id(&app.submit_text("office", "two").await);
    finish(&app, &second, "completed").await;
    assert_eq!(sim.ledger_count(&zhimu("POST", GET_TOKEN)), 2);
    let rejected = sim
        .ledger()
        .into_iter()
        .filter(|e| e.http_status == Some(401))
        .count();
    assert_eq!(
        rejected, 0,
        "renewed from expiresIn, not after Zhimu refused it"
    );
}

#[tokio::test]
async fn a_rejected_token_is_renewed_once_and_the_call_retried() {
    let (sim, app) = setup().await;
    sim.expire_zhimu_tokens();
    let job = id(&app.submit_text("office", "after expiry").await);
    let done = finish(&app, &job, "completed").await;
    assert_eq!(done["attempts"], 1, "the retry is part of the same attempt");
    let submits = submits_of(&sim, &job);
    assert_eq!(
        submits.iter().map(|s| s.http_status).collect::<Vec<_>>(),
        vec![Some(401), Some(200)]
    );
    assert_eq!(sim.ledger_count(&zhimu("POST", GET_TOKEN)), 2);
}

#[tokio::test]
async fn fifty_workers_starting_cold_fetch_one_token() {
    let sim = sim_with(SimConfig::default()).await;
    // Submitting only: the jobs wait for the workers started below.
    let api = gateway(&sim, Role::Api, |_| {}).await;
    bind_and_register(&api, "office", 50).await;
    let mut jobs = Vec::new();
    for n in 0..50 {
        jobs.push(id(&api.submit_text("office", &format!("job {n}")).await));
    }
    // A slow getToken widens the window in which the workers all want a token.
    sim.add_fault(
        FaultRule::new(FaultAction::Latency {
            fixed_ms: 300,
            jitter_ms: 0,
        })
        .vendor(Vendor::Zhimu)
        .endpoint("POST", GET_TOKEN),
    );
    let before = sim.ledger_count(&zhimu("POST", GET_TOKEN));
    let mut config = Config::defaults();
    zhimu_config(&mut config, &sim);
    let workers = start_on(
        api.database_url.clone(),
        api.pool.clone(),
        registry(&config),
        Role::Worker,
        |c| {
            c.zhimu = config.zhimu.clone();
            c.worker_concurrency = 50;
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for job in &jobs {
        loop {
            if api.job(job).await["state"] == "completed" {
                break;
            }
            assert!(Instant::now() < deadline, "job {job} did not complete");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        sim.ledger_count(&zhimu("POST", GET_TOKEN)) - before,
        1,
        "one token fetch for 50 concurrent workers"
    );
    for job in &jobs {
        assert_eq!(submits_of(&sim, job).len(), 1);
    }
    workers.shutdown().await;
}

// ----- printers -------------------------------------------------------------------------

#[tokio::test]
async fn printers_are_bound_listed_described_and_unbound() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |_| {}).await;

    let reader = app.key_for("acme", &["jobs:read", "jobs:write"]).await;
    let response = app
        .post_as(
            &reader,
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": TICKET, "password": PASSWORD}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let wrong = app
        .post(
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": TICKET, "password": "0000"}),
        )
        .await;
    let problem = assert_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "share_refused").await;
    assert!(problem["detail"].as_str().unwrap().contains("验证码错误"));

    let listed: Value = app
        .get("/v1/backends/zhimu/printers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));

    let bound = app
        .post(
            "/v1/backends/zhimu/shares",
            &json!({"share_ticket": TICKET, "password": PASSWORD}),
        )
        .await;
    assert_eq!(bound.status(), StatusCode::CREATED);
    let bound: Value = bound.json().await.unwrap();
    let locator = json!({"share_sn": SN, "printer_name": PRINTER, "device_type": "printer"});
    assert_eq!(bound["locator"], locator);
    assert_eq!(bound["printer_alias"], format!("{PRINTER}-{SN}"));

    let printer = app
        .create_printer_with(json!({"id": "office", "backend": "zhimu", "locator": locator}))
        .await;
    assert_eq!(printer["device"], format!("zhimu:{SN}"));
    assert_eq!(printer["secrets_set"], json!([]));
    let with_secret = app
        .post(
            "/v1/printers",
            &json!({"id": "x", "backend": "zhimu", "locator": locator, "secrets": {"k": "v"}}),
        )
        .await;
    assert_problem(
        with_secret,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_printer_config",
    )
    .await;

    let listed: Value = app
        .get("/v1/backends/zhimu/printers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"],
        json!([{"locator": locator, "printer_alias": format!("{PRINTER}-{SN}"), "registered_as": ["office"]}])
    );

    let caps: Value = app
        .get("/v1/printers/office/capabilities")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        caps["source"], "cache",
        "fetched when the printer was registered"
    );
    let c = &caps["capabilities"];
    assert_eq!(c["color_modes"], json!(["monochrome"]));
    assert_eq!(
        c["sides"],
        json!(["one_sided", "two_sided_long_edge", "two_sided_short_edge"])
    );
    assert_eq!(c["orientations"], json!(["portrait", "landscape"]));
    assert_eq!(c["copies_max"], 999);
    assert_eq!(c["papers"].as_array().unwrap().len(), 14);
    let a4 = c["papers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "A4")
        .unwrap();
    assert_eq!(
        (a4["width_mm"].as_f64(), a4["height_mm"].as_f64()),
        (Some(210.0), Some(297.0))
    );
    let again: Value = app
        .get("/v1/printers/office/capabilities")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["source"], "cache");
    assert_eq!(
        sim.ledger_count(&zhimu("POST", "/openapi/control/queryPrinterDetail")),
        1
    );
    // Cached capabilities now check options: the printer is monochrome.
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "x"}, "options": {"color": "color"}}),
        )
        .await;
    assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_option",
    )
    .await;

    let status: Value = app
        .get("/v1/printers/office/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"]["vendor_status"], "bound");

    let path = format!("/v1/backends/zhimu/printers/{SN}/{}", urlencode(PRINTER));
    let deleted = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_problem(again, StatusCode::NOT_FOUND, "not_found").await;
    let listed: Value = app
        .get("/v1/backends/zhimu/printers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
    assert_eq!(
        sim.ledger_filtered(&zhimu("POST", "/openapi/control/revokeSharePrinter"))[0]
            .field("shareSn"),
        Some(SN)
    );

    // An unbound printer fails its jobs at once: no retry can help.
    let job = id(&app.submit_text("office", "nobody home").await);
    let failed = finish(&app, &job, "failed").await;
    assert_eq!(failed["error"]["code"], "printer_not_found");
    assert_eq!(failed["error"]["vendor_message"], "设备不存在或未绑定");
    assert_eq!(submits_of(&sim, &job).len(), 1);
}

#[tokio::test]
async fn zhimu_routes_say_when_the_backend_is_not_configured() {
    let app = common::spawn_app(BackendRegistry::new()).await;
    let response = app.get("/v1/backends/zhimu/printers").await;
    let problem = assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("ZHIMU_APP_ID"));
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

// ----- documents and options ------------------------------------------------------------

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const XLSX: &[u8] = b"PK\x03\x04\x14\0\x06\0";

#[tokio::test]
async fn each_document_kind_reaches_zhimu_with_its_media_combination_and_config() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |_| {}).await;
    // Saved without asking Zhimu: no capabilities cached, so options go as asked.
    let locator = bind(&app).await;
    app.create_unverified_printer(json!({"id": "office", "backend": "zhimu", "locator": locator}))
        .await;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // (document, mediaFormat, mediaSource, content sent)
    let cases = [
        (
            json!({"url": "https://files.example.com/photo.png"}),
            "PNG",
            "URL",
            "https://files.example.com/photo.png".to_owned(),
        ),
        (
            json!({"url": "https://files.example.com/report.docx"}),
            "WORD",
            "URL",
            "https://files.example.com/report.docx".to_owned(),
        ),
        (
            json!({"url": "https://files.example.com/page", "content_type": "text/html"}),
            "HTML",
            "URL",
            "https://files.example.com/page".to_owned(),
        ),
        (json!({"base64": b64(PNG)}), "PNG", "BASE64", b64(PNG)),
        (
            json!({"base64": b64(XLSX), "filename": "sheet.xlsx"}),
            "EXCEL",
            "BASE64",
            b64(XLSX),
        ),
        (
            json!({"base64": b64("纯文本".as_bytes()), "content_type": "text/plain"}),
            "TEXT",
            "STRING",
            "纯文本".to_owned(),
        ),
        (
            json!({"text": "hello zhimu"}),
            "TEXT",
            "STRING",
            "hello zhimu".to_owned(),
        ),
        (
            json!({"html": "<h1>hi</h1>"}),
            "HTML",
            "STRING",
            "<h1>hi</h1>".to_owned(),
        ),
    ];
    let options = json!({
        "copies": 2, "paper": "A4", "orientation": "landscape", "color": "color",
        "sides": "two_sided_long_edge", "page_ranges": "1-3, 5", "scale": {"mode": "fit"},
        "vendor_options": {"quality": "HIGH", "collate": "COLLATE", "javascript": true}
    });
    let mut jobs = Vec::new();
    for (document, format, source, content) in &cases {
        // best_effort: with no capabilities cached the options go as asked (a strict job
        // would be checked against the fetched capabilities first: this printer is
        // monochrome).
        let job = app
            .submit(
                json!({"printer_id": "office", "document": document, "options": options,
                "options_mode": "best_effort"}),
            )
            .await;
        jobs.push((id(&job), *format, *source, content.clone()));
    }
    // An upload (multipart) of a pptx goes as BASE64 too.
    let form = reqwest::multipart::Form::new()
        .text("printer_id", "office")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"PK\x03\x04slides".to_vec())
                .file_name("deck.pptx")
                .mime_str(
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                )
                .unwrap(),
        );
    let uploaded: Value = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jobs.push((id(&uploaded), "PPT", "BASE64", b64(b"PK\x03\x04slides")));

    for (job, format, source, content) in &jobs {
        finish(&app, job, "completed").await;
        let sent = submits_of(&sim, job);
        assert_eq!(sent.len(), 1, "{job}");
        let s = &sent[0];
        let f = |name: &str| s.field(name).unwrap_or("<absent>");
        assert_eq!(f("command"), "newPrintTask");
        assert_eq!(
            (f("data.task.mediaFormat"), f("data.task.mediaSource")),
            (*format, *source),
            "{job}"
        );
        assert_eq!(f("data.task.content"), content, "{job}");
        assert_eq!(f("data.task.deviceName"), PRINTER);
        assert_eq!(f("data.task.deviceType"), "printer");
        assert_eq!(f("data.task.controlSn"), SN);
        if *job == id(&uploaded) {
            continue;
        }
        assert_eq!(f("data.task.config.copies"), "2");
        // The ledger keeps objects nested this deep as JSON text.
        let paper: Value = serde_json::from_str(f("data.task.config.paperConfig")).unwrap();
        assert_eq!(
            paper,
            json!({"name": "A4"}),
            "no capabilities cached: the name alone"
        );
        assert_eq!(f("data.task.config.orientation"), "LANDSCAPE");
        assert_eq!(f("data.task.config.color"), "COLOR");
        assert_eq!(f("data.task.config.side"), "DUPLEX");
        assert_eq!(f("data.task.config.pageRanges"), "1-3,5");
        assert_eq!(f("data.task.config.autofit"), "true");
        assert_eq!(f("data.task.config.quality"), "HIGH");
        assert_eq!(f("data.task.config.collate"), "COLLATE");
        assert_eq!(f("data.task.javascript"), "true");
    }
}

#[tokio::test]
async fn custom_paper_and_one_sided_monochrome_map_to_their_fields() {
    let (sim, app) = setup().await;
    let job = app
        .submit(
            json!({"printer_id": "office", "document": {"text": "label"},
            "options": {"paper": {"width_mm": 105, "height_mm": 156}, "sides": "one_sided",
                        "color": "monochrome", "scale": {"mode": "percent", "percent": 80}}}),
        )
        .await;
    let job = id(&job);
    finish(&app, &job, "completed").await;
    let s = &submits_of(&sim, &job)[0];
    let paper: Value =
        serde_json::from_str(s.field("data.task.config.paperConfig").unwrap()).unwrap();
    assert_eq!(paper, json!({"width": 105.0, "height": 156.0}));
    assert_eq!(s.field("data.task.config.side"), Some("ONESIDE"));
    assert_eq!(s.field("data.task.config.color"), Some("MONOCHROME"));
    assert_eq!(s.field("data.task.config.scale"), Some("80"));
    assert_eq!(s.field("data.task.config.autofit"), Some("false"));
}

#[tokio::test]
async fn documents_and_options_zhimu_cannot_take_are_refused_before_any_vendor_call() {
    let (sim, app) = setup().await;
    sim.clear_ledger();
    // A PDF given as bytes is not refused: it is rendered to PNG pages (pdf_conversion).
    let gif = base64::engine::general_purpose::STANDARD.encode(b"GIF89a....");
    let refused = [
        (json!({"url": "https://files.example.com/a.pdf"}), "pdf"),
        (json!({"base64": gif}), "gif"),
        (json!({"url": "https://files.example.com/notes.txt"}), "txt"),
        (
            json!({"url": "https://files.example.com/download"}),
            "content_type",
        ),
    ];
    for (document, named) in refused {
        let response = app
            .post(
                "/v1/jobs",
                &json!({"printer_id": "office", "document": document}),
            )
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_document_type",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{detail}");
        assert!(
            detail.contains("png, jpg, bmp"),
            "names what Zhimu takes: {detail}"
        );
    }
    for (options, named) in [
        (json!({"vendor_options": {"dmPaperSize": 9}}), "dmPaperSize"),
        (json!({"vendor_options": {"side": "DUPLEX"}}), "sides"),
        (json!({"vendor_options": {"quality": "BEST"}}), "quality"),
    ] {
        let response = app
            .post(
                "/v1/jobs",
                &json!({"printer_id": "office", "document": {"text": "x"}, "options": options}),
            )
            .await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_option",
        )
        .await;
        assert!(problem["detail"].as_str().unwrap().contains(named));
    }
    let listed: Value = app.get("/v1/jobs").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]), "nothing was stored");
    app.run_engine().await;
    assert_eq!(
        sim.ledger_count(&LedgerFilter::vendor(Vendor::Zhimu)),
        0,
        "Zhimu was never called"
    );
}

// ----- status ---------------------------------------------------------------------------

#[tokio::test]
async fn every_task_status_reaches_its_neutral_state() {
    let sim = sim_with(SimConfig {
        zhimu_stage_delay: Duration::from_millis(250),
        ..SimConfig::default()
    })
    .await;
    let app = gateway(&sim, Role::Api, |_| {}).await;
    bind_and_register(&app, "office", 4).await;

    // SUBMITTED → QUEUED (held there while the PC is offline) → PRINTING → FINISHED.
    let job = id(&app.submit_text("office", "watch me").await);
    app.run_engine().await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    app.run_engine().await;
    sim.set_zhimu_online(SN, PRINTER, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.job(&job).await["vendor_status"] != "QUEUED" {
        assert!(Instant::now() < deadline);
        app.run_engine().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    sim.set_zhimu_online(SN, PRINTER, true);
    let done = finish(&app, &job, "completed").await;
    assert_eq!(done["vendor_status"], "FINISHED");
    let reasons: Vec<String> = app
        .events(&job)
        .await
        .iter()
        .filter(|e| e["kind"] == "vendor_progress")
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    for stage in ["sending", "queued_at_vendor", "printing"] {
        assert!(reasons.iter().any(|r| r == stage), "{stage} in {reasons:?}");
    }

    // ERROR and CANCELED (the sharing PC's user cancels; Zhimu has no cancel call).
    sim.script_zhimu_outcomes(
        SN,
        PRINTER,
        vec![
            ZhimuOutcome::Error {
                detail: "PAPER_EMPTY".into(),
            },
            ZhimuOutcome::Canceled,
        ],
    );
    let failing = id(&app.submit_text("office", "no paper").await);
    app.run_engine().await;
    let canceled = id(&app.submit_text("office", "changed my mind").await);
    let failed = finish(&app, &failing, "failed").await;
    assert_eq!(failed["error"]["code"], "print_failed");
    assert_eq!(failed["error"]["vendor_code"], "ERROR");
    assert_eq!(failed["error"]["vendor_message"], "PAPER_EMPTY");
    assert_eq!(failed["vendor_status"], "ERROR/PAPER_EMPTY");
    let canceled = finish(&app, &canceled, "canceled").await;
    assert_eq!(canceled["vendor_status"], "CANCELED");
    let polls = sim.ledger_filtered(&zhimu("POST", TASK_GET));
    assert!(
        polls
            .iter()
            .all(|p| p.field("controlSn") == Some(SN) && p.field("taskId").is_some())
    );
}

// ----- cancel ---------------------------------------------------------------------------

#[tokio::test]
async fn a_pending_job_cancels_locally_and_one_at_zhimu_is_refused_unchanged() {
    let sim = sim_with(SimConfig {
        zhimu_stage_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let app = gateway(&sim, Role::Api, |_| {}).await;
    bind_and_register(&app, "office", 4).await;

    let pending = id(&app.submit_text("office", "never mind").await);
    let response = app
        .post(&format!("/v1/jobs/{pending}/cancel"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let canceled: Value = response.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    app.run_engine().await;
    assert!(submits_of(&sim, &pending).is_empty(), "never sent to Zhimu");

    let sent = id(&app.submit_text("office", "too late").await);
    app.run_engine().await;
    assert_eq!(app.job(&sent).await["state"], "processing");
    let response = app
        .post(&format!("/v1/jobs/{sent}/cancel"), &json!({}))
        .await;
    let problem = assert_problem(response, StatusCode::CONFLICT, "cancel_not_supported").await;
    assert!(problem["detail"].as_str().unwrap().contains("zhimu"));
    let unchanged = app.job(&sent).await;
    assert_eq!(unchanged["state"], "processing");
    assert_eq!(unchanged["cancel_requested"], false);
    finish(&app, &sent, "completed").await;
}

// ----- error catalog --------------------------------------------------------------------

#[tokio::test]
async fn refusals_and_requests_turned_away_are_retried_and_the_job_prints_once() {
    let (sim, app) = setup().await;
    sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: -1,
            msg: Some("系统繁忙".into()),
        })
        .vendor(Vendor::Zhimu)
        .endpoint("POST", SUBMIT)
        .times(1),
    );
    // A proxy turning the request away (429) is "not sent": safe to send again. (A 5xx on
    // a submit is not: see zhimu_submit_failures_follow_the_outcome_class_table.)
    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 429 })
            .vendor(Vendor::Zhimu)
            .endpoint("POST", SUBMIT)
            .times(1),
    );
    let job = id(&app.submit_text("office", "eventually").await);
    let done = finish(&app, &job, "completed").await;
    assert_eq!(done["attempts"], 3);
    let sent = submits_of(&sim, &job);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent.iter().filter(|s| !s.faulted).count(), 1);
    let retried: Vec<Value> = app
        .events(&job)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "retry_scheduled")
        .collect();
    assert_eq!(retried.len(), 2);
    assert!(retried[0]["message"].as_str().unwrap().contains("系统繁忙"));
}

#[tokio::test]
async fn a_refusal_that_persists_fails_the_job_with_the_message_kept() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |c| c.retry_max_attempts = 3).await;
    bind_and_register(&app, "office", 4).await;
    sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: 500,
            msg: Some("内容无法解析".into()),
        })
        .vendor(Vendor::Zhimu)
        .endpoint("POST", SUBMIT),
    );
    let job = id(&app.submit_text("office", "broken").await);
    let failed = finish(&app, &job, "failed").await;
    assert_eq!(failed["error"]["code"], "retries_exhausted");
    assert_eq!(failed["error"]["vendor_message"], "内容无法解析");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(submits_of(&sim, &job).len(), 3);
}

#[tokio::test]
async fn an_offline_printer_keeps_the_job_waiting_until_it_returns() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |c| c.device_wait_retry_secs = 1).await;
    bind_and_register(&app, "office", 4).await;
    sim.set_zhimu_online(SN, PRINTER, false);
    let job = id(&app.submit_text("office", "when you are back").await);
    app.run_engine().await;
    let waiting = app.job(&job).await;
    assert_eq!(waiting["state"], "pending");
    assert_eq!(waiting["state_reason"], "waiting_for_device");
    assert_eq!(waiting["error"]["code"], "device_offline");
    sim.set_zhimu_online(SN, PRINTER, true);
    finish(&app, &job, "completed").await;
    assert_eq!(
        submits_of(&sim, &job)
            .iter()
            .filter(|s| s.vendor_code == Some(1))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_submit_timeout_leaves_the_job_unconfirmed_and_it_is_never_sent_again() {
    let sim = sim_with(SimConfig {
        hang_duration: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await;
    let app = gateway(&sim, Role::Api, |c| {
        c.zhimu.zhimu_timeout_ms = 300;
        c.unconfirmed_give_up_secs = 1;
    })
    .await;
    bind_and_register(&app, "office", 4).await;
    sim.add_fault(
        FaultRule::new(FaultAction::Hang)
            .vendor(Vendor::Zhimu)
            .endpoint("POST", SUBMIT)
            .times(1),
    );
    let job = id(&app.submit_text("office", "lost answer").await);
    app.run_engine().await;
    let unconfirmed = app.job(&job).await;
    assert_eq!(unconfirmed["state"], "unconfirmed");
    assert_eq!(unconfirmed["error"]["code"], "vendor_timeout");
    // Zhimu has no lookup: the reconciler does not guess, it hands the job to an operator.
    let waiting = app.job(&job).await;
    assert_eq!(waiting["state"], "unconfirmed", "never failed on its own");
    assert_eq!(waiting["state_reason"], "awaiting_operator");
    let events = app.events(&job).await;
    let last = events.last().unwrap().clone();
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no way to look the task up"),
        "{last:#}"
    );
    assert_eq!(app.run_engine().await, 0, "nothing left to ask");
    assert_eq!(submits_of(&sim, &job).len(), 1, "never resubmitted");
}

/// SPEC §4 outcome classes for `newPrintTask`, each row against the simulator: whether
/// the gateway sends the job again (not sent) or leaves it `unconfirmed` (outcome unknown).
#[tokio::test]
async fn zhimu_submit_failures_follow_the_outcome_class_table() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::Api, |c| {
        // A retry of a request that was not sent comes well after the first pass.
        c.retry_base_ms = 1000;
        c.retry_max_ms = 1000;
        // Every row is a vendor failure on one printer: keep its breaker closed.
        c.breaker_threshold = 20;
    })
    .await;
    bind_and_register(&app, "office", 4).await;
    // (fault, expected state after one engine pass)
    let rows: Vec<(FaultAction, &str)> = vec![
        (FaultAction::HttpStatusAfter { status: 502 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 502 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 500 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 503 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 504 }, "unconfirmed"),
        (FaultAction::HttpStatus { status: 429 }, "pending"),
        (FaultAction::HttpStatus { status: 404 }, "pending"),
    ];
    for (fault, expected) in rows {
        sim.add_fault(
            FaultRule::new(fault.clone())
                .vendor(Vendor::Zhimu)
                .endpoint("POST", SUBMIT)
                .times(1),
        );
        let job = id(&app.submit_text("office", &format!("{fault:?}")).await);
        app.run_engine().await;
        let now = app.job(&job).await;
        assert_eq!(now["state"], expected, "{fault:?}: {now:#}");
        if expected == "pending" {
            // Not sent: sent again, and printed once.
            finish(&app, &job, "completed").await;
            assert_eq!(submits_of(&sim, &job).len(), 2, "{fault:?}");
        } else {
            app.run_engine().await;
            assert_eq!(app.job(&job).await["state"], "unconfirmed", "{fault:?}");
            assert_eq!(
                submits_of(&sim, &job).len(),
                1,
                "{fault:?}: never sent again"
            );
        }
    }
}

// ----- volume ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_with_five_percent_errors_all_end_with_one_accepted_submit_each() {
    let sim = sim_with(SimConfig::default()).await;
    let app = gateway(&sim, Role::All, |c| {
        c.worker_concurrency = 16;
        c.retry_max_attempts = 12;
        c.breaker_threshold = 29;
        c.zhimu.zhimu_poll_first_ms = 50;
        c.zhimu.zhimu_poll_every_ms = 100;
        c.zhimu.zhimu_max_polls_per_sec = 2000;
    })
    .await;
    bind_and_register(&app, "office", 16).await;
    // 5 % of every Zhimu call fails: 3 % refused, 2 % turned away by a proxy (HTTP 503 on
    // status polls; on submits a 429, since a 5xx on a submit leaves its outcome unknown:
    // that class is pinned by zhimu_submit_failures_follow_the_outcome_class_table).
    sim.add_fault(
        FaultRule::new(FaultAction::VendorError {
            code: -1,
            msg: None,
        })
        .vendor(Vendor::Zhimu)
        .probability(0.03),
    );
    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 503 })
            .vendor(Vendor::Zhimu)
            .endpoint("POST", TASK_GET)
            .probability(0.02 / 0.97),
    );
    sim.add_fault(
        FaultRule::new(FaultAction::HttpStatus { status: 429 })
            .vendor(Vendor::Zhimu)
            .endpoint("POST", SUBMIT)
            .probability(0.02 / 0.97),
    );
    let started = Instant::now();
    let jobs: Vec<String> = futures::stream::iter(0..1000)
        .map(|n| {
            let app = &app;
            async move {
                let response = app
                    .post(
                        "/v1/jobs",
                        &json!({"printer_id": "office", "document": {"text": format!("job {n}")}}),
                    )
                    .await;
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                id(&response.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE state IN ('pending', 'processing', 'unconfirmed')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if live == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{live} jobs still live after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_done = started.elapsed();
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(states, vec![("completed".to_owned(), 1000)]);

    let mut accepted: HashMap<String, usize> = HashMap::new();
    let submits = sim.ledger_filtered(&zhimu("POST", SUBMIT));
    for s in &submits {
        if !s.faulted && s.vendor_code == Some(1) {
            *accepted
                .entry(s.field("data.task.name").unwrap_or("").to_owned())
                .or_default() += 1;
        }
    }
    for job in &jobs {
        assert_eq!(accepted.get(job), Some(&1), "job {job}");
    }
    let faulted = sim
        .ledger_filtered(&LedgerFilter::vendor(Vendor::Zhimu))
        .iter()
        .filter(|e| e.faulted)
        .count();
    assert!(faulted > 0, "errors were injected");
    eprintln!(
        "1000 Zhimu jobs: accepted in {accepted_in:?}, all completed in {all_done:?}; {} submits ({} refused/5xx), {} polls, {faulted} injected errors, {} token fetches",
        submits.len(),
        submits.iter().filter(|s| s.faulted).count(),
        sim.ledger_count(&zhimu("POST", TASK_GET)),
        sim.ledger_count(&zhimu("POST", GET_TOKEN)),
    );
    app.shutdown().await;
}

// ----- issue 18: strict means checked; a vendor's refusal of the input is the caller's ---

/// A strict job on a printer whose capabilities were never cached: they are fetched at
/// dispatch, before any submit, and an option the printer does not list fails the job with
/// `unsupported_option` — Zhimu never sees it. A supported one prints.
#[tokio::test]
async fn strict_options_without_cached_capabilities_are_checked_before_any_submit() {
    let (sim, app) = setup().await;
    // Saved without asking the vendor (offline set-up): no capabilities cached.
    let office: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    let saved = app
        .post(
            "/v1/printers?verify=false",
            &json!({"id": "annex", "backend": "zhimu", "locator": office["locator"]}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::CREATED);
    let before = sim.ledger_count(&zhimu("POST", "/openapi/control/queryPrinterDetail"));
    let job = app
        .submit(json!({"printer_id": "annex", "document": {"text": "x"},
            "options": {"paper": "Z9"}}))
        .await;
    let failed = finish(&app, &id(&job), "failed").await;
    assert_eq!(failed["error"]["code"], "unsupported_option", "{failed:#}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("Z9"));
    assert!(
        submits_of(&sim, &id(&job)).is_empty(),
        "never sent to Zhimu"
    );
    assert_eq!(
        sim.ledger_count(&zhimu("POST", "/openapi/control/queryPrinterDetail")),
        before + 1,
        "the capabilities were fetched once"
    );
    // Now cached: the next such job is refused at accept, a supported one prints.
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "annex", "document": {"text": "x"}, "options": {"paper": "Z9"}}),
        )
        .await;
    assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_option",
    )
    .await;
    let good = app
        .submit(json!({"printer_id": "annex", "document": {"text": "x"},
            "options": {"paper": "A4"}}))
        .await;
    finish(&app, &id(&good), "completed").await;
    assert_eq!(submits_of(&sim, &id(&good)).len(), 1);
}

/// A printer registered with its vendor gets its capabilities cached at once, so a strict
/// option it lacks is refused at accept, before any job exists.
#[tokio::test]
async fn capabilities_are_cached_at_registration_and_strict_options_are_checked_at_accept() {
    let (sim, app) = setup().await;
    let office: Value = app.get("/v1/printers/office").await.json().await.unwrap();
    assert!(office["capabilities_fetched_at"].is_string(), "{office:#}");
    let asked = sim.ledger_count(&zhimu("POST", "/openapi/control/queryPrinterDetail"));
    let refused = app
        .post(
            "/v1/jobs",
            &json!({"printer_id": "office", "document": {"text": "x"}, "options": {"paper": "Z9"}}),
        )
        .await;
    assert_problem(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_option",
    )
    .await;
    assert_eq!(
        sim.ledger_count(&zhimu("POST", "/openapi/control/queryPrinterDetail")),
        asked,
        "checked against the cache, without asking Zhimu again"
    );
}

/// Zhimu refusing a parameter the caller sent ("参数…不能为空") is a 422 with Zhimu's words,
/// not a 502.
#[tokio::test]
async fn a_zhimu_refusal_of_the_callers_input_is_422_with_its_words() {
    let (_sim, app) = setup().await;
    let response = app
        .client
        .delete(app.url(&format!(
            "/v1/backends/zhimu/printers/{SN}/{}?device_type=",
            urlencode(PRINTER)
        )))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "vendor_refused_input",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("不能为空"),
        "{problem:#}"
    );
}
