//! Every setting, read from the environment (or the matching flag), validated at start with
//! a message that names the variable at fault.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every command. Each has an environment variable of the same name.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Postgres URL; the database is created if missing and migrated at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/print_gateway",
        value_parser = secret,
        hide_default_value = false
    )]
    pub database_url: SecretString,

    /// Maximum Postgres connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", value_name = "DATABASE_MAX_CONNECTIONS",
          global = true, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// How long a request waits for a database connection before answering 503 (keep it
    /// short: during an outage callers get a quick "try again" instead of a hang).
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", value_name = "DATABASE_ACQUIRE_TIMEOUT_MS",
          global = true, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub database_acquire_timeout_ms: u64,

    /// Address the HTTP API listens on: `IP:PORT` or `HOST:PORT` (`localhost:8080`; a host
    /// name is resolved once at start).
    #[arg(
        long,
        env = "BIND_ADDR",
        value_name = "BIND_ADDR",
        global = true,
        default_value = "127.0.0.1:8080",
        value_parser = parse_bind_addr
    )]
    pub bind_addr: SocketAddr,

    /// How long `serve` and `migrate` keep trying to reach Postgres at start (exponential
    /// backoff, each try logged) before giving up; 0 = one try.
    #[arg(long, env = "DB_WAIT_MAX_SECS", value_name = "DB_WAIT_MAX_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub db_wait_max_secs: u64,

    /// The URL vendors use to reach this gateway (callbacks). Unset: no callbacks are
    /// requested and status comes from polling.
    #[arg(
        long,
        env = "PUBLIC_BASE_URL",
        value_name = "PUBLIC_BASE_URL",
        global = true
    )]
    pub public_base_url: Option<String>,

    /// Log line format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Dispatch workers per process (vendor calls in flight at once, at most).
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "WORKER_CONCURRENCY", global = true,
          default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_concurrency: u32,

    /// How long a worker's claim on a job lasts before another worker may take it over.
    /// Must exceed VENDOR_TIMEOUT_SECS.
    #[arg(long, env = "LEASE_SECS", value_name = "LEASE_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,

    /// Timeout of one vendor HTTP call.
    #[arg(long, env = "VENDOR_TIMEOUT_SECS", value_name = "VENDOR_TIMEOUT_SECS", global = true,
          default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub vendor_timeout_secs: u64,

    /// The backstop sweep for due jobs (LISTEN/NOTIFY wakes workers at once otherwise).
    #[arg(long, env = "SWEEP_INTERVAL_MS", value_name = "SWEEP_INTERVAL_MS", global = true,
          default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub sweep_interval_ms: u64,

    /// First retry delay; each later retry doubles it (with jitter) up to RETRY_MAX_MS.
    #[arg(long, env = "RETRY_BASE_MS", value_name = "RETRY_BASE_MS", global = true,
          default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_base_ms: u64,

    /// Longest delay between two retries.
    #[arg(long, env = "RETRY_MAX_MS", value_name = "RETRY_MAX_MS", global = true,
          default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_max_ms: u64,

    /// Submit attempts before a job fails with `retries_exhausted`.
    #[arg(long, env = "RETRY_MAX_ATTEMPTS", value_name = "RETRY_MAX_ATTEMPTS", global = true,
          default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub retry_max_attempts: u32,

    /// How often a job waiting for an offline device tries again.
    #[arg(long, env = "DEVICE_WAIT_RETRY_SECS", value_name = "DEVICE_WAIT_RETRY_SECS", global = true,
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub device_wait_retry_secs: u64,

    /// How long a job without `expires_at` waits for an offline device before failing.
    #[arg(long, env = "DEVICE_WAIT_MAX_SECS", value_name = "DEVICE_WAIT_MAX_SECS", global = true,
          default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub device_wait_max_secs: u64,

    /// Consecutive printer failures that open its circuit breaker (Lianke suspends a device
    /// after 30; stay well below).
    #[arg(long, env = "BREAKER_THRESHOLD", value_name = "BREAKER_THRESHOLD", global = true,
          default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=29))]
    pub breaker_threshold: u32,

    /// How long an open breaker waits before letting one trial call through.
    #[arg(long, env = "BREAKER_COOLDOWN_SECS", value_name = "BREAKER_COOLDOWN_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub breaker_cooldown_secs: u64,

    /// How often the reconciler asks the vendor about an unconfirmed job.
    #[arg(long, env = "RECONCILE_EVERY_SECS", value_name = "RECONCILE_EVERY_SECS", global = true,
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reconcile_every_secs: u64,

    /// How long the reconciler asks about an unconfirmed job every RECONCILE_EVERY_SECS;
    /// after that it asks with a growing interval (while the vendor can still answer) and
    /// the job's `state_reason` says that only an operator can settle it. An unconfirmed
    /// job never fails on its own.
    #[arg(long, env = "UNCONFIRMED_GIVE_UP_SECS", value_name = "UNCONFIRMED_GIVE_UP_SECS", global = true,
          default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub unconfirmed_give_up_secs: u64,

    /// While a device has a submit whose outcome is unknown, new submits to it wait this
    /// long at most (so a lookup by time can never confuse two jobs); at least
    /// VENDOR_TIMEOUT_SECS + 5 is used.
    #[arg(long, env = "DEVICE_HOLD_AFTER_UNKNOWN_SECS", value_name = "DEVICE_HOLD_AFTER_UNKNOWN_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub device_hold_after_unknown_secs: u64,

    /// Largest document, in bytes, after decoding (the vendors' own limit is 20 MiB).
    #[arg(long, env = "MAX_DOCUMENT_BYTES", value_name = "MAX_DOCUMENT_BYTES", global = true,
          default_value_t = 20 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub max_document_bytes: u64,

    /// Largest request body, in bytes (base64 documents are a third larger than the file).
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "MAX_BODY_BYTES", global = true,
          default_value_t = 28 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=2_147_483_648))]
    pub max_body_bytes: u64,

    /// Time limit for one API request.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", value_name = "REQUEST_TIMEOUT_SECS", global = true,
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Time a client has to send a request's complete head (request line and headers);
    /// a slower one is disconnected. Applies to every request on a connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", value_name = "HEADER_READ_TIMEOUT_MS", global = true,
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub header_read_timeout_ms: u64,

    /// Time a client has to finish the TLS handshake (HTTPS only).
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT_MS", value_name = "TLS_HANDSHAKE_TIMEOUT_MS", global = true,
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub tls_handshake_timeout_ms: u64,

    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", global = true,
          default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// HTTP/2: streams one connection may have open at once.
    #[arg(long, env = "HTTP2_MAX_CONCURRENT_STREAMS", value_name = "HTTP2_MAX_CONCURRENT_STREAMS", global = true,
          default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_concurrent_streams: u32,

    /// Requests per second each API key may send (0 = no limit); over it: 429.
    #[arg(long, env = "RATE_LIMIT_RPS", value_name = "RATE_LIMIT_RPS", global = true,
          default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit_rps: u32,

    /// Requests an API key may send at once above its per-second rate (the bucket size).
    #[arg(long, env = "RATE_LIMIT_BURST", value_name = "RATE_LIMIT_BURST", global = true,
          default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: u32,
    /// How long a verified API key is remembered (0: check every request in the database).
    /// Revocations reach every replica at once through NOTIFY; this bounds the rest.
    #[arg(long, env = "API_KEY_CACHE_SECS", value_name = "API_KEY_CACHE_SECS", global = true,
          default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub api_key_cache_secs: u64,

    /// How long a printer's settings are remembered by the accept path (0: read them from
    /// Postgres for every job). Changes reach every replica at once through NOTIFY.
    #[arg(long, env = "PRINTER_CACHE_SECS", value_name = "PRINTER_CACHE_SECS", global = true,
          default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub printer_cache_secs: u64,

    /// Per-printer metric labels (breaker and online state of each printer) are exported
    /// only while there are at most this many printers; beyond it, only counts by state
    /// (bounded label cardinality). 0 turns per-printer series off.
    #[arg(long, env = "METRICS_PRINTER_LABELS_MAX", value_name = "METRICS_PRINTER_LABELS_MAX", global = true,
          default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub metrics_printer_labels_max: u32,

    /// The gauges read from the database (jobs by state, oldest ages, printers) are
    /// refreshed by a scrape at most this often; scrapes in between see the last values.
    #[arg(long, env = "METRICS_REFRESH_MS", value_name = "METRICS_REFRESH_MS", global = true,
          default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub metrics_refresh_ms: u64,

    /// How often each enabled printer's status is asked of its vendor in the background
    /// (online, last seen, authentication), one replica per printer. 0 = only on request.
    #[arg(long, env = "PRINTER_STATUS_EVERY_SECS", value_name = "PRINTER_STATUS_EVERY_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub printer_status_every_secs: u64,

    /// Age after which a printer's cached capabilities are fetched again by the background
    /// status round (strict options are checked against them). 0 = only at registration, on
    /// a credential change and on request.
    #[arg(long, env = "CAPABILITIES_REFRESH_SECS", value_name = "CAPABILITIES_REFRESH_SECS", global = true,
          default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub capabilities_refresh_secs: u64,

    /// Keys for the per-job callback tokens, comma-separated; the first signs, all verify
    /// (rotation: put the new key first, drop the old one once its jobs are done).
    /// Required with PUBLIC_BASE_URL (every replica must share it).
    #[arg(
        long,
        env = "CALLBACK_SECRETS",
        value_name = "CALLBACK_SECRETS",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub callback_secrets: Option<SecretString>,

    /// PEM certificate chain: with TLS_KEY_PATH, the gateway serves HTTPS itself (Lianke only
    /// calls back to https URLs). Unset: plain HTTP, e.g. behind a TLS proxy.
    #[arg(
        long,
        env = "TLS_CERT_PATH",
        value_name = "TLS_CERT_PATH",
        global = true
    )]
    pub tls_cert_path: Option<std::path::PathBuf>,

    /// PEM private key matching TLS_CERT_PATH.
    #[arg(long, env = "TLS_KEY_PATH", value_name = "TLS_KEY_PATH", global = true)]
    pub tls_key_path: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub retention: RetentionConfig,

    #[command(flatten)]
    pub lianke: LiankeConfig,

    #[command(flatten)]
    pub zhimu: ZhimuConfig,

    #[command(flatten)]
    pub wecom: WecomConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,

    #[command(flatten)]
    pub secrets: SecretsConfig,

    #[command(flatten)]
    pub render: RenderConfig,
}

