//! Every phase, in one run: limits first (pgbench, the bare baselines), then the gateway
//! (release build) against the simulator. The README's "Benchmarks" section says what each
//! phase does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::load::{self, Req};
use crate::report::{self, Row};
use crate::wrk::{self, WrkResult};

const TENANT: &str = "bench";
const CALLBACK_SECRET: &str = "bench-callback-secret-0123456789";
const SIM_API_KEY: &str = "sim-lianke-api-key";

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Postgres server (any database on it; the bench creates `--database`).
    #[arg(
        long,
        env = "BASE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
    /// The database the bench drops and creates for its run (another name lets two runs
    /// share one Postgres server).
    #[arg(long, default_value = "print_gateway_bench")]
    pub database: String,
    /// Seconds per measured phase (the table used 30).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent connections for the throughput phases.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Simulated Lianke boxes (one printer each).
    #[arg(long, default_value_t = 200)]
    pub devices: u32,
    /// Vendor submit latency, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub vendor_latency_ms: u64,
    /// Dispatch workers of the gateway in the dispatch phase.
    #[arg(long, default_value_t = 256)]
    pub workers: u32,
    /// Jobs stored for the list-page phase (SPEC: 1,000,000; takes a few minutes to seed).
    #[arg(long, default_value_t = 100_000)]
    pub list_rows: u64,
    /// Callbacks sent in the callback phase (at most the jobs dispatched).
    #[arg(long, default_value_t = 10_000)]
    pub callbacks: usize,
    /// Events written to the outbox for the webhook phase (each delivered to three
    /// endpoints).
    #[arg(long, default_value_t = 5_000)]
    pub webhook_events: usize,
    /// Samples of idle accept → submit latency.
    #[arg(long, default_value_t = 40)]
    pub idle_samples: usize,
    /// Soak phase: seconds of POSTs at half the pgbench insert rate, sampling RSS (SPEC: 600;
    /// 0 skips it).
    #[arg(long, default_value_t = 600)]
    pub soak_secs: u64,
    /// POSTs per second in the soak when the `limits` phase is not run (else half of pgbench).
    #[arg(long, default_value_t = 500.0)]
    pub soak_rate: f64,
    /// Phases to run, comma-separated (default: all): limits (pgbench), accept, get (GET by
    /// id and /healthz with their bare baselines), list, dispatch, idle, callbacks, webhooks
    /// (outbound deliveries to three signature-checking receivers), soak, render (a 50-page
    /// PDF to PNG at 300 dpi: pages per second and peak RSS).
    /// `dispatch` without `accept` seeds its backlog with SQL; `callbacks` needs `dispatch`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub phases: Vec<String>,
    /// Jobs seeded for the dispatch phase when `accept` is not run.
    #[arg(long, default_value_t = 15_000)]
    pub dispatch_jobs: u64,
    /// Extra gateway environment, `NAME=VALUE` (repeatable), e.g. DATABASE_MAX_CONNECTIONS=40.
    #[arg(long = "gateway-env")]
    pub gateway_env: Vec<String>,
    /// Where the table, the JSON and raw tool outputs go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Where print-gateway, vendor-sim and bench are (default: beside this binary), e.g.
    /// another build to compare with.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// First of the local ports used (gateway, baseline, simulator).
    #[arg(long, default_value_t = 18080)]
    pub port: u16,
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (the gateway drains), then SIGKILL.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 20 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// VmRSS and VmHWM (peak) of a process, MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .context("bench binary has a directory")?
        .to_path_buf())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{prefix}/{db}{query}")
}

struct Ctx {
    opts: Options,
    bins: PathBuf,
    db_url: String,
    pool: PgPool,
    http: reqwest::Client,
    gateway_url: String,
    sim_url: String,
    baseline_url: String,
    api_key: String,
    peak_rss: f64,
    raw: serde_json::Map<String, Value>,
}

fn wait_http(url: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_ok(url) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer at {url} within 60 s")
}

/// A plain `GET` over TCP answering 200 (no async runtime needed while waiting).
fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

