//! Outbound webhooks: tenants' endpoints, the event outbox (written by the state changes
//! themselves, see `jobs::apply` and `printers`), deliveries claimed with
//! `FOR UPDATE SKIP LOCKED`, and the log of every attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::StoreResult;
use crate::secrets_at_rest::{Keyring, endpoint_context};

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// As stored: sealed (`secrets_at_rest`), opened only to sign a delivery.
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str =
    "id, tenant, url, description, event_types, enabled, secret, previous_secret,
    previous_secret_until, failing_since, disabled_reason, created_at, updated_at";

/// What a tenant sets on an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointFields {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

/// Inserts an endpoint; `secret` (in clear) is sealed with `keyring`.
pub async fn insert_endpoint(
    pool: &PgPool,
    keyring: &Keyring,
    tenant: &str,
    fields: &EndpointFields,
    secret: &str,
) -> StoreResult<EndpointRow> {
    let id = Uuid::now_v7();
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "INSERT INTO webhook_endpoints (id, tenant, url, description, event_types, enabled, secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant)
    .bind(&fields.url)
    .bind(&fields.description)
    .bind(&fields.event_types)
    .bind(fields.enabled)
    .bind(keyring.seal(&endpoint_context(id), secret))
    .fetch_one(pool)
    .await?)
}

pub async fn get_endpoint(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> StoreResult<Option<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND tenant = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await?)
}

/// A tenant's endpoints, oldest first (a tenant has a handful).
pub async fn list_endpoints(pool: &PgPool, tenant: &str) -> StoreResult<Vec<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = $1 ORDER BY created_at, id LIMIT 1000"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// Replaces the tenant-set fields. Enabling an endpoint clears its failure marks.
pub async fn update_endpoint(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    fields: &EndpointFields,
) -> StoreResult<Option<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, enabled = $6,
             failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
             disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
             updated_at = now()
         WHERE id = $1 AND tenant = $2 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant)
    .bind(&fields.url)
    .bind(&fields.description)
    .bind(&fields.event_types)
    .bind(fields.enabled)
    .fetch_optional(pool)
    .await?)
}

pub async fn delete_endpoint(pool: &PgPool, tenant: &str, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant = $2")
        .bind(id)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes `secret` (in clear; sealed with `keyring`) the signing secret; the current one
/// keeps signing for `overlap`.
pub async fn rotate_secret(
    pool: &PgPool,
    keyring: &Keyring,
    tenant: &str,
    id: Uuid,
    secret: &str,
    overlap: Duration,
) -> StoreResult<Option<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
             previous_secret_until = now() + make_interval(secs => $4), updated_at = now()
         WHERE id = $1 AND tenant = $2 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant)
    .bind(keyring.seal(&endpoint_context(id), secret))
    .bind(overlap.as_secs_f64())
    .fetch_optional(pool)
    .await?)
}

/// One event of the outbox.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxEventRow {
    pub id: i64,
    pub tenant: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub job_id: Option<Uuid>,
    pub printer_id: Option<String>,
    pub sequence: Option<i64>,
    pub snapshot: Value,
    pub created_at: DateTime<Utc>,
}

const EVENT_COLUMNS: &str = "id, tenant, type, job_id, printer_id, sequence, snapshot, created_at";

/// Writes a `ping` for one endpoint (it goes only there). Returns the event and delivery.
pub async fn insert_ping(
    pool: &PgPool,
    endpoint: &EndpointRow,
) -> StoreResult<(OutboxEventRow, Option<i64>)> {
    let mut tx = pool.begin().await?;
    let event = sqlx::query_as::<_, OutboxEventRow>(&format!(
        "INSERT INTO outbox_events (tenant, type, sequence, snapshot, endpoint_id)
         VALUES ($1, 'ping', 1, jsonb_build_object('endpoint_id', $2::uuid), $2)
         RETURNING {EVENT_COLUMNS}"
    ))
    .bind(&endpoint.tenant)
    .bind(endpoint.id)
    .fetch_one(&mut *tx)
    .await?;
    let delivery: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE event_id = $1 AND endpoint_id = $2",
    )
    .bind(event.id)
    .bind(endpoint.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((event, delivery))
}

