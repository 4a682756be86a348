//! `Authorization: Bearer <key>`: the key's tenant and scopes, checked per handler.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::store;

pub const SCOPES: [&str; 4] = [
    "jobs:write",
    "jobs:read",
    "printers:admin",
    "webhooks:admin",
];

/// The caller behind a valid API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub scopes: Vec<String>,
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
        Ok(Caller {
            tenant: row.tenant,
            scopes: row.scopes,
        })
    }
}
