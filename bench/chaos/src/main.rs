//! The chaos suite (issue 11): runs release binaries of the gateway and the vendor simulator
//! against a PostgreSQL cluster of its own, hurts them — kill -9 of the gateway at random
//! moments, a SIGTERM of one of three replicas, a Postgres restart and outage — under vendor
//! faults (HTTP 502 before and after the vendor acted, hung answers, timeouts), then checks
//! every job's outcome against the simulator's record of what was really submitted and
//! printed. Prints one table per scenario; exits 1 on any violation.
//!
//! Everything random comes from `--seed`: the plan of jobs, the moments of the faults and the
//! simulator's fault draws (`--fault-seed`). The same seed replays the same run, up to the
//! timing of concurrent requests.

mod load;
mod procs;
mod verdict;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::load::{Planned, Recorder, Targets};
use crate::procs::{Gateway, Postgres, Simulator, gateway_command};
use crate::verdict::{Report, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// kill -9 of the gateway at random moments, restarted each time.
    Kill,
    /// Three replicas; one gets SIGTERM mid-run.
    Replicas,
    /// A Postgres restart and an outage mid-load.
    Postgres,
    All,
}

/// Chaos suite for print-gateway: kill -9, replicas, Postgres outages under vendor faults;
/// checks every job against the vendor simulator's ledger.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    scenario: Which,
    /// The CI size: ~1,000 jobs in all, one kill, one short outage (≤ 3 minutes).
    #[arg(long)]
    short: bool,
    /// Jobs per scenario (default 10000; --short: 600 for kill, 200 for the others).
    #[arg(long)]
    jobs: Option<usize>,
    /// Jobs submitted per second (default 100; --short 40).
    #[arg(long)]
    rate: Option<f64>,
    /// kill -9 count in the kill scenario (default 12; --short 1).
    #[arg(long)]
    kills: Option<usize>,
    /// Seconds Postgres stays down in the outage (default 10; --short 5).
    #[arg(long)]
    outage_secs: Option<u64>,
    /// Longest wait for every accepted job to settle after the load (default 600; --short 90).
    #[arg(long)]
    drain_secs: Option<u64>,
    /// Seed of everything random (plan, fault moments, the simulator's fault draws).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Multiplies every vendor fault probability (0 turns vendor faults off).
    #[arg(long, default_value_t = 1.0)]
    fault_scale: f64,
    #[arg(long, default_value_t = 4)]
    lianke_printers: usize,
    #[arg(long, default_value_t = 4)]
    zhimu_printers: usize,
    /// Milliseconds per simulated task stage (three stages per task).
    #[arg(long, default_value_t = 100)]
    stage_ms: u64,
    #[arg(long, default_value = "target/release/print-gateway")]
    gateway_bin: PathBuf,
    #[arg(long, default_value = "target/release/vendor-sim")]
    sim_bin: PathBuf,
    /// Logs, the Postgres cluster and the reports go here (recreated).
    #[arg(long, default_value = "target/chaos")]
    work_dir: PathBuf,
    /// Port of the suite's own PostgreSQL cluster (never the shared 5432).
    #[arg(long, default_value_t = 55439)]
    pg_port: u16,
    /// First port of the gateway replicas.
    #[arg(long, default_value_t = 18480)]
    base_port: u16,
    /// Extra gateway setting, `NAME=VALUE` (repeatable; overrides the suite's defaults).
    #[arg(long = "gateway-env", value_name = "NAME=VALUE")]
    gateway_env: Vec<String>,
}

/// Sizes after applying `--short` and explicit flags.
struct Sizes {
    jobs: usize,
    rate: f64,
    kills: usize,
    outage: Duration,
    drain: Duration,
}

