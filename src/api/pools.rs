//! `/v1/pools`: printer pools with failover (define, read, change, delete).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Caller, PrintersAdmin, PrintersRead, Scoped};
use super::error::{ApiError, Json, Path, Problem};
use crate::service::pools::PoolRequest;
use crate::store;
use crate::store::pools::PoolRow;

/// How a pool picks a member for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolPolicy {
    /// The first member, in the pool's order, that can print (ordered failover).
    FirstHealthy,
    /// The member that can print with the fewest pending + processing jobs.
    LeastLoaded,
}

impl PoolPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PoolPolicy::FirstHealthy => "first_healthy",
            PoolPolicy::LeastLoaded => "least_loaded",
        }
    }
}

/// A new pool.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "floor-2",
    "display_name": "2nd floor printers",
    "policy": "first_healthy",
    "members": ["demo-lianke", "demo-zhimu"]
}))]
pub struct CreatePool {
    /// A slug: lower-case letters, digits, `-` and `_`; not a printer's id.
    #[schema(min_length = 1, max_length = 64)]
    pub id: String,
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[serde(default = "default_policy")]
    pub policy: PoolPolicy,
    /// Printer ids, in failover order (any backend mix): 1 to 32, each a printer the
    /// tenant may use that takes jobs.
    #[schema(min_items = 1, max_items = 32)]
    pub members: Vec<String>,
}

fn default_policy() -> PoolPolicy {
    PoolPolicy::FirstHealthy
}

/// A pool's new settings (all replaced).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"policy": "least_loaded", "members": ["demo-zhimu", "demo-lianke"]}))]
pub struct UpdatePool {
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    pub policy: PoolPolicy,
    #[schema(min_items = 1, max_items = 32)]
    pub members: Vec<String>,
}

/// A printer pool.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "floor-2", "display_name": "2nd floor printers", "policy": "first_healthy",
    "members": ["demo-lianke", "demo-zhimu"],
    "created_at": "2026-12-04T08:00:00Z", "updated_at": "2026-12-04T08:00:00Z"
}))]
pub struct PoolView {
    pub id: String,
    pub display_name: String,
    pub policy: PoolPolicy,
    /// Printer ids in failover order.
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PoolView {
    fn from_row(row: PoolRow) -> PoolView {
        PoolView {
            id: row.id,
            display_name: row.display_name,
            policy: if row.policy == "least_loaded" {
                PoolPolicy::LeastLoaded
            } else {
                PoolPolicy::FirstHealthy
            },
            members: row.members,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoolList {
    pub items: Vec<PoolView>,
}

/// A pool of the caller's tenant (any tenant's for an `admin` key reading); else 404.
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<PoolRow, ApiError> {
    store::pools::get(&state.pool, id)
        .await?
        .filter(|row| caller.is_admin() || row.owner_tenant == caller.tenant)
        .ok_or_else(|| ApiError::not_found(&format!("Pool `{}`", super::bounds::quote(id))))
}

/// Define a pool.
#[utoipa::path(post, path = "/v1/pools", tag = "pools",
    security(("bearer" = [])),
    request_body = CreatePool,
    responses(
        (status = 201, description = "Created", body = PoolView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken (by a pool or a printer)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or a member that is not a printer the tenant can print on", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_pool(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Json(input): Json<CreatePool>,
) -> Result<Response, ApiError> {
    let row = state
        .service()
        .create_pool(PoolRequest {
            tenant: caller.tenant.clone(),
            id: input.id,
            display_name: input.display_name,
            policy: input.policy.as_str().to_owned(),
            members: input.members,
        })
        .await?;
    let location = format!("/v1/pools/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(PoolView::from_row(row)),
    )
        .into_response())
}

/// List pools.
#[utoipa::path(get, path = "/v1/pools", tag = "pools",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's pools (every tenant's for an `admin` key)", body = PoolList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_pools(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
) -> Result<Json<PoolList>, ApiError> {
    let tenant = (!caller.is_admin()).then_some(caller.tenant.as_str());
    let rows = store::pools::list(&state.pool, tenant).await?;
    Ok(Json(PoolList {
        items: rows.into_iter().map(PoolView::from_row).collect(),
    }))
}

/// Get a pool.
#[utoipa::path(get, path = "/v1/pools/{id}", tag = "pools",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pool id")),
    responses(
        (status = 200, description = "The pool", body = PoolView),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pool", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_pool(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
    Path(id): Path<String>,
) -> Result<Json<PoolView>, ApiError> {
    Ok(Json(PoolView::from_row(load(&state, &caller, &id).await?)))
}

/// Change a pool (its policy, members and name are replaced). Pending jobs follow the new
/// members at their next routing; submitted jobs stay where they are.
#[utoipa::path(put, path = "/v1/pools/{id}", tag = "pools",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pool id")),
    request_body = UpdatePool,
    responses(
        (status = 200, description = "Updated", body = PoolView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pool", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or member", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_pool(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
    Json(input): Json<UpdatePool>,
) -> Result<Json<PoolView>, ApiError> {
    let row = load(&state, &caller, &id).await?;
    if row.owner_tenant != caller.tenant {
        return Err(ApiError::not_found(&format!(
            "Pool `{}`",
            super::bounds::quote(&id)
        )));
    }
    let row = state
        .service()
        .update_pool(PoolRequest {
            tenant: caller.tenant.clone(),
            id,
            display_name: input.display_name.or(Some(row.display_name)),
            policy: input.policy.as_str().to_owned(),
            members: input.members,
        })
        .await?;
    Ok(Json(PoolView::from_row(row)))
}

/// Delete a pool. Its jobs keep its id in their history and stay on their members.
#[utoipa::path(delete, path = "/v1/pools/{id}", tag = "pools",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pool id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pool", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_pool(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service().delete_pool(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
