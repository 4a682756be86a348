//! The one device gate: at most `max_in_flight` vendor calls on one device at once, across
//! every worker, API request and replica (the leased rows of `store::slots`). The engine's
//! workers take their slot around submit, poll, cancel and lookup; every other vendor call
//! on a device (live status, capabilities, discovery, housekeeping, credential checks)
//! goes through [`through`]. Confirmations of recorded callbacks do not (see
//! `engine::callbacks`).
//!
//! It owns the waiting for a slot; it must not decide anything about jobs.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::backends::VendorError;
use crate::domain::{Decision, ErrorCode};
use crate::store::{self, StoreResult};

/// How often a caller waiting for a busy device looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// A slot held on a device; give it back with [`Held::release`] (a crashed holder's slot
/// expires with its lease).
pub struct Held {
    device: String,
    slot: i32,
    holder: Uuid,
}

impl Held {
    pub async fn release(self, pool: &PgPool) {
        if let Err(err) = store::slots::release(pool, &self.device, self.slot, self.holder).await {
            tracing::warn!(error = %err, device = %self.device, "could not free a device slot; it expires with its lease");
        }
    }
}

/// The answer for a device whose slots stayed taken: no vendor call was made.
pub fn busy() -> VendorError {
    VendorError::new(
        ErrorCode::DeviceBusy,
        Decision::RetrySoon,
        "the device is busy with other calls; try again shortly",
    )
}

/// Takes a slot on `device`, waiting up to `wait` for one (`None`: still busy). The
/// slot's lease outlives `wait` and the call, so a crashed caller frees it.
pub async fn acquire(
    pool: &PgPool,
    device: &str,
    max_in_flight: i32,
    wait: Duration,
    call_timeout: Duration,
) -> StoreResult<Option<Held>> {
    let holder = Uuid::new_v4();
    let lease = wait.saturating_mul(2) + call_timeout + Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(slot) =
            store::slots::acquire(pool, device, max_in_flight.max(1), holder, lease).await?
        {
            return Ok(Some(Held {
                device: device.to_owned(),
                slot,
                holder,
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}

/// Runs `call` while holding a slot on `device`, waiting up to `wait` for one. A device
/// still busy after `wait` answers `device_busy` (retry soon) without calling the vendor.
pub async fn through<T>(
    pool: &PgPool,
    device: &str,
    max_in_flight: i32,
    wait: Duration,
    call: impl Future<Output = Result<T, VendorError>>,
) -> StoreResult<Result<T, VendorError>> {
    let Some(held) = acquire(pool, device, max_in_flight, wait, wait).await? else {
        return Ok(Err(busy()));
    };
    let answer = call.await;
    held.release(pool).await;
    Ok(answer)
}