/// The events feed's position: the writing transaction's id, then the event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    pub txid: i64,
    pub id: i64,
}

/// One page of a tenant's events in commit-safe order, and the cursor after it.
///
/// Ids are taken before commit, so a later id can commit first; ordering by the writing
/// transaction and showing only events of transactions older than every running one (the
/// snapshot's xmin) means a page never skips an event that commits later.
pub async fn feed(
    pool: &PgPool,
    tenant: &str,
    types: &[String],
    after: Option<FeedCursor>,
    limit: u32,
) -> StoreResult<(Vec<OutboxEventRow>, Option<FeedCursor>)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {EVENT_COLUMNS}, txid::text::bigint AS txid_n FROM outbox_events
         WHERE (tenant = "
    ));
    q.push_bind(tenant)
        .push(" OR tenant IS NULL) AND endpoint_id IS NULL")
        .push(" AND txid < pg_snapshot_xmin(pg_current_snapshot())");
    if !types.is_empty() {
        q.push(" AND type = ANY(").push_bind(types).push(")");
    }
    if let Some(cursor) = after {
        q.push(" AND (txid, id) > (")
            .push_bind(cursor.txid.to_string())
            .push("::xid8, ")
            .push_bind(cursor.id)
            .push(")");
    }
    q.push(" ORDER BY txid, id LIMIT ")
        .push_bind(i64::from(limit));
    #[derive(FromRow)]
    struct FeedRow {
        #[sqlx(flatten)]
        event: OutboxEventRow,
        txid_n: i64,
    }
    let rows = q.build_query_as::<FeedRow>().fetch_all(pool).await?;
    let next = rows.last().map(|r| FeedCursor {
        txid: r.txid_n,
        id: r.event.id,
    });
    Ok((rows.into_iter().map(|r| r.event).collect(), next))
}

/// One row of the delivery log.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: Uuid,
    pub event_id: i64,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i32>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.state, d.attempts,
    d.next_attempt_at, d.last_status, d.last_error, d.last_latency_ms, d.delivered_at, d.created_at";

/// An endpoint's deliveries, newest first (keyset on id), with whether more follow.
pub async fn list_deliveries(
    pool: &PgPool,
    endpoint_id: Uuid,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<(Vec<DeliveryRow>, bool)> {
    let mut rows = sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id
         WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.id < $2)
         ORDER BY d.id DESC LIMIT $3"
    ))
    .bind(endpoint_id)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Every attempt of these deliveries, oldest first.
pub async fn attempts_of(pool: &PgPool, deliveries: &[i64]) -> StoreResult<Vec<AttemptRow>> {
    Ok(sqlx::query_as::<_, AttemptRow>(
        "SELECT id, delivery_id, at, status, latency_ms, error FROM webhook_attempts
         WHERE delivery_id = ANY($1) ORDER BY id",
    )
    .bind(deliveries)
    .fetch_all(pool)
    .await?)
}

pub async fn get_delivery(
    pool: &PgPool,
    endpoint_id: Uuid,
    id: i64,
) -> StoreResult<Option<DeliveryRow>> {
    Ok(sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id
         WHERE d.endpoint_id = $1 AND d.id = $2"
    ))
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Sends a delivery again now (pending, delivered or failed alike); its attempts so far
/// stay in the log. False when it is not the endpoint's.
pub async fn retry_delivery(pool: &PgPool, endpoint_id: Uuid, id: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), lease_owner = NULL
         WHERE endpoint_id = $1 AND id = $2",
    )
    .bind(endpoint_id)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        sqlx::query("SELECT pg_notify('print_gateway_webhooks', '')")
            .execute(pool)
            .await?;
    }
    Ok(done.rows_affected() == 1)
}

/// Enabled endpoints with at least one delivery due now.
pub async fn endpoints_with_due_deliveries(pool: &PgPool) -> StoreResult<Vec<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ep
         WHERE ep.enabled AND EXISTS (
             SELECT 1 FROM webhook_deliveries d
             WHERE d.endpoint_id = ep.id AND d.state = 'pending' AND d.next_attempt_at <= now())"
    ))
    .fetch_all(pool)
    .await?)
}

