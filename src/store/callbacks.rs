//! The callback inbox (issue 17): vendor result callbacks recorded by the webhook — already
//! leased when the recording process applies them itself — or claimed in batches by the
//! engine under a lease (`FOR UPDATE SKIP LOCKED`, so replicas share them and a crashed
//! holder's rows come back), confirmed, applied, then deleted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Postgres};
use uuid::Uuid;

use super::batch::{OncePerKey, StoreWriter};
use super::{StoreResult, storable};
use crate::domain::JobState;

/// A callback to record, already authenticated and parsed.
#[derive(Debug, Clone)]
pub struct NewCallback {
    pub job_id: Uuid,
    /// The backend whose callback this is; the job's printer must be on it.
    pub backend: &'static str,
    /// The device the callback names, as the backend writes `printers.device`.
    pub device: String,
    pub task_id: String,
    /// What the body says, as the neutral `TaskProgress`.
    pub progress: Value,
    pub vendor_status: String,
    pub body: Value,
    pub ends_task: bool,
    pub confirm: bool,
    /// Recorded already claimed under this lease (the recording process's inbox loop takes
    /// it from memory, see `engine::callbacks`); `None`: left for any loop to claim.
    pub lease: Option<InboxLease>,
}

/// A lease a callback is recorded under: its holder and how long it lasts.
#[derive(Debug, Clone, Copy)]
pub struct InboxLease {
    pub owner: Uuid,
    pub lasts: Duration,
}

/// What recording a callback found: the job as the webhook must judge the callback, and
/// whether the callback was recorded.
#[derive(Debug, Clone, FromRow)]
pub struct Receipt {
    pub job_id: Uuid,
    pub state: JobState,
    pub vendor_task_id: Option<String>,
    pub backend: String,
    pub locator: Value,
    /// Recorded now (a new row, or one that ends the task replacing one that did not).
    pub recorded: bool,
    /// The task of a callback already recorded for the job (when not recorded now).
    pub recorded_task: Option<String>,
}

/// One callback as the recording statement reads it (`jsonb_to_recordset`): one typed
/// argument for the batch, so that the statement keeps one generic plan (nine array
/// arguments made Postgres plan it anew on every call, since a plan that knows the arrays'
/// lengths always looked cheaper).
#[derive(serde::Serialize)]
struct RecordArgs<'a> {
    job_id: Uuid,
    backend: &'a str,
    device: Cow<'a, str>,
    task_id: Cow<'a, str>,
    progress: Cow<'a, Value>,
    vendor_status: Cow<'a, str>,
    body: Cow<'a, Value>,
    ends_task: bool,
    confirm: bool,
    lease_owner: Option<Uuid>,
    lease_secs: Option<f64>,
    n: usize,
}

/// Records callbacks in one statement, each only when it is for a `processing` job whose
/// printer is on its `backend` and `device` and whose task is its `task_id`. One answer per
/// callback, in order; `None`: no such job. The receipt says what the job is, so that the
/// caller can tell a duplicate, another job's callback and a job still awaiting its
/// submit's answer apart without another read. The callbacks must be for different jobs
/// (one statement cannot record two rows of one job: see [`CallbackRecorder`]).
pub async fn record(
    db: impl sqlx::PgExecutor<'_>,
    callbacks: &[NewCallback],
) -> StoreResult<Vec<Option<Receipt>>> {
    // Vendor words and bodies may hold U+0000: stored escaped (see `storable`).
    let args: Vec<RecordArgs<'_>> = callbacks
        .iter()
        .enumerate()
        .map(|(n, c)| RecordArgs {
            job_id: c.job_id,
            backend: c.backend,
            device: storable::text(&c.device),
            task_id: storable::text(&c.task_id),
            progress: storable::json(&c.progress),
            vendor_status: storable::text(&c.vendor_status),
            body: storable::json(&c.body),
            ends_task: c.ends_task,
            confirm: c.confirm,
            lease_owner: c.lease.map(|l| l.owner),
            lease_secs: c.lease.map(|l| l.lasts.as_secs_f64()),
            n,
        })
        .collect();
    let receipts = sqlx::query_as::<_, Receipt>(
        "WITH input AS (
             SELECT * FROM jsonb_to_recordset($1) AS i(job_id uuid, backend text, device text, task_id text,
                 progress jsonb, vendor_status text, body jsonb, ends_task bool, confirm bool,
                 lease_owner uuid, lease_secs float8, n int)
         ), job AS (
             SELECT i.*, j.state, j.vendor_task_id, p.backend AS printer_backend, p.device AS printer_device,
                 p.locator
             FROM input i JOIN jobs j ON j.id = i.job_id JOIN printers p ON p.id = j.printer_id
         ), recorded AS (
             INSERT INTO callback_inbox (job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm,
                 lease_owner, lease_until, attempts)
             SELECT job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm,
                 lease_owner, now() + make_interval(secs => lease_secs),
                 CASE WHEN lease_owner IS NULL THEN 0 ELSE 1 END
             FROM job
             WHERE state = 'processing' AND printer_backend = backend AND printer_device = device
               AND vendor_task_id = task_id
             ORDER BY n
             ON CONFLICT (job_id) DO UPDATE SET
                 progress = EXCLUDED.progress, vendor_status = EXCLUDED.vendor_status,
                 body = EXCLUDED.body, ends_task = true, confirm = EXCLUDED.confirm,
                 received_at = now(), due_at = now(), attempts = EXCLUDED.attempts, last_error = NULL,
                 lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
               WHERE NOT callback_inbox.ends_task AND EXCLUDED.ends_task
             RETURNING job_id
         )
         SELECT job.job_id, job.state, job.vendor_task_id, job.printer_backend AS backend, job.locator,
                r.job_id IS NOT NULL AS recorded,
                CASE WHEN r.job_id IS NULL
                     THEN (SELECT c.task_id FROM callback_inbox c WHERE c.job_id = job.job_id) END
                    AS recorded_task
         FROM job LEFT JOIN recorded r ON r.job_id = job.job_id",
    )
    .bind(Json(&args))
    .fetch_all(db)
    .await?;
    let mut found: HashMap<Uuid, Receipt> = receipts.into_iter().map(|r| (r.job_id, r)).collect();
    Ok(callbacks.iter().map(|c| found.remove(&c.job_id)).collect())
}

