//! `/v1/whoami` for any key; `/v1/api-keys` for operators (`admin` scope): list, create
//! (the secret is shown once), revoke.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{Admin, Caller, SCOPES, Scoped};
use super::error::{ApiError, Json, Path, Problem, Query};
use crate::store;
use crate::store::api_keys::{ApiKeyRow, NewKey};

/// Who a key is.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "tenant": "demo", "scopes": ["jobs:write", "jobs:read"],
    "key_id": "019d2a4e-7f00-7000-8000-000000000001", "key_name": "billing-app",
    "key_prefix": "pgw_AbCdEfGh", "expires_at": null
}))]
pub struct WhoAmI {
    pub tenant: String,
    pub scopes: Vec<String>,
    pub key_id: Uuid,
    pub key_name: String,
    /// The first characters of the key, to tell keys apart.
    pub key_prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The tenant, scopes and name of the key that sends this request.
#[utoipa::path(get, path = "/v1/whoami", tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The calling key", body = WhoAmI),
        (status = 401, description = "Missing, invalid or expired API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        tenant: caller.tenant,
        scopes: caller.scopes,
        key_id: caller.key_id,
        key_name: caller.key_name,
        key_prefix: caller.key_prefix,
        expires_at: caller.key_expires_at,
    })
}

/// An API key as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Last request with this key (recorded to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

impl ApiKeyView {
    fn from_row(row: ApiKeyRow) -> ApiKeyView {
        let state = if row.revoked_at.is_some() {
            "revoked"
        } else if row.expired(Utc::now()) {
            "expired"
        } else {
            "active"
        };
        ApiKeyView {
            id: row.id,
            tenant: row.tenant,
            name: row.name,
            prefix: row.prefix,
            scopes: row.scopes,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            state: state.to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

/// A new key; the secret is in this answer only.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key to send as `Authorization: Bearer <key>`; it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyView,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "tenant": "demo", "name": "billing-app", "scopes": ["jobs:write", "jobs:read"],
    "expires_at": "2030-01-01T00:00:00Z"
}))]
pub struct CreateApiKey {
    /// The tenant the key acts for (default: the calling key's tenant).
    pub tenant: Option<String>,
    /// A name to recognise the key by (1-200 characters).
    pub name: String,
    /// Any of `jobs:write`, `jobs:read`, `printers:admin`, `webhooks:admin`, `admin`.
    pub scopes: Vec<String>,
    /// When the key stops working (default: never).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Only this tenant's keys.
    pub tenant: Option<String>,
}

/// A new key's field that is refused; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidNewKey(String);

impl From<String> for InvalidNewKey {
    fn from(message: String) -> Self {
        InvalidNewKey(message)
    }
}

impl From<&str> for InvalidNewKey {
    fn from(message: &str) -> Self {
        InvalidNewKey(message.to_owned())
    }
}

/// Checks a new key's fields; the message names the field at fault.
pub fn check_new_key(
    tenant: &str,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), InvalidNewKey> {
    if tenant.trim().is_empty() || tenant.len() > 200 {
        return Err("`tenant` must be 1-200 characters.".into());
    }
    if name.trim().is_empty() || name.len() > 200 {
        return Err("`name` must be 1-200 characters.".into());
    }
    if scopes.is_empty() {
        return Err(format!("`scopes` must name at least one of {}.", SCOPES.join(", ")).into());
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(format!("unknown scope `{bad}`; scopes are {}.", SCOPES.join(", ")).into());
    }
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err("`expires_at` is in the past.".into());
    }
    Ok(())
}

/// List API keys (operators: every tenant's, or `?tenant=`).
#[utoipa::path(get, path = "/v1/api-keys", tag = "keys",
    security(("bearer" = [])),
    params(KeyListQuery),
    responses(
        (status = 200, description = "Keys, oldest first (never their secrets)", body = ApiKeyList),
        (status = 401, description = "Missing, invalid or expired API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    _caller: Scoped<Admin>,
    Query(query): Query<KeyListQuery>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let items = store::api_keys::list_for(&state.pool, query.tenant.as_deref())
        .await?
        .into_iter()
        .map(ApiKeyView::from_row)
        .collect();
    Ok(Json(ApiKeyList { items }))
}

/// Create an API key; the answer holds the secret, shown this once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "keys",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedApiKey),
        (status = 401, description = "Missing, invalid or expired API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid tenant, name, scope or expiry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Scoped<Admin>,
    Json(input): Json<CreateApiKey>,
) -> Result<Response, ApiError> {
    let tenant = input.tenant.unwrap_or_else(|| caller.tenant.clone());
    check_new_key(&tenant, &input.name, &input.scopes, input.expires_at)
        .map_err(|detail| ApiError::unprocessable("invalid_field", detail.to_string()))?;
    let (row, key) = store::api_keys::create_key(
        &state.pool,
        &NewKey {
            tenant: &tenant,
            name: input.name.trim(),
            scopes: &input.scopes,
            expires_at: input.expires_at,
        },
    )
    .await?;
    tracing::info!(key_id = %row.id, tenant = %row.tenant, by = %caller.key_id, "API key created");
    let location = format!("/v1/api-keys/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(CreatedApiKey {
            key,
            info: ApiKeyView::from_row(row),
        }),
    )
        .into_response())
}

/// Revoke an API key (it stops working at once).
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, invalid or expired API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live key with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Scoped<Admin>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if store::api_keys::revoke(&state.pool, id).await? {
        // This replica forgets the key before answering (the others by the NOTIFY the
        // revocation fires), so the caller's next request with it is already refused.
        state.keys.invalidate(Some(&id.to_string()));
        tracing::info!(key_id = %id, by = %caller.key_id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("A live API key `{id}`")))
    }
}
