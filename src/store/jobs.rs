//! Jobs: accept, read, list (keyset), claim (SKIP LOCKED leases) and the one function
//! every state change goes through.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::batch::{OncePerKey, StoreWriter};
use super::documents::NewDocument;
use super::storable;
use super::{StoreError, StoreResult};
use crate::domain::{EventSource, JobError, JobOptions, JobState, OptionsMode, Transition};

/// A job row. `Deserialize` reads the snapshot the outbox keeps of it (without
/// `request_hash`).
#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct JobRow {
    pub id: Uuid,
    pub tenant: String,
    pub printer_id: String,
    pub document_id: Uuid,
    pub document_info: Value,
    pub source: EventSource,
    pub options: Json<JobOptions>,
    pub options_mode: OptionsMode,
    pub dropped_options: Vec<String>,
    pub metadata: Option<Value>,
    pub state: JobState,
    pub state_reason: Option<String>,
    pub vendor_status: Option<String>,
    pub error: Option<Json<JobError>>,
    pub vendor_task_id: Option<String>,
    pub vendor_ids: Option<Value>,
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    #[serde(default, skip_deserializing)]
    pub request_hash: Option<Vec<u8>>,
    pub due_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<Uuid>,
    pub submit_started_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The pool the job came through; `printer_id` is the member chosen.
    pub pool_id: Option<String>,
    /// What the document was converted from before it was sent (`pdf`).
    pub converted_from: Option<String>,
    /// How many pages were sent, when the gateway rendered them.
    pub page_count: Option<i32>,
}

const COLUMNS: &str = "id, tenant, printer_id, document_id, document_info, source, options, options_mode, dropped_options, metadata,
    state, state_reason, vendor_status, error, vendor_task_id, vendor_ids, attempts, idempotency_key, request_hash,
    due_at, lease_owner, submit_started_at, cancel_requested, created_at, updated_at, dispatched_at, completed_at,
    expires_at, pool_id, converted_from, page_count";

/// A job about to be accepted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub tenant: String,
    pub printer_id: String,
    pub document_id: Uuid,
    pub document_info: Value,
    /// Who submitted it: `api` or a job source (`wecom`).
    pub source: EventSource,
    pub options: JobOptions,
    pub options_mode: OptionsMode,
    pub dropped_options: Vec<String>,
    pub metadata: Option<Value>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub vendor_ids: Option<Value>,
    /// The pool the job was sent to; `printer_id` is then its first choice of member.
    pub pool_id: Option<String>,
    /// Why the pool's router chose `printer_id` (an event after the accept).
    pub route_note: Option<String>,
    /// The printer's backend: not stored with the job, counted when it is accepted.
    pub backend: String,
}

