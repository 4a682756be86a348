//! The HTTP API: handlers per resource, the auth extractor, problem+json errors, and the
//! OpenAPI document assembled from the same route list that serves requests.

pub mod auth;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod key_cache;
pub mod keys;
pub mod printers;
pub mod rate_limit;
pub mod webhook_endpoints;
pub mod webhooks;
pub mod wecom_webhook;
pub mod zhimu;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, Request, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use crate::backends::{Backend, BackendRegistry};
use crate::config::Config;
use crate::domain::{JobOptions, OptionsMode};
use crate::engine::Engine;
use crate::observe;
use crate::store;
use crate::store::documents::NewDocument;
use crate::store::jobs::{JobRow, NewJob};
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub backends: BackendRegistry,
    pub config: Arc<Config>,
    pub engine: Arc<Engine>,
    pub metrics: PrometheusHandle,
    /// Verified API keys (see [`key_cache`]).
    pub keys: Arc<key_cache::KeyCache>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "print-gateway",
        description = "One vendor-neutral API for printing on Lianke, Zhimu and WeCom cloud printers, and for knowing what became of every job.\n\nAuthenticate with `Authorization: Bearer <key>` (create keys with `print-gateway api-keys create`). Errors are `application/problem+json` with a stable `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Print jobs: accept, read, list, history, cancel"),
        (name = "printers", description = "Printers: register, configure, capabilities, live status (printers:admin to change)"),
        (name = "keys", description = "API keys: who am I (any key); list, create and revoke keys (`admin`)"),
        (name = "zhimu", description = "Zhimu: bind shared printers to the gateway's app, list and unbind them (printers:admin)"),
        (name = "webhook-endpoints", description = "Outbound webhooks (Standard Webhooks): your endpoints, their secrets, the delivery log (webhooks:admin)"),
        (name = "events", description = "Job and printer events as a feed (the same events webhooks deliver)"),
        (name = "operations", description = "Health, readiness and metrics (no key needed)"),
        (name = "webhooks", description = "Vendor callbacks (authenticated by a per-job token in the URL or the vendor's own signature, not an API key)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `print-gateway api-keys create`."))
                    .build(),
            ),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::job_events))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::resolve_job))
        .routes(routes!(printers::create_printer, printers::list_printers))
        .routes(routes!(
            printers::get_printer,
            printers::update_printer,
            printers::delete_printer
        ))
        .routes(routes!(printers::printer_capabilities))
        .routes(routes!(printers::printer_status))
        .routes(routes!(printers::discover_printers))
        .routes(routes!(printers::reset_error_limit))
        .routes(routes!(printers::flush_queue))
        .routes(routes!(keys::whoami))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(
            webhook_endpoints::create_endpoint,
            webhook_endpoints::list_endpoints
        ))
        .routes(routes!(
            webhook_endpoints::get_endpoint,
            webhook_endpoints::update_endpoint,
            webhook_endpoints::delete_endpoint
        ))
        .routes(routes!(webhook_endpoints::rotate_secret))
        .routes(routes!(webhook_endpoints::list_deliveries))
        .routes(routes!(webhook_endpoints::retry_delivery))
        .routes(routes!(webhook_endpoints::test_endpoint))
        .routes(routes!(events::list_events))
        .routes(routes!(webhooks::lianke_callback))
        .routes(routes!(zhimu::bind_share))
        .routes(routes!(zhimu::list_printers))
        .routes(routes!(zhimu::unbind_printer))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(
            wecom_webhook::wecom_push,
            wecom_webhook::wecom_verify_url
        ))
}

/// The OpenAPI document, exactly as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole HTTP application with its middleware.
pub fn router(state: AppState) -> Router {
    let (routes, spec) = api_routes().split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    let max_body = state.config.max_body_bytes as usize;
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let (rate_rps, rate_burst) = (state.config.rate_limit_rps, state.config.rate_limit_burst);
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(crate::console::router())
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            rate_limit::limiter(rate_rps, rate_burst),
            rate_limit::limit,
        ))
        // outside the layers above, so their plain-text errors become problems too
        .layer(axum::middleware::from_fn(error::problemify))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, FastRequestId))
        .layer(axum::middleware::from_fn(count_request))
}

/// Request ids: random UUIDs from the thread-local generator (`MakeRequestUuid` asks the
/// operating system for entropy on every request).
#[derive(Clone, Copy)]
struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buf = Uuid::encode_buffer();
        axum::http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
            .ok()
            .map(RequestId::new)
    }
}

/// Counts and times every request by its route template (never the raw path: ids would
/// make the label unbounded), method and status.
async fn count_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = observe::method_label(request.method().as_str());
    let response = next.run(request).await;
    observe::http_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

