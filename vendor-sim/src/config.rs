//! Every knob of the simulator in one struct. The defaults suit tests: fast task stages and
//! callback schedules scaled down; the binary sets realistic values from its flags.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lianke::LiankeDeviceSpec;
use crate::wecom::{WecomDeviceSpec, WecomModelSpec, WecomPushConfig};
use crate::zhimu::{ZhimuAppSpec, ZhimuShareSpec};

/// The Lianke `ApiKey` accepted by a default [`SimConfig`].
pub const DEFAULT_LIANKE_API_KEY: &str = "sim-lianke-api-key";

/// Lianke's documented callback schedule: first delivery at once, then retries 5 s and 10 s
/// after the task ended (three deliveries in all) while the receiver answers non-200.
pub const LIANKE_CALLBACK_SCHEDULE: [Duration; 3] = [
    Duration::from_secs(0),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Configuration of a simulator instance. Start one with [`crate::Sim::start`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port (the default, `127.0.0.1:0`).
    pub bind: SocketAddr,
    /// Lianke `ApiKey` header values accepted.
    pub lianke_api_keys: Vec<String>,
    /// Time spent in each Lianke task stage (READY, PARSING, SENDING, SET_REVOKE).
    #[serde(with = "millis")]
    pub lianke_stage_delay: Duration,
    /// How long the "real time" `printer_status` query holds the device (during which a
    /// second call on the same device answers 10009).
    #[serde(with = "millis")]
    pub lianke_status_query_delay: Duration,
    /// Offsets from the end of a task at which the callback is delivered, stopping at the
    /// first HTTP 200. Default: Lianke's 0/5/10 s scaled by `callback_time_scale`.
    #[serde(with = "millis_vec")]
    pub lianke_callback_schedule: Vec<Duration>,
    /// Offsets at which a WeCom push is delivered, stopping at the first HTTP 200.
    #[serde(with = "millis_vec")]
    pub wecom_push_schedule: Vec<Duration>,
    /// Lianke requires `https` callback URLs; `true` also accepts `http` (for tests).
    pub allow_http_callbacks: bool,
    /// Accept self-signed / invalid TLS certificates when delivering callbacks and pushes.
    pub accept_invalid_certs: bool,
    /// Timeout of one outbound callback / push request.
    #[serde(with = "millis")]
    pub callback_timeout: Duration,
    /// Time spent in each Zhimu task stage (SUBMITTED, QUEUED, PRINTING).
    #[serde(with = "millis")]
    pub zhimu_stage_delay: Duration,
    /// Zhimu app token lifetime (documented: one day).
    #[serde(with = "millis")]
    pub zhimu_token_ttl: Duration,
    /// WeCom model/device access token lifetime (documented: 7200 s).
    #[serde(with = "millis")]
    pub wecom_token_ttl: Duration,
    /// Lifetime of a WeCom download URL (documented: 10 minutes).
    #[serde(with = "millis")]
    pub wecom_download_ttl: Duration,
    /// How long WeCom keeps jobs (documented: 7 days).
    #[serde(with = "millis")]
    pub wecom_retention: Duration,
    /// Where WeCom push callbacks go; `None` disables pushes.
    pub wecom_push: Option<WecomPushConfig>,
    /// Maximum duration of a hanging request (it also ends at shutdown).
    #[serde(with = "millis")]
    pub hang_duration: Duration,
    /// Seed of the generator behind fault `probability` and latency jitter (`None`: from
    /// the OS). The same seed and the same order of requests give the same faults.
    pub fault_seed: Option<u64>,
    /// Registered at start and again after every reset.
    pub fixtures: Fixtures,
}

/// Devices, apps and printers registered at start (and after a reset).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Fixtures {
    pub lianke_devices: Vec<LiankeDeviceSpec>,
    pub zhimu_apps: Vec<ZhimuAppSpec>,
    pub zhimu_shares: Vec<ZhimuShareSpec>,
    pub wecom_models: Vec<WecomModelSpec>,
    pub wecom_devices: Vec<WecomDeviceSpec>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            lianke_api_keys: vec![DEFAULT_LIANKE_API_KEY.to_owned()],
            lianke_stage_delay: Duration::from_millis(5),
            lianke_status_query_delay: Duration::from_millis(50),
            lianke_callback_schedule: scaled(&LIANKE_CALLBACK_SCHEDULE, 0.01),
            wecom_push_schedule: scaled(&LIANKE_CALLBACK_SCHEDULE, 0.01),
            allow_http_callbacks: true,
            accept_invalid_certs: true,
            callback_timeout: Duration::from_secs(5),
            zhimu_stage_delay: Duration::from_millis(5),
            zhimu_token_ttl: Duration::from_secs(86_400),
            wecom_token_ttl: Duration::from_secs(7_200),
            wecom_download_ttl: Duration::from_secs(600),
            wecom_retention: Duration::from_secs(7 * 86_400),
            wecom_push: None,
            hang_duration: Duration::from_secs(3_600),
            fault_seed: None,
            fixtures: Fixtures::default(),
        }
    }
}

impl SimConfig {
    /// Realistic timings, as the real vendors behave: 1 s task stages, callbacks at
    /// 0/5/10 s, https-only callbacks with verified certificates.
    pub fn realistic() -> Self {
        SimConfig {
            lianke_stage_delay: Duration::from_secs(1),
            lianke_status_query_delay: Duration::from_millis(800),
            lianke_callback_schedule: LIANKE_CALLBACK_SCHEDULE.to_vec(),
            wecom_push_schedule: LIANKE_CALLBACK_SCHEDULE.to_vec(),
            allow_http_callbacks: false,
            accept_invalid_certs: false,
            zhimu_stage_delay: Duration::from_secs(1),
            ..SimConfig::default()
        }
    }
}

/// Multiplies every offset of a schedule by `factor` (e.g. 0.01 turns 0/5/10 s into
/// 0/50/100 ms).
pub fn scaled(schedule: &[Duration], factor: f64) -> Vec<Duration> {
    schedule
        .iter()
        .map(|d| d.mul_f64(factor.max(0.0)))
        .collect()
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod millis_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(Duration::from_millis)
            .collect())
    }
}
