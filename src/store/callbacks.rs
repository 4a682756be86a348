//! The callback inbox (issue 17): vendor result callbacks recorded by the webhook, claimed in
//! batches by the engine under a lease (`FOR UPDATE SKIP LOCKED`, so replicas share them and
//! a crashed holder's rows come back), confirmed, applied, then deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::{StoreResult, storable};
use crate::domain::JobState;

/// A callback to record, already authenticated and parsed.
#[derive(Debug, Clone)]
pub struct NewCallback<'a> {
    pub job_id: Uuid,
    /// The backend whose callback this is; the job's printer must be on it.
    pub backend: &'a str,
    /// The device the callback names, as the backend writes `printers.device`.
    pub device: &'a str,
    pub task_id: &'a str,
    /// What the body says, as the neutral `TaskProgress`.
    pub progress: Value,
    pub vendor_status: &'a str,
    pub body: &'a Value,
    pub ends_task: bool,
    pub confirm: bool,
}

/// What recording a callback found: the job as the webhook must judge the callback, and
/// whether the callback was recorded.
#[derive(Debug, Clone, FromRow)]
pub struct Receipt {
    pub state: JobState,
    pub vendor_task_id: Option<String>,
    pub backend: String,
    pub locator: Value,
    /// Recorded now (a new row, or one that ends the task replacing one that did not).
    pub recorded: bool,
    /// The task of a callback already recorded for the job (when not recorded now).
    pub recorded_task: Option<String>,
}

/// Records a callback in one statement, only when it is for a `processing` job whose
/// printer is on `backend` and `device` and whose task is `task_id`. `None`: no such job.
/// The receipt says what the job is, so that the caller can tell a duplicate, another
/// job's callback and a job still awaiting its submit's answer apart without another read.
pub async fn record(pool: &PgPool, c: &NewCallback<'_>) -> StoreResult<Option<Receipt>> {
    // Vendor words and bodies may hold U+0000: stored escaped (see `storable`).
    let body = storable::json(c.body);
    let progress = storable::json(&c.progress);
    Ok(sqlx::query_as::<_, Receipt>(
        "WITH job AS (
             SELECT j.id, j.state, j.vendor_task_id, p.backend, p.device, p.locator
             FROM jobs j JOIN printers p ON p.id = j.printer_id WHERE j.id = $1
         ), recorded AS (
             INSERT INTO callback_inbox (job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm)
             SELECT id, $2, $4, $5, $6, $7, $8, $9 FROM job
             WHERE job.state = 'processing' AND job.backend = $2 AND job.device = $3
               AND job.vendor_task_id = $4
             ON CONFLICT (job_id) DO UPDATE SET
                 progress = EXCLUDED.progress, vendor_status = EXCLUDED.vendor_status,
                 body = EXCLUDED.body, ends_task = true, confirm = EXCLUDED.confirm,
                 received_at = now(), due_at = now(), attempts = 0, last_error = NULL,
                 lease_owner = NULL, lease_until = NULL
               WHERE NOT callback_inbox.ends_task AND EXCLUDED.ends_task
             RETURNING job_id
         )
         SELECT job.state, job.vendor_task_id, job.backend, job.locator,
                EXISTS (SELECT 1 FROM recorded) AS recorded,
                (SELECT c.task_id FROM callback_inbox c WHERE c.job_id = job.id) AS recorded_task
         FROM job",
    )
    .bind(c.job_id)
    .bind(c.backend)
    .bind(c.device)
    .bind(storable::text(c.task_id).as_ref())
    .bind(progress.as_ref())
    .bind(storable::text(c.vendor_status).as_ref())
    .bind(body.as_ref())
    .bind(c.ends_task)
    .bind(c.confirm)
    .fetch_optional(pool)
    .await?)
}

/// A recorded callback, claimed.
#[derive(Debug, Clone, FromRow)]
pub struct RecordedCallback {
    pub job_id: Uuid,
    pub task_id: String,
    pub progress: Value,
    pub vendor_status: String,
    pub body: Value,
    pub confirm: bool,
    /// Claims so far, this one included.
    pub attempts: i32,
}

/// Claims up to `limit` recorded callbacks due now, of the backends this process has,
/// under a lease identified by `token`, oldest first.
pub async fn claim(
    pool: &PgPool,
    token: Uuid,
    limit: i64,
    lease: Duration,
    backends: &[&str],
) -> StoreResult<Vec<RecordedCallback>> {
    Ok(sqlx::query_as::<_, RecordedCallback>(
        "WITH due AS (
             SELECT job_id FROM callback_inbox
             WHERE due_at <= now() AND backend = ANY($4)
               AND (lease_until IS NULL OR lease_until < now())
             ORDER BY due_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE callback_inbox c SET lease_owner = $1,
             lease_until = now() + make_interval(secs => $3), attempts = c.attempts + 1
         FROM due WHERE c.job_id = due.job_id
         RETURNING c.job_id, c.task_id, c.progress, c.vendor_status, c.body, c.confirm, c.attempts",
    )
    .bind(token)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(backends)
    .fetch_all(pool)
    .await?)
}

/// Forgets callbacks that were applied or need nothing more (still under `token`'s lease:
/// a callback that replaced one meanwhile stays).
pub async fn finish(pool: &PgPool, token: Uuid, jobs: &[Uuid]) -> StoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM callback_inbox WHERE job_id = ANY($1) AND lease_owner = $2")
        .bind(jobs)
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// A claimed callback given back, to be tried again at `due_at`.
#[derive(Debug, Clone)]
pub struct Retry {
    pub job_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub error: String,
}

/// Gives claimed callbacks back, each to be tried again at its `due_at`.
pub async fn retry_later(pool: &PgPool, token: Uuid, retries: &[Retry]) -> StoreResult<()> {
    if retries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = retries.iter().map(|r| r.job_id).collect();
    let due: Vec<DateTime<Utc>> = retries.iter().map(|r| r.due_at).collect();
    let errors: Vec<String> = retries
        .iter()
        .map(|r| storable::text(&r.error).into_owned())
        .collect();
    sqlx::query(
        "UPDATE callback_inbox c SET due_at = r.due_at, last_error = r.error,
             lease_owner = NULL, lease_until = NULL
         FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS r(job_id, due_at, error)
         WHERE c.job_id = r.job_id AND c.lease_owner = $4",
    )
    .bind(&ids)
    .bind(&due)
    .bind(&errors)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}

/// Callbacks recorded and not yet applied (for tests and the metrics).
pub async fn waiting(pool: &PgPool) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM callback_inbox")
        .fetch_one(pool)
        .await?)
}
