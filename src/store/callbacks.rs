//! The callback inbox (issue 17): vendor result callbacks recorded by the webhook, claimed in
//! batches by the engine under a lease (`FOR UPDATE SKIP LOCKED`, so replicas share them and
//! a crashed holder's rows come back), confirmed, applied, then deleted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{FromRow, PgPool, Postgres};
use uuid::Uuid;

use super::batch::StoreWriter;
use super::{StoreError, StoreResult, storable};
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
    let n = callbacks.len();
    let mut jobs = Vec::with_capacity(n);
    let mut backends = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let mut progress = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    let mut confirms = Vec::with_capacity(n);
    for c in callbacks {
        jobs.push(c.job_id);
        backends.push(c.backend);
        devices.push(c.device.as_str());
        // Vendor words and bodies may hold U+0000: stored escaped (see `storable`).
        tasks.push(storable::text(&c.task_id));
        progress.push(storable::json(&c.progress));
        statuses.push(storable::text(&c.vendor_status));
        bodies.push(storable::json(&c.body));
        ends.push(c.ends_task);
        confirms.push(c.confirm);
    }
    let tasks: Vec<&str> = tasks.iter().map(AsRef::as_ref).collect();
    let statuses: Vec<&str> = statuses.iter().map(AsRef::as_ref).collect();
    let progress: Vec<&Value> = progress.iter().map(AsRef::as_ref).collect();
    let bodies: Vec<&Value> = bodies.iter().map(AsRef::as_ref).collect();
    let receipts = sqlx::query_as::<_, Receipt>(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                 $7::jsonb[], $8::bool[], $9::bool[])
                 WITH ORDINALITY AS i(job_id, backend, device, task_id, progress, vendor_status, body, ends_task,
                     confirm, n)
         ), job AS (
             SELECT i.*, j.state, j.vendor_task_id, p.backend AS printer_backend, p.device AS printer_device,
                 p.locator
             FROM input i JOIN jobs j ON j.id = i.job_id JOIN printers p ON p.id = j.printer_id
         ), recorded AS (
             INSERT INTO callback_inbox (job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm)
             SELECT job_id, backend, task_id, progress, vendor_status, body, ends_task, confirm FROM job
             WHERE state = 'processing' AND printer_backend = backend AND printer_device = device
               AND vendor_task_id = task_id
             ORDER BY n
             ON CONFLICT (job_id) DO UPDATE SET
                 progress = EXCLUDED.progress, vendor_status = EXCLUDED.vendor_status,
                 body = EXCLUDED.body, ends_task = true, confirm = EXCLUDED.confirm,
                 received_at = now(), due_at = now(), attempts = 0, last_error = NULL,
                 lease_owner = NULL, lease_until = NULL
               WHERE NOT callback_inbox.ends_task AND EXCLUDED.ends_task
             RETURNING job_id
         )
         SELECT job.job_id, job.state, job.vendor_task_id, job.printer_backend AS backend, job.locator,
                EXISTS (SELECT 1 FROM recorded r WHERE r.job_id = job.job_id) AS recorded,
                (SELECT c.task_id FROM callback_inbox c WHERE c.job_id = job.job_id) AS recorded_task
         FROM job",
    )
    .bind(&jobs)
    .bind(&backends)
    .bind(&devices)
    .bind(&tasks)
    .bind(&progress)
    .bind(&statuses)
    .bind(&bodies)
    .bind(&ends)
    .bind(&confirms)
    .fetch_all(db)
    .await?;
    let mut found: HashMap<Uuid, Receipt> = receipts.into_iter().map(|r| (r.job_id, r)).collect();
    Ok(jobs.iter().map(|id| found.remove(id)).collect())
}

/// Most callbacks one recording statement takes, and how many such statements run at once.
const RECORD_BATCH: usize = 64;
const RECORD_STATEMENTS: usize = 4;

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
    let mut seen = HashSet::with_capacity(callbacks.len());
    let (first, again): (Vec<_>, Vec<_>) = callbacks
        .into_iter()
        .enumerate()
        .partition(|(_, c)| seen.insert(c.job_id));
    let (places, first): (Vec<usize>, Vec<NewCallback>) = first.into_iter().unzip();
    let mut answers: Vec<Option<StoreResult<Option<Receipt>>>> =
        (0..places.len() + again.len()).map(|_| None).collect();
    let recorded = record(&mut *conn, &first).await;
    drop(conn);
    match recorded {
        Ok(receipts) => {
            for (place, receipt) in places.iter().zip(receipts) {
                answers[*place] = Some(Ok(receipt));
            }
        }
        Err(err) if first.len() == 1 => answers[places[0]] = Some(Err(err)),
        // no second wait per callback for a database that cannot be reached
        Err(StoreError::Db(err)) if super::is_unavailable(&err) => {
            let each = super::batch::unavailable_for_each(&err, places.len());
            for (place, answer) in places.iter().zip(each) {
                answers[*place] = Some(answer);
            }
        }
        Err(_) => {
            let each = futures::future::join_all(
                first
                    .chunks(1)
                    .map(|one| async { record(&pool, one).await.map(|mut r| r.pop().flatten()) }),
            )
            .await;
            for (place, answer) in places.iter().zip(each) {
                answers[*place] = Some(answer);
            }
        }
    }
    for (place, callback) in again {
        let answer = record(&pool, std::slice::from_ref(&callback))
            .await
            .map(|mut r| r.pop().flatten());
        answers[place] = Some(answer);
    }
    answers
        .into_iter()
        .map(|a| a.expect("every callback of the batch was answered"))
        .collect()
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