impl Ctx {
    fn gateway_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".to_string(), self.db_url.clone()),
            ("BIND_ADDR".into(), format!("127.0.0.1:{}", self.opts.port)),
            ("LIANKE_BASE_URL".into(), self.sim_url.clone()),
            ("LIANKE_API_KEY".into(), SIM_API_KEY.into()),
            ("PUBLIC_BASE_URL".into(), self.gateway_url.clone()),
            ("LIANKE_ALLOW_HTTP_CALLBACK".into(), "true".into()),
            ("CALLBACK_SECRETS".into(), CALLBACK_SECRET.into()),
            // the callback phase sends the callbacks itself; no poll may beat it
            ("LIANKE_CALLBACK_WAIT_MS".into(), "3600000".into()),
            ("WORKER_CONCURRENCY".into(), self.opts.workers.to_string()),
            // The per-key rate limit is a policy (default 1,000/s with a burst of 2,000), not
            // a capacity: with it the accept and GET phases measured the limiter (~1,200/s
            // over 10 s, every other answer a 429). Off here; --gateway-env can set it.
            ("RATE_LIMIT_RPS".into(), "0".into()),
            // the webhook phase's receivers listen on plain http on this machine
            ("WEBHOOK_ALLOW_HTTP".into(), "true".into()),
            ("WEBHOOK_ALLOW_PRIVATE_URLS".into(), "true".into()),
        ];
        // logging as deployed (the gateway's default filter) unless RUST_LOG says otherwise
        for kv in &self.opts.gateway_env {
            if let Some((k, v)) = kv.split_once('=') {
                env.retain(|(name, _)| name != k);
                env.push((k.into(), v.into()));
            }
        }
        env
    }

    fn start_gateway(&self, role: &str) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.opts.out.join(format!("gateway-{role}.log")))?;
        let child = Command::new(self.bins.join("print-gateway"))
            .args(["serve", "--role", role])
            .envs(self.gateway_env())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting target/release/print-gateway")?;
        let proc = Proc {
            child,
            name: "gateway",
        };
        wait_http(&format!("{}/healthz", self.gateway_url), "the gateway")?;
        Ok(proc)
    }

    fn stop_gateway(&mut self, proc: Proc) {
        let (_, hwm) = rss_mib(proc.pid());
        self.peak_rss = self.peak_rss.max(hwm);
        proc.stop();
    }

    fn wrk(&mut self, name: &str, base: &str, lua: &str, conns: u32) -> anyhow::Result<WrkResult> {
        println!(
            "  wrk {name} ({conns} connections, {} s)",
            self.opts.duration
        );
        let r = wrk::run(
            &self.opts.out,
            name,
            base,
            lua,
            conns,
            Duration::from_secs(self.opts.duration),
        )?;
        println!(
            "    {:.0} ok/s, p50 {:.2} ms, p99 {:.2} ms, {} non-2xx, {} socket errors",
            r.ok_per_sec(),
            r.p50_ms(),
            r.p99_ms(),
            r.errors_status,
            r.errors_socket
        );
        self.raw.insert(name.into(), serde_json::to_value(&r)?);
        Ok(r)
    }

    async fn sim(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.sim_url);
        let req = match method {
            "POST" => self.http.post(url).json(&body),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("simulator {method} {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn submits_seen(&self) -> anyhow::Result<u64> {
        let v = self
            .sim(
                "GET",
                "/_sim/ledger/count?vendor=lianke&endpoint=/api/print/job&method=POST",
                Value::Null,
            )
            .await?;
        Ok(v["count"].as_u64().unwrap_or(0))
    }

    fn post_body(&self, i: u32) -> String {
        json!({
            "printer_id": format!("bench-lk-{}", i % self.opts.devices),
            "document": {"url": "https://example.com/invoice.pdf"},
            "options": {"copies": 1}
        })
        .to_string()
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(((v.len() - 1) as f64) * p / 100.0).round() as usize]
}

