//! WeCom bookkeeping: imported jobs (exactly once per `jobid`, and the report outbox), the
//! per-printer sync lease, the push inbox (de-duplicated on `req_id`) and the newest model
//! ticket.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::StoreResult;
use super::storable;
use crate::domain::{JobError, JobState};

/// A WeCom job about to be recorded with its gateway job.
#[derive(Debug, Clone)]
pub struct NewWecomJob {
    pub jobid: String,
    pub printer_id: String,
    pub job_id: Uuid,
    pub device_sn: String,
    pub open_userid: String,
    pub wecom_created_at: Option<DateTime<Utc>>,
    pub wecom_status: i16,
}

/// Records an imported WeCom job. False when the `jobid` was imported before (the caller's
/// transaction must then be rolled back).
pub async fn insert_job(conn: &mut PgConnection, job: &NewWecomJob) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO wecom_jobs (jobid, printer_id, job_id, device_sn, open_userid, wecom_created_at, wecom_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (jobid) DO NOTHING",
    )
    .bind(&job.jobid)
    .bind(&job.printer_id)
    .bind(job.job_id)
    .bind(&job.device_sn)
    .bind(&job.open_userid)
    .bind(job.wecom_created_at)
    .bind(job.wecom_status)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Which of `jobids` are already imported.
pub async fn known_jobids(pool: &PgPool, jobids: &[String]) -> StoreResult<HashSet<String>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT jobid FROM wecom_jobs WHERE jobid = ANY($1)")
            .bind(jobids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

#[derive(Debug, Clone, FromRow)]
pub struct WecomJobRow {
    pub jobid: String,
    pub printer_id: String,
    pub job_id: Uuid,
    pub device_sn: String,
    pub open_userid: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub async fn get_job(pool: &PgPool, jobid: &str) -> StoreResult<Option<WecomJobRow>> {
    Ok(sqlx::query_as::<_, WecomJobRow>(
        "SELECT jobid, printer_id, job_id, device_sn, open_userid, deleted_at FROM wecom_jobs WHERE jobid = $1",
    )
    .bind(jobid)
    .fetch_optional(pool)
    .await?)
}

/// Imported jobs of a printer that have not finished in the gateway (for the batch status
/// look-up).
pub async fn live_jobs(pool: &PgPool, printer_id: &str) -> StoreResult<Vec<WecomJobRow>> {
    Ok(sqlx::query_as::<_, WecomJobRow>(
        "SELECT jobid, printer_id, job_id, device_sn, open_userid, deleted_at FROM wecom_jobs
         WHERE printer_id = $1 AND report_due_at IS NULL AND deleted_at IS NULL ORDER BY imported_at",
    )
    .bind(printer_id)
    .fetch_all(pool)
    .await?)
}

/// The users whose jobs reached this printer in the last 7 days (learned from pushes and
/// earlier syncs).
pub async fn users_seen(pool: &PgPool, printer_id: &str) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT open_userid FROM wecom_jobs
         WHERE printer_id = $1 AND imported_at > now() - interval '7 days' ORDER BY open_userid",
    )
    .bind(printer_id)
    .fetch_all(pool)
    .await?)
}

pub async fn mark_deleted(pool: &PgPool, jobid: &str) -> StoreResult<()> {
    sqlx::query("UPDATE wecom_jobs SET deleted_at = COALESCE(deleted_at, now()) WHERE jobid = $1")
        .bind(jobid)
        .execute(pool)
        .await?;
    Ok(())
}

