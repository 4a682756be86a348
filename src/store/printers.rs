//! Printers, their cached capabilities and their health (breaker) columns.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};

use super::StoreResult;
use super::change_cache::ChangeCache;
use crate::domain::{Capabilities, JobError, JobOptions};
use crate::observe::BreakerChange;
use crate::secrets_at_rest::{self, Keyring};

/// A printer row (also read back from an outbox event's snapshot, which carries secret names
/// only, without capabilities).
#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct PrinterRow {
    pub id: String,
    pub display_name: String,
    pub backend: String,
    pub locator: Value,
    /// As stored: each value sealed (`secrets_at_rest`), names readable. Opened only for a
    /// vendor call (`engine::printer_context`).
    pub secrets: Value,
    pub default_options: Json<JobOptions>,
    pub enabled: bool,
    pub device: String,
    pub max_in_flight: i32,
    #[serde(default)]
    pub capabilities: Option<Json<Capabilities>>,
    pub capabilities_at: Option<DateTime<Utc>>,
    pub online: Option<bool>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub breaker_failures: i32,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub consecutive_failures: i32,
    pub last_error_code: Option<String>,
    pub last_error_vendor_code: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub status_checked_at: Option<DateTime<Utc>>,
    /// The tenant whose `printers:admin` keys manage the printer.
    #[serde(default)]
    pub owner_tenant: String,
    /// Other tenants that may see the printer and print on it.
    #[serde(default)]
    pub shared_with: Vec<String>,
}

impl PrinterRow {
    /// Whether `tenant` may see this printer and print on it (owner or shared with).
    pub fn usable_by(&self, tenant: &str) -> bool {
        self.owner_tenant == tenant || self.shared_with.iter().any(|t| t == tenant)
    }
}

const COLUMNS: &str = "id, display_name, backend, locator, secrets, default_options, enabled, device, max_in_flight,
    capabilities, capabilities_at, online, last_error, last_error_at, breaker_failures, breaker_open_until,
    created_at, updated_at, consecutive_failures, last_error_code, last_error_vendor_code, last_seen_at,
    status_checked_at, owner_tenant, shared_with";

/// The channel the `printers_changed` trigger signals on (payload: the printer's id).
pub const CHANGED_CHANNEL: &str = "print_gateway_printers";

/// Printer rows as the accept path checks them (owner, sharing, enabled, backend, locator,
/// defaults, capabilities), remembered per replica; the trigger makes every replica forget
/// a printer when one of those changes. Its health columns (online, breaker) may be stale:
/// nothing that reads them uses this cache.
pub type PrinterCache = ChangeCache<PrinterRow>;

/// A printer cache keeping rows for `ttl`; zero disables it.
pub fn cache(ttl: Duration) -> PrinterCache {
    ChangeCache::new(ttl, CHANGED_CHANNEL, |row, id| row.id == id)
}

/// A printer's settings for accepting a job: from `cache` when fresh, else read (and
/// remembered).
pub async fn get_settings(
    pool: &PgPool,
    cache: &PrinterCache,
    id: &str,
) -> StoreResult<Option<PrinterRow>> {
    if let Some(row) = cache.get(id.as_bytes()) {
        return Ok(Some(row));
    }
    let generation = cache.generation();
    let row = get(pool, id).await?;
    if let Some(row) = &row {
        cache.put(id.as_bytes().to_vec(), row.clone(), generation);
    }
    Ok(row)
}

/// Everything an operator sets on a printer.
#[derive(Debug, Clone)]
pub struct PrinterFields {
    pub id: String,
    pub display_name: String,
    pub backend: String,
    pub locator: Value,
    /// In clear: sealed by `insert` and `update`.
    pub secrets: Value,
    pub default_options: JobOptions,
    pub enabled: bool,
    pub device: String,
    pub max_in_flight: i32,
    pub owner_tenant: String,
    pub shared_with: Vec<String>,
}

