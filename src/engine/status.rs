//! Printer status checks: what the vendor says about a printer now, recorded in its health
//! (online, last seen, failures). Asked by `GET /v1/printers/{id}/status` and, every
//! `PRINTER_STATUS_EVERY_SECS`, by a background loop so health stays true without traffic.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{gate, printer_context};
use crate::backends::{
    BackendRegistry, CapabilitiesReport, PrintTarget, PrinterContext, PrinterStatus, VendorError,
};
use crate::domain::{Decision, ErrorCode};
use crate::secrets_at_rest::Keyring;
use crate::store::printers::{BreakerEffect, Failure, PrinterRow};
use crate::store::{self, StoreError};

/// Printers checked per round of the background loop (per replica).
const CHECKS_PER_ROUND: i64 = 50;
/// Printers of a round asked at once (each on its own device).
const CONCURRENT_CHECKS: usize = 8;

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
                detail.to_string(),
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

/// Checks every enabled printer not checked for `every`, one replica per printer, and
/// fetches again the capabilities of print targets whose cache is missing or older than
/// `capabilities_age` (zero: never here), in the same device slot. Up to
/// `CONCURRENT_CHECKS` printers are asked at once; once `shutdown` fires no new check
/// starts (the ones under way finish), so a round never holds a stopping process for
/// longer than one vendor call. A printer left out is checked one period later.
pub async fn check_due(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    every: Duration,
    timeout: Duration,
    capabilities_age: Duration,
    shutdown: &CancellationToken,
) -> Result<usize, StoreError> {
    let due = store::printers::claim_status_checks(pool, every, CHECKS_PER_ROUND).await?;
    let outcomes: Vec<Result<bool, StoreError>> = futures::stream::iter(due)
        .take_until(shutdown.cancelled())
        .map(|row| check_one(pool, backends, keyring, row, timeout, capabilities_age))
        .buffer_unordered(CONCURRENT_CHECKS)
        .collect()
        .await;
    let mut checked = 0;
    for outcome in outcomes {
        if outcome? {
            checked += 1;
        }
    }
    Ok(checked)
}

/// One printer of a round: false when it was not asked (no such backend here, or its
/// device busy: it waits for the next round).
async fn check_one(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    row: PrinterRow,
    timeout: Duration,
    capabilities_age: Duration,
) -> Result<bool, StoreError> {
    if backends.get(&row.backend).is_none() {
        return Ok(false);
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
        return Ok(false);
    };
    let outcome = ask(pool, backends, keyring, &row, timeout).await;
    let refreshed = match &outcome {
        Ok(Ok(status))
            if status.online != Some(false) && capabilities_stale(&row, capabilities_age) =>
        {
            refresh_capabilities(pool, backends, keyring, &row, timeout).await
        }
        _ => Ok(()),
    };
    held.release(pool).await;
    if let Err(err) = outcome? {
        tracing::debug!(printer_id = %row.id, error = %err, "status check failed");
    }
    refreshed?;
    Ok(true)
}

fn capabilities_stale(row: &PrinterRow, age: Duration) -> bool {
    if age.is_zero() {
        return false;
    }
    match row.capabilities_at {
        None => true,
        Some(at) => chrono::Duration::from_std(age).is_ok_and(|age| at + age <= chrono::Utc::now()),
    }
}

/// Asks a print target what a printer can do and caches the answer: the one way
/// capabilities are fetched — at registration and on request (through the device gate,
/// `service::printers`), by the status round, and at dispatch for a strict job with none
/// cached. The caller holds a slot on the printer's device.
pub async fn fetch_capabilities(
    pool: &PgPool,
    target: &dyn PrintTarget,
    context: &PrinterContext,
    timeout: Duration,
) -> Result<Result<CapabilitiesReport, VendorError>, StoreError> {
    let report = match tokio::time::timeout(timeout, target.capabilities(context)).await {
        Ok(report) => report,
        Err(_) => Err(VendorError::new(
            ErrorCode::VendorTimeout,
            Decision::Retry,
            "the vendor did not say what the printer supports in time",
        )),
    };
    if let Ok(report) = &report {
        store::printers::save_capabilities(
            pool,
            context.id.as_str(),
            &report.capabilities,
            &report.raw,
        )
        .await?;
    }
    Ok(report)
}

/// The status round's refresh: a vendor that cannot say now leaves the old cache for the
/// next round.
async fn refresh_capabilities(
    pool: &PgPool,
    backends: &BackendRegistry,
    keyring: &Keyring,
    row: &PrinterRow,
    timeout: Duration,
) -> Result<(), StoreError> {
    let Some(target) = backends.target(&row.backend) else {
        return Ok(());
    };
    let Ok(context) = printer_context(row, keyring) else {
        return Ok(());
    };
    if let Err(err) = fetch_capabilities(pool, target.as_ref(), &context, timeout).await? {
        tracing::debug!(printer_id = %row.id, error = %err, "capabilities refresh failed");
    }
    Ok(())
}

impl super::Engine {
    /// One round of the background status checks (and capabilities refreshes), on the
    /// engine's pool, backends and keys. See [`check_due`].
    pub async fn check_printers_due(
        &self,
        every: Duration,
        timeout: Duration,
        capabilities_age: Duration,
        shutdown: &CancellationToken,
    ) -> Result<usize, StoreError> {
        check_due(
            &self.pool,
            &self.backends,
            &self.keyring,
            every,
            timeout,
            capabilities_age,
            shutdown,
        )
        .await
    }
}

/// The background loop (with the workers), on the engine's pool, backends and keys;
/// `every` zero means off.
pub fn spawn(
    engine: &Arc<super::Engine>,
    every: Duration,
    timeout: Duration,
    capabilities_age: Duration,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    let engine = engine.clone();
    tracker.spawn(async move {
        // Look for due printers a few times per period, so a new printer waits little.
        let mut tick = tokio::time::interval((every / 4).max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(err) = engine.check_printers_due(every, timeout, capabilities_age, &shutdown).await {
                        tracing::warn!(error = %err, "printer status checks failed");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
