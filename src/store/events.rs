//! The job's history: one row per state change (and per recorded refinement).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub job_id: Uuid,
    pub at: DateTime<Utc>,
    pub source: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: String,
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