/// Inserts a printer, its secrets sealed with `keyring`; `None` when the id is taken.
pub async fn insert(
    pool: &PgPool,
    keyring: &Keyring,
    p: &PrinterFields,
) -> StoreResult<Option<PrinterRow>> {
    Ok(sqlx::query_as::<_, PrinterRow>(&format!(
        "INSERT INTO printers (id, display_name, backend, locator, secrets, default_options, enabled, device, max_in_flight,
             owner_tenant, shared_with)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(&p.id)
    .bind(&p.display_name)
    .bind(&p.backend)
    .bind(&p.locator)
    .bind(keyring.seal_printer_secrets(&p.id, &p.secrets))
    .bind(Json(&p.default_options))
    .bind(p.enabled)
    .bind(&p.device)
    .bind(p.max_in_flight)
    .bind(&p.owner_tenant)
    .bind(&p.shared_with)
    .fetch_optional(pool)
    .await?)
}

/// Replaces the operator-set fields of an existing printer. Capabilities are dropped when
/// the locator changed (they may describe another printer now). The secrets (given in
/// clear) are sealed with `keyring`.
pub async fn update(
    pool: &PgPool,
    keyring: &Keyring,
    p: &PrinterFields,
) -> StoreResult<Option<PrinterRow>> {
    let fields = PrinterFields {
        secrets: keyring.seal_printer_secrets(&p.id, &p.secrets),
        ..p.clone()
    };
    let mut conn = pool.acquire().await?;
    update_on(&mut conn, &fields).await
}

/// Applies secret changes to `secrets`: a key set to `null` is removed, any other is set.
pub fn merge_secrets(secrets: &mut Value, changes: &Value) {
    if let (Some(target), Some(changes)) = (secrets.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            if value.is_null() {
                target.remove(key);
            } else {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// [`update`], with the secrets taken from the row as it is now, under a row lock, and
/// `secret_changes` applied to them: a secret written meanwhile by someone else (a WeCom
/// bind storing the device secret) is kept, never overwritten with an older read.
/// `p.secrets` is not used. The stored values are sealed already; the changes (in clear)
/// are sealed with `keyring` before they are merged, and a stored value still in clear
/// (written before keys were configured) is sealed too.
pub async fn update_keeping_secrets(
    pool: &PgPool,
    keyring: &Keyring,
    p: &PrinterFields,
    secret_changes: Option<&Value>,
) -> StoreResult<Option<PrinterRow>> {
    let mut tx = pool.begin().await?;
    let current: Option<Value> = sqlx::query_scalar(
        "SELECT secrets FROM printers WHERE id = $1 AND backend = $2 FOR UPDATE",
    )
    .bind(&p.id)
    .bind(&p.backend)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut secrets) = current else {
        return Ok(None);
    };
    if let Some(changes) = secret_changes {
        merge_secrets(&mut secrets, &seal_changes(keyring, &p.id, changes));
    }
    if let Some(map) = secrets.as_object_mut() {
        for (name, value) in map.iter_mut() {
            let clear = match &*value {
                Value::String(s) if secrets_at_rest::is_sealed(s) => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            *value =
                Value::String(keyring.seal(&secrets_at_rest::printer_context(&p.id, name), &clear));
        }
    }
    let fields = PrinterFields {
        secrets,
        ..p.clone()
    };
    let row = update_on(&mut tx, &fields).await?;
    tx.commit().await?;
    Ok(row)
}

/// Secret changes with each value sealed; a `null` (remove) stays `null`.
fn seal_changes(keyring: &Keyring, printer_id: &str, changes: &Value) -> Value {
    let Some(map) = changes.as_object() else {
        return changes.clone();
    };
    Value::Object(
        map.iter()
            .map(|(name, value)| {
                let sealed = match value {
                    Value::Null => Value::Null,
                    Value::String(s) => Value::String(
                        keyring.seal(&secrets_at_rest::printer_context(printer_id, name), s),
                    ),
                    other => Value::String(keyring.seal(
                        &secrets_at_rest::printer_context(printer_id, name),
                        &other.to_string(),
                    )),
                };
                (name.clone(), sealed)
            })
            .collect(),
    )
}

async fn update_on(conn: &mut PgConnection, p: &PrinterFields) -> StoreResult<Option<PrinterRow>> {
    Ok(sqlx::query_as::<_, PrinterRow>(&format!(
        "UPDATE printers SET display_name = $2, locator = $4, secrets = $5, default_options = $6, enabled = $7,
             device = $8, max_in_flight = $9, shared_with = $10, updated_at = now(),
             capabilities = CASE WHEN locator = $4 THEN capabilities END,
             capabilities_raw = CASE WHEN locator = $4 THEN capabilities_raw END,
             capabilities_at = CASE WHEN locator = $4 THEN capabilities_at END
         WHERE id = $1 AND backend = $3 RETURNING {COLUMNS}"
    ))
    .bind(&p.id)
    .bind(&p.display_name)
    .bind(&p.backend)
    .bind(&p.locator)
    .bind(&p.secrets)
    .bind(Json(&p.default_options))
    .bind(p.enabled)
    .bind(&p.device)
    .bind(p.max_in_flight)
    .bind(&p.shared_with)
    .fetch_optional(conn)
    .await?)
}

pub async fn get(pool: &PgPool, id: &str) -> StoreResult<Option<PrinterRow>> {
    Ok(
        sqlx::query_as::<_, PrinterRow>(&format!("SELECT {COLUMNS} FROM printers WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The printers of `ids` that exist, by id (`ids` may repeat).
pub async fn get_many<'a>(
    pool: &PgPool,
    ids: impl IntoIterator<Item = &'a str>,
) -> StoreResult<std::collections::HashMap<String, PrinterRow>> {
    get_many_of(pool, ids, COLUMNS).await
}

/// As [`get_many`], without the capability documents (`capabilities` is `None`): for work
/// that only calls the vendor about tasks already submitted (confirming callbacks), where
/// a batch's capability documents were most of what the read carried and parsed.
pub async fn get_many_for_task_calls<'a>(
    pool: &PgPool,
    ids: impl IntoIterator<Item = &'a str>,
) -> StoreResult<std::collections::HashMap<String, PrinterRow>> {
    static COLUMNS_WITHOUT_CAPABILITIES: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| {
            COLUMNS.replacen("capabilities,", "NULL::jsonb AS capabilities,", 1)
        });
    get_many_of(pool, ids, &COLUMNS_WITHOUT_CAPABILITIES).await
}

async fn get_many_of<'a>(
    pool: &PgPool,
    ids: impl IntoIterator<Item = &'a str>,
    columns: &str,
) -> StoreResult<std::collections::HashMap<String, PrinterRow>> {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query_as::<_, PrinterRow>(&format!(
        "SELECT {columns} FROM printers WHERE id = ANY($1)"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|p| (p.id.clone(), p)).collect())
}

pub async fn get_in(conn: &mut PgConnection, id: &str) -> StoreResult<Option<PrinterRow>> {
    Ok(
        sqlx::query_as::<_, PrinterRow>(&format!("SELECT {COLUMNS} FROM printers WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn list(pool: &PgPool) -> StoreResult<Vec<PrinterRow>> {
    Ok(
        sqlx::query_as::<_, PrinterRow>(&format!("SELECT {COLUMNS} FROM printers ORDER BY id"))
            .fetch_all(pool)
            .await?,
    )
}

/// The printers `tenant` owns or that are shared with it.
pub async fn list_usable_by(pool: &PgPool, tenant: &str) -> StoreResult<Vec<PrinterRow>> {
    Ok(sqlx::query_as::<_, PrinterRow>(&format!(
        "SELECT {COLUMNS} FROM printers WHERE owner_tenant = $1 OR $1 = ANY (shared_with) ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await?)
}

/// What deleting a printer did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    HasJobs,
}

pub async fn delete(pool: &PgPool, id: &str) -> StoreResult<Deleted> {
    let has_jobs: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE printer_id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?;
    if has_jobs {
        return Ok(Deleted::HasJobs);
    }
    match sqlx::query("DELETE FROM printers WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
    {
        Ok(done) if done.rows_affected() == 1 => Ok(Deleted::Yes),
        Ok(_) => Ok(Deleted::NotFound),
        // a job arrived between the check and the delete
        Err(err)
            if err
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| c == "23503") =>
        {
            Ok(Deleted::HasJobs)
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn save_capabilities(
    pool: &PgPool,
    id: &str,
    caps: &Capabilities,
    raw: &Value,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE printers SET capabilities = $2, capabilities_raw = $3, capabilities_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(Json(caps))
    .bind(raw)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records what a status check said: online or not, and when. An online printer is seen
/// now. A change of the online state is reported (offline from anything, online again
/// after offline).
pub async fn save_online(pool: &PgPool, id: &str, online: Option<bool>) -> StoreResult<()> {
    let changed: Option<(Option<bool>, String)> = sqlx::query_as(
        "WITH old AS (SELECT id, online FROM printers WHERE id = $1 FOR UPDATE)
         UPDATE printers p SET online = COALESCE($2, p.online), status_checked_at = now(),
             last_seen_at = CASE WHEN $2 THEN now() ELSE p.last_seen_at END
         FROM old WHERE p.id = old.id
         RETURNING old.online, p.backend",
    )
    .bind(id)
    .bind(online)
    .fetch_optional(pool)
    .await?;
    if let (Some((was, backend)), Some(now)) = (changed, online)
        && let Some(event) = report_online_change(id, &backend, was, now)
    {
        printer_event(pool, id, event).await?;
    }
    Ok(())
}

/// Reports an online change (metrics, the WARN line) and returns the outbox event type.
fn report_online_change(
    id: &str,
    backend: &str,
    was: Option<bool>,
    now: bool,
) -> Option<&'static str> {
    match (was, now) {
        (Some(true) | None, false) => {
            crate::observe::online_changed(id, backend, false);
            Some("printer.offline")
        }
        (Some(false), true) => {
            crate::observe::online_changed(id, backend, true);
            Some("printer.online")
        }
        _ => None,
    }
}

/// Writes a printer event (`printer.offline`, `printer.circuit_opened`, …) to the outbox,
/// with the printer as it is now and the names of its secrets, never their values.
/// A printer event belongs to the printer's owner tenant: other tenants' endpoints never
/// see it (not even those it is shared with, which would learn its sharing list).
async fn printer_event(pool: &PgPool, id: &str, event_type: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox_events (tenant, type, printer_id, snapshot)
         SELECT p.owner_tenant, $2, p.id,
                (to_jsonb(p) - 'secrets' - 'capabilities_raw' - 'capabilities')
                || jsonb_build_object('secrets', COALESCE(
                    (SELECT jsonb_object_agg(k, 'null'::jsonb) FROM jsonb_object_keys(p.secrets) AS k),
                    '{}'::jsonb))
         FROM printers p WHERE p.id = $1",
    )
    .bind(id)
    .bind(event_type)
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims the status check of printers not checked for `every`: at most `limit`, each
/// claimed by one replica (the claim is the `status_checked_at` stamp).
pub async fn claim_status_checks(
    pool: &PgPool,
    every: Duration,
    limit: i64,
) -> StoreResult<Vec<PrinterRow>> {
    Ok(sqlx::query_as::<_, PrinterRow>(&format!(
        "WITH due AS (
             SELECT id FROM printers
             WHERE enabled AND (status_checked_at IS NULL OR status_checked_at <= now() - make_interval(secs => $1))
             ORDER BY status_checked_at NULLS FIRST LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE printers SET status_checked_at = now() FROM due WHERE printers.id = due.id
         RETURNING {}",
        COLUMNS
            .split(',')
            .map(|c| format!("printers.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(every.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A printer call worked (a task printed, a status check answered): the failure counts
/// reset, the breaker closes, the printer is online and seen now. Cheap when nothing
/// changes (the `last_seen_at` stamp is refreshed at most every 10 s).
pub async fn record_success(pool: &PgPool, id: &str) -> StoreResult<()> {
    record_successes(pool, &[id.to_owned()]).await
}

/// [`record_success`] for several printers in one statement (a batch of callbacks).
pub async fn record_successes(pool: &PgPool, ids: &[String]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let changed: Vec<(String, Option<bool>, bool, String)> = sqlx::query_as(
        "WITH old AS (
             SELECT id, online, breaker_open_until FROM printers
             WHERE id = ANY($1) AND (breaker_failures <> 0 OR breaker_open_until IS NOT NULL
                 OR consecutive_failures <> 0 OR online IS DISTINCT FROM true
                 OR last_seen_at IS NULL OR last_seen_at < now() - interval '10 seconds')
             ORDER BY id
             FOR UPDATE
         )
         UPDATE printers p SET breaker_failures = 0, breaker_open_until = NULL,
             consecutive_failures = 0, online = true, last_seen_at = now()
         FROM old WHERE p.id = old.id
         RETURNING p.id, old.online, old.breaker_open_until IS NOT NULL, p.backend",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    for (id, was_online, was_open, backend) in changed {
        if was_open {
            crate::observe::breaker_changed(&id, &backend, BreakerChange::Closed, None);
            printer_event(pool, &id, "printer.circuit_closed").await?;
        }
        if let Some(event) = report_online_change(&id, &backend, was_online, true) {
            printer_event(pool, &id, event).await?;
        }
    }
    Ok(())
}

/// What a printer failure was: the neutral code, the vendor's code and the message.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub code: &'a str,
    pub vendor_code: Option<&'a str>,
    pub message: &'a str,
}

impl<'a> Failure<'a> {
    pub fn of(error: &'a JobError) -> Failure<'a> {
        Failure {
            code: error.code.as_str(),
            vendor_code: error.vendor_code.as_deref(),
            message: &error.message,
        }
    }
}

/// How a failure counts toward the breaker.
#[derive(Debug, Clone, Copy)]
pub enum BreakerEffect {
    /// Health only (an authentication failure: the breaker would not help).
    None,
    /// One more consecutive failure; the breaker opens at `threshold`.
    Count { threshold: i32, cooldown: Duration },
    /// The vendor suspended the device: the breaker opens now.
    Open { threshold: i32, cooldown: Duration },
}

/// A printer call failed: recorded in its health, counted toward its breaker as `effect`
/// says. Returns the breaker's failure count. The breaker opening is reported once.
pub async fn record_failure(
    pool: &PgPool,
    id: &str,
    failure: Failure<'_>,
    effect: BreakerEffect,
) -> StoreResult<i32> {
    let (mode, threshold, cooldown) = match effect {
        BreakerEffect::None => (0, i32::MAX, Duration::ZERO),
        BreakerEffect::Count {
            threshold,
            cooldown,
        } => (1, threshold, cooldown),
        BreakerEffect::Open {
            threshold,
            cooldown,
        } => (2, threshold, cooldown),
    };
    let row: Option<(i32, Option<DateTime<Utc>>, bool, String)> = sqlx::query_as(
        "WITH old AS (SELECT id, breaker_open_until FROM printers WHERE id = $1 FOR UPDATE),
         next AS (
             SELECT p.id, CASE $5::int WHEN 0 THEN p.breaker_failures
                                       WHEN 1 THEN p.breaker_failures + 1
                                       ELSE GREATEST(p.breaker_failures + 1, $3) END AS failures
             FROM printers p JOIN old ON old.id = p.id
         )
         UPDATE printers p SET breaker_failures = next.failures,
             breaker_open_until = CASE
                 WHEN $5::int = 2 THEN now() + make_interval(secs => $4)
                 WHEN $5::int = 1 AND next.failures >= $3 THEN now() + make_interval(secs => $4)
                 ELSE p.breaker_open_until END,
             consecutive_failures = p.consecutive_failures + 1,
             last_error = $2, last_error_at = now(), last_error_code = $6, last_error_vendor_code = $7
         FROM old, next WHERE p.id = old.id AND next.id = old.id
         RETURNING p.breaker_failures, p.breaker_open_until, old.breaker_open_until IS NOT NULL, p.backend",
    )
    .bind(id)
    .bind(failure.message)
    .bind(threshold)
    .bind(cooldown.as_secs_f64())
    .bind(mode)
    .bind(failure.code)
    .bind(failure.vendor_code)
    .fetch_optional(pool)
    .await?;
    let Some((failures, open_until, was_open, backend)) = row else {
        return Ok(0);
    };
    let opened_now = match effect {
        BreakerEffect::None => false,
        // A suspension re-arms an open breaker; it is a change only if it was closed.
        BreakerEffect::Count { .. } | BreakerEffect::Open { .. } => {
            !was_open && open_until.is_some()
        }
    };
    if opened_now {
        crate::observe::breaker_changed(
            id,
            &backend,
            BreakerChange::Opened {
                until: open_until,
                failures,
            },
            Some((failure.code, failure.vendor_code)),
        );
        printer_event(pool, id, "printer.circuit_opened").await?;
    }
    Ok(failures)
}

/// Jobs waiting on each printer: (printer id, pending, processing, unconfirmed). Only
/// printers with live jobs appear; `only` narrows to some printers.
pub async fn queue_depths(
    pool: &PgPool,
    only: Option<&[String]>,
) -> StoreResult<Vec<(String, i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT printer_id,
                count(*) FILTER (WHERE state = 'pending'),
                count(*) FILTER (WHERE state = 'processing'),
                count(*) FILTER (WHERE state = 'unconfirmed')
         FROM jobs
         WHERE state IN ('pending', 'processing', 'unconfirmed')
           AND ($1::text[] IS NULL OR printer_id = ANY($1))
         GROUP BY printer_id",
    )
    .bind(only)
    .fetch_all(pool)
    .await?)
}

/// Every printer's circuit and online state, for the per-printer gauges: (id, backend,
/// circuit 0 closed / 1 half-open / 2 open, online).
pub async fn breaker_states(
    pool: &PgPool,
    threshold: i32,
) -> StoreResult<Vec<(String, String, i32, Option<bool>)>> {
    Ok(sqlx::query_as(
        "SELECT id, backend,
                CASE WHEN breaker_failures < $1 THEN 0
                     WHEN breaker_open_until > now() THEN 2 ELSE 1 END,
                online
         FROM printers ORDER BY id",
    )
    .bind(threshold)
    .fetch_all(pool)
    .await?)
}

/// Counts of printers by circuit (closed, half_open, open) and online (true, false,
/// unknown) state, and the total.
pub async fn state_counts(pool: &PgPool, threshold: i32) -> StoreResult<[i64; 7]> {
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE breaker_failures < $1),
                count(*) FILTER (WHERE breaker_failures >= $1 AND (breaker_open_until IS NULL OR breaker_open_until <= now())),
                count(*) FILTER (WHERE breaker_failures >= $1 AND breaker_open_until > now()),
                count(*) FILTER (WHERE online),
                count(*) FILTER (WHERE NOT online),
                count(*) FILTER (WHERE online IS NULL),
                count(*)
         FROM printers",
    )
    .bind(threshold)
    .fetch_one(pool)
    .await?;
    Ok([row.0, row.1, row.2, row.3, row.4, row.5, row.6])
}

/// For a half-open breaker: takes the single trial call. False when another worker has it.
pub async fn take_breaker_trial(
    pool: &PgPool,
    id: &str,
    threshold: i32,
    cooldown: Duration,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE printers SET breaker_open_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND breaker_failures >= $2 AND (breaker_open_until IS NULL OR breaker_open_until <= now())",
    )
    .bind(id)
    .bind(threshold)
    .bind(cooldown.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
