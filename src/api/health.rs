//! Liveness, readiness and metrics: unauthenticated, for orchestrators and scrapers.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Json, Problem};
use crate::observe;
use crate::store;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    // Answer within a second either way: an orchestrator's probe must not hang on an
    // unreachable database.
    match tokio::time::timeout(READYZ_TIMEOUT, store::readiness(&state.pool)).await {
        Ok(Ok(())) => Ok(Json(Health { status: "ready" })),
        Ok(Err(detail)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            detail.to_string(),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "The database did not answer within a second.",
        )),
    }
}

const READYZ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// Prometheus metrics.
///
/// Counters and histograms are this process's; the gauges read from the database (jobs
/// by state, oldest ages, printers) are refreshed by a scrape at most every
/// `METRICS_REFRESH_MS`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Held through the render, so a scrape shows the values its own refresh set.
    let mut last = LAST_REFRESH.lock().await;
    refresh_gauges(&state, &mut last).await;
    state.metrics.run_upkeep();
    let text = state.metrics.render();
    drop(last);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// When the database gauges were last refreshed (one refresh at a time per process).
static LAST_REFRESH: tokio::sync::Mutex<Option<Instant>> = tokio::sync::Mutex::const_new(None);

async fn refresh_gauges(state: &AppState, last: &mut Option<Instant>) {
    let every = Duration::from_millis(state.config.metrics_refresh_ms);
    observe::db_pool(
        state.pool.size(),
        state.pool.num_idle(),
        state.config.database_max_connections,
    );
    if last.is_some_and(|at| at.elapsed() < every) {
        return;
    }
    let threshold = state.engine.settings().breaker_threshold;
    let refreshed = async {
        for (job_state, count, oldest) in store::jobs::live_stats(&state.pool).await? {
            observe::live_jobs(job_state, count, oldest);
        }
        let [closed, half_open, open, online, offline, unknown, total] =
            store::printers::state_counts(&state.pool, threshold).await?;
        observe::printers_by_circuit("closed", closed);
        observe::printers_by_circuit("half_open", half_open);
        observe::printers_by_circuit("open", open);
        observe::printers_by_online("true", online);
        observe::printers_by_online("false", offline);
        observe::printers_by_online("unknown", unknown);
        // Per-printer series only while their number stays small (label cardinality).
        if total <= i64::from(state.config.metrics_printer_labels_max) {
            for (id, backend, circuit, online) in
                store::printers::breaker_states(&state.pool, threshold).await?
            {
                observe::printer_state(&id, &backend, circuit.clamp(0, 2) as u8, online);
            }
        }
        Ok::<(), store::StoreError>(())
    };
    // A scrape answers in time even when Postgres does not: then `db_up` says 0.
    let refreshed = match tokio::time::timeout(Duration::from_secs(2), refreshed).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("the database did not answer within 2 s".to_owned()),
    };
    if let Err(err) = &refreshed {
        tracing::warn!(error = %err, "metrics: the database gauges could not be refreshed");
    }
    observe::db_up(refreshed.is_ok());
    *last = Some(Instant::now());
}
