//! Webhook delivery workers: claim due deliveries of the outbox (`FOR UPDATE SKIP LOCKED`,
//! per endpoint), POST each signed per Standard Webhooks with a timeout, record every
//! attempt, and retry on the schedule with jitter. Each endpoint has its own bound on
//! deliveries in flight, so a slow or dead endpoint holds at most that many workers and
//! never delays another endpoint, and nothing here touches job dispatch.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use secrecy::{ExposeSecret, SecretSlice};
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{EngineError, wake_on_notify};
use crate::config::Config;
use crate::secrets_at_rest::{self, Keyring};
use crate::store;
use crate::store::webhooks::{AttemptOutcome, ClaimedDelivery, EndpointRow, OutboxEventRow};
use crate::webhook_signature;

/// The channel the outbox fan-out trigger (`outbox_fan_out_rows`) signals on.
pub const CHANNEL: &str = "print_gateway_webhooks";

/// Renders an event as the JSON body receivers get (the API layer knows how a job or a
/// printer looks); an error leaves the delivery to be retried.
pub type Render = Arc<dyn Fn(&OutboxEventRow) -> Result<Vec<u8>, RenderError> + Send + Sync>;

/// Why an event row could not be turned into a body.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The row's snapshot (`part`: "job snapshot", "printer snapshot", "ping") does not read.
    #[error("event {id}: {part}: {source}")]
    Snapshot {
        id: i64,
        part: &'static str,
        source: serde_json::Error,
    },
    /// The snapshot reads but cannot be shown.
    #[error("{0}")]
    View(String),
    #[error("{0}")]
    Encode(serde_json::Error),
}

/// Why the outbox could not start.
#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct OutboxSetupError(reqwest::Error);

/// Why an endpoint's signing keys cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeysError {
    #[error("the endpoint's signing secret cannot be read: {0}")]
    Unreadable(secrets_at_rest::OpenError),
    #[error("{0}")]
    Malformed(webhook_signature::BadSecret),
}

/// Why a delivery got no HTTP status (recorded on the attempt, in a few words).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Keys(SigningKeysError),
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("the URL points to a private address")]
    PrivateAddress,
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A transport error, described without the URL's query string.
    #[error("{0}")]
    Transport(String),
}

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Delay before each attempt: the first is normally 0 (at once).
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    /// Deliveries in flight per process.
    pub concurrency: usize,
    /// Deliveries in flight per endpoint per process.
    pub per_endpoint: usize,
    /// An endpoint failing (a delivery exhausted its schedule) this long is disabled.
    pub disable_after: Duration,
    /// Private, loopback and link-local addresses may be called (tests, the demo).
    pub allow_private: bool,
    pub sweep_interval: Duration,
}

impl OutboxSettings {
    pub fn from_config(config: &Config) -> OutboxSettings {
        let w = &config.webhooks;
        OutboxSettings {
            schedule: w.schedule().unwrap_or_default(),
            timeout: Duration::from_millis(w.webhook_timeout_ms),
            concurrency: w.webhook_concurrency as usize,
            per_endpoint: w.webhook_endpoint_concurrency as usize,
            disable_after: Duration::from_secs(w.webhook_disable_after_secs),
            allow_private: w.webhook_allow_private_urls,
            sweep_interval: Duration::from_millis(config.sweep_interval_ms.max(100)),
        }
    }

    /// When to try again after `attempts` failed attempts; `None` once the schedule is
    /// exhausted. Each delay is drawn from ±20 % of the scheduled one, so that endpoints
    /// failing together do not come back together.
    pub fn retry_at(&self, attempts: usize) -> Option<DateTime<Utc>> {
        let base = *self.schedule.get(attempts)?;
        let jittered = base.mul_f64(rand::rng().random_range(0.8..=1.2));
        Some(Utc::now() + chrono::Duration::from_std(jittered).unwrap_or(chrono::Duration::MAX))
    }
}

/// An address a webhook must not reach unless private addresses are allowed (SSRF).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// DNS for webhook calls: refuses names that resolve only to private addresses (checked
/// at connection time, so a name cannot pass the check at creation and then rebind).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves only to private addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub struct Outbox {
    pool: PgPool,
    settings: OutboxSettings,
    client: reqwest::Client,
    render: Render,
    /// Opens the endpoints' signing secrets (sealed at rest).
    keyring: Arc<Keyring>,
    token: Uuid,
    slots: Semaphore,
    /// Endpoints this process is delivering a batch to, with the batch's size.
    in_flight: Mutex<HashMap<Uuid, usize>>,
    wake: Notify,
}

