//! The application service: the one place where a job is accepted, a job is canceled and a
//! printer is registered or changed. The HTTP handlers, the job-source bridge (WeCom
//! imports) and the demo all call it; each of them only parses its input, calls, and shapes
//! the answer.
//!
//! It owns the rules of those use cases (which printer may take which job, when a cancel
//! is immediate and when it is asked of the vendor, what a printer's configuration must
//! hold). It must not speak HTTP (no axum, no status codes): refusals are [`Refusal`]s that
//! the API turns into problems.

pub mod jobs;
pub mod pools;
pub mod printers;
pub mod sources;

use std::sync::Arc;

use sqlx::PgPool;

use crate::backends::{Backend, BackendRegistry, PrintTarget, VendorError};
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;

/// What a use case needs: the database, the vendors and the engine to wake.
#[derive(Clone)]
pub struct Service {
    pub pool: PgPool,
    pub backends: BackendRegistry,
    pub engine: Arc<Engine>,
}

/// The kind of a refusal: what the caller did wrong, in the service's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The input breaks a rule (unknown printer, bad option, bad configuration).
    Invalid,
    /// The thing exists but its state refuses the request (finished job, taken id).
    Conflict,
    /// No such thing (for this tenant).
    NotFound,
    /// A backend the request needs is not configured here.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused; `code` is stable, `detail` says what to do.
    #[error("{detail}")]
    Refused {
        refusal: Refusal,
        code: &'static str,
        detail: String,
    },
    /// The vendor did not confirm a printer's new credentials.
    #[error("the vendor did not confirm the printer: {0}")]
    Unverified(VendorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ServiceError {
    fn from(err: sqlx::Error) -> Self {
        ServiceError::Store(StoreError::Db(err))
    }
}

impl From<EngineError> for ServiceError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Store(store) => ServiceError::Store(store),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl ServiceError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::Refused {
            refusal: Refusal::Invalid,
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::Refused {
            refusal: Refusal::Conflict,
            code,
            detail: detail.into(),
        }
    }

    /// `what` does not exist (same words as every other 404).
    pub fn not_found(what: &str) -> ServiceError {
        ServiceError::Refused {
            refusal: Refusal::NotFound,
            code: "not_found",
            detail: format!("{what} does not exist."),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl Service {
    pub fn new(pool: PgPool, backends: BackendRegistry, engine: Arc<Engine>) -> Service {
        Service {
            pool,
            backends,
            engine,
        }
    }

    /// The backend registered as `name`, or a refusal naming the configured ones.
    pub fn backend(&self, name: &str) -> ServiceResult<&Arc<dyn Backend>> {
        self.backends
            .get(name)
            .ok_or_else(|| self.not_configured(name))
    }

    /// The print target registered as `name` (a job source's printers never print).
    pub fn target(&self, name: &str) -> ServiceResult<&Arc<dyn PrintTarget>> {
        self.backends
            .target(name)
            .ok_or_else(|| self.not_configured(name))
    }

    fn not_configured(&self, name: &str) -> ServiceError {
        ServiceError::Refused {
            refusal: Refusal::Unavailable,
            code: "backend_unavailable",
            detail: format!(
                "The `{name}` backend is not configured in this gateway (configured: {:?}).",
                self.backends.names()
            ),
        }
    }
}
