//! `Authorization: Bearer <key>`: the key's tenant and scopes, checked per handler.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use super::key_cache::CachedKey;
use crate::store;

pub const SCOPES: [&str; 5] = [
    "jobs:write",
    "jobs:read",
    "printers:admin",
    "webhooks:admin",
    ADMIN_SCOPE,
];

/// Operators: read every tenant's printers, jobs and events (the console uses it). It
/// grants reading only; changing things still needs the scope that change needs.
pub const ADMIN_SCOPE: &str = "admin";

/// The caller behind a valid API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub scopes: Vec<String>,
}

impl Caller {
    fn has(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == scope || (s == ADMIN_SCOPE && scope == "jobs:read"))
    }

    /// Whether this key reads across tenants.
    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == ADMIN_SCOPE)
    }

    /// Whose data this key may read: its own tenant's, or everyone's (`None`) for an
    /// `admin` key. Writes always stay within the key's own tenant.
    pub fn readable_tenant(&self) -> Option<&str> {
        (!self.is_admin()).then_some(self.tenant.as_str())
    }

    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope))
        }
    }

    pub fn require_any(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if scopes.iter().any(|wanted| self.has(wanted)) {
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
        let hash = store::api_keys::hash_key(key);
        if let Some(cached) = state.keys.get(&hash) {
            return Ok(Caller {
                tenant: cached.tenant,
                scopes: cached.scopes,
            });
        }
        let generation = state.keys.generation();
        let row = store::api_keys::find_live(&state.pool, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("This API key is unknown or revoked."))?;
        state.keys.put(
            hash,
            CachedKey {
                id: row.id,
                tenant: row.tenant.clone(),
                scopes: row.scopes.clone(),
            },
            generation,
        );
        Ok(Caller {
            tenant: row.tenant,
            scopes: row.scopes,
        })
    }
}