impl Outbox {
    pub fn new(
        pool: PgPool,
        settings: OutboxSettings,
        render: Render,
        keyring: Arc<Keyring>,
    ) -> Result<Arc<Outbox>, OutboxSetupError> {
        let mut client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "print-gateway-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .pool_max_idle_per_host(settings.per_endpoint);
        if !settings.allow_private {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        let client = client.build().map_err(OutboxSetupError)?;
        Ok(Arc::new(Outbox {
            pool,
            slots: Semaphore::new(settings.concurrency.max(1)),
            settings,
            client,
            render,
            keyring,
            token: Uuid::new_v4(),
            in_flight: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }))
    }

    /// Starts the dispatcher, the LISTEN task and the sweeper; they stop on `shutdown`
    /// after the deliveries in flight finish.
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let outbox = Arc::clone(self);
        let stop = shutdown.clone();
        let tasks = tracker.clone();
        tracker.spawn(async move { outbox.dispatch_loop(stop, tasks).await });
        let outbox = Arc::clone(self);
        let stop = shutdown.clone();
        tracker.spawn(async move {
            wake_on_notify(&outbox.pool, CHANNEL, &[&outbox.wake], &stop).await
        });
        let outbox = Arc::clone(self);
        tracker.spawn(async move { outbox.sweep_loop(shutdown).await });
    }

