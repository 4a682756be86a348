//! `Authorization: Bearer <key>`: the key's tenant and scopes, checked per handler.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::store;

/// Submit and cancel jobs.
pub const JOBS_WRITE: &str = "jobs:write";
/// Read jobs, printers, capabilities, status.
pub const JOBS_READ: &str = "jobs:read";
/// Register and change the tenant's own printers.
pub const PRINTERS_ADMIN: &str = "printers:admin";
/// Manage webhook subscriptions.
pub const WEBHOOKS_ADMIN: &str = "webhooks:admin";
/// The operator: manages API keys and reads across tenants.
pub const ADMIN: &str = "admin";

/// Every scope a key may have.
pub const SCOPES: [&str; 5] = [JOBS_WRITE, JOBS_READ, PRINTERS_ADMIN, WEBHOOKS_ADMIN, ADMIN];

/// A key's last use is written at most this often (not on every request).
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// The caller behind a valid API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub scopes: Vec<String>,
    pub key_id: uuid::Uuid,
    pub key_name: String,
    pub key_prefix: String,
    pub key_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Caller {
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope))
        }
    }

    pub fn require_any(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if scopes
            .iter()
            .any(|wanted| self.scopes.iter().any(|s| s == wanted))
        {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                scopes.first().copied().unwrap_or("jobs:read"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("Send an API key as `Authorization: Bearer <key>`.")
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("The Authorization header must be `Bearer <key>`.")
            })?;
        let row = store::api_keys::find_live(&state.pool, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("This API key is unknown or revoked."))?;
        let now = chrono::Utc::now();
        if let Some(at) = row.expires_at.filter(|_| row.expired(now)) {
            return Err(ApiError::unauthorized(format!(
                "This API key (`{}…`) expired at {}; ask an operator for a new one (POST /v1/api-keys).",
                row.prefix,
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        if row
            .last_used_at
            .is_none_or(|at| (now - at).num_seconds() >= LAST_USED_RESOLUTION_SECS)
        {
            // Off the request's path: a failed write only loses a timestamp.
            let pool = state.pool.clone();
            let id = row.id;
            tokio::spawn(async move {
                if let Err(err) = store::api_keys::touch(&pool, id).await {
                    tracing::debug!(error = %err, "could not record a key's last use");
                }
            });
        }
        Ok(Caller {
            tenant: row.tenant,
            scopes: row.scopes,
            key_id: row.id,
            key_name: row.name,
            key_prefix: row.prefix,
            key_expires_at: row.expires_at,
        })
    }
}