/// Converting documents a printer cannot take (PDF for Zhimu) into page images, in the
/// dispatch workers, bounded in CPU and memory.
#[derive(Debug, Clone, Args)]
pub struct RenderConfig {
    /// Documents rendered at once per process (each on a blocking thread); more jobs to
    /// convert wait for a turn.
    #[arg(long, env = "RENDER_CONCURRENCY", value_name = "RENDER_CONCURRENCY", global = true,
          default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub render_concurrency: u32,

    /// Pages one job may send after `page_ranges`; a longer document fails with
    /// `document_unrenderable` before any vendor call.
    #[arg(long, env = "RENDER_MAX_PAGES", value_name = "RENDER_MAX_PAGES", global = true,
          default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub render_max_pages: u32,

    /// Pixels one rendered page may have (width × height); a page that would be larger is
    /// rendered at a lower resolution to fit (memory: 4 bytes per pixel while rendering).
    #[arg(long, env = "RENDER_MAX_PIXELS", value_name = "RENDER_MAX_PIXELS", global = true,
          default_value_t = 40_000_000, value_parser = clap::value_parser!(u64).range(10_000..=400_000_000))]
    pub render_max_pixels: u64,

    /// Resolution pages are rendered at when the printer does not say its own.
    #[arg(long, env = "RENDER_DPI", value_name = "RENDER_DPI", global = true,
          default_value_t = 300, value_parser = clap::value_parser!(u32).range(36..=1200))]
    pub render_dpi: u32,
}