/// Inserts a pending job due now and its first event. `None` when the tenant already used
/// the idempotency key (the caller's transaction should then be rolled back).
pub async fn insert(
    conn: &mut PgConnection,
    job: &NewJob,
    source: EventSource,
) -> StoreResult<Option<JobRow>> {
    let row = sqlx::query_as::<_, JobRow>(&format!(
        "INSERT INTO jobs (id, tenant, printer_id, document_id, source, options, options_mode, dropped_options,
             metadata, idempotency_key, request_hash, expires_at, vendor_ids, document_info, pool_id, state, due_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'pending', clock_timestamp())
         ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(job.id)
    .bind(&job.tenant)
    .bind(&job.printer_id)
    .bind(job.document_id)
    .bind(job.source)
    .bind(Json(&job.options))
    .bind(job.options_mode)
    .bind(&job.dropped_options)
    .bind(&job.metadata)
    .bind(&job.idempotency_key)
    .bind(&job.request_hash)
    .bind(job.expires_at)
    .bind(&job.vendor_ids)
    .bind(&job.document_info)
    .bind(&job.pool_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = &row {
        sqlx::query(
            "INSERT INTO job_events (job_id, source, kind, from_state, to_state, reason) VALUES ($1, $2, 'accepted', NULL, 'pending', 'accepted')",
        )
        .bind(row.id)
        .bind(source.as_str())
        .execute(&mut *conn)
        .await?;
        // Imports (WeCom) are rare: they wake the workers from their own transaction.
        sqlx::query("SELECT pg_notify('print_gateway_jobs_due', '')")
            .execute(&mut *conn)
            .await?;
    }
    Ok(row)
}

/// A job the API accepts, with its document (see [`accept`]).
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub job: NewJob,
    pub document: NewDocument,
    /// Where the bytes already are in the document object store (the row then keeps the
    /// key, their size and hash, and no content).
    pub object_key: Option<String>,
    pub source: EventSource,
}

/// Accepts jobs from the API: for each, its document, the job (pending, due now) and its
/// first event, all of them in one statement (one round trip, one commit: concurrent
/// requests are grouped by [`super::batch::Batcher`]). One answer per job, in order: the
/// row, or `None` when the tenant already used the idempotency key (then nothing is stored
/// for it; of two jobs in one call with the same key, the first is stored). An error fails
/// every job of the call. Nobody is notified here: the caller wakes the workers after the
/// commit (see `Engine::job_due`).
pub async fn accept(
    db: impl sqlx::PgExecutor<'_>,
    jobs: &[Acceptance],
) -> StoreResult<Vec<Option<JobRow>>> {
    let n = jobs.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut printers = Vec::with_capacity(n);
    let mut document_ids = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut options = Vec::with_capacity(n);
    let mut modes = Vec::with_capacity(n);
    let mut dropped = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut vendor_ids = Vec::with_capacity(n);
    let mut infos = Vec::with_capacity(n);
    let mut pools = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut doc_types = Vec::with_capacity(n);
    let mut content_types = Vec::with_capacity(n);
    let mut filenames = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    let mut sizes = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut contents = Vec::with_capacity(n);
    let mut object_keys = Vec::with_capacity(n);
    let mut event_sources = Vec::with_capacity(n);
    for Acceptance {
        job,
        document: doc,
        object_key,
        source,
    } in jobs
    {
        ids.push(job.id);
        tenants.push(job.tenant.as_str());
        printers.push(job.printer_id.as_str());
        document_ids.push(Uuid::now_v7());
        sources.push(job.source);
        options.push(Json(&job.options));
        modes.push(job.options_mode);
        // text[] of different lengths cannot share one array: each travels as jsonb
        dropped.push(Json(&job.dropped_options));
        metadata.push(job.metadata.as_ref());
        keys.push(job.idempotency_key.as_deref());
        hashes.push(job.request_hash.as_deref());
        expires.push(job.expires_at);
        vendor_ids.push(job.vendor_ids.as_ref());
        infos.push(&job.document_info);
        pools.push(job.pool_id.as_deref());
        kinds.push(doc.kind.as_str());
        doc_types.push(doc.doc_type.map(|t| t.extension()));
        content_types.push(doc.content_type.as_deref());
        filenames.push(doc.filename.as_deref());
        urls.push(doc.url.as_deref());
        sizes.push(doc.size() as i64);
        digests.push(doc.sha256());
        contents.push(match object_key {
            Some(_) => None,
            None => doc.content.as_deref(),
        });
        object_keys.push(object_key.as_deref());
        event_sources.push(source.as_str());
    }
    // The documents and events are inserted only for the jobs that were, and the foreign
    // keys are checked at the end of the statement, when all the rows exist.
    let rows = sqlx::query_as::<_, JobRow>(&format!(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::jsonb[],
                 $7::text[], $8::jsonb[], $9::jsonb[], $10::text[], $11::bytea[], $12::timestamptz[],
                 $13::jsonb[], $14::jsonb[], $15::text[])
                 WITH ORDINALITY AS i(id, tenant, printer_id, document_id, source, options, options_mode,
                     dropped_options, metadata, idempotency_key, request_hash, expires_at, vendor_ids,
                     document_info, pool_id, n)
         ), doc_input AS (
             SELECT * FROM unnest($4::uuid[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                 $21::int8[], $22::bytea[], $23::bytea[], $24::text[], $25::text[], $1::uuid[])
                 AS d(id, kind, doc_type, content_type, filename, url, size_bytes, sha256, content, object_key,
                     event_source, job_id)
         ), job AS (
             INSERT INTO jobs (id, tenant, printer_id, document_id, source, options, options_mode, dropped_options,
                 metadata, idempotency_key, request_hash, expires_at, vendor_ids, document_info, pool_id, state, due_at)
             SELECT id, tenant, printer_id, document_id, source, options, options_mode,
                 ARRAY(SELECT jsonb_array_elements_text(dropped_options)), metadata, idempotency_key, request_hash,
                 expires_at, vendor_ids, document_info, pool_id, 'pending', clock_timestamp()
             FROM input ORDER BY n
             ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING {COLUMNS}
         ), doc AS (
             INSERT INTO documents (id, kind, doc_type, content_type, filename, url, size_bytes, sha256, content, object_key)
             SELECT d.id, d.kind, d.doc_type, d.content_type, d.filename, d.url, d.size_bytes, d.sha256, d.content,
                 d.object_key
             FROM doc_input d JOIN job ON job.id = d.job_id
         ), event AS (
             INSERT INTO job_events (job_id, source, kind, from_state, to_state, reason)
             SELECT job.id, d.event_source, 'accepted', NULL, 'pending', 'accepted'
             FROM doc_input d JOIN job ON job.id = d.job_id
         )
         SELECT {COLUMNS} FROM job"
    ))
    .bind(&ids)
    .bind(&tenants)
    .bind(&printers)
    .bind(&document_ids)
    .bind(&sources)
    .bind(&options)
    .bind(&modes)
    .bind(&dropped)
    .bind(&metadata)
    .bind(&keys)
    .bind(&hashes)
    .bind(&expires)
    .bind(&vendor_ids)
    .bind(&infos)
    .bind(&pools)
    .bind(&kinds)
    .bind(&doc_types)
    .bind(&content_types)
    .bind(&filenames)
    .bind(&urls)
    .bind(&sizes)
    .bind(&digests)
    .bind(&contents)
    .bind(&object_keys)
    .bind(&event_sources)
    .fetch_all(db)
    .await?;
    let mut stored: std::collections::HashMap<Uuid, JobRow> =
        rows.into_iter().map(|row| (row.id, row)).collect();
    Ok(ids.iter().map(|id| stored.remove(id)).collect())
}

/// Most jobs one accept statement stores, and how many such statements run at once. Two,
/// not more: each statement ends in a commit that waits for a WAL flush, and fewer
/// statements carry bigger batches through fewer flushes (measured against 1, 3 and 4 in
/// `bench/RESULTS.md`); not one, so that a statement slowed by a big document does not
/// hold every other accept of the process.
const ACCEPT_BATCH: usize = 64;
const ACCEPT_STATEMENTS: usize = 2;

/// The accept path's writer, one per process: jobs accepted at the same moment share one
/// statement and one commit (see [`super::batch`]); a lone job is written at once.
pub type AcceptWriter = StoreWriter<Acceptance, Option<JobRow>>;

pub fn accept_writer(pool: PgPool) -> AcceptWriter {
    StoreWriter::new(pool, ACCEPT_BATCH, ACCEPT_STATEMENTS, |pool, conn, jobs| {
        Box::pin(accept_each(pool, conn, jobs))
    })
}

/// One statement for the batch; when it fails, one per job, so that each job gets its own
/// answer (a printer deleted behind one job's cached settings fails that job alone). A
/// database that cannot be reached fails them all at once (no second wait per job).
async fn accept_each(
    pool: PgPool,
    mut conn: PoolConnection<Postgres>,
    jobs: Vec<Acceptance>,
) -> Vec<StoreResult<Option<JobRow>>> {
    let written = accept(&mut *conn, &jobs).await;
    drop(conn);
    match written {
        Ok(rows) => rows.into_iter().map(Ok).collect(),
        Err(err) if jobs.len() == 1 => vec![Err(err)],
        Err(StoreError::Db(err)) if super::is_unavailable(&err) => {
            super::batch::unavailable_for_each(&err, jobs.len())
        }
        Err(_) => {
            futures::future::join_all(jobs.chunks(1).map(|one| async {
                accept(&pool, one)
                    .await
                    .map(|mut rows| rows.pop().flatten())
            }))
            .await
        }
    }
}

/// Tells every replica's workers (LISTEN) that jobs became due. The engine coalesces calls.
pub async fn notify_due(pool: &PgPool, channel: &str, payload: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, tenant: &str, id: Uuid) -> StoreResult<Option<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await?)
}

