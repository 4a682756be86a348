//! `Authorization: Bearer <key>`: the key's tenant and scopes, checked per handler. The
//! scope names are defined here and nowhere else; handlers name them through the
//! [`Scoped`] markers (`JobsWrite`, `Admin`, …).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use super::key_cache::CachedKey;
use crate::store;

/// Submit and cancel jobs.
pub const JOBS_WRITE: &str = "jobs:write";
/// Read jobs, printers, capabilities, status.
pub const JOBS_READ: &str = "jobs:read";
/// Register and change the tenant's own printers.
pub const PRINTERS_ADMIN: &str = "printers:admin";
/// Manage webhook subscriptions.
pub const WEBHOOKS_ADMIN: &str = "webhooks:admin";
/// The operator: manages API keys and reads across tenants (the console uses it). It grants
/// reading every tenant's printers, jobs and events; changing things still needs the scope
/// that change needs.
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
    fn has(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == scope || (s == ADMIN && scope == JOBS_READ))
    }

    /// Whether this key reads across tenants.
    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == ADMIN)
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
                scopes.first().copied().unwrap_or(JOBS_READ),
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
            if let Some(at) = cached.expires_at.filter(|at| *at <= chrono::Utc::now()) {
                return Err(expired(&cached.prefix, at));
            }
            return Ok(Caller {
                tenant: cached.tenant,
                scopes: cached.scopes,
                key_id: cached.id,
                key_name: cached.name,
                key_prefix: cached.prefix,
                key_expires_at: cached.expires_at,
            });
        }
        let generation = state.keys.generation();
        let row = store::api_keys::find_live(&state.pool, key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("This API key is unknown or revoked."))?;
        let now = chrono::Utc::now();
        if let Some(at) = row.expires_at.filter(|_| row.expired(now)) {
            return Err(expired(&row.prefix, at));
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
        state.keys.put(
            hash,
            CachedKey {
                id: row.id,
                tenant: row.tenant.clone(),
                scopes: row.scopes.clone(),
                name: row.name.clone(),
                prefix: row.prefix.clone(),
                expires_at: row.expires_at,
            },
            generation,
        );
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

/// The refusal of a key past its expiry.
fn expired(prefix: &str, at: chrono::DateTime<chrono::Utc>) -> ApiError {
    ApiError::unauthorized(format!(
        "This API key (`{}…`) expired at {}; ask an operator for a new one (POST /v1/api-keys).",
        prefix,
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ))
}

/// A scope a route needs, as a type: [`Scoped`] checks it while the request's head is
/// extracted, before any path, query or body is parsed, so a key without the scope learns
/// nothing about the route's schema (403 before 400/422).
pub trait Scope: Send + Sync + 'static {
    /// Any one of these scopes is enough (the first is named in the refusal).
    const ANY_OF: &'static [&'static str];
}

/// `jobs:write`.
pub struct JobsWrite;
impl Scope for JobsWrite {
    const ANY_OF: &'static [&'static str] = &[JOBS_WRITE];
}

/// `jobs:read` (an `admin` key reads too).
pub struct JobsRead;
impl Scope for JobsRead {
    const ANY_OF: &'static [&'static str] = &[JOBS_READ];
}

/// Reading printers: `jobs:read` or `printers:admin`.
pub struct PrintersRead;
impl Scope for PrintersRead {
    const ANY_OF: &'static [&'static str] = &[JOBS_READ, PRINTERS_ADMIN];
}

/// `printers:admin`.
pub struct PrintersAdmin;
impl Scope for PrintersAdmin {
    const ANY_OF: &'static [&'static str] = &[PRINTERS_ADMIN];
}

/// `webhooks:admin`.
pub struct WebhooksAdmin;
impl Scope for WebhooksAdmin {
    const ANY_OF: &'static [&'static str] = &[WEBHOOKS_ADMIN];
}

/// `admin` (the operator).
pub struct Admin;
impl Scope for Admin {
    const ANY_OF: &'static [&'static str] = &[ADMIN];
}

/// A [`Caller`] whose key has scope `S`; refused with 403 at extraction. Put it before
/// `Path`, `Query` and `Json` in a handler's arguments.
pub struct Scoped<S: Scope> {
    pub caller: Caller,
    _scope: std::marker::PhantomData<S>,
}

impl<S: Scope> std::ops::Deref for Scoped<S> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S: Scope> FromRequestParts<AppState> for Scoped<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_any(S::ANY_OF)?;
        Ok(Scoped {
            caller,
            _scope: std::marker::PhantomData,
        })
    }
}