/// The keys that seal printer secrets and webhook signing secrets at rest.
#[derive(Debug, Clone, Args)]
pub struct SecretsConfig {
    /// Keys sealing printer and webhook secrets in the database, comma-separated
    /// `KEY_ID:BASE64` (32 bytes each: `openssl rand -base64 32`); every listed key opens,
    /// SECRETS_ACTIVE_KEY seals. Unset: secrets are stored in clear (a warning says so).
    #[arg(
        long,
        env = "SECRETS_KEYS",
        value_name = "SECRETS_KEYS",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub secrets_keys: Option<SecretString>,

    /// The key id of SECRETS_KEYS that seals new values (default: the first listed).
    /// `print-gateway secrets rotate` re-seals every stored value with it.
    #[arg(
        long,
        env = "SECRETS_ACTIVE_KEY",
        value_name = "SECRETS_ACTIVE_KEY",
        global = true
    )]
    pub secrets_active_key: Option<String>,
}

impl SecretsConfig {
    /// The keyring these settings describe.
    pub fn keyring(
        &self,
    ) -> Result<crate::secrets_at_rest::Keyring, crate::secrets_at_rest::InvalidKeys> {
        crate::secrets_at_rest::Keyring::parse(
            self.secrets_keys.as_ref().map(ExposeSecret::expose_secret),
            self.secrets_active_key.as_deref(),
        )
    }
}

/// Outbound webhooks (Standard Webhooks) to tenants' endpoints.
#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// Delay before each delivery attempt, comma-separated (`ms`, `s`, `m`, `h`); the
    /// count is the number of attempts. Jittered by ±20 %.
    #[arg(
        long,
        env = "WEBHOOK_RETRY_SCHEDULE",
        value_name = "WEBHOOK_RETRY_SCHEDULE",
        global = true,
        default_value = "0s,5s,5m,30m,2h,5h,10h,10h"
    )]
    pub webhook_retry_schedule: String,

    /// Timeout of one delivery (connect to last byte).
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", value_name = "WEBHOOK_TIMEOUT_MS", global = true,
          default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..=300_000))]
    pub webhook_timeout_ms: u64,

    /// Deliveries in flight per process.
    #[arg(long, env = "WEBHOOK_CONCURRENCY", value_name = "WEBHOOK_CONCURRENCY", global = true,
          default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub webhook_concurrency: u32,

    /// Deliveries in flight per endpoint per process: a slow endpoint holds no more.
    #[arg(long, env = "WEBHOOK_ENDPOINT_CONCURRENCY", value_name = "WEBHOOK_ENDPOINT_CONCURRENCY", global = true,
          default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub webhook_endpoint_concurrency: u32,

    /// An endpoint whose deliveries keep exhausting the schedule for this long is disabled
    /// (it is marked failing at the first exhausted delivery).
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER_SECS", value_name = "WEBHOOK_DISABLE_AFTER_SECS", global = true,
          default_value_t = 432_000, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub webhook_disable_after_secs: u64,

    /// After a secret rotation, how long the old secret keeps signing too.
    #[arg(long, env = "WEBHOOK_SECRET_OVERLAP_SECS", value_name = "WEBHOOK_SECRET_OVERLAP_SECS", global = true,
          default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub webhook_secret_overlap_secs: u64,

    /// Accept plain http:// endpoint URLs (default: https only).
    #[arg(long, env = "WEBHOOK_ALLOW_HTTP", value_name = "WEBHOOK_ALLOW_HTTP", global = true,
          default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,

    /// Accept endpoints on private, loopback and link-local addresses (default: refused,
    /// against SSRF).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE_URLS", value_name = "WEBHOOK_ALLOW_PRIVATE_URLS", global = true,
          default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_urls: bool,
}

impl WebhookConfig {
    /// WEBHOOK_RETRY_SCHEDULE as durations.
    pub fn schedule(&self) -> Result<Vec<Duration>, InvalidSetting> {
        let bad = |part: &str| {
            format!(
                "WEBHOOK_RETRY_SCHEDULE must be comma-separated durations like 0s,5s,5m,2h (ms, s, m, h); `{part}` is not one"
            )
        };
        let mut out = Vec::new();
        for part in self.webhook_retry_schedule.split(',').map(str::trim) {
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| bad(part))?;
            let (number, unit) = part.split_at(split);
            let n: u64 = number.parse().map_err(|_| bad(part))?;
            let ms = match unit {
                "ms" => Some(n),
                "s" => n.checked_mul(1000),
                "m" => n.checked_mul(60_000),
                "h" => n.checked_mul(3_600_000),
                _ => None,
            }
            .filter(|ms| *ms <= 7 * 86_400_000)
            .ok_or_else(|| bad(part))?;
            out.push(Duration::from_millis(ms));
        }
        if out.len() > 50 {
            return Err("WEBHOOK_RETRY_SCHEDULE allows at most 50 attempts".into());
        }
        Ok(out)
    }
}

