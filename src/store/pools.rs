//! Printer pools, the live load of their members, and moving a pending job to another
//! member (the one write that changes a job's printer).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::StoreResult;
use crate::domain::EventSource;

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct PoolRow {
    pub id: String,
    pub owner_tenant: String,
    pub display_name: String,
    pub policy: String,
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, owner_tenant, display_name, policy, members, created_at, updated_at";

/// Everything an operator sets on a pool.
#[derive(Debug, Clone)]
pub struct PoolFields {
    pub id: String,
    pub owner_tenant: String,
    pub display_name: String,
    pub policy: String,
    pub members: Vec<String>,
}

/// `None` when the id is taken.
pub async fn insert(pool: &PgPool, fields: &PoolFields) -> StoreResult<Option<PoolRow>> {
    Ok(sqlx::query_as::<_, PoolRow>(&format!(
        "INSERT INTO pools (id, owner_tenant, display_name, policy, members) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(&fields.id)
    .bind(&fields.owner_tenant)
    .bind(&fields.display_name)
    .bind(&fields.policy)
    .bind(&fields.members)
    .fetch_optional(pool)
    .await?)
}

/// Replaces a pool's settings; `None` when it does not exist (for this tenant).
pub async fn update(pool: &PgPool, fields: &PoolFields) -> StoreResult<Option<PoolRow>> {
    Ok(sqlx::query_as::<_, PoolRow>(&format!(
        "UPDATE pools SET display_name = $3, policy = $4, members = $5, updated_at = now()
         WHERE id = $1 AND owner_tenant = $2 RETURNING {COLUMNS}"
    ))
    .bind(&fields.id)
    .bind(&fields.owner_tenant)
    .bind(&fields.display_name)
    .bind(&fields.policy)
    .bind(&fields.members)
    .fetch_optional(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: &str) -> StoreResult<Option<PoolRow>> {
    Ok(
        sqlx::query_as::<_, PoolRow>(&format!("SELECT {COLUMNS} FROM pools WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The pools of `tenant`, or every tenant's with `None` (admin).
pub async fn list(pool: &PgPool, tenant: Option<&str>) -> StoreResult<Vec<PoolRow>> {
    Ok(sqlx::query_as::<_, PoolRow>(&format!(
        "SELECT {COLUMNS} FROM pools WHERE $1::text IS NULL OR owner_tenant = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// False when there was no such pool of `tenant`. Jobs keep the pool's id as history.
pub async fn delete(pool: &PgPool, tenant: &str, id: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM pools WHERE id = $1 AND owner_tenant = $2")
        .bind(id)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Live jobs per printer (pending + processing), for `least_loaded`: every job counts on
/// the printer it is assigned to, whichever pool (or none) it came through.
pub async fn loads(pool: &PgPool, printers: &[String]) -> StoreResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT p, (SELECT count(*) FROM jobs j WHERE j.printer_id = p AND j.state IN ('pending', 'processing'))
         FROM unnest($1::text[]) AS p",
    )
    .bind(printers)
    .fetch_all(pool)
    .await?)
}

/// Advances the pool's turn and returns the previous one (ties in `least_loaded` are
/// broken from that member on, so equal members take turns).
pub async fn next_turn(pool: &PgPool, id: &str) -> StoreResult<u64> {
    let turn: Option<i64> =
        sqlx::query_scalar("UPDATE pools SET turn = turn + 1 WHERE id = $1 RETURNING turn - 1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(turn.unwrap_or(0).max(0) as u64)
}

/// The pool a job came through, if any.
pub async fn pool_of_job(pool: &PgPool, job_id: Uuid) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT pool_id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// Moves a pending job, held under `token`, to another member printer, with an event that
/// says why. Refused (false) once a submit has started, when the job is no longer pending,
/// or when the lease was lost: a job the vendor may have never moves.
pub async fn move_pending_job(
    pool: &PgPool,
    job_id: Uuid,
    token: Uuid,
    to_printer: &str,
    kind: &str,
    message: &str,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "WITH moved AS (
             UPDATE jobs SET printer_id = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND lease_until > now() AND state = 'pending'
               AND submit_started_at IS NULL AND pool_id IS NOT NULL
             RETURNING id
         )
         INSERT INTO job_events (job_id, source, kind, from_state, to_state, reason, message)
         SELECT id, $4, $5, 'pending', 'pending', $5, $6 FROM moved",
    )
    .bind(job_id)
    .bind(token)
    .bind(to_printer)
    .bind(EventSource::Dispatcher.as_str())
    .bind(kind)
    .bind(super::storable::text(message).as_ref())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
