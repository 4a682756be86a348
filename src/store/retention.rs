//! Retention: what the purge deletes, in small batches that lock only the rows they take
//! (`FOR UPDATE SKIP LOCKED`). Only finished jobs (`completed`, `failed`, `canceled`) are
//! ever deleted; `pending`, `processing` and `unconfirmed` jobs are never touched.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;

const FINISHED: &str = "state IN ('completed','failed','canceled')";

/// Deletes up to `batch` finished jobs that finished before `cutoff`, with their events
/// and documents. Returns (jobs, documents) deleted and the object keys of the deleted
/// documents (to delete from the document store after the commit).
pub async fn delete_finished_jobs(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> StoreResult<(u64, u64, Vec<String>)> {
    let mut tx = pool.begin().await?;
    let deleted: Vec<(Uuid, Uuid)> = sqlx::query_as(&format!(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs WHERE {FINISHED} AND completed_at < $1
             ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, document_id"
    ))
    .bind(cutoff)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let jobs = deleted.len() as u64;
    let (ids, documents): (Vec<Uuid>, Vec<Uuid>) = deleted.into_iter().unzip();
    // A job's history and any callback left recorded for it go with it (no foreign key
    // cascades them: see migration 20261210010001).
    sqlx::query(
        "WITH events AS (DELETE FROM job_events WHERE job_id = ANY ($1))
         DELETE FROM callback_inbox WHERE job_id = ANY ($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    let removed: Vec<Option<String>> = sqlx::query_scalar(
        "DELETE FROM documents d WHERE d.id = ANY ($1)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.document_id = d.id)
         RETURNING d.object_key",
    )
    .bind(&documents)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let count = removed.len() as u64;
    Ok((jobs, count, removed.into_iter().flatten().collect()))
}

/// Drops the bytes of up to `batch` documents of jobs that finished before `cutoff` (the
/// job and the document's name, type, size and hash stay). Returns how many, and the keys
/// of the objects to delete from the document store after the commit.
pub async fn drop_document_content(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> StoreResult<(u64, Vec<String>)> {
    let dropped: Vec<Option<String>> = sqlx::query_scalar(&format!(
        "WITH doomed AS (
             SELECT d.id, d.object_key FROM jobs j JOIN documents d ON d.id = j.document_id
             WHERE j.{FINISHED} AND j.completed_at < $1
               AND (d.content IS NOT NULL OR d.object_key IS NOT NULL)
             LIMIT $2 FOR UPDATE OF d SKIP LOCKED)
         UPDATE documents d SET content = NULL, object_key = NULL FROM doomed
         WHERE d.id = doomed.id RETURNING doomed.object_key"
    ))
    .bind(cutoff)
    .bind(batch)
    .fetch_all(pool)
    .await?;
    Ok((
        dropped.len() as u64,
        dropped.into_iter().flatten().collect(),
    ))
}

/// Deletes up to `batch` history events of jobs that finished before `cutoff`.
pub async fn delete_events(pool: &PgPool, cutoff: DateTime<Utc>, batch: i64) -> StoreResult<u64> {
    Ok(sqlx::query(&format!(
        "DELETE FROM job_events WHERE id IN (
             SELECT e.id FROM jobs j JOIN job_events e ON e.job_id = j.id
             WHERE j.{FINISHED} AND j.completed_at < $1
             LIMIT $2 FOR UPDATE OF e SKIP LOCKED)"
    ))
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Forgets up to `batch` idempotency keys of jobs created before `cutoff` (the same key
/// then makes a new job).
pub async fn expire_idempotency_keys(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE jobs SET idempotency_key = NULL, request_hash = NULL WHERE id IN (
             SELECT id FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Outbox events past the webhook line that no delivery still waits on: none pending to
/// an enabled endpoint (a disabled endpoint's backlog that old is dropped with them).
const OUTBOX_EXPIRED: &str = "e.created_at < $1 AND NOT EXISTS (
        SELECT 1 FROM webhook_deliveries d JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
        WHERE d.event_id = e.id AND d.state = 'pending' AND ep.enabled)";

/// Deletes up to `batch` outbox events created before `cutoff` that no delivery waits on,
/// with their deliveries and those deliveries' attempts. Returns (events, deliveries).
pub async fn delete_webhook_events(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> StoreResult<(u64, u64)> {
    let mut tx = pool.begin().await?;
    let events: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT e.id FROM outbox_events e WHERE {OUTBOX_EXPIRED}
         ORDER BY e.created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(cutoff)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if events.is_empty() {
        return Ok((0, 0));
    }
    // Deliveries first (their attempts cascade), counted; then the events.
    let deliveries = sqlx::query("DELETE FROM webhook_deliveries WHERE event_id = ANY ($1)")
        .bind(&events)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let removed = sqlx::query("DELETE FROM outbox_events WHERE id = ANY ($1)")
        .bind(&events)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok((removed, deliveries))
}

/// What a purge with these cutoffs would remove, counted without changing anything.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub jobs: u64,
    pub events: u64,
    pub document_contents: u64,
    pub idempotency_keys: u64,
    /// Outbox events (webhooks and the events feed).
    pub webhook_events: u64,
    /// Their deliveries (each with its attempts).
    pub webhook_deliveries: u64,
}

/// Outbox events and deliveries a purge with `cutoff` would remove.
pub async fn count_webhooks(pool: &PgPool, cutoff: DateTime<Utc>) -> StoreResult<(u64, u64)> {
    let (events, deliveries): (i64, i64) = sqlx::query_as(&format!(
        "WITH gone AS (SELECT e.id FROM outbox_events e WHERE {OUTBOX_EXPIRED})
         SELECT (SELECT count(*) FROM gone),
                (SELECT count(*) FROM webhook_deliveries d JOIN gone ON gone.id = d.event_id)"
    ))
    .bind(cutoff)
    .fetch_one(pool)
    .await?;
    Ok((events as u64, deliveries as u64))
}

pub async fn count(
    pool: &PgPool,
    jobs_cutoff: DateTime<Utc>,
    events_cutoff: DateTime<Utc>,
    documents_cutoff: DateTime<Utc>,
    idempotency_cutoff: DateTime<Utc>,
) -> StoreResult<Counts> {
    let (jobs, events, document_contents, idempotency_keys): (i64, i64, i64, i64) =
        sqlx::query_as(&format!(
            "SELECT
               (SELECT count(*) FROM jobs WHERE {FINISHED} AND completed_at < $1),
               (SELECT count(*) FROM jobs j JOIN job_events e ON e.job_id = j.id
                 WHERE j.{FINISHED} AND j.completed_at < $2 AND j.completed_at >= $1),
               (SELECT count(*) FROM jobs j JOIN documents d ON d.id = j.document_id
                 WHERE j.{FINISHED} AND j.completed_at < $3 AND j.completed_at >= $1
                   AND (d.content IS NOT NULL OR d.object_key IS NOT NULL)),
               (SELECT count(*) FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < $4
                 AND NOT ({FINISHED} AND completed_at < $1))"
        ))
        .bind(jobs_cutoff)
        .bind(events_cutoff)
        .bind(documents_cutoff)
        .bind(idempotency_cutoff)
        .fetch_one(pool)
        .await?;
    Ok(Counts {
        jobs: jobs as u64,
        events: events as u64,
        document_contents: document_contents as u64,
        idempotency_keys: idempotency_keys as u64,
        ..Counts::default()
    })
}