/// The Lianke (链科云打印 v3) backend. It is enabled when LIANKE_API_KEY is set.
#[derive(Debug, Clone, Args)]
pub struct LiankeConfig {
    /// Lianke's API server.
    #[arg(
        long,
        env = "LIANKE_BASE_URL",
        value_name = "LIANKE_BASE_URL",
        global = true,
        default_value = "https://cloud.liankenet.com"
    )]
    pub lianke_base_url: String,

    /// The `ApiKey` Lianke issued to this gateway. Unset: the Lianke backend is off.
    #[arg(
        long,
        env = "LIANKE_API_KEY",
        value_name = "LIANKE_API_KEY",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub lianke_api_key: Option<SecretString>,

    /// How often an accepted task is polled when no callback settles it (Lianke asks for
    /// at least 10 s between polls of one task; lower values are for tests).
    #[arg(long, env = "LIANKE_POLL_INTERVAL_MS", value_name = "LIANKE_POLL_INTERVAL_MS", global = true,
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub lianke_poll_interval_ms: u64,

    /// With callbacks on, how long after the submit the first poll waits for a callback.
    #[arg(long, env = "LIANKE_CALLBACK_WAIT_MS", value_name = "LIANKE_CALLBACK_WAIT_MS", global = true,
          default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub lianke_callback_wait_ms: u64,

    /// Ask Lianke for a result callback even when PUBLIC_BASE_URL is plain http (Lianke
    /// itself refuses http; for tests and the simulator).
    #[arg(long, env = "LIANKE_ALLOW_HTTP_CALLBACK", value_name = "LIANKE_ALLOW_HTTP_CALLBACK", global = true,
          default_value_t = false, action = clap::ArgAction::Set)]
    pub lianke_allow_http_callback: bool,

    /// Before a callback may end a job, ask Lianke (`GET /api/print/job`) whether the task
    /// really ended as the callback says.
    #[arg(long, env = "LIANKE_CONFIRM_CALLBACKS", value_name = "LIANKE_CONFIRM_CALLBACKS", global = true,
          default_value_t = true, action = clap::ArgAction::Set)]
    pub lianke_confirm_callbacks: bool,

    /// What a job does when no printer is plugged into its port (Lianke 5011 / 497): `wait`
    /// for it like an offline device, or `fail` at once.
    #[arg(
        long,
        env = "LIANKE_NO_PRINTER",
        value_name = "LIANKE_NO_PRINTER",
        global = true,
        value_enum,
        default_value = "wait"
    )]
    pub lianke_no_printer: NoPrinterPolicy,
}

/// What to do when a Lianke box reports no printer on the job's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoPrinterPolicy {
    Wait,
    Fail,
}

/// The Zhimu (智睦云 Cloud OpenAPI) backend. It is enabled when ZHIMU_APP_ID and
/// ZHIMU_APP_KEY are set.
#[derive(Debug, Clone, Args)]
pub struct ZhimuConfig {
    /// Zhimu's API server.
    #[arg(
        long,
        env = "ZHIMU_BASE_URL",
        value_name = "ZHIMU_BASE_URL",
        global = true,
        default_value = "https://any.webprinter.cn"
    )]
    pub zhimu_base_url: String,

    /// The AppID of the gateway's Zhimu app. Unset: the Zhimu backend is off.
    #[arg(long, env = "ZHIMU_APP_ID", value_name = "ZHIMU_APP_ID", global = true)]
    pub zhimu_app_id: Option<String>,

    /// The AppKey of that app (signs token requests; never logged).
    #[arg(
        long,
        env = "ZHIMU_APP_KEY",
        value_name = "ZHIMU_APP_KEY",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub zhimu_app_key: Option<SecretString>,

    /// Timeout of one Zhimu call (the doc gives 3000 ms). A submit that times out is
    /// `unconfirmed`, never sent again.
    #[arg(long, env = "ZHIMU_TIMEOUT_MS", value_name = "ZHIMU_TIMEOUT_MS", global = true,
          default_value_t = 3000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub zhimu_timeout_ms: u64,

    /// Delay from an accepted submit to the first status poll.
    #[arg(long, env = "ZHIMU_POLL_FIRST_MS", value_name = "ZHIMU_POLL_FIRST_MS", global = true,
          default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub zhimu_poll_first_ms: u64,

    /// Shortest delay between two polls of one task (young tasks).
    #[arg(long, env = "ZHIMU_POLL_EVERY_MS", value_name = "ZHIMU_POLL_EVERY_MS", global = true,
          default_value_t = 3000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub zhimu_poll_every_ms: u64,

    /// Longest delay between two polls of one task: polls back off to a quarter of the
    /// task's age, up to this.
    #[arg(long, env = "ZHIMU_POLL_MAX_MS", value_name = "ZHIMU_POLL_MAX_MS", global = true,
          default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub zhimu_poll_max_ms: u64,

    /// Status polls (`task/get`) per second at most, across all Zhimu jobs of this
    /// process (0: no bound).
    #[arg(long, env = "ZHIMU_MAX_POLLS_PER_SEC", value_name = "ZHIMU_MAX_POLLS_PER_SEC", global = true,
          default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub zhimu_max_polls_per_sec: u32,

    /// How long before the app token expires a new one is fetched (at most a fifth of
    /// the token's lifetime, which the doc gives as one day).
    #[arg(long, env = "ZHIMU_TOKEN_REFRESH_AHEAD_SECS", value_name = "ZHIMU_TOKEN_REFRESH_AHEAD_SECS", global = true,
          default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub zhimu_token_refresh_ahead_secs: u64,
}

