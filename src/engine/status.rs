//! Printer status checks: what the vendor says about a printer now, recorded in its health
//! (online, last seen, failures). Asked by `GET /v1/printers/{id}/status` and, every
//! `PRINTER_STATUS_EVERY_SECS`, by a background loop so health stays true without traffic.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{gate, printer_context};
use crate::backends::{BackendRegistry, PrinterStatus, VendorError};
use crate::domain::{Decision, ErrorCode};
use crate::secrets_at_rest::Keyring;
use crate::store::printers::{BreakerEffect, Failure, PrinterRow};
use crate::store::{self, StoreError};

/// Printers checked per round of the background loop (per replica).
const CHECKS_PER_ROUND: i64 = 50;

/// Asks the printer's backend for its status, holding one of the device's slots (waiting
/// up to `wait` for one; still busy: `device_busy`, nothing asked or recorded), and records
/// the answer in its health: an answer updates online and last seen; a failure about the
/// printer (authentication included) counts in its health, never toward the breaker.
pub async fn check(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    row: &PrinterRow,
    timeout: Duration,
    wait: Duration,
) -> Result<Result<PrinterStatus, VendorError>, StoreError> {
    let Some(held) = gate::acquire(pool, &row.device, row.max_in_flight, wait, timeout).await?
    else {
        return Ok(Err(gate::busy()));
    };
    let answer = ask(pool, backends, keyring, row, timeout).await;
    held.release(pool).await;
    answer
}

/// The status call and its recording, for a caller that holds a slot on the device.
async fn ask(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    row: &PrinterRow,
    timeout: Duration,
) -> Result<Result<PrinterStatus, VendorError>, StoreError> {
    let Some(backend) = backends.get(&row.backend) else {
        return Ok(Err(VendorError::new(
            ErrorCode::BackendUnavailable,
            Decision::Fail,
            format!("the `{}` backend is not configured here", row.backend),
        )));
    };
    let context = match printer_context(row, keyring) {
        Ok(context) => context,
        Err(detail) => {
            return Ok(Err(VendorError::new(
                ErrorCode::BackendUnavailable,
                Decision::Fail,
                detail,
            )));
        }
    };
    let asked = async {
        match tokio::time::timeout(timeout, backend.printer_status(&context)).await {
            Ok(answer) => answer,
            Err(_) => Err(VendorError::new(
                ErrorCode::VendorTimeout,
                Decision::Retry,
                "the vendor did not answer the status check in time",
            )),
        }
    };
    let answer = asked.await;
    match &answer {
        Ok(status) => store::printers::save_online(pool, &row.id, status.online).await?,
        Err(err) if err.code.is_printer_health() => {
            let error = err.to_job_error();
            store::printers::record_failure(
                pool,
                &row.id,
                Failure::of(&error),
                BreakerEffect::None,
            )
            .await?;
        }
        Err(_) => {}
    }
    Ok(answer)
}

/// Checks every enabled printer not checked for `every`, one replica per printer.
pub async fn check_due(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    every: Duration,
    timeout: Duration,
) -> Result<usize, StoreError> {
    let due = store::printers::claim_status_checks(pool, every, CHECKS_PER_ROUND).await?;
    let mut checked = 0;
    for row in due {
        if backends.get(&row.backend).is_none() {
            continue;
        }
        // A status call is a vendor call on the device like any other (Lianke allows one
        // at a time per box): it takes a slot, or waits for the next round.
        let Some(held) = gate::acquire(
            pool,
            &row.device,
            row.max_in_flight,
            Duration::ZERO,
            timeout,
        )
        .await?
        else {
            continue;
        };
        let outcome = ask(pool, backends, keyring, &row, timeout).await;
        held.release(pool).await;
        if let Err(err) = outcome? {
            tracing::debug!(printer_id = %row.id, error = %err, "status check failed");
        }
        checked += 1;
    }
    Ok(checked)
}

/// The background loop (with the workers), on the engine's pool, backends and keys;
/// `every` zero means off.
pub fn spawn(
    engine: &super::Engine,
    every: Duration,
    timeout: Duration,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    let pool = engine.pool.clone();
    let backends = Arc::new(engine.backends.clone());
    let keyring = Arc::clone(&engine.keyring);
    tracker.spawn(async move {
        // Look for due printers a few times per period, so a new printer waits little.
        let mut tick = tokio::time::interval((every / 4).max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(err) = check_due(&pool, &backends, &keyring, every, timeout).await {
                        tracing::warn!(error = %err, "printer status checks failed");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