/// Marks the jobs WeCom no longer has, in one statement.
pub async fn mark_all_deleted(pool: &PgPool, jobids: &[String]) -> StoreResult<()> {
    if jobids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE wecom_jobs SET deleted_at = COALESCE(deleted_at, now()) WHERE jobid = ANY($1)",
    )
    .bind(jobids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the WeCom statuses of a batch-status look-up, in one statement.
pub async fn record_statuses(
    pool: &PgPool,
    jobids: &[String],
    statuses: &[i16],
) -> StoreResult<()> {
    if jobids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE wecom_jobs w SET wecom_status = s.status, checked_at = now()
         FROM UNNEST($1::text[], $2::smallint[]) AS s(jobid, status)
         WHERE w.jobid = s.jobid",
    )
    .bind(jobids)
    .bind(statuses)
    .execute(pool)
    .await?;
    Ok(())
}

// ----- sync lease

/// Takes (or renews) the sync lease of a printer. False when another replica holds it.
pub async fn claim_sync(
    pool: &PgPool,
    printer_id: &str,
    owner: Uuid,
    lease: Duration,
) -> StoreResult<bool> {
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO wecom_sync (printer_id, lease_owner, lease_until)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (printer_id) DO UPDATE SET lease_owner = $2, lease_until = EXCLUDED.lease_until
             WHERE wecom_sync.lease_owner IS NULL OR wecom_sync.lease_owner = $2
                OR wecom_sync.lease_until < now()
         RETURNING printer_id",
    )
    .bind(printer_id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}

/// Gives the lease back and records how the sync went.
pub async fn finish_sync(
    pool: &PgPool,
    printer_id: &str,
    owner: Uuid,
    imported: i32,
    error: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE wecom_sync SET lease_owner = NULL, lease_until = NULL,
             last_synced_at = CASE WHEN $4::text IS NULL THEN now() ELSE last_synced_at END,
             last_imported = $3,
             last_error = $4, last_error_at = CASE WHEN $4::text IS NULL THEN last_error_at ELSE now() END
         WHERE printer_id = $1 AND lease_owner = $2",
    )
    .bind(printer_id)
    .bind(owner)
    .bind(imported)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

// ----- push inbox

/// A verified, decrypted push.
#[derive(Debug, Clone)]
pub struct NewPush {
    pub req_id: String,
    pub event: String,
    pub device_sn: Option<String>,
    pub jobid: Option<String>,
    pub open_userid: Option<String>,
    pub payload: Value,
}

/// Queues a push. False when its `req_id` was seen before (a duplicate).
pub async fn enqueue_push(pool: &PgPool, push: &NewPush) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO wecom_inbox (req_id, event, device_sn, jobid, open_userid, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (req_id) DO NOTHING",
    )
    // What WeCom sent, NUL characters escaped (see `storable`).
    .bind(storable::text(&push.req_id))
    .bind(storable::text(&push.event))
    .bind(storable::opt_text(&push.device_sn))
    .bind(storable::opt_text(&push.jobid))
    .bind(storable::opt_text(&push.open_userid))
    .bind(storable::json(&push.payload).as_ref())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, FromRow)]
pub struct PushRow {
    pub req_id: String,
    pub event: String,
    pub device_sn: Option<String>,
    pub jobid: Option<String>,
    pub open_userid: Option<String>,
    pub payload: Option<Value>,
    pub attempts: i32,
}