struct Pgbench {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Writes every dirty page out before a measured phase, so that no phase pays for the WAL
/// and buffers the one before it left (a checkpoint in the middle of a 10 s phase halved
/// the accept phase's rate after the pgbench phases). Needs a superuser (or
/// `pg_checkpoint`); without one the phase runs as it is.
async fn checkpoint(ctx: &Ctx) {
    if let Err(err) = sqlx::query("CHECKPOINT").execute(&ctx.pool).await {
        println!("  (no CHECKPOINT before the phase: {err})");
    }
}

fn pgbench(ctx: &Ctx, name: &str, sql: &str) -> anyhow::Result<Pgbench> {
    let dir = ctx.opts.out.join(format!("pgbench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("insert.sql");
    std::fs::write(&script, sql)?;
    println!(
        "  pgbench {name} ({} clients, {} s)",
        ctx.opts.connections, ctx.opts.duration
    );
    let out = Command::new("pgbench")
        .current_dir(&dir)
        .args([
            "-n",
            "-M",
            "prepared",
            "-j",
            "2",
            "-l",
            "--log-prefix",
            "tx",
        ])
        .arg(format!("-c{}", ctx.opts.connections))
        .arg(format!("-T{}", ctx.opts.duration))
        .args(["-f", "insert.sql"])
        .arg(&ctx.db_url)
        .output()
        .context("running pgbench (apt-get install postgresql-client)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(dir.join("pgbench.txt"), stdout.as_bytes())?;
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench printed no tps: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let mut lat = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("tx"))
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(us) = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    lat.push(us / 1000.0);
                }
            }
            std::fs::remove_file(&path)?;
        }
    }
    let r = Pgbench {
        tps,
        p50_ms: percentile(lat.clone(), 50.0),
        p99_ms: percentile(lat, 99.0),
    };
    println!(
        "    {:.0} tps, p50 {:.2} ms, p99 {:.2} ms",
        r.tps, r.p50_ms, r.p99_ms
    );
    Ok(r)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pg = Command::new("pgbench")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "memory": mem, "loadavg": load.trim(), "pgbench": pg})
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.out)?;
    let mut opts = opts;
    opts.out = std::fs::canonicalize(&opts.out)?;
    let started = Utc::now();
    let bins = match &opts.bin_dir {
        Some(dir) => dir.clone(),
        None => bin_dir()?,
    };
    let db_name = &opts.database;
    if db_name.is_empty()
        || !db_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("--database must be a plain name (a-z, 0-9, _), got {db_name:?}");
    }
    let db_url = with_database(&opts.pg_url, db_name);

    // A fresh database each run.
    let mut admin = PgConnection::connect(&opts.pg_url)
        .await
        .context("connecting to Postgres (BASE_DATABASE_URL / --pg-url)")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let status = Command::new(bins.join("print-gateway"))
        .arg("migrate")
        .env("DATABASE_URL", &db_url)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("print-gateway migrate failed");
    }
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db_url)
        .await?;
    let key_out = Command::new(bins.join("print-gateway"))
        .args([
            "api-keys",
            "create",
            "--tenant",
            TENANT,
            "--scopes",
            "jobs:write,jobs:read,printers:admin,webhooks:admin",
        ])
        .env("DATABASE_URL", &db_url)
        .output()?;
    let api_key = String::from_utf8_lossy(&key_out.stdout).trim().to_owned();
    if api_key.is_empty() {
        bail!(
            "api-keys create printed no key: {}",
            String::from_utf8_lossy(&key_out.stderr)
        );
    }

    let mut ctx = Ctx {
        gateway_url: format!("http://127.0.0.1:{}", opts.port),
        baseline_url: format!("http://127.0.0.1:{}", opts.port + 1),
        sim_url: format!("http://127.0.0.1:{}", opts.port + 2),
        opts,
        bins,
        db_url,
        pool,
        http: load::client(),
        api_key,
        peak_rss: 0.0,
        raw: serde_json::Map::new(),
    };
    let conns = ctx.opts.connections;
    let mut rows: Vec<Row> = Vec::new();
    let phases = ctx.opts.phases.clone();
    let has = |name: &str| phases.iter().any(|p| p == name || p == "all");

    // ---- render: PDF pages to PNG, in a process of its own ------------------------------
    if has("render") {
        println!("render: a 50-page A4 PDF to PNG at 300 dpi");
        let out = Command::new(ctx.bins.join("bench"))
            .args(["render", "--pages", "50", "--dpi", "300"])
            .output()
            .context("running bench render")?;
        if !out.status.success() {
            bail!(
                "bench render failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let measured: Value = serde_json::from_slice(&out.stdout)?;
        let rate = measured["pages_per_sec"].as_f64().unwrap_or(0.0);
        let peak = measured["peak_rss_mib"].as_f64().unwrap_or(0.0);
        rows.push(Row::info(
            "render: 50-page PDF → PNG, A4 @ 300 dpi, 1 thread",
            format!("{} pages/s", report::fmt_num(rate)),
            format!(
                "{} s in all, {} px per page",
                report::fmt_num(measured["seconds"].as_f64().unwrap_or(0.0)),
                measured["page_pixels"].as_str().unwrap_or("?")
            ),
        ));
        rows.push(Row::info(
            "render: peak RSS of the rendering process",
            format!("{} MiB", report::fmt_num(peak)),
            format!(
                "{} MiB before rendering",
                report::fmt_num(measured["rss_before_mib"].as_f64().unwrap_or(0.0))
            ),
        ));
        ctx.raw.insert("render".into(), measured);
    }

    // ---- limits: pgbench --------------------------------------------------------------
    let mut pg_limit = None;
    if has("limits") {
        println!("limits");
        sqlx::query("CREATE TABLE bench_insert (LIKE jobs INCLUDING ALL)")
            .execute(&ctx.pool)
            .await?;
        let insert = "INSERT INTO bench_insert (id, tenant, printer_id, document_id, document_info, source, options, options_mode, state, due_at, request_hash)
VALUES (gen_random_uuid(), 'bench', 'bench-lk-1', gen_random_uuid(), '{\"kind\":\"url\",\"url\":\"https://example.com/invoice.pdf\"}', 'api', '{\"copies\":1,\"paper\":\"A4\"}', 'strict', 'pending', clock_timestamp(), '\\x00112233445566778899');\n";
        checkpoint(&ctx).await;
        let pg = pgbench(&ctx, "insert", insert)?;
        sqlx::query(
            "CREATE FUNCTION bench_notify() RETURNS trigger AS $$ BEGIN PERFORM pg_notify('bench_due', ''); RETURN NULL; END; $$ LANGUAGE plpgsql",
        )
        .execute(&ctx.pool)
        .await?;
        sqlx::query("CREATE TRIGGER bench_notify AFTER INSERT ON bench_insert FOR EACH ROW EXECUTE FUNCTION bench_notify()")
            .execute(&ctx.pool)
            .await?;
        checkpoint(&ctx).await;
        let pg_notify = pgbench(&ctx, "insert-notify", insert)?;
        sqlx::query("DROP TABLE bench_insert")
            .execute(&ctx.pool)
            .await?;
        ctx.raw.insert(
            "pgbench_insert".into(),
            json!({"tps": pg.tps, "p50_ms": pg.p50_ms, "p99_ms": pg.p99_ms}),
        );
        ctx.raw.insert(
            "pgbench_insert_notify".into(),
            json!({"tps": pg_notify.tps, "p50_ms": pg_notify.p50_ms, "p99_ms": pg_notify.p99_ms}),
        );
        pg_limit = Some((pg, pg_notify));
    }

    // ---- the simulator and the printers -----------------------------------------------
    println!(
        "simulator: {} Lianke boxes, {} ms submit latency",
        ctx.opts.devices, ctx.opts.vendor_latency_ms
    );
    let sim_log = std::fs::File::create(ctx.opts.out.join("vendor-sim.log"))?;
    let sim = Proc {
        child: Command::new(ctx.bins.join("vendor-sim"))
            .args([
                "--bind",
                &format!("127.0.0.1:{}", ctx.opts.port + 2),
                "--allow-http-callbacks",
                "--lianke-stage-ms",
                "20",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(sim_log)
            .spawn()
            .context("starting target/release/vendor-sim")?,
        name: "vendor-sim",
    };
    wait_http(&format!("{}/_sim/health", ctx.sim_url), "the simulator")?;
    for i in 0..ctx.opts.devices {
        ctx.sim(
            "POST",
            "/_sim/lianke/devices",
            json!({"deviceId": format!("bench-lk-{i}"), "deviceKey": format!("bench-key-{i}"), "usb_port_num": 1}),
        )
        .await?;
    }
    // Callbacks are sent by the bench itself in the callback phase: the simulator's are dropped.
    ctx.sim(
        "POST",
        "/_sim/callback-faults",
        json!({"vendor": "lianke", "mischief": {"kind": "drop"}, "times": u32::MAX}),
    )
    .await?;

    let gateway = ctx.start_gateway("api")?;
    let (idle_rss, _) = rss_mib(gateway.pid());
    // the gateway checks each box with the simulator: create them 16 at a time
    use futures::StreamExt;
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..ctx.opts.devices)
        .map(|i| {
            let (http, url, key) = (ctx.http.clone(), ctx.gateway_url.clone(), ctx.api_key.clone());
            async move {
                let resp = http
                    .post(format!("{url}/v1/printers"))
                    .bearer_auth(&key)
                    .json(&json!({
                        "id": format!("bench-lk-{i}"),
                        "backend": "lianke",
                        "locator": {"device_id": format!("bench-lk-{i}"), "device_port": 1, "printer_model": "HP LaserJet P1007"},
                        "secrets": {"device_key": format!("bench-key-{i}")}
                    }))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!(
                        "creating printer bench-lk-{i}: {} {}",
                        resp.status(),
                        resp.text().await?
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in created {
        result?;
    }

    // ---- gateway: accept ----------------------------------------------------------------
    println!("gateway (role api)");
    let auth = vec![
        (
            "Authorization".to_string(),
            format!("Bearer {}", ctx.api_key),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let gw_url = ctx.gateway_url.clone();
    if has("accept") {
        let posts: Vec<_> = (0..ctx.opts.devices)
            .map(|i| {
                (
                    "POST".to_string(),
                    "/v1/jobs".to_string(),
                    auth.clone(),
                    Some(ctx.post_body(i)),
                )
            })
            .collect();
        checkpoint(&ctx).await;
        let post = ctx.wrk("post-jobs", &gw_url, &wrk::script(&posts), conns)?;
        match &pg_limit {
            Some((pg, pg_notify)) => {
                rows.push(Row::ratio(
                    "`POST /v1/jobs` accepted/s",
                    post.ok_per_sec(),
                    "pgbench insert into `LIKE jobs`",
                    pg.tps,
                    0.5,
                ));
                rows.push(Row::at_most(
                    &format!("`POST /v1/jobs` p99 @{conns}"),
                    post.p99_ms(),
                    "ms",
                    format!("pgbench p99 {:.1} ms (p50 {:.1})", pg.p99_ms, pg.p50_ms),
                    25.0,
                ));
                rows.push(Row::info(
                    "`POST /v1/jobs` p50",
                    format!("{:.2} ms", post.p50_ms()),
                    format!(
                        "pgbench with a `pg_notify` per insert: {} tps",
                        report::fmt_num(pg_notify.tps)
                    ),
                ));
            }
            None => rows.push(Row::info(
                "`POST /v1/jobs` accepted/s (no `limits` phase to compare with)",
                format!(
                    "{}, p50 {:.2} ms, p99 {:.2} ms",
                    report::fmt_rate(post.ok_per_sec()),
                    post.p50_ms(),
                    post.p99_ms()
                ),
                "—",
            )),
        }
    } else {
        println!(
            "  seeding {} pending jobs (no accept phase)",
            ctx.opts.dispatch_jobs
        );
        seed_pending(&ctx.pool, ctx.opts.dispatch_jobs, ctx.opts.devices).await?;
    }
    let accepted: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&ctx.pool)
        .await?;
    println!("    {accepted} jobs stored");

    // ---- gateway and baseline: GET by id, healthz ---------------------------------------
    let job_id: Uuid = sqlx::query_scalar("SELECT id FROM jobs ORDER BY created_at LIMIT 1")
        .fetch_one(&ctx.pool)
        .await?;
    let mut get_healthz = None;
    if has("get") {
        let get = ctx.wrk(
            "get-job",
            &gw_url,
            &wrk::script(&[(
                "GET".into(),
                format!("/v1/jobs/{job_id}"),
                vec![auth[0].clone()],
                None,
            )]),
            conns,
        )?;
        let healthz = ctx.wrk(
            "healthz",
            &gw_url,
            &wrk::script(&[("GET".into(), "/healthz".into(), vec![], None)]),
            conns,
        )?;
        get_healthz = Some((get, healthz));
    }

    // ---- list page with many jobs -------------------------------------------------------
    if has("list") {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&ctx.pool)
            .await?;
        let seed = (ctx.opts.list_rows as i64 - stored).max(0);
        println!(
            "  seeding {seed} finished jobs (list phase: {} stored)",
            ctx.opts.list_rows
        );
        let t = Instant::now();
        let doc: Uuid = sqlx::query_scalar("SELECT document_id FROM jobs LIMIT 1")
            .fetch_one(&ctx.pool)
            .await?;
        let mut done = 0i64;
        while done < seed {
            let n = (seed - done).min(100_000);
            sqlx::query(
                "INSERT INTO jobs (id, tenant, printer_id, document_id, document_info, source, options, state, state_reason, created_at, updated_at, completed_at)
                 SELECT gen_random_uuid(), $1, 'bench-lk-' || (g % $4), $2, '{\"kind\":\"url\"}', 'api', '{\"copies\":1}', 'completed', 'printed',
                        now() - interval '1 day' - g * interval '1 ms', now(), now()
                 FROM generate_series($3::bigint, $3::bigint + $5::bigint - 1) g",
            )
            .bind(TENANT)
            .bind(doc)
            .bind(done)
            .bind(ctx.opts.devices as i64)
            .bind(n)
            .execute(&ctx.pool)
            .await?;
            done += n;
        }
        sqlx::query("ANALYZE jobs").execute(&ctx.pool).await?;
        println!("    seeded in {:.1} s", t.elapsed().as_secs_f64());
        let list = ctx.wrk(
            "list-page",
            &gw_url,
            &wrk::script(&[(
                "GET".into(),
                "/v1/jobs?limit=50".into(),
                vec![auth[0].clone()],
                None,
            )]),
            1,
        )?;
        rows.push(Row::at_most(
            &format!(
                "list page p99, 1 connection ({} jobs stored)",
                report::fmt_num(ctx.opts.list_rows as f64)
            ),
            list.p99_ms(),
            "ms",
            format!("p50 {:.2} ms", list.p50_ms()),
            10.0,
        ));
    }
    ctx.stop_gateway(gateway);

    // ---- baselines (same machine, same run) ---------------------------------------------
    if let Some((get, healthz)) = get_healthz {
        println!("baselines (bare axum)");
        let baseline = Proc {
            child: Command::new(ctx.bins.join("bench"))
                .args([
                    "baseline",
                    "--bind",
                    &format!("127.0.0.1:{}", ctx.opts.port + 1),
                    "--database-url",
                    &ctx.db_url,
                ])
                .stdout(Stdio::null())
                .spawn()?,
            name: "baseline",
        };
        wait_http(&format!("{}/", ctx.baseline_url), "the baseline")?;
        let base_url = ctx.baseline_url.clone();
        let base_get = ctx.wrk(
            "baseline-get-row",
            &base_url,
            &wrk::script(&[("GET".into(), format!("/row/{job_id}"), vec![], None)]),
            conns,
        )?;
        let base_trivial = ctx.wrk(
            "baseline-trivial",
            &base_url,
            &wrk::script(&[("GET".into(), "/".into(), vec![], None)]),
            conns,
        )?;
        baseline.stop();
        rows.push(Row::ratio(
            "`GET /v1/jobs/{id}` req/s",
            get.ok_per_sec(),
            "bare axum + sqlx pk select",
            base_get.ok_per_sec(),
            0.7,
        ));
        rows.push(Row::ratio(
            "`GET /healthz` req/s",
            healthz.ok_per_sec(),
            "trivial axum route",
            base_trivial.ok_per_sec(),
            0.8,
        ));
    }

    // ---- dispatch ------------------------------------------------------------------------
    vacuum_if_autovacuum_is_off(&ctx.pool).await?;
    ctx.sim(
        "POST",
        "/_sim/faults",
        json!({"vendor": "lianke", "endpoint": "/api/print/job", "method": "POST",
               "action": {"kind": "latency", "fixed_ms": ctx.opts.vendor_latency_ms, "jitter_ms": 0}}),
    )
    .await?;
    if has("dispatch") {
        println!("gateway (role all): dispatch of the accepted backlog");
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'pending'")
            .fetch_one(&ctx.pool)
            .await?;
        let before = ctx.submits_seen().await?;
        let gateway = ctx.start_gateway("all")?;
        let t0 = Instant::now();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let window = Duration::from_secs(ctx.opts.duration + 1);
        while t0.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let n = ctx.submits_seen().await? - before;
            samples.push((t0.elapsed().as_secs_f64(), n));
            if n >= pending as u64 {
                break;
            }
        }
        // the rate from the first second on, while the backlog lasted
        let first = samples
            .iter()
            .find(|(t, _)| *t >= 1.0)
            .copied()
            .unwrap_or((0.0, 0));
        let last = samples.last().copied().unwrap_or((0.0, 0));
        let dispatch_rate = (last.1 - first.1) as f64 / (last.0 - first.0).max(1e-9);
        println!(
            "    {pending} pending; {:.0} submits/s ({} in {:.1} s)",
            dispatch_rate, last.1, last.0
        );
        ctx.raw.insert(
            "dispatch".into(),
            json!({"pending": pending, "samples": samples, "rate": dispatch_rate}),
        );
        ctx.stop_gateway(gateway);
        rows.push(Row::at_least(
            &format!(
                "dispatch jobs/s, {} ms submit latency, {} devices, {} workers",
                ctx.opts.vendor_latency_ms, ctx.opts.devices, ctx.opts.workers
            ),
            dispatch_rate,
            "/s",
            format!(
                "devices ÷ latency: {}",
                report::fmt_rate(
                    ctx.opts.devices as f64 * 1000.0 / ctx.opts.vendor_latency_ms as f64
                )
            ),
            500.0,
        ));
    }
    // leave nothing pending: the next phases measure an idle gateway
    sqlx::query("UPDATE jobs SET state = 'canceled', state_reason = 'bench', due_at = NULL, lease_owner = NULL WHERE state = 'pending'")
        .execute(&ctx.pool)
        .await?;
    vacuum_if_autovacuum_is_off(&ctx.pool).await?;

    let soak_secs = if has("soak") { ctx.opts.soak_secs } else { 0 };
    let mut idle_rss_all = 0.0;
    if has("idle") || has("callbacks") || has("webhooks") || soak_secs > 0 {
        let gateway = ctx.start_gateway("all")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle_rss_all = rss_mib(gateway.pid()).0;

        // ---- idle accept → submit --------------------------------------------------------
        if has("idle") {
            println!("gateway (role all): idle accept → submit");
            ctx.sim("DELETE", "/_sim/ledger", Value::Null).await?;
            let mut after_seq = 0u64;
            let mut idle = Vec::new();
            for i in 0..ctx.opts.idle_samples {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let sent_at = Utc::now();
                let resp = ctx
                    .http
                    .post(format!("{}/v1/jobs", ctx.gateway_url))
                    .bearer_auth(&ctx.api_key)
                    .header("content-type", "application/json")
                    .body(ctx.post_body(i as u32))
                    .send()
                    .await?;
                if resp.status().as_u16() != 202 {
                    bail!("idle POST answered {}", resp.status());
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let entries = ctx
                        .sim(
                            "GET",
                            &format!("/_sim/ledger?vendor=lianke&endpoint=/api/print/job&method=POST&after_seq={after_seq}"),
                            Value::Null,
                        )
                        .await?;
                    if let Some(entry) = entries.as_array().and_then(|a| a.first()) {
                        after_seq = entry["seq"].as_u64().unwrap_or(after_seq);
                        let at: DateTime<Utc> =
                            serde_json::from_value(entry["received_at"].clone())?;
                        idle.push((at - sent_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("an idle job was not submitted within 10 s");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let idle_p50 = percentile(idle.clone(), 50.0);
            println!(
                "    p50 {:.1} ms, p99 {:.1} ms",
                idle_p50,
                percentile(idle.clone(), 99.0)
            );
            ctx.raw
                .insert("idle_accept_to_submit_ms".into(), json!(idle));
            // let the last idle jobs' tasks finish at the simulator
            tokio::time::sleep(Duration::from_millis(500)).await;
            rows.push(Row::at_most(
                "idle accept → vendor submit p50",
                idle_p50,
                "ms",
                format!("{} samples", idle.len()),
                50.0,
            ));
        }

        // ---- Lianke callbacks ------------------------------------------------------------
        if has("callbacks") {
            callbacks_phase(&mut ctx, &mut rows).await?;
        }

        // ---- outbound webhook deliveries ---------------------------------------------------
        if has("webhooks") {
            webhooks_phase(&mut ctx, &mut rows).await?;
        }

        // ---- soak: memory under a steady load --------------------------------------------
        if soak_secs > 0 {
            let rate = pg_limit
                .as_ref()
                .map_or(ctx.opts.soak_rate, |(pg, _)| pg.tps / 2.0);
            soak_phase(
                &mut ctx,
                &mut rows,
                gateway.pid(),
                rate,
                soak_secs,
                idle_rss_all,
            )
            .await?;
        }
        ctx.stop_gateway(gateway);
    }
    sim.stop();

    rows.push(Row::at_most(
        "RSS idle",
        idle_rss.max(idle_rss_all),
        "MiB",
        "—".into(),
        64.0,
    ));
    rows.push(Row::at_most(
        "RSS peak",
        ctx.peak_rss,
        "MiB",
        "—".into(),
        256.0,
    ));

    let table = report::markdown(&rows);
    let machine = machine();
    let summary = format!(
        "bench run {} — {} × {}, {}; load average at the end {}\n{} s per phase, {} connections, {} accepted jobs\n\n{}",
        started.format("%Y-%m-%d %H:%M UTC"),
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["memory"].as_str().unwrap_or(""),
        machine["loadavg"].as_str().unwrap_or(""),
        ctx.opts.duration,
        conns,
        accepted,
        table
    );
    println!("\n{summary}");
    std::fs::write(ctx.opts.out.join("results.md"), &summary)?;
    let json = json!({
        "started": started,
        "machine": machine,
        "options": {
            "duration_s": ctx.opts.duration, "connections": conns, "devices": ctx.opts.devices,
            "vendor_latency_ms": ctx.opts.vendor_latency_ms, "workers": ctx.opts.workers,
            "list_rows": ctx.opts.list_rows, "gateway_env": ctx.opts.gateway_env,
        },
        "rows": rows,
        "raw": ctx.raw,
    });
    std::fs::write(
        ctx.opts.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!(
        "written: {}/results.md and results.json",
        ctx.opts.out.display()
    );
    Ok(())
}

const PHASES: &[&str] = &[
    "all",
    "limits",
    "accept",
    "get",
    "list",
    "dispatch",
    "idle",
    "callbacks",
    "webhooks",
    "soak",
    "render",
];

/// Refuses unknown phase names (a typo would silently skip a phase).
pub fn check_phases(phases: &[String]) -> anyhow::Result<()> {
    for p in phases {
        if !PHASES.contains(&p.as_str()) {
            bail!("unknown phase `{p}`; phases: {}", PHASES.join(", "));
        }
    }
    Ok(())
}

/// Pending jobs due now over the bench printers, as if accepted (for runs without the
/// accept phase): one shared URL document, one `accepted` event each.
/// What autovacuum would have done by now after the bench's bulk writes (statistics for
/// the planner, dead rows of the mass cancel gone), on a server that runs without it (the
/// CI machines' Postgres has `autovacuum = off`). A deployment runs with it on.
async fn vacuum_if_autovacuum_is_off(pool: &PgPool) -> anyhow::Result<()> {
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(pool)
        .await?;
    if autovacuum == "off" {
        let t = Instant::now();
        sqlx::query("VACUUM ANALYZE").execute(pool).await?;
        println!(
            "  VACUUM ANALYZE (the server runs with autovacuum = off): {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn seed_pending(pool: &PgPool, n: u64, devices: u32) -> anyhow::Result<()> {
    let doc = Uuid::now_v7();
    sqlx::query("INSERT INTO documents (id, kind, doc_type, url) VALUES ($1, 'url', 'pdf', 'https://example.com/invoice.pdf')")
        .bind(doc)
        .execute(pool)
        .await?;
    sqlx::query(
        "WITH j AS (
             INSERT INTO jobs (id, tenant, printer_id, document_id, document_info, source, options, options_mode, state, due_at)
             SELECT gen_random_uuid(), $1, 'bench-lk-' || (g % $3), $2,
                    '{\"kind\":\"url\",\"type\":\"pdf\",\"url\":\"https://example.com/invoice.pdf\",\"size_bytes\":0}', 'api', '{\"copies\":1}', 'strict',
                    'pending', now()
             FROM generate_series(0, $4::bigint - 1) g
             RETURNING id
         )
         INSERT INTO job_events (job_id, source, kind, from_state, to_state, reason)
         SELECT id, 'api', 'accepted', NULL, 'pending', 'accepted' FROM j",
    )
    .bind(TENANT)
    .bind(doc)
    .bind(devices as i64)
    .bind(n as i64)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE jobs").execute(pool).await?;
    Ok(())
}

/// The first terminal callback of each processing job (confirmed with the simulator by the
/// gateway), then the same callbacks again (duplicates).
async fn callbacks_phase(ctx: &mut Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    println!("gateway: Lianke callbacks");
    let conns = ctx.opts.connections;
    let keys = print_gateway::callback_token::CallbackKeys::from_config(Some(CALLBACK_SECRET));
    let targets: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT j.id, j.vendor_task_id, p.locator->>'device_id' FROM jobs j JOIN printers p ON p.id = j.printer_id
         WHERE j.state = 'processing' AND j.vendor_task_id IS NOT NULL LIMIT $1",
    )
    .bind(ctx.opts.callbacks as i64)
    .fetch_all(&ctx.pool)
    .await?;
    let now =
        chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("CST"));
    let stamp = now.format("%Y-%m-%d %H:%M:%S").to_string();
    let reqs: Vec<Req> = targets
        .iter()
        .map(|(id, task, device)| Req {
            url: format!(
                "{}/webhooks/lianke/{id}?token={}",
                ctx.gateway_url,
                keys.sign(*id)
            ),
            body: json!({"device_id": device, "task_id": task, "task_state": "SUCCESS",
                         "create_time": stamp, "finish_time": stamp,
                         "task_result": {"code": 200, "msg": "success"}})
            .to_string(),
            headers: vec![],
        })
        .collect();
    let n = reqs.len();
    let completed_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
            .fetch_one(&ctx.pool)
            .await?;
    let t = Instant::now();
    let first_pass = load::all_once(reqs.clone(), conns as usize).await;
    // Every callback answered 200 is in the inbox until it is applied (or dropped), so the
    // inbox running empty is the moment the last one was applied. Watched through the small
    // inbox table: counting completed jobs every few milliseconds would scan `jobs` (a
    // million rows in the full run) and take the CPU the gateway is measured on.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM callback_inbox)")
            .fetch_one(&ctx.pool)
            .await?;
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied_secs = t.elapsed().as_secs_f64();
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'completed'")
        .fetch_one(&ctx.pool)
        .await?;
    let applied = (completed - completed_before) as usize;
    let callbacks_rate = applied as f64 / applied_secs.max(1e-9);
    println!(
        "    {n} sent ({} answered 200, {:.0}/s, p99 {:.1} ms); {applied} applied in {:.2} s = {:.0}/s",
        first_pass.ok,
        first_pass.per_sec(),
        first_pass.p99_ms,
        applied_secs,
        callbacks_rate
    );
    let replay = load::all_once(reqs, conns as usize).await;
    println!(
        "    replay (duplicates): {:.0}/s, p99 {:.1} ms",
        replay.per_sec(),
        replay.p99_ms
    );
    ctx.raw.insert("callbacks".into(), json!({"sent": n, "first_pass": first_pass, "applied": applied, "applied_secs": applied_secs, "replay": replay}));
    rows.push(Row::at_least(
        "Lianke callbacks applied/s (confirmed with the vendor)",
        callbacks_rate,
        "/s",
        format!(
            "{n} callbacks @{conns}; answered at {}, p99 {:.1} ms",
            report::fmt_rate(first_pass.per_sec()),
            first_pass.p99_ms
        ),
        3000.0,
    ));
    rows.push(Row::info(
        format!("callback replay (duplicates) @{conns}"),
        format!(
            "{}, p99 {:.1} ms",
            report::fmt_rate(replay.per_sec()),
            replay.p99_ms
        ),
        "—",
    ));
    Ok(())
}

/// POSTs at `rate` for `secs`, sampling the gateway's RSS every 5 s: memory must stay flat
/// (the last fifth of the samples no more than 10 % or 8 MiB above the first fifth, after a
/// one-minute warm-up when the soak is that long).
async fn soak_phase(
    ctx: &mut Ctx,
    rows: &mut Vec<Row>,
    pid: u32,
    rate: f64,
    secs: u64,
    idle_rss: f64,
) -> anyhow::Result<()> {
    println!("soak: {secs} s of POSTs at {rate:.0}/s, RSS sampled every 5 s");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let sampler = tokio::spawn(async move {
        let start = Instant::now();
        let mut s: Vec<(f64, f64)> = Vec::new();
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            s.push((start.elapsed().as_secs_f64(), rss_mib(pid).0));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        s
    });
    let base = ctx.gateway_url.clone();
    let key = ctx.api_key.clone();
    let devices = ctx.opts.devices;
    let soak = load::at_rate(
        move |i| Req {
            url: format!("{base}/v1/jobs"),
            body: json!({"printer_id": format!("bench-lk-{}", i as u32 % devices), "document": {"url": "https://example.com/invoice.pdf"}}).to_string(),
            headers: vec![("authorization".into(), format!("Bearer {key}"))],
        },
        rate,
        Duration::from_secs(secs),
        256,
    )
    .await;
    let (rss_end, _) = rss_mib(pid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();
    // Flat: the last fifth of the samples against the first fifth (after a minute of
    // warm-up when the soak is long enough to have one).
    let warm = if secs >= 180 { 60.0 } else { 0.0 };
    let kept: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(_, r)| *r)
        .collect();
    let fifth = (kept.len() / 5).max(1);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let early = mean(&kept[..fifth.min(kept.len())]);
    let late = mean(&kept[kept.len().saturating_sub(fifth)..]);
    let growth = late - early;
    // Open loop, but at most 256 POSTs outstanding: a gateway that answers slower than
    // `rate` (the role "all" also dispatches what it accepts) gets fewer.
    let achieved = soak.sent as f64 / soak.elapsed_s.max(1e-9);
    println!(
        "    sent {} ({} ok, {achieved:.0}/s of {rate:.0}/s asked); RSS at the end {:.1} MiB",
        soak.sent, soak.ok, rss_end
    );
    ctx.raw.insert(
        "soak".into(),
        json!({"rate": rate, "secs": secs, "result": soak, "rss_end_mib": rss_end,
               "rss_samples": samples, "rss_early_mib": early, "rss_late_mib": late}),
    );
    println!("    RSS first fifth {early:.1} MiB, last fifth {late:.1} MiB ({growth:+.1} MiB)");
    rows.push(Row::at_most(
        &format!("RSS growth over a {secs} s soak (last fifth − first fifth)"),
        growth,
        "MiB",
        format!(
            "{early:.1} → {late:.1} MiB, {} of {} POSTs answered 2xx",
            soak.ok, soak.sent
        ),
        (early * 0.10).max(8.0),
    ));
    rows.push(Row::at_most(
        &format!("RSS after a {secs} s soak at {achieved:.0} POST/s ({rate:.0}/s asked)"),
        rss_end,
        "MiB",
        format!("idle {idle_rss:.1} MiB"),
        256.0,
    ));
    Ok(())
}

/// One `print-gateway webhooks listen` receiver: the webhook ids it printed (each printed
/// only after its signature was verified), counted as they arrive.
struct Receiver {
    _proc: Proc,
    unique: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    fn start(ctx: &Ctx, i: usize, port: u16, secret: &str) -> anyhow::Result<Receiver> {
        use std::io::BufRead;
        use std::sync::atomic::Ordering;
        let errors = std::fs::File::create(ctx.opts.out.join(format!("webhook-receiver-{i}.err")))?;
        let mut child = Command::new(ctx.bins.join("print-gateway"))
            .args(["webhooks", "listen", "--quiet", "--port", &port.to_string()])
            .args(["--secret", secret])
            .stdout(Stdio::piped())
            .stderr(errors)
            .spawn()
            .context("starting print-gateway webhooks listen")?;
        let stdout = child.stdout.take().context("the receiver's stdout")?;
        let unique = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (u, t) = (unique.clone(), total.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let id = line.split(' ').next().unwrap_or_default().to_owned();
                t.fetch_add(1, Ordering::Relaxed);
                if seen.insert(id) {
                    u.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let proc = Proc {
            child,
            name: "webhook receiver",
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the webhook receiver on port {port} did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Receiver {
            _proc: proc,
            unique,
            total,
        })
    }

    fn unique(&self) -> usize {
        self.unique.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn total(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Outbound webhook deliveries: three endpoints, each a `print-gateway webhooks listen`
/// receiver that verifies every signature; `--webhook-events` printer events written to the
/// outbox in one statement (the fan-out trigger makes the deliveries as for events of state
/// changes: this measures delivery, not job processing); deliveries/s from the commit until
/// every receiver printed every event. The endpoints are deleted afterwards, so later
/// phases deliver nothing.
async fn webhooks_phase(ctx: &mut Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const ENDPOINTS: usize = 3;
    let n = ctx.opts.webhook_events;
    println!("gateway: outbound webhooks ({n} events × {ENDPOINTS} endpoints)");
    let mut endpoints = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..ENDPOINTS {
        let port = ctx.opts.port + 3 + i as u16;
        let resp = ctx
            .http
            .post(format!("{}/v1/webhook-endpoints", ctx.gateway_url))
            .bearer_auth(&ctx.api_key)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/")}))
            .send()
            .await?;
        let status = resp.status();
        let created: Value = resp.json().await.unwrap_or(Value::Null);
        let (Some(id), Some(secret)) = (created["id"].as_str(), created["secret"].as_str()) else {
            bail!("creating a webhook endpoint answered {status}: {created}");
        };
        endpoints.push(id.to_owned());
        receivers.push(Receiver::start(ctx, i, port, secret)?);
    }

    let t = Instant::now();
    sqlx::query(
        "INSERT INTO outbox_events (tenant, type, printer_id, snapshot)
         SELECT p.owner_tenant, 'printer.offline', p.id,
                (to_jsonb(p) - 'secrets' - 'capabilities_raw' - 'capabilities') || '{\"secrets\": {}}'::jsonb
         FROM printers p, generate_series(1, $1) WHERE p.id = 'bench-lk-0'",
    )
    .bind(n as i64)
    .execute(&ctx.pool)
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while receivers.iter().any(|r| r.unique() < n) {
        if Instant::now() > deadline {
            bail!(
                "webhook deliveries did not finish within 300 s: {:?} of {n} per endpoint",
                receivers.iter().map(Receiver::unique).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let deliveries = n * ENDPOINTS;
    let received: usize = receivers.iter().map(Receiver::total).sum();
    let rate = deliveries as f64 / secs.max(1e-9);
    println!(
        "    {deliveries} delivered in {secs:.2} s = {rate:.0}/s ({} duplicates)",
        received - deliveries
    );

    for id in &endpoints {
        let resp = ctx
            .http
            .delete(format!("{}/v1/webhook-endpoints/{id}", ctx.gateway_url))
            .bearer_auth(&ctx.api_key)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("deleting webhook endpoint {id} answered {}", resp.status());
        }
    }
    drop(receivers);
    ctx.raw.insert(
        "webhooks".into(),
        json!({"events": n, "endpoints": ENDPOINTS, "deliveries": deliveries, "received": received,
               "secs": secs, "rate": rate}),
    );
    rows.push(Row::at_least(
        "outbound webhook deliveries/s (3 signature-checking receivers)",
        rate,
        "/s",
        format!(
            "{n} events × {ENDPOINTS} endpoints in {secs:.2} s; {} duplicates",
            received - deliveries
        ),
        1000.0,
    ));
    Ok(())
}