/// WeCom printers (企业微信 hardware cloud access). Enabled when WECOM_MODEL_ID is set.
#[derive(Debug, Clone, Args)]
pub struct WecomConfig {
    /// WeCom API base URL.
    #[arg(
        long,
        env = "WECOM_BASE_URL",
        value_name = "WECOM_BASE_URL",
        global = true,
        default_value = "https://qyapi.weixin.qq.com"
    )]
    pub wecom_base_url: String,

    /// WeCom hardware model id. Setting it (with WECOM_MODEL_SECRET) enables WeCom printers.
    #[arg(
        long,
        env = "WECOM_MODEL_ID",
        value_name = "WECOM_MODEL_ID",
        global = true
    )]
    pub wecom_model_id: Option<String>,

    /// WeCom model secret.
    #[arg(
        long,
        env = "WECOM_MODEL_SECRET",
        value_name = "WECOM_MODEL_SECRET",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub wecom_model_secret: Option<SecretString>,

    /// A WeCom model ticket to start with; newer ones arrive by push (needed when pushes
    /// are not configured).
    #[arg(
        long,
        env = "WECOM_MODEL_TICKET",
        value_name = "WECOM_MODEL_TICKET",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub wecom_model_ticket: Option<SecretString>,

    /// The Token of the WeCom push callback (`msg_signature`). With WECOM_CALLBACK_AES_KEY it
    /// enables `POST /webhooks/wecom`.
    #[arg(
        long,
        env = "WECOM_CALLBACK_TOKEN",
        value_name = "WECOM_CALLBACK_TOKEN",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub wecom_callback_token: Option<SecretString>,

    /// The 43-character EncodingAESKey of the WeCom push callback.
    #[arg(
        long,
        env = "WECOM_CALLBACK_AES_KEY",
        value_name = "WECOM_CALLBACK_AES_KEY",
        global = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub wecom_callback_aes_key: Option<SecretString>,

    /// How often each WeCom printer's jobs are pulled (the backstop for missed pushes);
    /// 0 = never (push only).
    #[arg(long, env = "WECOM_SYNC_INTERVAL_SECS", value_name = "WECOM_SYNC_INTERVAL_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub wecom_sync_interval_secs: u64,

    /// How far back a pull looks for unprinted jobs (WeCom keeps jobs 7 days).
    #[arg(long, env = "WECOM_SYNC_WINDOW_SECS", value_name = "WECOM_SYNC_WINDOW_SECS", global = true,
          default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(60..=604_800))]
    pub wecom_sync_window_secs: u64,

    /// The tenant imported WeCom jobs belong to (a printer's `locator.tenant` overrides it).
    #[arg(
        long,
        env = "WECOM_TENANT",
        value_name = "WECOM_TENANT",
        global = true,
        default_value = "wecom"
    )]
    pub wecom_tenant: String,

    /// How long every WeCom call pauses after a rate or concurrency limit (45009/45033).
    #[arg(long, env = "WECOM_RATE_LIMIT_PAUSE_SECS", value_name = "WECOM_RATE_LIMIT_PAUSE_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub wecom_rate_limit_pause_secs: u64,

    /// Longest delay between two attempts to report a job's outcome to WeCom (reports are
    /// retried until WeCom accepts them).
    #[arg(long, env = "WECOM_REPORT_RETRY_MAX_SECS", value_name = "WECOM_REPORT_RETRY_MAX_SECS", global = true,
          default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wecom_report_retry_max_secs: u64,
}

/// How long finished jobs and their parts are kept; the purge worker (and
/// `print-gateway purge`) deletes what is older. `pending`, `processing` and `unconfirmed`
/// jobs are never purged.
#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// Days a finished job (completed, failed, canceled) is kept, with its events and
    /// document. At least 8: WeCom jobs stay listed at WeCom for 7 days, and the job row is
    /// what keeps them from being imported twice.
    #[arg(long, env = "RETENTION_JOBS_DAYS", value_name = "RETENTION_JOBS_DAYS", global = true,
          default_value_t = 90, value_parser = clap::value_parser!(u32).range(8..=36_500))]
    pub retention_jobs_days: u32,

    /// Days a finished job's event history is kept (at most RETENTION_JOBS_DAYS; default:
    /// as long as the job).
    #[arg(long, env = "RETENTION_EVENTS_DAYS", value_name = "RETENTION_EVENTS_DAYS", global = true,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_events_days: Option<u32>,

    /// Where document bytes are stored: unset = in Postgres; `file:///DIR` (a local or
    /// mounted directory) or `s3://BUCKET/PREFIX` (S3 or S3-compatible; credentials and
    /// region from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT for
    /// MinIO, AWS_ALLOW_HTTP). The purge deletes the objects of what it removes.
    #[arg(
        long,
        env = "DOCUMENT_STORE_URL",
        value_name = "DOCUMENT_STORE_URL",
        global = true
    )]
    pub document_store_url: Option<String>,

    /// Days a finished job's document bytes are kept (the job keeps the document's name,
    /// type, size and hash).
    #[arg(long, env = "RETENTION_DOCUMENTS_DAYS", value_name = "RETENTION_DOCUMENTS_DAYS", global = true,
          default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_documents_days: u32,

    /// Days an outbox event (webhooks, the `/v1/events` feed) is kept with its deliveries
    /// and their attempts; one still waiting to be delivered to an enabled endpoint stays.
    #[arg(long, env = "RETENTION_WEBHOOKS_DAYS", value_name = "RETENTION_WEBHOOKS_DAYS", global = true,
          default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_webhooks_days: u32,

    /// Hours an Idempotency-Key is remembered; after that the same key makes a new job.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL_HOURS", value_name = "IDEMPOTENCY_KEY_TTL_HOURS", global = true,
          default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=87_600))]
    pub idempotency_key_ttl_hours: u32,

    /// How often the purge worker runs (worker processes); 0 = never (run
    /// `print-gateway purge` from a scheduler instead).
    #[arg(long, env = "PURGE_INTERVAL_SECS", value_name = "PURGE_INTERVAL_SECS", global = true,
          default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub purge_interval_secs: u64,

    /// Rows one purge statement deletes at most (small batches keep locks short).
    #[arg(long, env = "PURGE_BATCH_SIZE", value_name = "PURGE_BATCH_SIZE", global = true,
          default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub purge_batch_size: u32,
}

impl RetentionConfig {
    pub fn events_days(&self) -> u32 {
        self.retention_events_days
            .unwrap_or(self.retention_jobs_days)
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.events_days() > self.retention_jobs_days {
            return Err("RETENTION_EVENTS_DAYS must not exceed RETENTION_JOBS_DAYS".into());
        }
        if self.retention_documents_days > self.retention_jobs_days {
            return Err("RETENTION_DOCUMENTS_DAYS must not exceed RETENTION_JOBS_DAYS".into());
        }
        Ok(())
    }
}

/// `IP:PORT`, or `HOST:PORT` resolved now (the first address wins, IPv4 before IPv6).
pub fn parse_bind_addr(value: &str) -> Result<SocketAddr, InvalidSetting> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    let (host, port) = value.rsplit_once(':').ok_or_else(|| {
        format!("`{value}` is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080)")
    })?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(
            format!("`{value}` is not HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080)").into(),
        );
    }
    let mut addrs: Vec<SocketAddr> = value
        .to_socket_addrs()
        .map_err(|err| InvalidSetting(format!("cannot resolve the host of `{value}`: {err}")))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| InvalidSetting(format!("the host of `{value}` has no address")))
}