/// Claims due pushes under a lease (SKIP LOCKED: replicas share the work).
pub async fn claim_pushes(pool: &PgPool, limit: i64, lease: Duration) -> StoreResult<Vec<PushRow>> {
    Ok(sqlx::query_as::<_, PushRow>(
        "WITH due AS (
             SELECT req_id FROM wecom_inbox
             WHERE due_at <= now() AND (lease_until IS NULL OR lease_until < now())
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
         )
         UPDATE wecom_inbox i SET lease_until = now() + make_interval(secs => $2), attempts = attempts + 1
         FROM due WHERE i.req_id = due.req_id
         RETURNING i.req_id, i.event, i.device_sn, i.jobid, i.open_userid, i.payload, i.attempts",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// A push is handled: its payload (possibly secret) is dropped.
pub async fn finish_push(pool: &PgPool, req_id: &str, outcome: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE wecom_inbox SET due_at = NULL, lease_until = NULL, handled_at = now(), outcome = $2, payload = NULL
         WHERE req_id = $1",
    )
    .bind(req_id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn retry_push(
    pool: &PgPool,
    req_id: &str,
    due_at: DateTime<Utc>,
    error: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE wecom_inbox SET due_at = $2, lease_until = NULL, last_error = $3 WHERE req_id = $1",
    )
    .bind(req_id)
    .bind(due_at)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

// ----- report outbox

#[derive(Debug, Clone, FromRow)]
pub struct ReportRow {
    pub jobid: String,
    pub job_id: Uuid,
    pub printer_id: String,
    pub device_sn: String,
    pub report_attempts: i32,
    pub deleted_at: Option<DateTime<Utc>>,
    pub state: JobState,
    pub state_reason: Option<String>,
    pub error: Option<Json<JobError>>,
}

/// Claims reports that are due, under a lease.
pub async fn claim_reports(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<ReportRow>> {
    Ok(sqlx::query_as::<_, ReportRow>(
        "WITH due AS (
             SELECT jobid FROM wecom_jobs
             WHERE report_done_at IS NULL AND report_due_at <= now()
               AND (report_lease_until IS NULL OR report_lease_until < now())
             ORDER BY report_due_at LIMIT $1 FOR UPDATE SKIP LOCKED
         )
         UPDATE wecom_jobs w SET report_lease_until = now() + make_interval(secs => $2),
             report_attempts = w.report_attempts + 1
         FROM due, jobs j WHERE w.jobid = due.jobid AND j.id = w.job_id
         RETURNING w.jobid, w.job_id, w.printer_id, w.device_sn, w.report_attempts, w.deleted_at, j.state, j.state_reason, j.error",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// The report is done (`reported`, `skipped` or `abandoned`).
pub async fn finish_report(pool: &PgPool, jobid: &str, outcome: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE wecom_jobs SET report_done_at = now(), report_lease_until = NULL, report_outcome = $2
         WHERE jobid = $1",
    )
    .bind(jobid)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn retry_report(
    pool: &PgPool,
    jobid: &str,
    due_at: DateTime<Utc>,
    error: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE wecom_jobs SET report_due_at = $2, report_lease_until = NULL, report_last_error = $3
         WHERE jobid = $1",
    )
    .bind(jobid)
    .bind(due_at)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

// ----- credentials that arrive by push

pub async fn save_model_ticket(pool: &PgPool, model_id: &str, ticket: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO wecom_model_tickets (model_id, ticket) VALUES ($1, $2)
         ON CONFLICT (model_id) DO UPDATE SET ticket = $2, received_at = clock_timestamp()",
    )
    .bind(model_id)
    .bind(ticket)
    .execute(pool)
    .await?;
    Ok(())
}

/// The newest pushed ticket, if younger than `max_age` (WeCom: valid 30 minutes).
pub async fn model_ticket(
    pool: &PgPool,
    model_id: &str,
    max_age: Duration,
) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT ticket FROM wecom_model_tickets
         WHERE model_id = $1 AND received_at > now() - make_interval(secs => $2)",
    )
    .bind(model_id)
    .bind(max_age.as_secs_f64())
    .fetch_optional(pool)
    .await?)
}

/// Stores a device secret obtained from a bind event's `auth_code`.
/// Sealed with `keyring` like every printer secret.
pub async fn set_device_secret(
    pool: &PgPool,
    keyring: &crate::secrets_at_rest::Keyring,
    printer_id: &str,
    secret: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE printers SET secrets = secrets || jsonb_build_object('device_secret', $2::text), updated_at = now()
         WHERE id = $1",
    )
    .bind(printer_id)
    .bind(keyring.seal(
        &crate::secrets_at_rest::printer_context(printer_id, "device_secret"),
        secret,
    ))
    .execute(pool)
    .await?;
    Ok(())
}
