//! The HTTP API: handlers per resource, the auth extractor, problem+json errors, and the
//! OpenAPI document assembled from the same route list that serves requests.

pub mod auth;
pub mod body;
pub mod bounds;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod key_cache;
pub mod keys;
pub mod pools;
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

use crate::backends::{Backend, BackendRegistry, PrintTarget};
use crate::config::Config;
use crate::engine::Engine;
use crate::observe;
use crate::service::Service;
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
        (name = "pools", description = "Printer pools: a job sent to a pool prints on a member that can print, and moves to another while it is still pending if that one fails (printers:admin to change)"),
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
        .routes(routes!(jobs::job_preview))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::resolve_job))
        .routes(routes!(printers::create_printer, printers::list_printers))
        .routes(routes!(
            printers::get_printer,
            printers::update_printer,
            printers::delete_printer
        ))
        .routes(routes!(pools::create_pool, pools::list_pools))
        .routes(routes!(
            pools::get_pool,
            pools::update_pool,
            pools::delete_pool
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
    let mut spec = api_routes().split_for_parts().1;
    common_responses(&mut spec);
    spec
}

/// Routes that ask a printer's vendor about one device (live status, capabilities,
/// housekeeping, discovery): the device gate or the vendor may find the device taken.
fn is_device_call(path: &str) -> bool {
    path == "/v1/printers/discover"
        || [
            "/status",
            "/capabilities",
            "/flush-queue",
            "/reset-error-limit",
        ]
        .iter()
        .any(|tail| path.starts_with("/v1/printers/") && path.ends_with(tail))
}

/// Answers every route can give for reasons common to all routes of its kind, added where
/// the route's own list lacks them: the spec lists every status a route can answer.
fn common_responses(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let mut add: Vec<(&str, &str)> = Vec::new();
            let params = operation.parameters.as_deref().unwrap_or_default();
            let has = |place: ParameterIn| {
                params.iter().any(|p| {
                    std::mem::discriminant(&p.parameter_in) == std::mem::discriminant(&place)
                })
            };
            if operation.request_body.is_some() {
                add.push((
                    "400",
                    "The body is not valid JSON (`invalid_json`) or not readable",
                ));
                add.push(("413", "The body is larger than MAX_BODY_BYTES (28 MiB by default) or the route's own limit"));
                add.push(("415", "The body is not `Content-Type: application/json`"));
                add.push((
                    "422",
                    "A field is missing, malformed or out of its bounds (`invalid_field`)",
                ));
            }
            if has(ParameterIn::Path) {
                add.push(("400", "A path parameter is malformed (`invalid_path`)"));
                add.push(("404", "No such resource (or another tenant's)"));
            }
            if has(ParameterIn::Query) {
                add.push(("400", "A query parameter is malformed (`invalid_query`)"));
            }
            if is_device_call(path) {
                add.push((
                    "409",
                    "The device is busy with another call or offline (`device_busy`, `device_offline`; try again shortly), or the vendor no longer knows the printer or its credentials (`printer_not_found`, `printer_auth_failed`)",
                ));
            }
            if operation.security.is_some() {
                add.push(("401", "Missing or invalid API key"));
                add.push((
                    "403",
                    "The key lacks the route's scope (checked before anything else)",
                ));
                add.push((
                    "429",
                    "The key's rate limit (RATE_LIMIT_RPS) is exceeded; see `Retry-After`",
                ));
            }
            add.push((
                "503",
                "The database is unavailable; nothing was changed (see `Retry-After`)",
            ));
            for (status, description) in add {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem(description));
            }
        }
    }
}

/// The whole HTTP application with its middleware.
pub fn router(state: AppState) -> Router {
    let (routes, mut spec) = api_routes().split_for_parts();
    common_responses(&mut spec);
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
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = observe::method_label(request.method().as_str());
    let response = next.run(request).await;
    observe::http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

impl AppState {
    /// The application service over this state's pool, backends and engine.
    pub fn service(&self) -> Service {
        Service::new(
            self.pool.clone(),
            self.backends.clone(),
            Arc::clone(&self.engine),
        )
    }

    pub fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>, ApiError> {
        self.backends
            .get(name)
            .ok_or_else(|| self.not_configured(name))
    }

    /// The print target registered as `name`.
    pub fn target(&self, name: &str) -> Result<&Arc<dyn PrintTarget>, ApiError> {
        self.backends
            .target(name)
            .ok_or_else(|| self.not_configured(name))
    }

    fn not_configured(&self, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            format!(
                "The `{name}` backend is not configured in this gateway (configured: {:?}).",
                self.backends.names()
            ),
        )
    }
}