/// Postgres settings of the commands that only need the database (`migrate`, `api-keys`,
/// `purge`).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres URL; the database is created if missing and migrated.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/print_gateway",
        value_parser = secret,
        hide_default_value = false
    )]
    pub database_url: SecretString,

    /// How long to keep trying to reach Postgres (exponential backoff) before giving up.
    #[arg(long, env = "DB_WAIT_MAX_SECS", value_name = "DB_WAIT_MAX_SECS", global = true,
          default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub db_wait_max_secs: u64,
}

impl DatabaseArgs {
    /// The full configuration with these database settings and every other default.
    pub fn config(&self) -> Config {
        let mut config = Config::defaults();
        // Commands, not request handlers: wait for a connection as long as it takes.
        config.database_acquire_timeout_ms = 30_000;
        config.database_url = self.database_url.clone();
        config.db_wait_max_secs = self.db_wait_max_secs;
        config
    }
}

/// A setting, or a combination of settings, that cannot work. The message names the
/// variable to change (`serve` prints it and exits with status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

impl From<String> for InvalidSetting {
    fn from(message: String) -> Self {
        InvalidSetting(message)
    }
}

impl From<crate::secrets_at_rest::InvalidKeys> for InvalidSetting {
    fn from(err: crate::secrets_at_rest::InvalidKeys) -> Self {
        InvalidSetting(err.to_string())
    }
}

impl From<&str> for InvalidSetting {
    fn from(message: &str) -> Self {
        InvalidSetting(message.to_owned())
    }
}

/// Parses a secret setting: kept in a [`SecretString`], so `Debug` never shows it.
fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl Config {
    /// The defaults, as if no variable were set: for tests and the demo.
    pub fn defaults() -> Config {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let matches = <Only as clap::CommandFactory>::command()
            .mut_args(|arg| arg.env(None::<&str>))
            .get_matches_from(["print-gateway"]);
        <Only as clap::FromArgMatches>::from_arg_matches(&matches)
            .map(|only| only.config)
            .unwrap_or_else(|err| unreachable!("the defaults parse: {err}"))
    }

    /// Checks what clap cannot: relations between settings and URL shapes.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let database_url = self.database_url.expose_secret();
        if !database_url.starts_with("postgres://") && !database_url.starts_with("postgresql://") {
            return Err("DATABASE_URL must be a postgres:// URL".into());
        }
        self.secrets.keyring()?;
        if let Some(url) = &self.public_base_url {
            let parsed = reqwest::Url::parse(url).map_err(|err| {
                InvalidSetting(format!("PUBLIC_BASE_URL is not a URL ({err}): {url}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!(
                    "PUBLIC_BASE_URL must be an http(s) URL with a host, got {url}"
                )
                .into());
            }
        }
        if self.vendor_timeout_secs >= self.lease_secs {
            return Err(format!(
                "LEASE_SECS ({}) must be longer than VENDOR_TIMEOUT_SECS ({})",
                self.lease_secs, self.vendor_timeout_secs
            )
            .into());
        }
        if self.retry_base_ms > self.retry_max_ms {
            return Err("RETRY_BASE_MS must not exceed RETRY_MAX_MS".into());
        }
        if self.max_document_bytes > self.max_body_bytes {
            return Err("MAX_DOCUMENT_BYTES must not exceed MAX_BODY_BYTES".into());
        }
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err("TLS_CERT_PATH and TLS_KEY_PATH must be set together".into());
        }
        for (name, path) in [
            ("TLS_CERT_PATH", &self.tls_cert_path),
            ("TLS_KEY_PATH", &self.tls_key_path),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(format!("{name} names no readable file: {}", path.display()).into());
            }
        }
        let lianke = reqwest::Url::parse(&self.lianke.lianke_base_url).map_err(|err| {
            format!(
                "LIANKE_BASE_URL is not a URL ({err}): {}",
                self.lianke.lianke_base_url
            )
        })?;
        if !matches!(lianke.scheme(), "http" | "https") {
            return Err("LIANKE_BASE_URL must be an http(s) URL".into());
        }
        if self
            .lianke
            .lianke_api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().trim().is_empty())
        {
            return Err("LIANKE_API_KEY is set but empty".into());
        }
        self.zhimu.validate()?;
        self.retention.validate()?;
        if self.public_base_url.is_some() && self.callback_secrets.is_none() {
            return Err("CALLBACK_SECRETS must be set when PUBLIC_BASE_URL is: every replica (API and workers) must sign and check callback URLs with the same key".into());
        }
        if let Some(secrets) = &self.callback_secrets
            && secrets
                .expose_secret()
                .split(',')
                .any(|s| s.trim().len() < 16)
        {
            return Err(
                "CALLBACK_SECRETS must be comma-separated keys of at least 16 characters each"
                    .into(),
            );
        }
        self.webhooks.schedule()?;
        self.validate_wecom()
    }

    fn validate_wecom(&self) -> Result<(), InvalidSetting> {
        let set = |v: &Option<SecretString>| {
            v.as_ref()
                .is_some_and(|s| !s.expose_secret().trim().is_empty())
        };
        match (
            &self.wecom.wecom_callback_token,
            &self.wecom.wecom_callback_aes_key,
        ) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "WECOM_CALLBACK_TOKEN and WECOM_CALLBACK_AES_KEY must be set together".into(),
                );
            }
            (Some(token), Some(key)) => {
                if token.expose_secret().trim().is_empty() {
                    return Err("WECOM_CALLBACK_TOKEN must not be empty".into());
                }
                crate::backends::wecom::crypto::AesKey::from_encoding_aes_key(key.expose_secret())
                    .map_err(|_| "WECOM_CALLBACK_AES_KEY must be the 43-character EncodingAESKey of the WeCom callback".to_owned())?;
            }
            (None, None) => {}
        }
        let Some(model_id) = &self.wecom.wecom_model_id else {
            if set(&self.wecom.wecom_model_secret) || set(&self.wecom.wecom_model_ticket) {
                return Err("WECOM_MODEL_ID is required when WECOM_MODEL_SECRET or WECOM_MODEL_TICKET is set".into());
            }
            return Ok(());
        };
        if model_id.trim().is_empty() {
            return Err("WECOM_MODEL_ID must not be empty".into());
        }
        if !set(&self.wecom.wecom_model_secret) {
            return Err("WECOM_MODEL_SECRET is required with WECOM_MODEL_ID".into());
        }
        if !set(&self.wecom.wecom_model_ticket) && !self.wecom_push_configured() {
            return Err("WECOM_MODEL_TICKET is required with WECOM_MODEL_ID unless pushes (WECOM_CALLBACK_TOKEN, WECOM_CALLBACK_AES_KEY) deliver it".into());
        }
        let parsed = reqwest::Url::parse(&self.wecom.wecom_base_url).map_err(|err| {
            format!(
                "WECOM_BASE_URL is not a URL ({err}): {}",
                self.wecom.wecom_base_url
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(format!(
                "WECOM_BASE_URL must be an http(s) URL with a host, got {}",
                self.wecom.wecom_base_url
            )
            .into());
        }
        if self.wecom.wecom_tenant.trim().is_empty() || self.wecom.wecom_tenant.len() > 200 {
            return Err("WECOM_TENANT must be 1-200 characters".into());
        }
        Ok(())
    }

    /// Warnings worth a line at start: settings that leave the gateway doing less than an
    /// operator probably expects. `backends` are the names of the configured backends.
    pub fn startup_warnings(&self, backends: &[&str]) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.secrets.secrets_keys.is_none() {
            warnings.push("printer secrets and webhook signing secrets are stored in clear in the database: set SECRETS_KEYS (and SECRETS_ACTIVE_KEY) to seal them; the next start with keys seals the rows already stored".to_owned());
        }
        if backends.is_empty() {
            warnings.push("no vendor backend is configured, so no printer can be registered or print: set LIANKE_API_KEY (Lianke), ZHIMU_APP_ID and ZHIMU_APP_KEY (Zhimu) or WECOM_MODEL_ID (WeCom)".to_owned());
        }
        if backends.contains(&"lianke")
            && let Some(url) = self.public_base()
            && url.starts_with("http://")
            && !self.lianke.lianke_allow_http_callback
        {
            warnings.push(format!("Lianke result callbacks are off because PUBLIC_BASE_URL ({url}) is http and Lianke only calls https URLs; job status comes from polling every LIANKE_POLL_INTERVAL_MS. Set PUBLIC_BASE_URL to an https URL (or LIANKE_ALLOW_HTTP_CALLBACK=true for a simulator)"));
        }
        warnings
    }

    /// Whether WeCom printers are enabled (a model is configured).
    pub fn wecom_enabled(&self) -> bool {
        self.wecom.wecom_model_id.is_some()
    }

    /// Whether WeCom pushes are accepted at `POST /webhooks/wecom`.
    pub fn wecom_push_configured(&self) -> bool {
        self.wecom.wecom_callback_token.is_some() && self.wecom.wecom_callback_aes_key.is_some()
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn vendor_timeout(&self) -> Duration {
        Duration::from_secs(self.vendor_timeout_secs)
    }

    /// The certificate and key when the gateway serves HTTPS itself.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        match (&self.tls_cert_path, &self.tls_key_path) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        }
    }

    /// Whether Lianke is asked for result callbacks: it only calls https URLs, so the
    /// public URL must be https (or http explicitly allowed, for tests).
    pub fn lianke_callbacks(&self) -> bool {
        match self.public_base() {
            Some(url) if url.starts_with("https://") => true,
            Some(url) if url.starts_with("http://") => self.lianke.lianke_allow_http_callback,
            _ => false,
        }
    }

    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> Option<&str> {
        self.public_base_url
            .as_deref()
            .map(|u| u.trim_end_matches('/'))
    }
}

