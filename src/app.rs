//! Builds the state, the router and the workers; starts and stops them. Usable from tests
//! on port 0 (`BIND_ADDR=127.0.0.1:0`), where it reports the real address.

use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::key_cache;
use crate::api::{self, AppState};
use crate::backends::BackendRegistry;
use crate::backends::lianke::{LiankeBackend, LiankeSettings};
use crate::backends::pacing::PollCadence;
use crate::backends::wecom::source::WecomSource;
use crate::backends::wecom::{self, WecomBackend, WecomClient, WecomSettings};
use crate::backends::zhimu::token::AppCredentials;
use crate::backends::zhimu::{ZhimuBackend, ZhimuSettings};
use crate::callback_token::CallbackKeys;
use crate::config::{Config, NoPrinterPolicy};
use crate::document_store::DocumentStore;
use crate::engine::outbox::{Outbox, OutboxSettings};
use crate::engine::{Engine, EngineSettings};
use crate::observe;
use crate::service::Service;
use crate::service::sources::{WecomBridge, WecomBridgeSettings};
use crate::store::{self, StoreError};

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API only.
    Api,
    /// The dispatch workers only.
    Worker,
    /// Both.
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("configuration: {0}")]
    Keys(#[from] crate::secrets_at_rest::InvalidKeys),
    #[error("configuration: {0}")]
    Documents(#[from] crate::document_store::InvalidDocumentStore),
    #[error("configuration: {0}")]
    Backend(#[from] crate::backends::BackendSetupError),
    #[error("configuration: {0}")]
    Outbox(#[from] crate::engine::outbox::OutboxSetupError),
    #[error("configuration: {0}")]
    Setting(#[from] crate::config::InvalidSetting),
    #[error("database at DATABASE_URL ({url}): {source}")]
    Database { url: String, source: StoreError },
    #[error("cannot listen on BIND_ADDR {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The process-wide Prometheus recorder (one per process, shared by every app in tests).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                // Gauges of deleted printers (and other series nobody sets any more) go away.
                .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(600)));
            let builder = [
                (observe::HTTP_DURATION, observe::HTTP_BUCKETS),
                (observe::VENDOR_DURATION, observe::VENDOR_BUCKETS),
                (observe::JOB_DURATION, observe::JOB_BUCKETS),
            ]
            .into_iter()
            .fold(builder, |builder, (name, buckets)| {
                builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                    .unwrap_or_else(|err| unreachable!("the bucket lists are not empty: {err}"))
            });
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                observe::describe();
            }
            handle
        })
        .clone()
}

/// Connects to Postgres (creating the database if needed; waiting up to DB_WAIT_MAX_SECS
/// for it to answer, each try logged) and applies migrations.
pub async fn prepare_database(config: &Config) -> Result<PgPool, StartError> {
    let url = redact_password(config.database_url.expose_secret());
    let failed = |source| StartError::Database {
        url: url.clone(),
        source,
    };
    let max_wait = Duration::from_secs(config.db_wait_max_secs);
    let pool = store::connect_waiting(
        config.database_url.expose_secret(),
        config.database_max_connections,
        Duration::from_millis(config.database_acquire_timeout_ms),
        max_wait,
        |notice| {
            tracing::warn!(
                database = %url,
                attempt = notice.attempt,
                retry_in_ms = notice.next_try_in.as_millis() as u64,
                error = %notice.error,
                "Postgres is not reachable yet; retrying (DB_WAIT_MAX_SECS = {})",
                max_wait.as_secs()
            );
        },
    )
    .await
    .map_err(failed)?;
    store::migrate(&pool).await.map_err(failed)?;
    Ok(pool)
}

/// With keys configured, seals the secrets still stored in clear (written before keys were
/// set); replicas starting together each lock a row before sealing it.
async fn seal_clear_secrets(
    config: &Config,
    pool: &PgPool,
    keyring: &crate::secrets_at_rest::Keyring,
) -> Result<(), StartError> {
    use store::secrets::{Reseal, reseal};
    let sealed = reseal(pool, keyring, Reseal::ClearOnly)
        .await
        .map_err(|source| StartError::Database {
            url: redact_password(config.database_url.expose_secret()),
            source,
        })?;
    if sealed != store::secrets::Resealed::default() {
        tracing::info!(
            printers = sealed.printers,
            webhook_endpoints = sealed.webhook_endpoints,
            key_id = keyring.active_key_id().unwrap_or(""),
            "secrets stored in clear were sealed"
        );
    }
    Ok(())
}

/// `addr` with an unspecified IP (all interfaces) replaced by loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The URL with any password replaced, for messages.
pub fn redact_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable>".into(),
    }
}

/// A running gateway.
pub struct Application {
    addr: Option<SocketAddr>,
    tls: bool,
    state: AppState,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    wecom: Option<Arc<WecomBridge>>,
    outbox: Arc<Outbox>,
}

