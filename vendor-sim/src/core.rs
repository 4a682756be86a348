//! Shared state of a running simulator and the outbound delivery of callbacks/pushes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::faults::{CallbackMischief, Faults};
use crate::ledger::{Ledger, Vendor, lock};

/// One outbound delivery attempt (a Lianke callback or a WeCom push).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackAttempt {
    pub vendor: Vendor,
    pub url: String,
    /// 1 for the first delivery of a copy, 2 for its first retry, …
    pub attempt: u32,
    /// Which copy (1, or 2 for the duplicate made by a `duplicate` fault).
    pub copy: u32,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Transport error, or `dropped by fault` when a fault swallowed the callback.
    pub error: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// The JSON body that was (or would have been) sent.
    pub body: String,
}

/// What every simulated vendor shares: the ledger, the faults, outbound deliveries and
/// shutdown. It knows no vendor: each vendor module keeps its own world and settings in a
/// state of its own that dereferences to this.
pub(crate) struct Core {
    pub base_url: String,
    /// How long a `Hang` fault holds a request (it also ends at shutdown).
    pub hang_duration: Duration,
    pub ledger: Ledger,
    pub faults: Faults,
    pub outbox: Mutex<Vec<CallbackAttempt>>,
    pub http: reqwest::Client,
    pub cancel: CancellationToken,
}

impl Core {
    /// Sleeps `d`, or returns `false` early when the simulator shuts down.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    fn record(&self, attempt: CallbackAttempt) {
        lock(&self.outbox).push(attempt);
    }
}

/// Sends `body` (JSON) to `url` at each offset of `schedule` until the receiver answers
/// 200, after applying any callback mischief scripted for `vendor`. Returns at once; the
/// deliveries run in the background.
pub(crate) fn deliver(
    core: &Arc<Core>,
    vendor: Vendor,
    url: String,
    body: Bytes,
    schedule: Vec<Duration>,
) {
    let mischief = core.faults.next_callback_mischief(vendor);
    let (copies, extra) = match mischief {
        Some(CallbackMischief::Drop) => {
            tracing::info!(vendor = vendor.as_str(), %url, "callback dropped by fault");
            core.record(CallbackAttempt {
                vendor,
                url,
                attempt: 0,
                copy: 1,
                http_status: None,
                error: Some("dropped by fault".to_owned()),
                sent_at: Utc::now(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            return;
        }
        Some(CallbackMischief::Duplicate) => (2, Duration::ZERO),
        Some(CallbackMischief::Delay { delay_ms }) => (1, Duration::from_millis(delay_ms)),
        None => (1, Duration::ZERO),
    };
    for copy in 1..=copies {
        let core = Arc::clone(core);
        let (url, body, schedule) = (url.clone(), body.clone(), schedule.clone());
        tokio::spawn(async move {
            run_schedule(core, vendor, url, body, schedule, extra, copy).await;
        });
    }
}

async fn run_schedule(
    core: Arc<Core>,
    vendor: Vendor,
    url: String,
    body: Bytes,
    schedule: Vec<Duration>,
    extra: Duration,
    copy: u32,
) {
    let start = Instant::now() + extra;
    for (i, offset) in schedule.iter().enumerate() {
        tokio::select! {
            () = tokio::time::sleep_until(start + *offset) => {}
            () = core.cancel.cancelled() => return,
        }
        let result = core
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(resp) => (Some(resp.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        tracing::info!(
            vendor = vendor.as_str(),
            %url,
            attempt = i + 1,
            status = ?status,
            error = ?error,
            "callback delivered"
        );
        core.record(CallbackAttempt {
            vendor,
            url: url.clone(),
            attempt: u32::try_from(i + 1).unwrap_or(u32::MAX),
            copy,
            http_status: status,
            error,
            sent_at: Utc::now(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if status == Some(200) {
            return;
        }
    }
}
