//! Printers, their cached capabilities and their health (breaker) columns.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};

use super::StoreResult;
use crate::domain::{Capabilities, JobOptions};

#[derive(Debug, Clone, FromRow)]
pub struct PrinterRow {
    pub id: String,
    pub display_name: String,
    pub backend: String,
    pub locator: Value,
    pub secrets: Value,
    pub default_options: Json<JobOptions>,
    pub enabled: bool,
    pub device: String,
    pub max_in_flight: i32,
    pub capabilities: Option<Json<Capabilities>>,
    pub capabilities_at: Option<DateTime<Utc>>,
    pub online: Option<bool>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub breaker_failures: i32,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The tenant whose `printers:admin` keys manage the printer.
    pub owner_tenant: String,
    /// Other tenants that may see the printer and print on it.
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
    created_at, updated_at, owner_tenant, shared_with";

/// Everything an operator sets on a printer.
#[derive(Debug, Clone)]
pub struct PrinterFields {
    pub id: String,
    pub display_name: String,
    pub backend: String,
    pub locator: Value,
    pub secrets: Value,
    pub default_options: JobOptions,
    pub enabled: bool,
    pub device: String,
    pub max_in_flight: i32,
    pub owner_tenant: String,
    pub shared_with: Vec<String>,
}

/// Inserts a printer; `None` when the id is taken.
pub async fn insert(pool: &PgPool, p: &PrinterFields) -> StoreResult<Option<PrinterRow>> {
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
    .bind(&p.secrets)
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
/// the locator changed (they may describe another printer now).
pub async fn update(pool: &PgPool, p: &PrinterFields) -> StoreResult<Option<PrinterRow>> {
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
    .fetch_optional(pool)
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

pub async fn save_online(pool: &PgPool, id: &str, online: Option<bool>) -> StoreResult<()> {
    sqlx::query("UPDATE printers SET online = $2 WHERE id = $1")
        .bind(id)
        .bind(online)
        .execute(pool)
        .await?;
    Ok(())
}

/// A printer call worked: the breaker closes.
pub async fn record_success(pool: &PgPool, id: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE printers SET breaker_failures = 0, breaker_open_until = NULL
         WHERE id = $1 AND (breaker_failures <> 0 OR breaker_open_until IS NOT NULL)",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A printer call failed: count it, and open the breaker at `threshold` failures.
/// Returns the failure count.
pub async fn record_failure(
    pool: &PgPool,
    id: &str,
    message: &str,
    threshold: i32,
    cooldown: Duration,
) -> StoreResult<i32> {
    Ok(sqlx::query_scalar(
        "UPDATE printers SET breaker_failures = breaker_failures + 1,
             breaker_open_until = CASE WHEN breaker_failures + 1 >= $3
                 THEN now() + make_interval(secs => $4) ELSE breaker_open_until END,
             last_error = $2, last_error_at = now()
         WHERE id = $1 RETURNING breaker_failures",
    )
    .bind(id)
    .bind(message)
    .bind(threshold)
    .bind(cooldown.as_secs_f64())
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
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

/// The vendor suspended the device: the breaker opens now, whatever the count was.
pub async fn open_breaker(
    pool: &PgPool,
    id: &str,
    message: &str,
    threshold: i32,
    cooldown: Duration,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE printers SET breaker_failures = GREATEST(breaker_failures + 1, $3),
             breaker_open_until = now() + make_interval(secs => $4),
             last_error = $2, last_error_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(message)
    .bind(threshold)
    .bind(cooldown.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}