/// The WeCom client settings from the configuration.
pub fn wecom_settings(config: &Config) -> WecomSettings {
    WecomSettings {
        base_url: config.wecom.wecom_base_url.clone(),
        model_id: config.wecom.wecom_model_id.clone().unwrap_or_default(),
        model_secret: config
            .wecom
            .wecom_model_secret
            .clone()
            .unwrap_or_else(|| SecretString::from("")),
        model_ticket: config.wecom.wecom_model_ticket.clone(),
        timeout: config.vendor_timeout(),
        max_document_bytes: config.max_document_bytes,
        push_configured: config.wecom_push_configured(),
        rate_limit_pause: std::time::Duration::from_secs(config.wecom.wecom_rate_limit_pause_secs),
        busy_retry_pause: std::time::Duration::from_millis(config.retry_base_ms.min(500)),
    }
}

impl Application {
    /// Starts the API and/or the workers on an already migrated pool.
    pub async fn start(
        config: Config,
        pool: PgPool,
        backends: BackendRegistry,
        role: Role,
    ) -> Result<Application, StartError> {
        config.validate()?;
        let keyring = Arc::new(config.secrets.keyring()?);
        let documents = DocumentStore::from_url(config.retention.document_store_url.as_deref())?;
        seal_clear_secrets(&config, &pool, &keyring).await?;
        // WeCom printers exist when a WeCom model is configured: the backend validates
        // them, the bridge pulls, imports and reports.
        let mut backends = backends;
        let mut wecom_client = None;
        if config.wecom_enabled() {
            let client = Arc::new(WecomClient::new(wecom_settings(&config))?);
            if backends.get(wecom::NAME).is_none() {
                backends = backends.with_source(Arc::new(WecomBackend::new(Arc::clone(&client))));
            }
            wecom_client = Some(client);
        }
        for warning in config.startup_warnings(&backends.names()) {
            tracing::warn!("{warning}");
        }
        let callback_keys = CallbackKeys::from_config(
            config
                .callback_secrets
                .as_ref()
                .map(ExposeSecret::expose_secret),
        );
        let engine = Engine::new(
            pool.clone(),
            backends.clone(),
            EngineSettings::from_config(&config),
            callback_keys,
            Arc::clone(&keyring),
            documents.clone(),
        );
        let wecom = wecom_client.map(|client| {
            WecomBridge::new(
                Service::new(pool.clone(), backends.clone(), Arc::clone(&engine)),
                Arc::new(WecomSource::new(client)),
                WecomBridgeSettings::from_config(&config),
            )
        });
        let breaker_threshold = config.breaker_threshold as i32;
        let outbox = Outbox::new(
            pool.clone(),
            OutboxSettings::from_config(&config),
            Arc::new(move |event| api::events::render_body(event, breaker_threshold)),
            Arc::clone(&keyring),
        )?;
        let state = AppState {
            pool,
            backends,
            config: Arc::new(config.clone()),
            engine: Arc::clone(&engine),
            metrics: metrics_handle(),
            keys: Arc::new(key_cache::new(Duration::from_secs(
                config.api_key_cache_secs,
            ))),
        };
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut addr = None;
        let mut tls = false;
        if matches!(role, Role::Api | Role::All) {
            let listener = tokio::net::TcpListener::bind(config.bind_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.bind_addr,
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| StartError::Bind {
                addr: config.bind_addr,
                source,
            })?;
            addr = Some(local);
            engine.spawn_announcer(&tracker, shutdown.clone());
            let (keys, pool, stop) = (
                Arc::clone(&state.keys),
                state.pool.clone(),
                shutdown.clone(),
            );
            tracker.spawn(async move { keys.listen(&pool, &stop).await });
            let (engine, pool, stop) = (Arc::clone(&engine), state.pool.clone(), shutdown.clone());
            tracker.spawn(async move { engine.printer_cache().listen(&pool, &stop).await });
            let router = api::router(state.clone());
            let stop = shutdown.clone();
            let limits = crate::serve::ServeLimits {
                header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
                tls_handshake_timeout: Duration::from_millis(config.tls_handshake_timeout_ms),
                max_connections: config.max_connections as usize,
                http2_max_concurrent_streams: config.http2_max_concurrent_streams,
            };
            let acceptor = match config.tls_files() {
                Some((cert, key)) => Some(tls_acceptor(cert, key).await?),
                None => None,
            };
            tls = acceptor.is_some();
            tracker.spawn(crate::serve::run(listener, router, acceptor, limits, stop));
            tracing::info!(address = %local, tls, "API listening");
        }
        if matches!(role, Role::Worker | Role::All) {
            engine.spawn(&tracker, shutdown.clone());
            tracker.spawn(crate::retention::run_worker(
                state.pool.clone(),
                documents.clone(),
                config.retention.clone(),
                shutdown.clone(),
            ));
            crate::engine::status::spawn(
                &engine,
                Duration::from_secs(config.printer_status_every_secs),
                config.vendor_timeout(),
                Duration::from_secs(config.capabilities_refresh_secs),
                &tracker,
                shutdown.clone(),
            );
            outbox.spawn(&tracker, shutdown.clone());
            tracing::info!(
                concurrency = config.webhooks.webhook_concurrency,
                per_endpoint = config.webhooks.webhook_endpoint_concurrency,
                "webhook delivery workers started"
            );
            tracing::info!(
                workers = config.worker_concurrency,
                "dispatch workers started"
            );
            if let Some(bridge) = &wecom {
                bridge.spawn(&tracker, shutdown.clone());
                tracing::info!(
                    sync_interval_secs = config.wecom.wecom_sync_interval_secs,
                    "WeCom sync and reporter started"
                );
            }
        }
        tracker.close();
        Ok(Application {
            addr,
            tls,
            state,
            shutdown,
            tracker,
            wecom,
            outbox,
        })
    }