impl Args {
    fn sizes(&self, which: Which) -> Sizes {
        let short_jobs = if which == Which::Kill { 600 } else { 200 };
        Sizes {
            jobs: self
                .jobs
                .unwrap_or(if self.short { short_jobs } else { 10_000 }),
            rate: self.rate.unwrap_or(if self.short { 40.0 } else { 100.0 }),
            kills: self.kills.unwrap_or(if self.short { 1 } else { 12 }),
            outage: Duration::from_secs(self.outage_secs.unwrap_or(if self.short {
                5
            } else {
                10
            })),
            drain: Duration::from_secs(self.drain_secs.unwrap_or(if self.short {
                90
            } else {
                600
            })),
        }
    }
}

const TENANT: &str = "chaos";
const LIANKE_API_KEY: &str = "sim-lianke-api-key";
const ZHIMU_APP: (&str, &str) = ("chaos-app", "chaos-appkey");
const CALLBACK_SECRET: &str = "chaos-suite-callback-secret-0001";

/// The gateway's settings for the suite: fast retries, short leases and timeouts so that
/// recovery happens within a run, every backend on the simulator.
fn gateway_env(
    args: &Args,
    database_url: &str,
    sim_url: &str,
    public: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("DATABASE_MAX_CONNECTIONS", "20"),
        ("PUBLIC_BASE_URL", public),
        ("CALLBACK_SECRETS", CALLBACK_SECRET),
        ("LOG_FORMAT", "text"),
        ("RUST_LOG", "warn"),
        ("WORKER_CONCURRENCY", "32"),
        ("LEASE_SECS", "8"),
        ("VENDOR_TIMEOUT_SECS", "2"),
        ("SWEEP_INTERVAL_MS", "500"),
        ("RETRY_BASE_MS", "200"),
        ("RETRY_MAX_MS", "2000"),
        ("BREAKER_COOLDOWN_SECS", "2"),
        ("RECONCILE_EVERY_SECS", "2"),
        ("DEVICE_HOLD_AFTER_UNKNOWN_SECS", "10"),
        ("LIANKE_BASE_URL", sim_url),
        ("LIANKE_API_KEY", LIANKE_API_KEY),
        ("LIANKE_ALLOW_HTTP_CALLBACK", "true"),
        ("LIANKE_POLL_INTERVAL_MS", "1000"),
        ("LIANKE_CALLBACK_WAIT_MS", "2000"),
        ("ZHIMU_BASE_URL", sim_url),
        ("ZHIMU_APP_ID", ZHIMU_APP.0),
        ("ZHIMU_APP_KEY", ZHIMU_APP.1),
        ("ZHIMU_TIMEOUT_MS", "2000"),
        ("ZHIMU_POLL_FIRST_MS", "300"),
        ("ZHIMU_POLL_EVERY_MS", "500"),
        ("ZHIMU_POLL_MAX_MS", "2000"),
        ("ZHIMU_MAX_POLLS_PER_SEC", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for extra in &args.gateway_env {
        if let Some((k, v)) = extra.split_once('=') {
            env.retain(|(name, _)| name != k);
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    env
}

/// Everything a scenario runs against.
struct Rig {
    sim: Simulator,
    gateways: Vec<Gateway>,
    key: String,
    plan: Arc<Vec<Planned>>,
    http: reqwest::Client,
    dir: PathBuf,
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: Value,
) -> Result<Value> {
    let mut req = http.post(url).json(&body).timeout(Duration::from_secs(30));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get_json(http: &reqwest::Client, url: &str, key: Option<&str>) -> Result<Value> {
    let mut req = http.get(url).timeout(Duration::from_secs(60));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("GET {url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))
}

/// Seeds the simulator's devices, starts `replicas` gateways on a fresh database, registers
/// the printers and installs the vendor faults.
async fn rig(
    args: &Args,
    pg: &Postgres,
    name: &str,
    slot: u16,
    replicas: usize,
    sizes: &Sizes,
    rng: &mut StdRng,
) -> Result<Rig> {
    let dir = args.work_dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let sim = Simulator::start(
        &args.sim_bin,
        &dir.join("vendor-sim.log"),
        rng.random(),
        args.stage_ms,
    )
    .await?;
    let s = &sim.url;
    for i in 0..args.lianke_printers {
        post_json(
            &http,
            &format!("{s}/_sim/lianke/devices"),
            None,
            json!({"deviceId": format!("chaos-lk-{i}"), "deviceKey": format!("chaos-lk-key-{i}"), "online": true}),
        )
        .await?;
    }
    post_json(
        &http,
        &format!("{s}/_sim/zhimu/apps"),
        None,
        json!({"appid": ZHIMU_APP.0, "appkey": ZHIMU_APP.1}),
    )
    .await?;
    for i in 0..args.zhimu_printers {
        post_json(
            &http,
            &format!("{s}/_sim/zhimu/shares"),
            None,
            json!({"shareTicket": format!("7700{i:04}"), "password": "2468",
                   "sn": format!("chaossn{i}"), "printerName": format!("chaos-zm-{i}")}),
        )
        .await?;
    }

    let database_url = pg.url(&format!("chaos_{name}"));
    let addrs: Vec<SocketAddr> = (0..replicas)
        .map(|r| SocketAddr::from(([127, 0, 0, 1], args.base_port + slot * 10 + r as u16)))
        .collect();
    // Callbacks go to replica 0, which stays up in every scenario (a load balancer's view).
    let env = gateway_env(args, &database_url, s, &format!("http://{}", addrs[0]));
    gateway_command(&args.gateway_bin, &env, &["migrate"])?;
    let key_out = gateway_command(
        &args.gateway_bin,
        &env,
        &[
            "api-keys",
            "create",
            "--tenant",
            TENANT,
            "--scopes",
            "jobs:write,jobs:read,printers:admin",
        ],
    )?;
    let key = key_out
        .lines()
        .last()
        .context("api-keys create printed nothing")?
        .trim()
        .to_owned();
    let mut gateways = Vec::new();
    for (r, addr) in addrs.iter().enumerate() {
        let mut g = Gateway::new(
            &format!("{name}-{r}"),
            &args.gateway_bin,
            env.clone(),
            dir.join(format!("gateway-{r}.log")),
            *addr,
        );
        g.spawn()?;
        g.wait_healthy(&http, Duration::from_secs(60)).await?;
        gateways.push(g);
    }
    let base = gateways[0].base_url();
    let mut printers = Vec::new();
    for i in 0..args.lianke_printers {
        let id = format!("lk-{i}");
        post_json(
            &http,
            &format!("{base}/v1/printers"),
            Some(&key),
            json!({"id": id, "backend": "lianke",
                   "locator": {"device_id": format!("chaos-lk-{i}"), "device_port": 1, "printer_model": "HP LaserJet P1007"},
                   "secrets": {"device_key": format!("chaos-lk-key-{i}")}}),
        )
        .await?;
        printers.push(id);
    }
    for i in 0..args.zhimu_printers {
        post_json(
            &http,
            &format!("{base}/v1/backends/zhimu/shares"),
            Some(&key),
            json!({"share_ticket": format!("7700{i:04}"), "password": "2468"}),
        )
        .await?;
        let id = format!("zm-{i}");
        post_json(
            &http,
            &format!("{base}/v1/printers"),
            Some(&key),
            json!({"id": id, "backend": "zhimu",
                   "locator": {"share_sn": format!("chaossn{i}"), "printer_name": format!("chaos-zm-{i}"), "device_type": "printer"}}),
        )
        .await?;
        printers.push(id);
    }
    if printers.is_empty() {
        bail!("no printers: give --lianke-printers or --zhimu-printers");
    }

    let plan: Vec<Planned> = (0..sizes.jobs)
        .map(|n| {
            let printer_id = printers[rng.random_range(0..printers.len())].clone();
            Planned {
                n,
                text: format!(
                    "<p>chaos suite, seed {}, scenario {name}, job {n} for {printer_id}</p>",
                    args.seed
                ),
                idempotency_key: format!("chaos-{}-{name}-{n}", args.seed),
                printer_id,
            }
        })
        .collect();

    install_faults(&http, s, args.fault_scale).await?;
    Ok(Rig {
        sim,
        gateways,
        key,
        plan: Arc::new(plan),
        http,
        dir,
    })
}

/// The vendor fault mix, on both vendors' submit and status calls: HTTP 502 before the
/// vendor acted (3%), HTTP 502 after it created the task (2%), a hung answer after the task
/// was created (1%), a hung answer with no effect (0.5%); status calls: 502 (5%) and up to
/// 300 ms of latency.
async fn install_faults(http: &reqwest::Client, sim: &str, scale: f64) -> Result<()> {
    if scale <= 0.0 {
        return Ok(());
    }
    let calls = [
        ("lianke", "POST", "/api/print/job", "GET", "/api/print/job"),
        ("zhimu", "POST", "/openapi", "POST", "/openapi/task/get"),
    ];
    for (vendor, sm, sp, qm, qp) in calls {
        let submit = [
            (json!({"kind": "http_status", "status": 502}), 0.03),
            (json!({"kind": "http_status_after", "status": 502}), 0.02),
            (json!({"kind": "hang_after"}), 0.01),
            (json!({"kind": "hang"}), 0.005),
        ];
        for (action, p) in submit {
            post_json(
                http,
                &format!("{sim}/_sim/faults"),
                None,
                json!({"vendor": vendor, "method": sm, "endpoint": sp, "action": action,
                       "probability": (p * scale).min(1.0)}),
            )
            .await?;
        }
        let status = [
            (
                json!({"kind": "latency", "fixed_ms": 0, "jitter_ms": 300}),
                0.2,
            ),
            (json!({"kind": "http_status", "status": 502}), 0.05),
        ];
        for (action, p) in status {
            post_json(
                http,
                &format!("{sim}/_sim/faults"),
                None,
                json!({"vendor": vendor, "method": qm, "endpoint": qp, "action": action,
                       "probability": (p * scale).min(1.0)}),
            )
            .await?;
        }
    }
    Ok(())
}

/// Starts the load and the `/readyz` prober; returns their handles.
fn start_load(
    rig: &Rig,
    targets: &Targets,
    sizes: &Sizes,
    recorder: &Arc<Recorder>,
    stop_probe: &Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let load = tokio::spawn(load::submit_all(
        rig.http.clone(),
        rig.key.clone(),
        targets.clone(),
        Arc::clone(&rig.plan),
        load::Pace {
            rate: sizes.rate,
            concurrency: 32,
            give_up: Duration::from_secs(180),
        },
        Arc::clone(recorder),
    ));
    let probe = tokio::spawn(load::probe_readyz(
        rig.http.clone(),
        targets.clone(),
        Duration::from_millis(250),
        Arc::clone(stop_probe),
        Arc::clone(recorder),
    ));
    (load, probe)
}

/// Waits until no accepted job is `pending` or `processing` (settled: a final state or
/// `unconfirmed`), or the deadline. Returns how long it took, `None` on the deadline.
async fn drain(rig: &Rig, base: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let mut busy = false;
        for state in ["pending", "processing"] {
            match get_json(
                &rig.http,
                &format!("{base}/v1/jobs?state={state}&limit=1"),
                Some(&rig.key),
            )
            .await
            {
                Ok(page) => {
                    busy |= page["items"].as_array().is_some_and(|a| !a.is_empty());
                }
                Err(_) => busy = true,
            }
        }
        if !busy {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        sleep(Duration::from_millis(500)).await;
    }
}

/// Every job of the tenant, through the API.
async fn all_jobs(rig: &Rig, base: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/jobs?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(&rig.http, &url, Some(&rig.key)).await?;
        if let Some(items) = page["items"].as_array() {
            out.extend(items.iter().cloned());
        }
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// After the load: faults off, drain, then read the gateway's and the simulator's records.
async fn finish(
    rig: &mut Rig,
    recorder: &Recorder,
    windows: Vec<Window>,
    sizes: &Sizes,
    title: String,
    extra: Vec<verdict::Row>,
) -> Result<Report> {
    let s = rig.sim.url.clone();
    rig.http
        .delete(format!("{s}/_sim/faults"))
        .send()
        .await
        .context("clearing faults")?;
    let base = rig.gateways[0].base_url();
    let drained = drain(rig, &base, sizes.drain).await;
    let jobs = all_jobs(rig, &base).await?;
    let lianke_tasks = get_json(&rig.http, &format!("{s}/_sim/lianke/tasks"), None).await?;
    let zhimu_tasks = get_json(&rig.http, &format!("{s}/_sim/zhimu/tasks"), None).await?;
    let count = |vendor: &str, method: &str, endpoint: &str| {
        let url =
            format!("{s}/_sim/ledger/count?vendor={vendor}&method={method}&endpoint={endpoint}");
        let http = rig.http.clone();
        async move {
            get_json(&http, &url, None)
                .await
                .ok()
                .and_then(|v| v["count"].as_u64())
                .unwrap_or(0)
        }
    };
    let submits = (
        count("lianke", "POST", "/api/print/job").await,
        count("zhimu", "POST", "/openapi").await,
    );
    let report = verdict::judge(verdict::Evidence {
        title,
        plan: &rig.plan,
        accepted: recorder.accepted(),
        refused: recorder.refused(),
        idempotency_mismatches: recorder.idempotency_mismatches.load(Ordering::Relaxed),
        samples: recorder.samples(),
        windows,
        jobs,
        lianke_tasks,
        zhimu_tasks,
        submits,
        drained,
        drain_limit: sizes.drain,
        extra,
    });
    std::fs::write(rig.dir.join("report.txt"), report.render())?;
    Ok(report)
}

async fn shutdown(rig: Rig) {
    let Rig { sim, gateways, .. } = rig;
    for mut g in gateways {
        g.terminate(Duration::from_secs(20)).await;
    }
    sim.stop().await;
}

/// (a) kill -9 at random moments during the load, restarted after a random pause.
async fn scenario_kill(args: &Args, pg: &Postgres, rng: &mut StdRng) -> Result<Report> {
    let sizes = args.sizes(Which::Kill);
    let mut rig = rig(args, pg, "kill", 0, 1, &sizes, rng).await?;
    let load_secs = sizes.jobs as f64 / sizes.rate;
    let mut moments: Vec<f64> = (0..sizes.kills)
        .map(|_| rng.random_range(0.1..0.9) * load_secs)
        .collect();
    moments.sort_by(f64::total_cmp);
    let pauses: Vec<f64> = (0..sizes.kills)
        .map(|_| rng.random_range(0.0..1.5))
        .collect();
    let recorder = Arc::new(Recorder::default());
    let targets = Targets::new(vec![rig.gateways[0].base_url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let (load, probe) = start_load(&rig, &targets, &sizes, &recorder, &stop);
    let start = Instant::now();
    let mut kills = 0;
    let mut restart_secs: Vec<f64> = Vec::new();
    for (at, pause) in moments.iter().zip(&pauses) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(*at)).await;
        rig.gateways[0].kill9().await;
        kills += 1;
        sleep(Duration::from_secs_f64(*pause)).await;
        let t = Instant::now();
        rig.gateways[0].spawn()?;
        rig.gateways[0]
            .wait_healthy(&rig.http, Duration::from_secs(60))
            .await?;
        restart_secs.push(t.elapsed().as_secs_f64());
    }
    let _ = load.await;
    stop.store(true, Ordering::Relaxed);
    let _ = probe.await;
    let slowest = restart_secs.iter().copied().fold(0.0, f64::max);
    let extra = vec![verdict::Row::info(
        "kill -9 of the gateway (restarted each time)",
        format!("{kills} (slowest restart to healthy: {slowest:.1} s)"),
    )];
    let title = format!(
        "(a) kill -9 ×{kills} — {} jobs at {}/s over {} Lianke + {} Zhimu printers, seed {}",
        sizes.jobs, sizes.rate, args.lianke_printers, args.zhimu_printers, args.seed
    );
    let report = finish(&mut rig, &recorder, Vec::new(), &sizes, title, extra).await;
    shutdown(rig).await;
    report
}

/// (b) three replicas; SIGTERM of one of them mid-run (it is not restarted).
async fn scenario_replicas(args: &Args, pg: &Postgres, rng: &mut StdRng) -> Result<Report> {
    let sizes = args.sizes(Which::Replicas);
    let mut rig = rig(args, pg, "replicas", 1, 3, &sizes, rng).await?;
    let load_secs = sizes.jobs as f64 / sizes.rate;
    let at = rng.random_range(0.3..0.6) * load_secs;
    let victim = rng.random_range(1..3);
    let recorder = Arc::new(Recorder::default());
    let targets = Targets::new(rig.gateways.iter().map(Gateway::base_url).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (load, probe) = start_load(&rig, &targets, &sizes, &recorder, &stop);
    sleep(Duration::from_secs_f64(at)).await;
    // The load balancer stops sending to it as the signal goes out.
    targets.remove(&rig.gateways[victim].base_url());
    let exit = rig.gateways[victim]
        .terminate(Duration::from_secs(60))
        .await;
    let _ = load.await;
    stop.store(true, Ordering::Relaxed);
    let _ = probe.await;
    let mut extra = Vec::new();
    match exit {
        Some((took, status)) if !status.contains("killed") => extra.push(verdict::Row::info(
            "SIGTERM of one replica mid-run",
            format!(
                "replica {victim} at {at:.1} s: exited in {:.1} s ({status})",
                took.as_secs_f64()
            ),
        )),
        Some((took, status)) => extra.push(verdict::Row::violation(
            "SIGTERM of one replica mid-run: no exit within 60 s",
            1,
            format!(
                "replica {victim}: {status} after {:.1} s",
                took.as_secs_f64()
            ),
        )),
        None => bail!("replica {victim} was not running at the SIGTERM"),
    }
    let title = format!(
        "(b) 3 replicas, SIGTERM of one mid-run — {} jobs at {}/s over {} Lianke + {} Zhimu printers, seed {}",
        sizes.jobs, sizes.rate, args.lianke_printers, args.zhimu_printers, args.seed
    );
    let report = finish(&mut rig, &recorder, Vec::new(), &sizes, title, extra).await;
    shutdown(rig).await;
    report
}

/// (c) a Postgres restart, then an outage of `--outage-secs`, mid-load. A second `serve` is
/// started while Postgres is down: it must serve once Postgres is back.
async fn scenario_postgres(args: &Args, pg: &Postgres, rng: &mut StdRng) -> Result<Report> {
    let sizes = args.sizes(Which::Postgres);
    let mut rig = rig(args, pg, "postgres", 2, 1, &sizes, rng).await?;
    let load_secs = sizes.jobs as f64 / sizes.rate;
    let restart_at = rng.random_range(0.15..0.3) * load_secs;
    let outage_at = (rng.random_range(0.45..0.6) * load_secs).max(restart_at + 2.0);
    let recorder = Arc::new(Recorder::default());
    let targets = Targets::new(vec![rig.gateways[0].base_url()]);
    let stop = Arc::new(AtomicBool::new(false));
    let (load, probe) = start_load(&rig, &targets, &sizes, &recorder, &stop);
    let start = Instant::now();
    let mut windows = Vec::new();

    tokio::time::sleep_until(start + Duration::from_secs_f64(restart_at)).await;
    let w = Instant::now();
    // pg_ctl blocks; keep the runtime's threads free for the load and the probes.
    tokio::task::block_in_place(|| pg.restart())?;
    windows.push(Window {
        name: "Postgres restart".into(),
        from: w,
        to: Instant::now(),
    });

    tokio::time::sleep_until(start + Duration::from_secs_f64(outage_at)).await;
    let w = Instant::now();
    tokio::task::block_in_place(|| pg.stop())?;
    // A replica started while Postgres is away (compose/Kubernetes start order).
    let late_addr = SocketAddr::from(([127, 0, 0, 1], args.base_port + 20 + 5));
    let env = rig.gateways[0].env_for_copy();
    let mut late = Gateway::new(
        "postgres-late",
        &args.gateway_bin,
        env,
        rig.dir.join("gateway-late.log"),
        late_addr,
    );
    late.spawn()?;
    tokio::time::sleep_until(w + sizes.outage).await;
    tokio::task::block_in_place(|| pg.start())?;
    windows.push(Window {
        name: format!("Postgres outage ({} s)", sizes.outage.as_secs()),
        from: w,
        to: Instant::now(),
    });
    let late_ok = wait_ready(&rig.http, &mut late, Duration::from_secs(60)).await;
    late.terminate(Duration::from_secs(20)).await;

    let _ = load.await;
    stop.store(true, Ordering::Relaxed);
    let _ = probe.await;
    let extra = vec![match late_ok {
        Ok(took) => verdict::Row::info(
            "serve started during the outage",
            format!("ready {:.1} s after Postgres returned", took.as_secs_f64()),
        ),
        Err(why) => verdict::Row::violation("serve started during the outage never served", 1, why),
    }];
    let title = format!(
        "(c) Postgres restart at {restart_at:.0} s, {} s outage at {outage_at:.0} s — {} jobs at {}/s over {} Lianke + {} Zhimu printers, seed {}",
        sizes.outage.as_secs(),
        sizes.jobs,
        sizes.rate,
        args.lianke_printers,
        args.zhimu_printers,
        args.seed
    );
    let report = finish(&mut rig, &recorder, windows, &sizes, title, extra).await;
    shutdown(rig).await;
    report
}

/// Waits for `/readyz` 200 from a process that must not exit meanwhile.
async fn wait_ready(
    http: &reqwest::Client,
    g: &mut Gateway,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let url = format!("{}/readyz", g.base_url());
    loop {
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if !g.running() {
            return Err("the process exited while Postgres was away (see gateway-late.log)".into());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "not ready {} s after Postgres returned",
                limit.as_secs()
            ));
        }
        sleep(Duration::from_millis(200)).await;
    }
}

fn resolve(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        bail!(
            "{} not found: build the release binaries first (cargo build --release -p print-gateway -p vendor-sim), or use bench/chaos/run",
            path.display()
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("chaos: {err:#}");
            std::process::exit(2);
        }
    }
}

async fn run(mut args: Args) -> Result<bool> {
    args.gateway_bin = resolve(&args.gateway_bin)?;
    args.sim_bin = resolve(&args.sim_bin)?;
    if args.work_dir.exists() {
        Postgres::stop_stale(&args.work_dir.join("pgdata"));
        std::fs::remove_dir_all(&args.work_dir)?;
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = std::fs::canonicalize(&args.work_dir)?;
    args.work_dir = work_dir;
    println!(
        "chaos: seed {} ({}); logs and reports in {}",
        args.seed,
        if args.short { "short" } else { "full size" },
        args.work_dir.display()
    );
    let pg = Postgres::create(&args.work_dir.join("pgdata"), args.pg_port)?;
    let scenarios: Vec<Which> = match args.scenario {
        Which::All => vec![Which::Kill, Which::Replicas, Which::Postgres],
        one => vec![one],
    };
    let mut clean = true;
    let started = Instant::now();
    for which in scenarios {
        // One generator per scenario, so running one alone replays it exactly.
        let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(31).wrapping_add(which as u64));
        let t = Instant::now();
        let report = match which {
            Which::Kill => scenario_kill(&args, &pg, &mut rng).await?,
            Which::Replicas => scenario_replicas(&args, &pg, &mut rng).await?,
            Which::Postgres => scenario_postgres(&args, &pg, &mut rng).await?,
            Which::All => unreachable!("expanded above"),
        };
        println!("{}", report.render());
        println!("   ({} s)\n", t.elapsed().as_secs());
        clean &= report.violations() == 0;
    }
    println!(
        "chaos: {} in {} s (replay: --seed {}{})",
        if clean {
            "no violations"
        } else {
            "VIOLATIONS FOUND"
        },
        started.elapsed().as_secs(),
        args.seed,
        if args.short { " --short" } else { "" }
    );
    Ok(clean)
}