    async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gauge_at = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => self.wake.notify_one(),
                _ = shutdown.cancelled() => return,
            }
            if gauge_at.elapsed() >= Duration::from_secs(5) {
                gauge_at = Instant::now();
                if let Ok(age) = store::webhooks::oldest_undelivered_age(&self.pool).await {
                    metrics::gauge!("print_gateway_webhook_oldest_undelivered_seconds").set(age);
                }
            }
        }
    }

    async fn dispatch_loop(self: Arc<Self>, shutdown: CancellationToken, tasks: TaskTracker) {
        while !shutdown.is_cancelled() {
            let claimed = match self.claim_round().await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::error!(error = %err, "webhook dispatcher error");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            for (endpoint, batch) in claimed {
                let outbox = Arc::clone(&self);
                tasks.spawn(async move { outbox.deliver_batch(endpoint, batch).await });
            }
        }
    }

    /// Deliveries claimed per endpoint at once: a few rounds of its in-flight bound, so
    /// that a claim query serves many deliveries.
    fn batch_size(&self) -> usize {
        self.settings.per_endpoint * 4
    }

    /// The claim on a batch: long enough for all its rounds to time out, plus a margin.
    fn lease(&self) -> Duration {
        let rounds = self
            .batch_size()
            .div_ceil(self.settings.per_endpoint.max(1)) as u32;
        self.settings.timeout * rounds + Duration::from_secs(30)
    }

    /// Delivers one endpoint's batch, at most `per_endpoint` at a time (and within the
    /// process's slots), then frees the endpoint for the next claim.
    async fn deliver_batch(&self, endpoint: EndpointRow, batch: Vec<ClaimedDelivery>) {
        use futures::StreamExt as _;
        let endpoint_id = endpoint.id;
        let endpoint = &endpoint;
        // The signing secrets are opened once per batch, in memory only.
        let keys = &self.signing_keys(endpoint);
        futures::stream::iter(batch)
            .for_each_concurrent(self.settings.per_endpoint, |delivery| async move {
                let Ok(_permit) = self.slots.acquire().await else {
                    return;
                };
                self.deliver(endpoint, keys, delivery).await;
            })
            .await;
        if let Ok(mut busy) = self.in_flight.lock() {
            busy.remove(&endpoint_id);
        }
        self.wake.notify_one();
    }

    /// Claims a batch for each endpoint with due deliveries that this process is not
    /// already delivering to.
    async fn claim_round(&self) -> Result<Vec<(EndpointRow, Vec<ClaimedDelivery>)>, EngineError> {
        let mut out = Vec::new();
        for endpoint in store::webhooks::endpoints_with_due_deliveries(&self.pool).await? {
            let busy = self
                .in_flight
                .lock()
                .map(|m| m.contains_key(&endpoint.id))
                .unwrap_or(true);
            if busy {
                continue;
            }
            let batch = store::webhooks::claim_deliveries(
                &self.pool,
                endpoint.id,
                self.token,
                self.batch_size() as i64,
                self.lease(),
            )
            .await?;
            if batch.is_empty() {
                continue;
            }
            if let Ok(mut busy) = self.in_flight.lock() {
                busy.insert(endpoint.id, batch.len());
            }
            out.push((endpoint, batch));
        }
        Ok(out)
    }

    /// Delivers everything due now and waits for it, until nothing is due: the
    /// deterministic driver for tests. Returns how many attempts were made.
    pub async fn run_due_now(&self) -> Result<usize, EngineError> {
        let mut attempts = 0;
        loop {
            let claimed = self.claim_round().await?;
            if claimed.is_empty() {
                return Ok(attempts);
            }
            attempts += claimed.iter().map(|(_, batch)| batch.len()).sum::<usize>();
            let runs = claimed
                .into_iter()
                .map(|(endpoint, batch)| self.deliver_batch(endpoint, batch));
            futures::future::join_all(runs).await;
        }
    }

    /// The endpoint's signing keys: its secret, and the previous one during the overlap.
    fn signing_keys(
        &self,
        endpoint: &EndpointRow,
    ) -> Result<Vec<SecretSlice<u8>>, SigningKeysError> {
        let context = secrets_at_rest::endpoint_context(endpoint.id);
        let open = |stored: &str| {
            let secret = self
                .keyring
                .open(&context, stored)
                .map_err(SigningKeysError::Unreadable)?;
            webhook_signature::secret_key(secret.expose_secret())
                .map(SecretSlice::from)
                .map_err(SigningKeysError::Malformed)
        };
        let mut keys = vec![open(&endpoint.secret)?];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
            && until > Utc::now()
        {
            keys.push(open(previous)?);
        }
        Ok(keys)
    }

    async fn deliver(
        &self,
        endpoint: &EndpointRow,
        keys: &Result<Vec<SecretSlice<u8>>, SigningKeysError>,
        delivery: ClaimedDelivery,
    ) {
        let attempt = delivery.attempts as usize + 1;
        let started = Instant::now();
        let posted = match keys {
            Ok(keys) => self.post(endpoint, keys, &delivery.event).await,
            Err(err) => Err(DeliveryError::Keys(err.clone())),
        };
        let (status, error) = match posted {
            Ok(status) => (Some(i32::from(status)), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let elapsed = started.elapsed();
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let retry_at = if delivered {
            None
        } else {
            self.settings.retry_at(attempt)
        };
        let result = if delivered {
            "delivered"
        } else if retry_at.is_some() {
            "retry"
        } else {
            "exhausted"
        };
        metrics::counter!("print_gateway_webhook_deliveries_total", "result" => result)
            .increment(1);
        metrics::histogram!("print_gateway_webhook_delivery_seconds").record(elapsed.as_secs_f64());
        if !delivered {
            tracing::warn!(
                endpoint_id = %endpoint.id,
                delivery_id = delivery.delivery_id,
                event_id = delivery.event.id,
                attempt,
                status,
                error = error.as_deref().unwrap_or(""),
                result,
                "webhook delivery failed"
            );
        }
        let outcome = AttemptOutcome {
            status,
            latency_ms: i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX),
            error,
            delivered,
            retry_at,
        };
        match store::webhooks::record_attempt(
            &self.pool,
            delivery.delivery_id,
            self.token,
            &outcome,
            self.settings.disable_after,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                delivery_id = delivery.delivery_id,
                "webhook delivery claim was lost (lease expired or retried); the attempt is not recorded"
            ),
            Err(err) => tracing::error!(
                delivery_id = delivery.delivery_id,
                error = %err,
                "recording a webhook attempt failed; it will be attempted again after its lease"
            ),
        }
    }

    /// One signed POST; the HTTP status, or why there was none.
    async fn post(
        &self,
        endpoint: &EndpointRow,
        keys: &[SecretSlice<u8>],
        event: &OutboxEventRow,
    ) -> Result<u16, DeliveryError> {
        let url = reqwest::Url::parse(&endpoint.url)
            .map_err(|err| DeliveryError::BadUrl(err.to_string()))?;
        if !self.settings.allow_private
            && let Some(host) = url.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && is_private(ip)
        {
            return Err(DeliveryError::PrivateAddress);
        }
        let body = (self.render)(event)?;
        let msg_id = event_id(event.id);
        let timestamp = Utc::now().timestamp();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.expose_secret()).collect();
        let signature = webhook_signature::signature_header(&key_refs, &msg_id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| DeliveryError::Transport(describe(&err)))?;
        Ok(response.status().as_u16())
    }
}

/// The public id of an event (`webhook-id`, the body's `id`).
pub fn event_id(id: i64) -> String {
    format!("evt_{id}")
}

/// A transport error in a few words, without the URL's query string.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut source: &dyn std::error::Error = err;
    let mut detail = String::new();
    while let Some(inner) = source.source() {
        detail = inner.to_string();
        source = inner;
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_schedule_is_followed_with_jitter_then_ends() {
        let settings = OutboxSettings {
            schedule: vec![
                Duration::ZERO,
                Duration::from_secs(100),
                Duration::from_secs(1000),
            ],
            timeout: Duration::from_secs(1),
            concurrency: 1,
            per_endpoint: 1,
            disable_after: Duration::ZERO,
            allow_private: false,
            sweep_interval: Duration::from_secs(1),
        };
        for _ in 0..20 {
            let now = Utc::now();
            let second = settings.retry_at(1).unwrap() - now;
            assert!(
                second >= chrono::Duration::seconds(79) && second <= chrono::Duration::seconds(121)
            );
            let third = settings.retry_at(2).unwrap() - now;
            assert!(
                third >= chrono::Duration::seconds(799) && third <= chrono::Duration::seconds(1201)
            );
        }
        assert!(settings.retry_at(3).is_none());
    }
}