/// A job as a reader sees it: within `tenant`, or any tenant's when `None` (admin).
pub async fn get_visible(
    pool: &PgPool,
    tenant: Option<&str>,
    id: Uuid,
) -> StoreResult<Option<JobRow>> {
    match tenant {
        Some(tenant) => get(pool, tenant, id).await,
        None => get_any(pool, id).await,
    }
}

pub async fn get_any(pool: &PgPool, id: Uuid) -> StoreResult<Option<JobRow>> {
    Ok(
        sqlx::query_as::<_, JobRow>(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The jobs of `ids` that exist, in no particular order.
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> StoreResult<Vec<JobRow>> {
    Ok(
        sqlx::query_as::<_, JobRow>(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn get_by_idempotency_key(
    pool: &PgPool,
    tenant: &str,
    key: &str,
) -> StoreResult<Option<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE tenant = $1 AND idempotency_key = $2"
    ))
    .bind(tenant)
    .bind(key)
    .fetch_optional(pool)
    .await?)
}

/// Filters of the job list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub printer_id: Option<String>,
    pub source: Option<EventSource>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// A job id, idempotency key or vendor task id, matched exactly.
    pub search: Option<String>,
}

/// The position after the last row of a page: (created_at, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page, newest first, and whether more rows follow.
/// `tenant` `None` lists every tenant's jobs (admin).
pub async fn list(
    pool: &PgPool,
    tenant: Option<&str>,
    filter: &ListFilter,
    after: Option<ListCursor>,
    limit: u32,
) -> StoreResult<(Vec<JobRow>, bool)> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM jobs WHERE true"));
    if let Some(tenant) = tenant {
        q.push(" AND tenant = ").push_bind(tenant);
    }
    if let Some(search) = &filter.search {
        q.push(" AND (idempotency_key = ")
            .push_bind(search)
            .push(" OR vendor_task_id = ")
            .push_bind(search);
        if let Ok(id) = Uuid::parse_str(search) {
            q.push(" OR id = ").push_bind(id);
        }
        q.push(")");
    }
    if let Some(state) = filter.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(printer) = &filter.printer_id {
        q.push(" AND printer_id = ").push_bind(printer);
    }
    if let Some(source) = &filter.source {
        q.push(" AND source = ").push_bind(*source);
    }
    if let Some(t) = filter.created_after {
        q.push(" AND created_at > ").push_bind(t);
    }
    if let Some(t) = filter.created_before {
        q.push(" AND created_at < ").push_bind(t);
    }
    if let Some(cursor) = after {
        q.push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut rows = q.build_query_as::<JobRow>().fetch_all(pool).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Claims up to `limit` jobs that are due now, under a lease identified by `token`.
///
/// Pending jobs on a disabled printer or behind an open breaker are left alone unless
/// they only need bookkeeping (cancel, expiry, a crashed submit) or came through a pool
/// (the router may move them to another member); jobs whose device has no free
/// vendor-call slot wait too.
/// Only jobs of printers on `backends` (those this process has configured) are claimed: a
/// replica missing a backend leaves its jobs to the replicas that have it.
///
/// The walk goes printer by printer: each printer whose device has `n` free slots offers
/// its `n` earliest due jobs (index `jobs_printer_due`), and the earliest `limit` of those
/// are taken. A printer that takes no new submits (disabled, breaker open) offers only the
/// jobs that need the engine anyway (index `jobs_printer_due_attention`), so its backlog
/// of pending jobs is never walked (with 1.2 M pending on 200 printers whose breakers were
/// open, one claim took 2.9 s when it was). Device slots are counted once per claim, not once per job. `in_flight` lists
/// the printer of every job this process is handling (one entry per job): those may not
/// hold their slot yet, so a device counts as busy as the larger of its taken slots and its
/// jobs in flight here — a claim never hands out a second job for a device whose first has
/// not reached its slot yet.
pub async fn claim_due(
    pool: &PgPool,
    token: Uuid,
    limit: i64,
    lease: Duration,
    backends: &[&str],
    in_flight: &[String],
) -> StoreResult<Vec<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(&format!(
        "WITH slots AS (
             SELECT device, count(*) AS n FROM device_slots WHERE lease_until > now() GROUP BY device
         ), here AS (
             SELECT p.device, count(*) AS n FROM unnest($5::text[]) AS f(printer_id)
             JOIN printers p ON p.id = f.printer_id GROUP BY p.device
         ), open AS (
             SELECT p.id,
                    p.enabled AND (p.breaker_open_until IS NULL OR p.breaker_open_until <= now()) AS takes_new,
                    p.max_in_flight - greatest(COALESCE(s.n, 0), COALESCE(h.n, 0)) AS free
             FROM printers p
             LEFT JOIN slots s ON s.device = p.device
             LEFT JOIN here h ON h.device = p.device
             WHERE p.backend = ANY($4)
         ), due_any AS (
             SELECT c.id, c.due_at FROM open o CROSS JOIN LATERAL (
                 SELECT j.id, j.due_at FROM jobs j
                 WHERE j.printer_id = o.id
                   AND j.state IN ('pending', 'processing', 'unconfirmed')
                   AND j.due_at <= now()
                   AND (j.lease_until IS NULL OR j.lease_until < now())
                 ORDER BY j.due_at
                 LIMIT greatest(o.free, 0)
                 FOR UPDATE OF j SKIP LOCKED
             ) c
             WHERE o.free > 0 AND o.takes_new
         ), due_attention AS (
             SELECT c.id, c.due_at FROM open o CROSS JOIN LATERAL (
                 SELECT j.id, j.due_at FROM jobs j
                 WHERE j.printer_id = o.id
                   AND (j.state IN ('processing', 'unconfirmed')
                        OR (j.state = 'pending' AND (j.cancel_requested OR j.submit_started_at IS NOT NULL
                                                     OR j.expires_at IS NOT NULL OR j.pool_id IS NOT NULL)))
                   AND (j.state <> 'pending' OR j.cancel_requested OR j.submit_started_at IS NOT NULL
                        OR j.expires_at <= now() OR j.pool_id IS NOT NULL)
                   AND j.due_at <= now()
                   AND (j.lease_until IS NULL OR j.lease_until < now())
                 ORDER BY j.due_at
                 LIMIT greatest(o.free, 0)
                 FOR UPDATE OF j SKIP LOCKED
             ) c
             WHERE o.free > 0 AND NOT o.takes_new
         ), due AS (
             SELECT id, due_at FROM due_any
             UNION ALL
             SELECT id, due_at FROM due_attention
             ORDER BY due_at
             LIMIT $2
         )
         UPDATE jobs SET lease_owner = $1, lease_until = now() + make_interval(secs => $3)
         FROM due WHERE jobs.id = due.id
         RETURNING {}",
        COLUMNS
            .split(',')
            .map(|c| format!("jobs.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(token)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(backends)
    .bind(in_flight)
    .fetch_all(pool)
    .await?)
}

/// Gives a claimed job back without a state change, to be looked at again at `due_at`.
pub async fn release(
    pool: &PgPool,
    id: Uuid,
    token: Uuid,
    due_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE jobs SET lease_owner = NULL, lease_until = NULL, due_at = $3 WHERE id = $1 AND lease_owner = $2")
        .bind(id)
        .bind(token)
        .bind(due_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Asks the engine to look at a job now.
pub async fn make_due_now(pool: &PgPool, id: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE jobs SET due_at = now() WHERE id = $1 AND state IN ('pending', 'processing', 'unconfirmed')")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Makes every pending job of a printer due now (its device came back, its breaker was
/// reset by an operator), and every pending job of a pool it is a member of (it may go
/// there now). Returns how many.
pub async fn make_printer_jobs_due(pool: &PgPool, printer_id: &str) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE jobs SET due_at = now() WHERE state = 'pending' AND due_at > now()
           AND (printer_id = $1 OR pool_id IN (SELECT id FROM pools WHERE $1 = ANY (members)))",
    )
    .bind(printer_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Marks, and commits, that a submit is about to leave. False when the lease was lost or
/// the job stopped being pending (e.g. canceled meanwhile): then nothing may be sent.
pub async fn mark_submit_started(pool: &PgPool, id: Uuid, token: Uuid) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET submit_started_at = now(), updated_at = now()
         WHERE id = $1 AND lease_owner = $2 AND lease_until > now() AND state = 'pending' AND NOT cancel_requested",
    )
    .bind(id)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What [`begin_submit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitStart {
    /// The submit may leave: the job is marked and holds device slot `slot`.
    Started { slot: i32 },
    /// Every slot of the device is taken.
    NoSlot,
    /// Another submit to the device has an unknown outcome: new ones wait until then.
    Held { until: DateTime<Utc> },
    /// A slot was taken but the job may not be sent (its lease was lost, or it stopped
    /// being pending, e.g. canceled meanwhile): give the slot back, send nothing.
    Refused { slot: i32 },
}

/// Starts a submit in one statement: checks the device hold (when `hold` is given: only
/// vendors whose lookup is by time need it), takes a free slot of the device and marks,
/// and commits, that the submit is about to leave (`submit_started_at`). Together they
/// are one round trip and one commit where they were three.
///
/// A hold is set by another job's submit whose outcome is unknown — an `unconfirmed` job
/// without a task, or a pending job whose holder vanished mid-submit (its lease ran out) —
/// and lasts `hold` from that submit's start. Concurrent in-flight submits under a live
/// lease do not hold the device (only `max_in_flight > 1` allows them). The hold is read in
/// the same snapshot that finds the slot free, so a submit whose outcome was recorded as
/// unknown before its slot was freed is always seen.
pub async fn begin_submit(
    pool: &PgPool,
    id: Uuid,
    token: Uuid,
    device: &str,
    max_in_flight: i32,
    lease: Duration,
    hold: Option<Duration>,
) -> StoreResult<SubmitStart> {
    let (slot, held_until, started): (Option<i32>, Option<DateTime<Utc>>, bool) =
        sqlx::query_as(
            "WITH hold AS (
                 SELECT CASE WHEN $6::float8 IS NULL THEN NULL ELSE (
                     -- Printer by printer (OFFSET 0 keeps the join in this order): joined
                     -- the other way round, the plan read every live job of every printer.
                     SELECT max(j.submit_started_at) + make_interval(secs => $6)
                     FROM printers p CROSS JOIN LATERAL (
                         SELECT j.submit_started_at FROM jobs j
                         WHERE j.printer_id = p.id AND j.id <> $1
                           AND j.submit_started_at IS NOT NULL AND j.vendor_task_id IS NULL
                           AND j.submit_started_at > now() - make_interval(secs => $6)
                           AND (j.state = 'unconfirmed'
                                OR (j.state = 'pending' AND (j.lease_until IS NULL OR j.lease_until <= now())))
                         OFFSET 0
                     ) j
                     WHERE p.device = $3
                 ) END AS until
             ), slot AS (
                 INSERT INTO device_slots (device, slot, job_id, lease_until)
                 SELECT $3, free.s, $1, now() + make_interval(secs => $5)
                 -- Any free slot will do: no ORDER BY. With a sort, Postgres costed the
                 -- generic plan (a series of a parameter counts as 1,000 rows) above a
                 -- custom one and planned this statement anew on every call, which took
                 -- longer (0.76 ms) than running it.
                 FROM hold, LATERAL (
                     SELECT s FROM generate_series(1, $4::int) s
                     WHERE NOT EXISTS (SELECT 1 FROM device_slots d WHERE d.device = $3 AND d.slot = s AND d.lease_until > now())
                     LIMIT 1
                 ) free
                 WHERE hold.until IS NULL
                 ON CONFLICT (device, slot) DO UPDATE SET job_id = EXCLUDED.job_id, lease_until = EXCLUDED.lease_until
                     WHERE device_slots.lease_until <= now()
                 RETURNING slot
             ), started AS (
                 UPDATE jobs SET submit_started_at = now(), updated_at = now()
                 WHERE id = $1 AND lease_owner = $2 AND lease_until > now() AND state = 'pending'
                   AND NOT cancel_requested AND EXISTS (SELECT 1 FROM slot)
                 RETURNING id
             )
             SELECT (SELECT slot FROM slot), (SELECT until FROM hold), EXISTS (SELECT 1 FROM started)",
        )
        .bind(id)
        .bind(token)
        .bind(device)
        .bind(max_in_flight)
        .bind(lease.as_secs_f64())
        .bind(hold.map(|h| h.as_secs_f64()))
        .fetch_one(pool)
        .await?;
    Ok(match (slot, held_until, started) {
        (Some(slot), _, true) => SubmitStart::Started { slot },
        (Some(slot), _, false) => SubmitStart::Refused { slot },
        (None, Some(until), _) => SubmitStart::Held { until },
        (None, None, _) => SubmitStart::NoSlot,
    })
}

/// A change to a job: a state transition, or (same state) a recorded refinement.
#[derive(Debug, Clone)]
pub struct JobUpdate {
    from: JobState,
    to: JobState,
    pub source: EventSource,
    pub kind: &'static str,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub vendor_status: Option<String>,
    pub error: Option<JobError>,
    pub vendor_task_id: Option<String>,
    pub vendor_payload: Option<Value>,
    /// When the engine should look at the job next (unchanged when `None`; cleared for
    /// terminal states).
    pub due_at: Option<DateTime<Utc>>,
    /// Only the holder of this lease may apply the update; `None` for API and callbacks.
    pub lease: Option<Uuid>,
    /// Clears `submit_started_at` (the submit's outcome is now known).
    pub submit_settled: bool,
    pub set_cancel_requested: bool,
    pub callback_seen: bool,
    /// Records an event row even without a state change.
    pub record_event: bool,
    /// Applies only while no submit is in flight (a pending job canceled by the API).
    pub only_if_not_submitting: bool,
    /// Counts a submit attempt toward RETRY_MAX_ATTEMPTS (waits for a device do not).
    pub count_attempt: bool,
    /// Clears `due_at`: the engine has nothing more to ask (an `unconfirmed` job that only
    /// an operator can settle).
    pub park: bool,
    /// Gives back the job's device slot (device, slot) in the same statement, when the
    /// update applies: the submit's outcome and the freed slot commit together.
    pub free_slot: Option<(String, i32)>,
}

impl JobUpdate {
    /// A state change. The [`Transition`] proves it is legal.
    pub fn transition(t: Transition, source: EventSource) -> JobUpdate {
        JobUpdate::base(t.from(), t.to(), source, "state_changed", true)
    }

    /// No state change (a retry scheduled, a finer vendor stage, …).
    pub fn stay(state: JobState, source: EventSource, kind: &'static str) -> JobUpdate {
        JobUpdate::base(state, state, source, kind, true)
    }

    fn base(
        from: JobState,
        to: JobState,
        source: EventSource,
        kind: &'static str,
        record_event: bool,
    ) -> JobUpdate {
        JobUpdate {
            from,
            to,
            source,
            kind,
            reason: None,
            message: None,
            vendor_status: None,
            error: None,
            vendor_task_id: None,
            vendor_payload: None,
            due_at: None,
            lease: None,
            submit_settled: false,
            set_cancel_requested: false,
            callback_seen: false,
            record_event,
            only_if_not_submitting: false,
            count_attempt: false,
            park: false,
            free_slot: None,
        }
    }

    pub fn from_state(&self) -> JobState {
        self.from
    }

    pub fn to_state(&self) -> JobState {
        self.to
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
    pub fn vendor_status(mut self, status: Option<String>) -> Self {
        self.vendor_status = status;
        self
    }
    pub fn error(mut self, error: JobError) -> Self {
        self.error = Some(error);
        self
    }
    pub fn vendor_task(mut self, id: impl Into<String>) -> Self {
        self.vendor_task_id = Some(id.into());
        self
    }
    pub fn payload(mut self, payload: Option<Value>) -> Self {
        self.vendor_payload = payload;
        self
    }
    pub fn due(mut self, at: DateTime<Utc>) -> Self {
        self.due_at = Some(at);
        self
    }
    pub fn leased(mut self, token: Uuid) -> Self {
        self.lease = Some(token);
        self
    }
    pub fn settle_submit(mut self) -> Self {
        self.submit_settled = true;
        self
    }
    pub fn request_cancel(mut self) -> Self {
        self.set_cancel_requested = true;
        self
    }
    pub fn from_callback(mut self) -> Self {
        self.callback_seen = true;
        self
    }
    pub fn unless_submitting(mut self) -> Self {
        self.only_if_not_submitting = true;
        self
    }
    pub fn count_attempt(mut self) -> Self {
        self.count_attempt = true;
        self
    }
    pub fn silent(mut self) -> Self {
        self.record_event = false;
        self
    }
    /// Frees the job's device slot with the update (see [`JobUpdate::free_slot`]).
    pub fn freeing_slot(mut self, device: &str, slot: i32) -> Self {
        self.free_slot = Some((device.to_owned(), slot));
        self
    }
    /// Takes the job off the engine's schedule (see [`JobUpdate::park`]).
    pub fn parked(mut self) -> Self {
        self.park = true;
        self
    }
}

/// The outbox half of [`apply`] (issue 12): a state change (`$2` → `$3`) writes the event
/// `job.<new state>`, and an operator's change (source `$14` = `operator`, i.e. a resolve)
/// also `job.resolved`. Each carries the job's next sequence number and the job as it now
/// is; the fan-out trigger (`outbox_fan_out_rows`, once per statement) turns it into one
/// delivery per subscribed endpoint.
const OUTBOX_CTE: &str = "outbox AS (
             INSERT INTO outbox_events (tenant, type, job_id, sequence, snapshot)
             SELECT u.tenant, t.type, u.id,
                    COALESCE((SELECT max(sequence) FROM outbox_events WHERE job_id = u.id), 0) + t.n,
                    to_jsonb(u) - 'request_hash'
             FROM updated u JOIN a ON a.job = u.id,
                  unnest(CASE WHEN a.event_source = 'operator' THEN ARRAY['job.' || a.to_state, 'job.resolved']
                              ELSE ARRAY['job.' || a.to_state] END) WITH ORDINALITY AS t(type, n)
             WHERE a.from_state <> a.to_state
         )";

/// The arguments of [`apply`]'s statement as one typed value: bound once (as JSON) and
/// read by name in SQL, not as ~20 positional binds. The names differ from every `jobs`
/// column, so the statement never confuses the two.
#[derive(serde::Serialize)]
struct ApplyArgs<'a> {
    job: Uuid,
    from_state: &'static str,
    to_state: &'static str,
    new_reason: Option<&'a str>,
    new_vendor_status: Option<&'a str>,
    new_error: Option<&'a JobError>,
    new_vendor_task_id: Option<&'a str>,
    is_terminal: bool,
    new_due_at: Option<DateTime<Utc>>,
    settle_submit: bool,
    request_cancel: bool,
    saw_callback: bool,
    lease_holder: Option<Uuid>,
    event_source: &'static str,
    event_kind: &'static str,
    event_message: Option<&'a str>,
    event_payload: Option<&'a Value>,
    write_event: bool,
    unless_submitting: bool,
    add_attempt: bool,
    park_job: bool,
    free_device: Option<&'a str>,
    free_slot: Option<i32>,
}

impl<'a> ApplyArgs<'a> {
    fn of(id: Uuid, u: &'a JobUpdate) -> ApplyArgs<'a> {
        ApplyArgs {
            job: id,
            from_state: u.from.as_str(),
            to_state: u.to.as_str(),
            new_reason: u.reason.as_deref(),
            new_vendor_status: u.vendor_status.as_deref(),
            new_error: u.error.as_ref(),
            new_vendor_task_id: u.vendor_task_id.as_deref(),
            is_terminal: u.to.is_terminal(),
            new_due_at: u.due_at,
            settle_submit: u.submit_settled,
            request_cancel: u.set_cancel_requested,
            saw_callback: u.callback_seen,
            lease_holder: u.lease,
            event_source: u.source.as_str(),
            event_kind: u.kind,
            event_message: u.message.as_deref(),
            event_payload: u.vendor_payload.as_ref(),
            write_event: u.record_event,
            unless_submitting: u.only_if_not_submitting,
            add_attempt: u.count_attempt,
            park_job: u.park,
            free_device: u.free_slot.as_ref().map(|(d, _)| d.as_str()),
            free_slot: u.free_slot.as_ref().map(|(_, s)| *s),
        }
    }
}

/// `u` with every U+0000 in vendor words and payloads written as `\u0000` (see
/// [`storable`]), or `None` when it has none (the common case: no copy).
fn storable_update(u: &JobUpdate) -> Option<JobUpdate> {
    let has = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains('\0'));
    let error_has = u
        .error
        .as_ref()
        .is_some_and(|e| e.message.contains('\0') || has(&e.vendor_code) || has(&e.vendor_message));
    let any = has(&u.reason)
        || has(&u.message)
        || has(&u.vendor_status)
        || has(&u.vendor_task_id)
        || error_has
        || u.vendor_payload
            .as_ref()
            .is_some_and(storable::json_has_nul);
    if !any {
        return None;
    }
    let fix = |s: &mut Option<String>| {
        if let Some(v) = s {
            *v = storable::text(v).into_owned();
        }
    };
    let mut clean = u.clone();
    fix(&mut clean.reason);
    fix(&mut clean.message);
    fix(&mut clean.vendor_status);
    fix(&mut clean.vendor_task_id);
    if let Some(e) = &mut clean.error {
        e.message = storable::text(&e.message).into_owned();
        fix(&mut e.vendor_code);
        fix(&mut e.vendor_message);
    }
    if let Some(payload) = &mut clean.vendor_payload {
        storable::escape_json(payload);
    }
    Some(clean)
}

/// The record type of [`ApplyArgs`] for `jsonb_to_record`.
const APPLY_ARGS: &str = "job uuid, from_state text, to_state text, new_reason text,
    new_vendor_status text, new_error jsonb, new_vendor_task_id text, is_terminal bool,
    new_due_at timestamptz, settle_submit bool, request_cancel bool, saw_callback bool,
    lease_holder uuid, event_source text, event_kind text, event_message text,
    event_payload jsonb, write_event bool, unless_submitting bool, add_attempt bool,
    park_job bool, free_device text, free_slot int";

/// Applies an update if the job is still in the expected state (and, for workers, still
/// under their lease). Writes the event row in the same statement. Returns the updated
/// job, or `None` when the guard did not hold (someone else moved the job first).
///
/// A state change also writes its webhook event(s) to the outbox in the same statement
/// (see [`OUTBOX_CTE`]), so no change is ever without its event, nor an event without its
/// change.
pub async fn apply(
    conn: &mut PgConnection,
    id: Uuid,
    u: &JobUpdate,
) -> StoreResult<Option<JobRow>> {
    // Vendor words and payloads may hold U+0000: stored escaped (see `storable`).
    let escaped = storable_update(u);
    let u = escaped.as_ref().unwrap_or(u);
    let row = sqlx::query(&apply_sql("jsonb_to_record"))
        .bind(Json(ApplyArgs::of(id, u)))
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(applied(&row, u)?))
}

/// [`apply`] for many jobs in one statement (each job at most once): the updates whose
/// guard held, as their jobs now are.
///
/// The rows are locked in the order of their ids, whatever the order of `updates`, so two
/// such statements running at once wait for each other rather than deadlock.
pub async fn apply_many(
    db: impl sqlx::PgExecutor<'_>,
    updates: &[(Uuid, JobUpdate)],
) -> StoreResult<Vec<JobRow>> {
    let updates: Vec<(Uuid, &JobUpdate)> = updates.iter().map(|(id, u)| (*id, u)).collect();
    apply_batch(db, &updates, |_| tracing::Span::current()).await
}

/// [`apply_many`], each job's change reported (`observe::job_changed`) in `span_of` its id.
async fn apply_batch(
    db: impl sqlx::PgExecutor<'_>,
    updates: &[(Uuid, &JobUpdate)],
    span_of: impl Fn(Uuid) -> tracing::Span,
) -> StoreResult<Vec<JobRow>> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let escaped: Vec<Option<JobUpdate>> = updates.iter().map(|(_, u)| storable_update(u)).collect();
    let mut args: Vec<ApplyArgs<'_>> = updates
        .iter()
        .zip(&escaped)
        .map(|((id, u), e)| ApplyArgs::of(*id, e.as_ref().unwrap_or(u)))
        .collect();
    args.sort_by_key(|a| a.job);
    let rows = sqlx::query(&apply_sql("jsonb_to_recordset"))
        .bind(Json(&args))
        .fetch_all(db)
        .await?;
    let by_id: std::collections::HashMap<Uuid, &JobUpdate> = updates
        .iter()
        .zip(&escaped)
        .map(|((id, u), e)| (*id, e.as_ref().unwrap_or(u)))
        .collect();
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let Some(u) = by_id.get(&id) else {
            return Err(StoreError::Corrupt(format!(
                "job {id} was updated without an update for it"
            )));
        };
        jobs.push(span_of(id).in_scope(|| applied(row, u))?);
    }
    Ok(jobs)
}

/// The statement of [`apply`] and [`apply_many`]: `source` is `jsonb_to_record` (one
/// update) or `jsonb_to_recordset` (many).
fn apply_sql(source: &str) -> String {
    use super::slots::FREE;
    format!(
        "WITH a AS (SELECT * FROM {source}($1) AS a({APPLY_ARGS})),
         updated AS (
             UPDATE jobs SET
                 state = a.to_state,
                 state_reason = COALESCE(a.new_reason, CASE WHEN a.to_state = state THEN state_reason END),
                 vendor_status = COALESCE(a.new_vendor_status, vendor_status),
                 error = COALESCE(a.new_error, error),
                 vendor_task_id = COALESCE(a.new_vendor_task_id, vendor_task_id),
                 due_at = CASE WHEN a.is_terminal OR a.park_job THEN NULL ELSE COALESCE(a.new_due_at, due_at) END,
                 lease_owner = CASE WHEN a.lease_holder IS NULL THEN lease_owner END,
                 lease_until = CASE WHEN a.lease_holder IS NULL THEN lease_until END,
                 submit_started_at = CASE WHEN a.settle_submit THEN NULL ELSE submit_started_at END,
                 cancel_requested = cancel_requested OR a.request_cancel,
                 callback_seen_at = CASE WHEN a.saw_callback THEN now() ELSE callback_seen_at END,
                 dispatched_at = CASE WHEN a.to_state = 'processing' AND dispatched_at IS NULL THEN now() ELSE dispatched_at END,
                 completed_at = CASE WHEN a.is_terminal THEN now() ELSE completed_at END,
                 attempts = attempts + CASE WHEN a.add_attempt THEN 1 ELSE 0 END,
                 updated_at = now()
             FROM a
             WHERE jobs.id = a.job AND jobs.state = a.from_state
               AND (a.lease_holder IS NULL OR jobs.lease_owner = a.lease_holder)
               AND (NOT a.unless_submitting OR jobs.submit_started_at IS NULL)
             RETURNING {COLUMNS}
         ),
         event AS (
             INSERT INTO job_events (job_id, source, kind, from_state, to_state, reason, message, vendor_payload)
             SELECT updated.id, a.event_source, a.event_kind, a.from_state, a.to_state, a.new_reason,
                    a.event_message, a.event_payload
             FROM updated JOIN a ON a.job = updated.id WHERE a.write_event
         ),
         freed AS (
             UPDATE device_slots d SET {FREE} FROM updated JOIN a ON a.job = updated.id
             WHERE a.free_device IS NOT NULL
               AND d.device = a.free_device AND d.slot = a.free_slot AND d.job_id = updated.id
         ),
         {OUTBOX_CTE}
         SELECT {COLUMNS}, (SELECT p.backend FROM printers p WHERE p.id = updated.printer_id) AS printer_backend
         FROM updated"
    )
}

/// Reads a row the statement of [`apply`] returned and reports the change it made.
fn applied(row: &sqlx::postgres::PgRow, u: &JobUpdate) -> StoreResult<JobRow> {
    let job = JobRow::from_row(row)?;
    if u.from != u.to {
        let backend: Option<String> = row.try_get("printer_backend")?;
        crate::observe::job_changed(&crate::observe::JobChange {
            job_id: job.id,
            printer_id: &job.printer_id,
            backend: backend.as_deref().unwrap_or("unknown"),
            from: u.from,
            to: u.to,
            // An error left from an earlier retry says nothing about a job that printed.
            error: u.error.as_ref().or_else(|| {
                (u.to == JobState::Failed)
                    .then(|| job.error.as_ref().map(|e| &e.0))
                    .flatten()
            }),
            created_at: job.created_at,
        });
    }
    Ok(job)
}

/// Most updates one statement of the [`ApplyWriter`] takes, and how many such statements
/// run at once.
const APPLY_BATCH: usize = 128;
const APPLY_STATEMENTS: usize = 2;

/// The engine's writer of job updates, one per process: updates made at the same moment
/// (vendors' answers to submits arriving together, polls) share one [`apply_many`]
/// statement and one commit (see [`super::batch`]); a lone update is written at once. An
/// update statement has a fixed cost well above its per-job cost (it opens every index of
/// `jobs`, `job_events` and `outbox_events`): 0.6–0.7 ms for one job, measured under the
/// dispatch load in `bench/RESULTS.md`.
///
/// Each update comes with the span of the work that made it: its change is reported (a log
/// line, metrics) in that span, not in the writer's.
pub type ApplyWriter = StoreWriter<(Uuid, JobUpdate, tracing::Span), Option<JobRow>>;

pub fn apply_writer(pool: PgPool) -> ApplyWriter {
    StoreWriter::new(
        pool,
        APPLY_BATCH,
        APPLY_STATEMENTS,
        |pool, conn, updates| Box::pin(apply_each(pool, conn, updates)),
    )
}

/// Applies a batch: the first update of each job in one statement, a later update of the
/// same job after it, on its own, in the order they came; when the statement fails, each
/// update on its own, so that each gets its own answer. A database that cannot be reached
/// fails them all at once.
async fn apply_each(
    pool: PgPool,
    mut conn: PoolConnection<Postgres>,
    updates: Vec<(Uuid, JobUpdate, tracing::Span)>,
) -> Vec<StoreResult<Option<JobRow>>> {
    use tracing::Instrument;
    let batch = OncePerKey::split(updates, |(id, _, _)| *id);
    let applied = match batch.first.as_slice() {
        [(id, update, span)] => apply(&mut conn, *id, update)
            .instrument(span.clone())
            .await
            .map(|row| vec![row]),
        first => {
            let spans: std::collections::HashMap<Uuid, &tracing::Span> =
                first.iter().map(|(id, _, span)| (*id, span)).collect();
            let updates: Vec<(Uuid, &JobUpdate)> =
                first.iter().map(|(id, u, _)| (*id, u)).collect();
            apply_batch(&mut *conn, &updates, |id| {
                spans
                    .get(&id)
                    .map_or_else(tracing::Span::none, |s| (*s).clone())
            })
            .await
            .map(|rows| {
                let mut by_id: std::collections::HashMap<Uuid, JobRow> =
                    rows.into_iter().map(|row| (row.id, row)).collect();
                updates.iter().map(|(id, _)| by_id.remove(id)).collect()
            })
        }
    };
    drop(conn);
    batch
        .answer(applied, |(id, update, span)| {
            let pool = pool.clone();
            Box::pin(async move { apply_on(&pool, id, &update).instrument(span).await })
        })
        .await
}

/// Convenience: [`apply`] on a pooled connection.
pub async fn apply_on(pool: &PgPool, id: Uuid, u: &JobUpdate) -> StoreResult<Option<JobRow>> {
    let mut conn = pool.acquire().await?;
    apply(&mut conn, id, u).await
}

/// Vendor task ids of the other jobs on `device` created around `around` (a day either
/// side), for the reconciler's lookups by time.
pub async fn task_ids_of_device_neighbours(
    pool: &PgPool,
    device: &str,
    job_id: Uuid,
    around: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT j.vendor_task_id FROM jobs j JOIN printers p ON p.id = j.printer_id
         WHERE p.device = $1 AND j.id <> $2 AND j.vendor_task_id IS NOT NULL
           AND j.created_at BETWEEN $3 - interval '1 day' AND $3 + interval '1 day'",
    )
    .bind(device)
    .bind(job_id)
    .bind(around)
    .fetch_all(pool)
    .await?)
}

/// Other jobs on `device` whose submit has no known task and started within `reach` of
/// `started` (either side): a task created by one of them could sit in this job's lookup
/// window, so a lookup by time cannot tell them apart.
pub async fn ambiguous_neighbours(
    conn: &mut PgConnection,
    device: &str,
    job_id: Uuid,
    started: DateTime<Utc>,
    reach: Duration,
) -> StoreResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT j.id FROM jobs j JOIN printers p ON p.id = j.printer_id
         WHERE p.device = $1 AND j.id <> $2
           AND j.submit_started_at IS NOT NULL AND j.vendor_task_id IS NULL
           AND j.submit_started_at BETWEEN $3 - make_interval(secs => $4) AND $3 + make_interval(secs => $4)",
    )
    .bind(device)
    .bind(job_id)
    .bind(started)
    .bind(reach.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?)
}

/// Why a task found by a lookup was not given to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributionRefused {
    /// Another job on the device already holds the task.
    TaskHeldBy(Uuid),
    /// Other submits with unknown outcomes overlap this one's window.
    Ambiguous(Vec<Uuid>),
    /// The job moved on meanwhile (evidence arrived another way).
    JobMoved,
}

/// Gives a task found by a lookup by time to an `unconfirmed` job, only when it is
/// certainly the job's: under a per-device lock (so two lookups on one device cannot both
/// take a task), no other job on the device holds the task, and no other submit with an
/// unknown outcome overlaps the job's window (`reach`, see [`ambiguous_neighbours`]).
pub async fn attribute_found_task(
    pool: &PgPool,
    id: Uuid,
    device: &str,
    started: DateTime<Utc>,
    reach: Duration,
    update: &JobUpdate,
) -> StoreResult<Result<JobRow, AttributionRefused>> {
    let Some(task) = update.vendor_task_id.as_deref() else {
        return Err(StoreError::Corrupt(
            "a lookup attribution without a task id".into(),
        ));
    };
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('print_gateway.device:' || $1, 0))")
        .bind(device)
        .execute(&mut *tx)
        .await?;
    let holder: Option<Uuid> = sqlx::query_scalar(
        "SELECT j.id FROM jobs j JOIN printers p ON p.id = j.printer_id
         WHERE p.device = $1 AND j.vendor_task_id = $2 AND j.id <> $3 LIMIT 1",
    )
    .bind(device)
    .bind(task)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(holder) = holder {
        return Ok(Err(AttributionRefused::TaskHeldBy(holder)));
    }
    let others = ambiguous_neighbours(&mut tx, device, id, started, reach).await?;
    if !others.is_empty() {
        return Ok(Err(AttributionRefused::Ambiguous(others)));
    }
    let Some(row) = apply(&mut tx, id, update).await? else {
        return Ok(Err(AttributionRefused::JobMoved));
    };
    tx.commit().await?;
    Ok(Ok(row))
}

/// The job a vendor task belongs to (for callbacks).
pub async fn find_by_vendor_task(
    pool: &PgPool,
    printer_id: &str,
    vendor_task_id: &str,
) -> StoreResult<Option<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE printer_id = $1 AND vendor_task_id = $2"
    ))
    .bind(printer_id)
    .bind(vendor_task_id)
    .fetch_optional(pool)
    .await?)
}

/// Live jobs per state with the age in seconds of the oldest (pending: since accept;
/// processing: since dispatch; unconfirmed: since its submit), for the metrics gauges.
/// Terminal jobs are counted by counters: a full count would scan the whole history.
/// Every live state is listed, with 0 where there is none.
pub async fn live_stats(pool: &PgPool) -> StoreResult<Vec<(JobState, i64, Option<f64>)>> {
    // The predicate matches the partial indexes on live jobs exactly.
    let counted: Vec<(JobState, i64, Option<f64>)> = sqlx::query_as(
        "SELECT state, count(*),
                extract(epoch FROM now() - min(CASE state
                    WHEN 'pending' THEN created_at
                    WHEN 'processing' THEN COALESCE(dispatched_at, created_at)
                    ELSE COALESCE(submit_started_at, updated_at) END))::float8
         FROM jobs WHERE state IN ('pending', 'processing', 'unconfirmed') GROUP BY state",
    )
    .fetch_all(pool)
    .await?;
    Ok([
        JobState::Pending,
        JobState::Processing,
        JobState::Unconfirmed,
    ]
    .into_iter()
    .map(|state| {
        counted
            .iter()
            .find(|(s, ..)| *s == state)
            .map_or((state, 0, None), |(_, n, age)| (state, *n, *age))
    })
    .collect())
}

/// Records on a job what its document was converted from and how many pages were sent.
pub async fn record_conversion(
    pool: &PgPool,
    job_id: Uuid,
    converted_from: &str,
    pages: i32,
) -> StoreResult<()> {
    sqlx::query("UPDATE jobs SET converted_from = $2, page_count = $3 WHERE id = $1")
        .bind(job_id)
        .bind(converted_from)
        .bind(pages)
        .execute(pool)
        .await?;
    Ok(())
}
