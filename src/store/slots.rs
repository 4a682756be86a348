//! Per-device vendor-call slots: at most `max_in_flight` calls on one device at once,
//! across every worker of every replica. Slots are leases, so a crash frees them.
//!
//! A slot's row stays once made: freeing it sets `lease_until` to `-infinity` (see
//! [`FREE`]) and taking it again updates the same row, so the table holds one row per
//! device and slot number and neither change leaves an index entry behind.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;

/// Takes a free slot on `device`; `None` when all `max` are busy.
pub async fn acquire(
    pool: &PgPool,
    device: &str,
    max: i32,
    holder: Uuid,
    lease: Duration,
) -> StoreResult<Option<i32>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO device_slots (device, slot, job_id, lease_until)
         SELECT $1, s, $2, now() + make_interval(secs => $3) FROM generate_series(1, $4::int) s
         WHERE NOT EXISTS (SELECT 1 FROM device_slots d WHERE d.device = $1 AND d.slot = s AND d.lease_until > now())
         ORDER BY s LIMIT 1
         ON CONFLICT (device, slot) DO UPDATE SET job_id = EXCLUDED.job_id, lease_until = EXCLUDED.lease_until
             WHERE device_slots.lease_until <= now()
         RETURNING slot",
    )
    .bind(device)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .bind(max)
    .fetch_optional(pool)
    .await?)
}

/// What freeing a slot sets (`UPDATE device_slots SET {FREE} WHERE …`).
pub(crate) const FREE: &str = "job_id = NULL, lease_until = '-infinity'";

pub async fn release(pool: &PgPool, device: &str, slot: i32, holder: Uuid) -> StoreResult<()> {
    sqlx::query(&format!(
        "UPDATE device_slots SET {FREE} WHERE device = $1 AND slot = $2 AND job_id = $3"
    ))
    .bind(device)
    .bind(slot)
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(())
}
