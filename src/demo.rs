//! `print-gateway demo`: starts the vendor simulator (test equipment, run as its own
//! process), points the gateway's backends at it, registers one demo printer per backend,
//! prints the URL and an API key, sends a demo job to each printer and follows it to its
//! end. Then it keeps serving until Ctrl-C.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::app::{self, Application, Role};
use crate::backends::BackendRegistry;
use crate::backends::zhimu::ZhimuBackend;
use crate::config::Config;
use crate::domain::JobOptions;
use crate::service::printers::{PrinterDraft, WhenTaken};
use crate::store;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Simulator(String),
    #[error(transparent)]
    Start(#[from] app::StartError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("demo request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// The simulator binary: `VENDOR_SIM_BIN`, or `vendor-sim` next to this executable.
fn simulator_binary(explicit: Option<PathBuf>) -> Result<PathBuf, DemoError> {
    let candidate = explicit.or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("vendor-sim")))
    });
    match candidate {
        Some(path) if path.exists() => Ok(path),
        _ => Err(DemoError::Simulator(
            "the vendor simulator binary was not found next to print-gateway; build it with `cargo build -p vendor-sim` (or set VENDOR_SIM_BIN)".into(),
        )),
    }
}

/// Starts the simulator on a free port with the demo fixtures; returns it and its URL.
async fn start_simulator(binary: PathBuf) -> Result<(Child, String), DemoError> {
    let mut child = Command::new(&binary)
        .args([
            "--bind",
            "127.0.0.1:0",
            "--demo-fixtures",
            "--allow-http-callbacks",
            "--lianke-stage-ms",
            "400",
            "--zhimu-stage-ms",
            "400",
            "--callback-time-scale",
            "0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| DemoError::Simulator(format!("cannot start {}: {err}", binary.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DemoError::Simulator("the simulator has no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("VENDOR_SIM_URL=") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| DemoError::Simulator("the simulator did not report its URL".into()))?;
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// A demo printer for a backend the registry has.
struct DemoPrinter {
    id: &'static str,
    display_name: &'static str,
    backend: &'static str,
    locator: Value,
    secrets: Value,
}

/// The printers the simulator's `--demo-fixtures` stand behind.
fn demo_printers() -> Vec<DemoPrinter> {
    vec![
        DemoPrinter {
            id: "demo-lianke",
            display_name: "Demo Lianke box (simulated HP LaserJet P1007)",
            backend: "lianke",
            locator: json!({"device_id": "demo-lk-1", "device_port": 1, "printer_model": "HP LaserJet P1007"}),
            secrets: json!({"device_key": "demo-lk-key"}),
        },
        DemoPrinter {
            id: "demo-zhimu",
            display_name: "Demo Zhimu shared printer (simulated 佳能复合机)",
            backend: "zhimu",
            locator: json!({"share_sn": "pkDgrqeA", "printer_name": "佳能复合机", "device_type": "printer"}),
            secrets: json!({}),
        },
        DemoPrinter {
            id: "demo-wecom",
            display_name: "Demo WeCom printer (prints on demo-lianke)",
            backend: "wecom",
            locator: json!({"device_sn": "demo-wecom-sn", "open_userids": ["demo-user"], "target_printer_id": "demo-lianke"}),
            secrets: json!({"device_secret": "demo-device-secret"}),
        },
    ]
}

/// A one-page PDF, as a WeCom user would send.
const DEMO_PDF: &[u8] = b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n";

/// Seeds a job in the simulator as if a WeCom user had pressed "print" on demo-wecom.
async fn seed_wecom_job(client: &reqwest::Client, sim_url: &str) -> Result<(), DemoError> {
    use base64::Engine as _;
    let seed = json!({
        "device_sn": "demo-wecom-sn",
        "open_userid": "demo-user",
        "doc_name": "from-wecom.pdf",
        "content": base64::engine::general_purpose::STANDARD.encode(DEMO_PDF),
        "setting_list": [{"key": "份数", "value": ["1"]}, {"key": "纸张大小", "value": ["A4"]}],
        "push": false,
    });
    client
        .post(format!("{sim_url}/_sim/wecom/jobs"))
        .json(&seed)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Waits for the WeCom sync to import the seeded job; returns its gateway id.
async fn imported_wecom_job(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    seeded_at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, DemoError> {
    let since = seeded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for _ in 0..60 {
        let page: Value = client
            .get(format!("{base}/v1/jobs"))
            .query(&[
                ("source", "wecom"),
                ("limit", "1"),
                ("created_after", since.as_str()),
            ])
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        if let Some(id) = page["items"][0]["id"].as_str() {
            return Ok(Some(id.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(None)
}

/// Points the backends' settings at the simulator (callbacks over plain http: the
/// simulator is told to accept them; real Lianke requires https).
fn configure_for_simulator(config: &mut Config, sim_url: &str) {
    if config.public_base_url.is_none() {
        config.public_base_url = Some(format!("http://{}", app::reachable(config.bind_addr)));
    }
    if config.callback_secrets.is_none() {
        // One process: a fresh key per demo run is enough.
        config.callback_secrets = Some(uuid::Uuid::new_v4().simple().to_string().into());
    }
    if config.secrets.secrets_keys.is_none() {
        // Sealed at rest like anywhere else, under the demo's fixed key.
        config.secrets.secrets_keys = Some(SecretString::from(
            crate::secrets_at_rest::demo_keys_setting(),
        ));
        config.secrets.secrets_active_key = None;
    }
    config.lianke.lianke_base_url = sim_url.to_owned();
    config.lianke.lianke_api_key = Some(vendor_sim_lianke_api_key().into());
    config.lianke.lianke_allow_http_callback = true;
    config.lianke.lianke_poll_interval_ms = 2_000;
    config.lianke.lianke_callback_wait_ms = 5_000;
    config.zhimu.zhimu_base_url = sim_url.to_owned();
    config.zhimu.zhimu_app_id = Some("demo-app".to_owned());
    config.zhimu.zhimu_app_key = Some("demo-appkey".into());
    config.zhimu.zhimu_poll_first_ms = 500;
    config.zhimu.zhimu_poll_every_ms = 500;
    config.wecom.wecom_base_url = sim_url.to_owned();
    config.wecom.wecom_model_id = Some("demo-model".to_owned());
    config.wecom.wecom_model_secret = Some(SecretString::from("demo-model-secret"));
    config.wecom.wecom_model_ticket = Some(SecretString::from("demo-model-ticket"));
    config.wecom.wecom_sync_interval_secs = 2;
    config.wecom.wecom_tenant = DEMO_TENANT.to_owned();
    // Webhooks to a receiver on this machine (`print-gateway webhooks listen`).
    config.webhooks.webhook_allow_http = true;
    config.webhooks.webhook_allow_private_urls = true;
}

/// The tenant of the demo's API key (WeCom jobs are imported for it too).
const DEMO_TENANT: &str = "demo";

/// Binds the simulator's demo share to the demo Zhimu app, as an operator would with
/// `POST /v1/backends/zhimu/shares`.
async fn bind_zhimu_share(backends: &BackendRegistry) -> Result<(), DemoError> {
    if let Some(zhimu) = backends.get_as::<ZhimuBackend>("zhimu") {
        zhimu.bind_share("830487711", "2598").await.map_err(|err| {
            DemoError::Simulator(format!("binding the demo Zhimu share failed: {err}"))
        })?;
    }
    Ok(())
}

/// The ApiKey the simulator accepts by default (its `--lianke-api-keys`).
fn vendor_sim_lianke_api_key() -> &'static str {
    "sim-lianke-api-key"
}

/// Where the simulator comes from.
pub enum Simulator {
    /// Start this binary (default: `vendor-sim` next to this executable).
    Spawn(Option<PathBuf>),
    /// Use one already running at this URL (docker-compose).
    Running(String),
}

pub async fn run(
    mut config: Config,
    simulator: Simulator,
    env_file: Option<PathBuf>,
) -> Result<(), DemoError> {
    let (mut sim, sim_url) = match simulator {
        Simulator::Spawn(binary) => {
            let (child, url) = start_simulator(simulator_binary(binary)?).await?;
            (Some(child), url)
        }
        Simulator::Running(url) => (None, url.trim_end_matches('/').to_owned()),
    };
    println!("VENDOR_SIM_URL={sim_url}");
    configure_for_simulator(&mut config, &sim_url);

    let pool = app::prepare_database(&config).await?;
    let backends = app::default_backends(&config);
    let application =
        Application::start(config.clone(), pool.clone(), backends.clone(), Role::All).await?;
    let base = application.base_url();
    // The running app's registry: it also holds the WeCom source backend.
    let backends = application.state().backends.clone();
    let service = application.state().service();

    bind_zhimu_share(&backends).await?;
    let mut registered = Vec::new();
    for printer in demo_printers() {
        let Some(backend) = backends.get(printer.backend) else {
            continue;
        };
        let draft = PrinterDraft {
            id: printer.id.into(),
            display_name: printer.display_name.into(),
            locator: printer.locator,
            secrets: printer.secrets,
            default_options: JobOptions::default(),
            enabled: true,
            max_in_flight: None,
            owner_tenant: DEMO_TENANT.to_owned(),
            shared_with: Vec::new(),
        };
        service
            .register_printer(backend.name(), draft, false, WhenTaken::Replace)
            .await
            .map_err(|err| DemoError::Simulator(err.to_string()))?;
        registered.push(printer.id);
    }
    let pool_made = if registered.contains(&"demo-lianke") && registered.contains(&"demo-zhimu") {
        register_demo_pool(&service).await?;
        println!("Pool: demo-pool (first_healthy: demo-lianke, then demo-zhimu)");
        true
    } else {
        false
    };
    let scopes: Vec<String> = crate::api::auth::SCOPES
        .into_iter()
        .map(str::to_owned)
        .collect();
    let new = store::api_keys::NewKey {
        tenant: DEMO_TENANT,
        name: "demo",
        scopes: &scopes,
        expires_at: None,
    };
    let (_, key) = store::api_keys::create_key(&pool, &new).await?;
    let database_url = app::redact_password(config.database_url.expose_secret());
    println!("DATABASE_URL={database_url}");
    println!("PRINT_GATEWAY_URL={base}");
    println!("PRINT_GATEWAY_API_KEY={key}");
    if let Some(path) = &env_file {
        // For `. target/demo.env` in another shell (the README's walk-through). A password
        // in DATABASE_URL is not written; set it yourself then.
        let text = format!(
            "export DATABASE_URL='{database_url}'\nexport PRINT_GATEWAY_URL='{base}'\nexport PRINT_GATEWAY_API_KEY='{key}'\n"
        );
        std::fs::write(path, text).map_err(|err| {
            DemoError::Simulator(format!("cannot write {}: {err}", path.display()))
        })?;
        println!(
            "(also written to {}: `. {}` in another shell)",
            path.display(),
            path.display()
        );
    }
    println!("Swagger UI: {base}/docs (Authorize with the key above)");
    println!(
        "Printers: {}",
        if registered.is_empty() {
            "none (no backend configured yet)".to_owned()
        } else {
            registered.join(", ")
        }
    );

    let client = reqwest::Client::new();
    let mut jobs = Vec::new();
    for printer in registered.iter().filter(|p| **p != "demo-wecom") {
        let body = json!({
            "printer_id": printer,
            "document": {"html": format!("<h1>print-gateway demo</h1><p>Printed on {printer}.</p>")},
            "metadata": {"demo": true},
        });
        let job = post_job(&client, &base, &key, &body).await?;
        println!(
            "submitted job {} to {printer}: {}",
            job["id"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?")
        );
        jobs.push((
            printer.to_string(),
            job["id"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    if pool_made {
        // A three-page PDF through the pool (Lianke prints PDF as it is), and its pages 1
        // and 3 on demo-zhimu, which takes images only: the gateway renders them to PNG.
        let pdf = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::engine::pages::sample_pdf(3),
        );
        for (field, target, options) in [
            ("pool_id", "demo-pool", json!({})),
            ("printer_id", "demo-zhimu", json!({"page_ranges": "1,3"})),
        ] {
            let body = json!({
                field: target,
                "document": {"base64": pdf, "content_type": "application/pdf", "filename": "three-pages.pdf"},
                "options": options,
                "metadata": {"demo": true},
            });
            let job = post_job(&client, &base, &key, &body).await?;
            println!(
                "submitted a 3-page PDF job {} to {target}: {} on {}",
                job["id"].as_str().unwrap_or("?"),
                job["state"].as_str().unwrap_or("?"),
                job["printer_id"].as_str().unwrap_or("?")
            );
            jobs.push((
                format!("{target} (PDF)"),
                job["id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    if registered.contains(&"demo-wecom") {
        let seeded_at = chrono::Utc::now();
        seed_wecom_job(&client, &sim_url).await?;
        println!(
            "a simulated WeCom user sent from-wecom.pdf to demo-wecom; waiting for the sync to import it"
        );
        if let Some(id) = imported_wecom_job(&client, &base, &key, seeded_at).await? {
            println!(
                "imported WeCom job as {id} (printing on demo-lianke, reported back to WeCom when done)"
            );
            jobs.push(("demo-wecom → demo-lianke".to_owned(), id));
        }
    }
    follow(&client, &base, &key, &jobs).await?;

    let printer = registered.first().copied().unwrap_or("demo-lianke");
    println!();
    println!("The gateway keeps running. Print something (it completes within seconds):");
    println!(
        "  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' {base}/v1/jobs -d '{{\"printer_id\":\"{printer}\",\"document\":{{\"text\":\"hello from curl\"}}}}'"
    );
    if pool_made {
        println!(
            "Print a PDF through the pool demo-pool (it goes to demo-lianke, or to demo-zhimu as PNG pages when demo-lianke cannot print):"
        );
        println!(
            "  curl -s -H 'Authorization: Bearer {key}' -F pool_id=demo-pool -F file=@examples/invoice.pdf {base}/v1/jobs"
        );
        println!("  (any PDF file will do; its first page: GET {base}/v1/jobs/<id>/preview.png)");
    }
    println!("Then follow it (use the id from the answer):");
    println!("  curl -s -H 'Authorization: Bearer {key}' {base}/v1/jobs/<id>");
    println!("  curl -s -H 'Authorization: Bearer {key}' {base}/v1/jobs/<id>/events");
    println!(
        "Get events pushed (signed webhooks): register a receiver, then run it with the secret from the answer:"
    );
    println!(
        "  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' {base}/v1/webhook-endpoints -d '{{\"url\":\"http://127.0.0.1:9000/\"}}'"
    );
    println!("  print-gateway webhooks listen --port 9000 --secret <whsec_… from the answer>");
    println!("  or poll them: curl -s -H 'Authorization: Bearer {key}' {base}/v1/events");
    println!("Ctrl-C stops it.");
    application.run_until_signal().await;
    if let Some(child) = sim.as_mut() {
        let _ = child.kill().await;
    }
    Ok(())
}

/// Defines `demo-pool` (again, on a demo database that has it).
async fn register_demo_pool(service: &crate::service::Service) -> Result<(), DemoError> {
    let request = crate::service::pools::PoolRequest {
        tenant: DEMO_TENANT.to_owned(),
        id: "demo-pool".to_owned(),
        display_name: Some("Demo pool: Lianke first, Zhimu when Lianke cannot print".to_owned()),
        policy: "first_healthy".to_owned(),
        members: vec!["demo-lianke".to_owned(), "demo-zhimu".to_owned()],
    };
    let done = match service.create_pool(request.clone()).await {
        Err(crate::service::ServiceError::Refused {
            code: "pool_exists",
            ..
        }) => service.update_pool(request).await.map(|_| ()),
        other => other.map(|_| ()),
    };
    done.map_err(|err| DemoError::Simulator(format!("defining demo-pool failed: {err}")))
}

/// Prints each job's state changes until all are finished (or a minute passes).
async fn follow(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    jobs: &[(String, String)],
) -> Result<(), DemoError> {
    let mut last: Vec<String> = vec![String::new(); jobs.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut all_done = true;
        for (i, (printer, id)) in jobs.iter().enumerate() {
            let job: Value = client
                .get(format!("{base}/v1/jobs/{id}"))
                .bearer_auth(key)
                .send()
                .await?
                .json()
                .await?;
            let state = job["state"].as_str().unwrap_or("?");
            let mut shown = format!("{state} ({})", job["state_reason"].as_str().unwrap_or("-"));
            if let Some(pages) = job["page_count"].as_i64() {
                shown.push_str(&format!(
                    " on {}, {pages} pages rendered from {}",
                    job["printer_id"].as_str().unwrap_or("?"),
                    job["converted_from"].as_str().unwrap_or("?")
                ));
            }
            if shown != last[i] {
                println!("  {printer}: job {id} is {shown}");
                last[i] = shown;
            }
            if !matches!(state, "completed" | "failed" | "canceled") {
                all_done = false;
            }
        }
        if all_done || tokio::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Posts one job to the demo gateway and returns its JSON answer.
async fn post_job(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> Result<Value, reqwest::Error> {
    client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?
        .json()
        .await
}
