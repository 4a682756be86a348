//! Liveness, readiness and metrics: unauthenticated, for orchestrators and scrapers.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Json, Problem};
use crate::store;

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
            detail,
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
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(counts) = store::jobs::count_live_by_state(&state.pool).await {
        for (job_state, count) in counts {
            metrics::gauge!("print_gateway_jobs", "state" => job_state).set(count as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