/// A delivery claimed for one attempt, with its event.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    #[sqlx(flatten)]
    pub event: OutboxEventRow,
}

/// Claims up to `limit` due deliveries of one endpoint under `token` for `lease` (their
/// `next_attempt_at` moves to the lease's end, so a crashed worker's claims come back).
pub async fn claim_deliveries(
    pool: &PgPool,
    endpoint_id: Uuid,
    token: Uuid,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<ClaimedDelivery>> {
    Ok(sqlx::query_as::<_, ClaimedDelivery>(
        "WITH due AS (
             SELECT id FROM webhook_deliveries
             WHERE endpoint_id = $1 AND state = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at, id
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ),
         claimed AS (
             UPDATE webhook_deliveries d SET lease_owner = $2, next_attempt_at = now() + make_interval(secs => $4)
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.attempts, d.event_id
         )
         SELECT c.id AS delivery_id, c.attempts, e.id, e.tenant, e.type, e.job_id, e.printer_id,
                e.sequence, e.snapshot, e.created_at
         FROM claimed c JOIN outbox_events e ON e.id = c.event_id
         ORDER BY e.id",
    )
    .bind(endpoint_id)
    .bind(token)
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub delivered: bool,
    /// When to try again after a failure; `None` when the schedule is exhausted.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Records an attempt (log row, delivery state, endpoint health) in one statement, if the
/// claim is still `token`'s. An exhausted delivery marks its endpoint failing, and one
/// failing for `disable_after` is disabled. Returns false when the claim was lost.
pub async fn record_attempt(
    pool: &PgPool,
    delivery_id: i64,
    token: Uuid,
    outcome: &AttemptOutcome,
    disable_after: Duration,
) -> StoreResult<bool> {
    let recorded: Option<i64> = sqlx::query_scalar(
        "WITH d AS (
             UPDATE webhook_deliveries SET
                 attempts = attempts + 1,
                 state = CASE WHEN $4 THEN 'delivered' WHEN $7::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
                 next_attempt_at = CASE WHEN $4 THEN NULL ELSE $7 END,
                 delivered_at = CASE WHEN $4 THEN now() ELSE delivered_at END,
                 lease_owner = NULL, last_status = $3, last_error = $6, last_latency_ms = $5
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'
             RETURNING id, endpoint_id
         ),
         attempt AS (
             INSERT INTO webhook_attempts (delivery_id, status, latency_ms, error)
             SELECT id, $3, $5, $6 FROM d
         ),
         healthy AS (
             UPDATE webhook_endpoints ep SET failing_since = NULL
             FROM d WHERE $4 AND ep.id = d.endpoint_id AND ep.failing_since IS NOT NULL
         ),
         failing AS (
             UPDATE webhook_endpoints ep SET
                 failing_since = COALESCE(ep.failing_since, now()),
                 enabled = ep.enabled AND COALESCE(ep.failing_since, now()) > now() - make_interval(secs => $8),
                 disabled_reason = CASE WHEN COALESCE(ep.failing_since, now()) > now() - make_interval(secs => $8)
                                        THEN ep.disabled_reason ELSE 'failing' END,
                 updated_at = now()
             FROM d WHERE NOT $4 AND $7::timestamptz IS NULL AND ep.id = d.endpoint_id
         )
         SELECT id FROM d",
    )
    .bind(delivery_id)
    .bind(token)
    .bind(outcome.status)
    .bind(outcome.delivered)
    .bind(outcome.latency_ms)
    .bind(&outcome.error)
    .bind(outcome.retry_at)
    .bind(disable_after.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(recorded.is_some())
}

/// Age of the oldest delivery not yet made (0 when there is none), for metrics.
pub async fn oldest_undelivered_age(pool: &PgPool) -> StoreResult<f64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM webhook_deliveries WHERE state = 'pending'",
    )
    .fetch_one(pool)
    .await?)
}