impl ZhimuConfig {
    fn validate(&self) -> Result<(), InvalidSetting> {
        let url = reqwest::Url::parse(&self.zhimu_base_url).map_err(|err| {
            format!(
                "ZHIMU_BASE_URL is not a URL ({err}): {}",
                self.zhimu_base_url
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("ZHIMU_BASE_URL must be an http(s) URL".into());
        }
        let set = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
        let key = self.zhimu_app_key.as_ref().map(ExposeSecret::expose_secret);
        match (set(self.zhimu_app_id.as_deref()), set(key)) {
            (true, false) => return Err("ZHIMU_APP_ID is set but ZHIMU_APP_KEY is not".into()),
            (false, true) => return Err("ZHIMU_APP_KEY is set but ZHIMU_APP_ID is not".into()),
            _ => {}
        }
        if self.zhimu_poll_every_ms > self.zhimu_poll_max_ms {
            return Err("ZHIMU_POLL_EVERY_MS must not exceed ZHIMU_POLL_MAX_MS".into());
        }
        Ok(())
    }

    /// The app credentials, when both are set.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (
            self.zhimu_app_id.as_deref(),
            self.zhimu_app_key.as_ref().map(ExposeSecret::expose_secret),
        ) {
            (Some(id), Some(key)) if !id.trim().is_empty() && !key.trim().is_empty() => {
                Some((id, key))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;
    use std::time::Duration;

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults();
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn validation_names_the_variable() {
        let mut config = Config::defaults();
        config.public_base_url = Some("ftp://x".into());
        assert!(config.validate().unwrap_err().0.contains("PUBLIC_BASE_URL"));
        let mut config = Config::defaults();
        config.lease_secs = 5;
        assert!(config.validate().unwrap_err().0.contains("LEASE_SECS"));
        // Callback URLs must verify on every replica: a shared key is required.
        let mut config = Config::defaults();
        config.public_base_url = Some("https://print.example.com".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("CALLBACK_SECRETS")
        );
        config.callback_secrets = Some("short".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("CALLBACK_SECRETS")
        );
        config.callback_secrets = Some("a-long-enough-shared-key".into());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bind_addr_takes_host_names() {
        use super::parse_bind_addr;
        assert_eq!(
            parse_bind_addr("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            parse_bind_addr("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(parse_bind_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(
            parse_bind_addr("localhost")
                .unwrap_err()
                .0
                .contains("HOST:PORT")
        );
        assert!(parse_bind_addr("localhost:http").is_err());
        assert!(
            parse_bind_addr("no-such-host.invalid:80")
                .unwrap_err()
                .0
                .contains("resolve")
        );
    }

    #[test]
    fn startup_warnings_name_the_variable() {
        let mut config = Config::defaults();
        let clear = config.startup_warnings(&["lianke"]);
        assert_eq!(clear.len(), 1);
        assert!(clear[0].contains("SECRETS_KEYS"));
        config.secrets.secrets_keys = Some(secrecy::SecretString::from(
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ));
        let none = config.startup_warnings(&[]);
        assert_eq!(none.len(), 1);
        assert!(none[0].contains("LIANKE_API_KEY") && none[0].contains("ZHIMU_APP_ID"));
        assert!(config.startup_warnings(&["lianke"]).is_empty());
        config.public_base_url = Some("http://gw.example.com".into());
        let http = config.startup_warnings(&["lianke"]);
        assert_eq!(http.len(), 1);
        assert!(http[0].contains("PUBLIC_BASE_URL") && http[0].contains("https"));
        // Zhimu alone has no callbacks: nothing to warn about.
        assert!(config.startup_warnings(&["zhimu"]).is_empty());
        config.lianke.lianke_allow_http_callback = true;
        assert!(config.startup_warnings(&["lianke"]).is_empty());
        config.public_base_url = Some("https://gw.example.com".into());
        config.lianke.lianke_allow_http_callback = false;
        assert!(config.startup_warnings(&["lianke"]).is_empty());
    }

    #[test]
    fn the_webhook_retry_schedule_is_parsed_and_checked() {
        let mut config = Config::defaults();
        assert_eq!(
            config.webhooks.schedule().unwrap(),
            [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000].map(Duration::from_secs)
        );
        config.webhooks.webhook_retry_schedule = "0ms, 250ms,2s".into();
        assert_eq!(
            config.webhooks.schedule().unwrap(),
            [0, 250, 2000].map(Duration::from_millis)
        );
        for bad in ["", "5", "5x", "s", "-1s", "9999h"] {
            config.webhooks.webhook_retry_schedule = bad.into();
            assert!(
                config
                    .validate()
                    .unwrap_err()
                    .0
                    .contains("WEBHOOK_RETRY_SCHEDULE"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zhimu_credentials_come_in_pairs() {
        let mut config = Config::defaults();
        assert_eq!(config.zhimu.zhimu_base_url, "https://any.webprinter.cn");
        assert_eq!(config.zhimu.zhimu_timeout_ms, 3000);
        assert!(config.zhimu.credentials().is_none());
        config.zhimu.zhimu_app_id = Some("app".into());
        assert!(config.validate().unwrap_err().0.contains("ZHIMU_APP_KEY"));
        config.zhimu.zhimu_app_key = Some("key".into());
        assert!(config.validate().is_ok());
        assert_eq!(config.zhimu.credentials(), Some(("app", "key")));
        config.zhimu.zhimu_base_url = "ftp://x".into();
        assert!(config.validate().unwrap_err().0.contains("ZHIMU_BASE_URL"));
    }

    #[test]
    fn debug_output_shows_no_secret_setting() {
        use secrecy::SecretString;
        let mut config = Config::defaults();
        let secrets = [
            "pgpass-7d1c9b0e",
            "callback-key-5a8e2f4c11",
            "lianke-key-93b1",
            "zhimu-appkey-40fd",
            "wecom-model-secret-6e2a",
            "wecom-ticket-1f9c",
            "wecom-token-88aa",
        ];
        config.database_url =
            format!("postgres://gateway:{}@db.internal:5432/pg", secrets[0]).into();
        config.callback_secrets = Some(secrets[1].into());
        config.lianke.lianke_api_key = Some(secrets[2].into());
        config.zhimu.zhimu_app_key = Some(secrets[3].into());
        config.wecom.wecom_model_secret = Some(SecretString::from(secrets[4]));
        config.wecom.wecom_model_ticket = Some(SecretString::from(secrets[5]));
        config.wecom.wecom_callback_token = Some(SecretString::from(secrets[6]));
        config.wecom.wecom_callback_aes_key = Some(SecretString::from("k".repeat(43)));
        let printed = format!("{config:?} {config:#?}");
        for secret in secrets {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(!printed.contains(&"k".repeat(43)));
        // the settings themselves are still there, redacted
        assert!(printed.contains("lianke_api_key"), "{printed}");
    }

    #[test]
    fn wecom_settings_are_checked_together() {
        use secrecy::SecretString;
        let mut config = Config::defaults();
        config.wecom.wecom_model_id = Some("model".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("WECOM_MODEL_SECRET")
        );
        config.wecom.wecom_model_secret = Some(SecretString::from("s"));
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("WECOM_MODEL_TICKET")
        );
        config.wecom.wecom_model_ticket = Some(SecretString::from("t"));
        assert!(config.validate().is_ok());
        config.wecom.wecom_callback_token = Some(SecretString::from("tok"));
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("WECOM_CALLBACK_AES_KEY")
        );
        config.wecom.wecom_callback_aes_key = Some(SecretString::from("too-short"));
        assert!(
            config
                .validate()
                .unwrap_err()
                .0
                .contains("WECOM_CALLBACK_AES_KEY")
        );
        config.wecom.wecom_callback_aes_key = Some(SecretString::from("a".repeat(43)));
        assert!(config.validate().is_ok());
        config.wecom.wecom_base_url = "ftp://x".into();
        assert!(config.validate().unwrap_err().0.contains("WECOM_BASE_URL"));
        assert!(!format!("{config:?}").contains("tok\""));
    }
}