/// Most callbacks one recording statement takes, and how many such statements run at once.
const RECORD_BATCH: usize = 64;
const RECORD_STATEMENTS: usize = 2;

/// The webhook's recorder, one per process: callbacks that arrive at the same moment are
/// recorded by one statement and one commit (see [`super::batch`]); a lone one at once.
pub type CallbackRecorder = StoreWriter<NewCallback, Option<Receipt>>;

pub fn callback_recorder(pool: PgPool) -> CallbackRecorder {
    StoreWriter::new(
        pool,
        RECORD_BATCH,
        RECORD_STATEMENTS,
        |pool, conn, callbacks| Box::pin(record_each(pool, conn, callbacks)),
    )
}

/// Records a batch: a job's first callback of the batch in one statement with the others',
/// a second one of the same job (Lianke repeating itself) after it, on its own; when the
/// statement fails, each callback on its own, so that each gets its own answer.
async fn record_each(
    pool: PgPool,
    mut conn: PoolConnection<Postgres>,
    callbacks: Vec<NewCallback>,
) -> Vec<StoreResult<Option<Receipt>>> {
    let batch = OncePerKey::split(callbacks, |c| c.job_id);
    let recorded = record(&mut *conn, &batch.first).await;
    drop(conn);
    batch
        .answer(recorded, |callback| {
            let pool = pool.clone();
            Box::pin(async move {
                record(&pool, std::slice::from_ref(&callback))
                    .await
                    .map(|mut r| r.pop().flatten())
            })
        })
        .await
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
    /// The lease it is held under: the claim's, or its own when it was recorded leased.
    pub lease_owner: Uuid,
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
         RETURNING c.job_id, c.task_id, c.progress, c.vendor_status, c.body, c.confirm, c.attempts,
             c.lease_owner",
    )
    .bind(token)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(backends)
    .fetch_all(pool)
    .await?)
}

/// Forgets callbacks that were applied or need nothing more, each only while still under
/// the lease it was taken with (`(job_id, lease_owner)`: a callback that replaced one
/// meanwhile stays).
pub async fn finish(pool: &PgPool, done: &[(Uuid, Uuid)]) -> StoreResult<()> {
    if done.is_empty() {
        return Ok(());
    }
    let (jobs, owners): (Vec<Uuid>, Vec<Uuid>) = done.iter().copied().unzip();
    sqlx::query(
        "DELETE FROM callback_inbox c USING unnest($1::uuid[], $2::uuid[]) AS d(job_id, owner)
         WHERE c.job_id = d.job_id AND c.lease_owner = d.owner",
    )
    .bind(&jobs)
    .bind(&owners)
    .execute(pool)
    .await?;
    Ok(())
}

/// A taken callback given back, to be tried again at `due_at`.
#[derive(Debug, Clone)]
pub struct Retry {
    pub job_id: Uuid,
    /// The lease it was taken with.
    pub lease_owner: Uuid,
    pub due_at: DateTime<Utc>,
    pub error: String,
}

/// Gives taken callbacks back (each only while still under the lease it was taken with),
/// each to be tried again at its `due_at`.
pub async fn retry_later(pool: &PgPool, retries: &[Retry]) -> StoreResult<()> {
    if retries.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = retries.iter().map(|r| r.job_id).collect();
    let owners: Vec<Uuid> = retries.iter().map(|r| r.lease_owner).collect();
    let due: Vec<DateTime<Utc>> = retries.iter().map(|r| r.due_at).collect();
    let errors: Vec<String> = retries
        .iter()
        .map(|r| storable::text(&r.error).into_owned())
        .collect();
    sqlx::query(
        "UPDATE callback_inbox c SET due_at = r.due_at, last_error = r.error,
             lease_owner = NULL, lease_until = NULL
         FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[]) AS r(job_id, owner, due_at, error)
         WHERE c.job_id = r.job_id AND c.lease_owner = r.owner",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(&due)
    .bind(&errors)
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