impl AppState {
    pub async fn backend_of_printer(
        &self,
        printer_id: &str,
    ) -> Result<&Arc<dyn Backend>, ApiError> {
        let printer = store::printers::get(&self.pool, printer_id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("printer {printer_id} vanished")))?;
        self.backend(&printer.backend)
    }

    pub fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>, ApiError> {
        self.backends.get(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                format!(
                    "The `{name}` backend is not configured in this gateway (configured: {:?}).",
                    self.backends.names()
                ),
            )
        })
    }

    /// Checks a new job against its printer (exists, enabled, backend can take the
    /// document and options) and builds the row to insert.
    #[expect(clippy::too_many_arguments, reason = "every input of an accepted job")]
    pub async fn prepare_job(
        &self,
        tenant: &str,
        input: jobs::CreateJob,
        document: jobs::DocumentInfo,
        idempotency_key: Option<String>,
        request_hash: Vec<u8>,
        source: &str,
        vendor_ids: Option<serde_json::Value>,
    ) -> Result<NewJob, ApiError> {
        let printer = store::printers::get(&self.pool, &input.printer_id)
            .await?
            // another tenant's printer, unless shared, is as unknown as a missing one
            .filter(|printer| printer.usable_by(tenant))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unknown_printer",
                    format!(
                        "Printer `{}` does not exist; GET /v1/printers lists the printers.",
                        input.printer_id
                    ),
                )
            })?;
        if !printer.enabled {
            return Err(ApiError::conflict(
                "printer_disabled",
                format!(
                    "Printer `{}` is disabled; enable it or choose another printer.",
                    printer.id
                ),
            ));
        }
        let backend = self.backend(&printer.backend)?;
        if !backend.accepts_jobs() {
            let target = backend
                .prints_on(&printer.locator)
                .map(|t| format!(" Its jobs print on printer `{t}`; submit there."))
                .unwrap_or_default();
            return Err(ApiError::unprocessable(
                "printer_takes_no_jobs",
                format!(
                    "Printer `{}` is a {} printer: it takes jobs only from {} users.{target}",
                    printer.id,
                    backend.name(),
                    backend.name()
                ),
            ));
        }
        backend
            .check_document(document.kind, document.doc_type)
            .map_err(|detail| ApiError::unprocessable("unsupported_document_type", detail))?;
        if let Some(expires_at) = input.expires_at
            && expires_at <= chrono::Utc::now()
        {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "`expires_at` is in the past.",
            ));
        }
        input
            .options
            .validate()
            .map_err(|detail| ApiError::unprocessable("invalid_option", detail))?;
        let options: JobOptions = input.options.with_defaults(&printer.default_options.0);
        backend
            .check_vendor_options(&options.vendor_options)
            .map_err(|detail| ApiError::unprocessable("unsupported_option", detail))?;
        let (options, dropped) = match &printer.capabilities {
            Some(caps) => {
                let checked = caps.0.check(&options, input.options_mode).map_err(|problem| {
                    ApiError::unprocessable(
                        "unsupported_option",
                        format!("Printer `{}` cannot honour {problem}. Send options_mode \"best_effort\" to drop what it cannot do.", printer.id),
                    )
                })?;
                (checked.applied, checked.dropped)
            }
            None => (options, Vec::new()),
        };
        let document_info =
            serde_json::to_value(&document).map_err(|err| ApiError::Internal(err.to_string()))?;
        Ok(NewJob {
            id: Uuid::now_v7(),
            tenant: tenant.to_owned(),
            printer_id: printer.id,
            document_id: Uuid::nil(),
            document_info,
            source: source.to_owned(),
            options,
            options_mode: match input.options_mode {
                OptionsMode::Strict => "strict".into(),
                OptionsMode::BestEffort => "best_effort".into(),
            },
            dropped_options: dropped,
            metadata: input.metadata,
            idempotency_key,
            request_hash: Some(request_hash),
            expires_at: input.expires_at,
            vendor_ids,
            backend: printer.backend,
        })
    }

    /// Stores document, job and first event in one statement, then wakes the workers.
    /// `None` when the idempotency key was already used (nothing is stored then).
    pub async fn accept_job(
        &self,
        job: &NewJob,
        document: &NewDocument,
    ) -> Result<Option<JobRow>, ApiError> {
        // With an object store the bytes go there first; the row names them.
        let documents = self.engine.documents();
        let object_key = match &document.content {
            Some(bytes) if documents.is_external() => documents.put(bytes.clone()).await?,
            _ => None,
        };
        let row = store::jobs::accept(
            &self.pool,
            job,
            document,
            object_key.as_deref(),
            crate::domain::EventSource::Api,
        )
        .await;
        if let (Ok(None) | Err(_), Some(key)) = (&row, &object_key) {
            // An idempotent replay (or a failed write) stored no row naming the object.
            documents.delete(std::slice::from_ref(key)).await;
        }
        let row = row?;
        if row.is_some() {
            self.engine.job_due();
            observe::job_accepted(&job.backend, &job.source);
        }
        Ok(row)
    }
}