    /// The address the API listens on (None for a worker-only process).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// A URL this machine can reach the API on: an all-interfaces address (`0.0.0.0`,
    /// `[::]`) is shown as loopback.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        self.addr
            .map(|a| format!("{scheme}://{}", reachable(a)))
            .unwrap_or_default()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// The webhook delivery workers (`run_due_now` drives them deterministically).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The WeCom bridge, when WeCom is configured (its `sync_now`, `run_inbox_now` and
    /// `report_now` drive it deterministically).
    pub fn wecom(&self) -> Option<&Arc<WecomBridge>> {
        self.wecom.as_ref()
    }

    /// Stops accepting requests, lets in-flight requests and vendor calls finish, and
    /// returns when every task has ended.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.wait().await;
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight work");
        self.shutdown().await;
        tracing::info!("stopped");
    }
}

/// The TLS acceptor for HTTPS (rustls; ALPN offers h2 and http/1.1).
async fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    // One process-wide crypto provider (ring, as reqwest uses); a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|err| {
            StartError::Config(format!(
                "TLS_CERT_PATH/TLS_KEY_PATH could not be loaded as a PEM certificate and key: {err}"
            ))
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(tls.get_inner()))
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// The backends `serve` registers, from their configuration: each vendor whose
/// credentials are configured (Lianke: LIANKE_API_KEY; Zhimu: ZHIMU_APP_ID + ZHIMU_APP_KEY).
pub fn default_backends(config: &Config) -> BackendRegistry {
    let mut registry = BackendRegistry::new();
    if let Some(api_key) = &config.lianke.lianke_api_key {
        match LiankeBackend::new(api_key.clone(), lianke_settings(config)) {
            Ok(lianke) => registry = registry.with(Arc::new(lianke)),
            Err(err) => tracing::error!(error = %err, "the Lianke backend could not start"),
        }
    }
    match zhimu_backend(config) {
        Ok(Some(zhimu)) => registry = registry.with(zhimu),
        Ok(None) => {}
        Err(err) => tracing::error!(error = %err, "the Zhimu backend could not start"),
    }
    registry
}

/// The Lianke backend's settings from the `LIANKE_*` variables.
pub fn lianke_settings(config: &Config) -> LiankeSettings {
    LiankeSettings {
        base_url: config.lianke.lianke_base_url.clone(),
        timeout: config.vendor_timeout(),
        callbacks: config.lianke_callbacks(),
        poll_interval: Duration::from_millis(config.lianke.lianke_poll_interval_ms),
        callback_wait: Duration::from_millis(config.lianke.lianke_callback_wait_ms),
        no_printer_waits: config.lianke.lianke_no_printer == NoPrinterPolicy::Wait,
    }
}

/// The Zhimu backend's settings from the `ZHIMU_*` variables; `None` when the app
/// credentials are not set (the backend is off).
pub fn zhimu_settings(config: &Config) -> Option<ZhimuSettings> {
    let z = &config.zhimu;
    let (app_id, app_key) = z.credentials()?;
    Some(ZhimuSettings {
        base_url: z.zhimu_base_url.clone(),
        credentials: AppCredentials {
            app_id: app_id.to_owned(),
            app_key: SecretString::from(app_key.to_owned()),
        },
        timeout: Duration::from_millis(z.zhimu_timeout_ms),
        poll: PollCadence {
            first: Duration::from_millis(z.zhimu_poll_first_ms),
            every: Duration::from_millis(z.zhimu_poll_every_ms),
            max: Duration::from_millis(z.zhimu_poll_max_ms),
        },
        max_polls_per_second: z.zhimu_max_polls_per_sec,
        token_refresh_ahead: Duration::from_secs(z.zhimu_token_refresh_ahead_secs),
    })
}

/// The Zhimu backend when its credentials are configured.
pub fn zhimu_backend(config: &Config) -> Result<Option<Arc<ZhimuBackend>>, StartError> {
    zhimu_settings(config)
        .map(|settings| ZhimuBackend::new(settings).map(Arc::new))
        .transpose()
        .map_err(StartError::Backend)
}
