//! The job's history: one row per state change (and per recorded refinement).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{EventSource, JobState};

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub job_id: Uuid,
    pub at: DateTime<Utc>,
    pub source: EventSource,
    pub kind: String,
    pub from_state: Option<JobState>,
    pub to_state: JobState,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub vendor_payload: Option<Value>,
}

pub async fn for_job(pool: &PgPool, job_id: Uuid) -> StoreResult<Vec<EventRow>> {
    Ok(sqlx::query_as::<_, EventRow>(
        "SELECT id, job_id, at, source, kind, from_state, to_state, reason, message, vendor_payload
         FROM job_events WHERE job_id = $1 ORDER BY id",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await?)
}

/// Records something that happened to a job without changing its state (e.g. a finished
/// job's outcome reported back to WeCom).
pub async fn append<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    job_id: Uuid,
    source: EventSource,
    kind: &str,
    state: JobState,
    message: Option<&str>,
    vendor_payload: Option<&Value>,
) -> StoreResult<()> {
    let vendor_payload = vendor_payload.map(super::storable::json);
    sqlx::query(
        "INSERT INTO job_events (job_id, source, kind, from_state, to_state, message, vendor_payload)
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
    )
    .bind(job_id)
    .bind(source.as_str())
    .bind(kind)
    .bind(state.as_str())
    .bind(message.map(super::storable::text))
    .bind(vendor_payload.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}
