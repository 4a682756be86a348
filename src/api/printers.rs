//! `/v1/printers`: operators register printers (secrets write-only); apps read them, their
//! capabilities (cached from the vendor) and their live status.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Caller, PrintersAdmin, PrintersRead, Scoped};
use super::error::{ApiError, Json, Path, Problem, Query, VendorCall, vendor_problem};
use crate::backends::{DiscoveredPrinter, Housekeeping, PrinterStatus, VendorError};
use crate::domain::ErrorCode;
use crate::domain::{Capabilities, DocumentType, JobOptions, PrinterId};
use crate::service::printers::{PrinterChanges, PrinterDraft, WhenTaken};
use crate::store::printers::{Deleted, PrinterRow};
use crate::store::{self};

/// A printer to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "office-2f",
    "display_name": "2nd floor office",
    "backend": "lianke",
    "locator": {"device_id": "demo-lk-1", "device_port": 1, "printer_model": "HP LaserJet P1007"},
    "secrets": {"device_key": "demo-lk-key"},
    "default_options": {"paper": "A4"},
    "shared_with": ["billing"]
}))]
pub struct CreatePrinter {
    /// Slug: 1-64 of a-z, 0-9, `-`, `_`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9][a-z0-9_-]*$")]
    pub id: String,
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    /// `lianke`, `zhimu` or `wecom`.
    #[schema(pattern = "^(lianke|zhimu|wecom)$")]
    pub backend: String,
    /// Backend-specific, non-secret settings.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub locator: Value,
    /// Backend-specific secrets; stored, never returned.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub secrets: Value,
    #[serde(default)]
    pub default_options: JobOptions,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Vendor calls in flight on this printer's device at once (defaults per backend).
    pub max_in_flight: Option<u32>,
    /// Other tenants that may see this printer and print on it (the key's tenant owns it).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub shared_with: Vec<String>,
}

/// `?verify=false` skips the credential check with the vendor (offline set-up).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Check the locator and secrets with the vendor before saving (default true).
    #[serde(default = "yes")]
    pub verify: bool,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn yes() -> bool {
    true
}

/// Changes to a printer; absent fields stay as they are. In `secrets`, a key set to
/// `null` removes that secret.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "2nd floor office", "default_options": {"paper": "A4"}}))]
pub struct UpdatePrinter {
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub locator: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub secrets: Option<Value>,
    pub default_options: Option<JobOptions>,
    pub enabled: Option<bool>,
    pub max_in_flight: Option<u32>,
    /// Replaces the list of tenants the printer is shared with.
    #[schema(max_items = 100)]
    pub shared_with: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

/// The printer's last failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastError {
    /// The neutral error code (`printer_auth_failed`, `device_offline`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The vendor's own code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_code: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// Jobs of this printer not finished yet.
#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub struct QueueDepth {
    pub pending: i64,
    pub processing: i64,
    pub unconfirmed: i64,
}

/// At a glance: `ok`, `degraded` (recent failures, a half-open breaker or unconfirmed
/// jobs) or `failing` (breaker open or offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Failing,
}

/// What the gateway knows of a printer's health, from job outcomes, authentication
/// failures and status checks alike.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrinterHealth {
    pub status: HealthStatus,
    /// From the last status check or printed job; absent when never known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// When the printer was last seen working (online in a status check, or a job printed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When its status was last asked of the vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_checked_at: Option<DateTime<Utc>>,
    pub circuit: CircuitState,
    /// While open: when the breaker lets one trial call through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_open_until: Option<DateTime<Utc>>,
    /// Printer failures since the last success, authentication failures included.
    pub consecutive_failures: i32,
    /// The failures counted toward the breaker (BREAKER_THRESHOLD opens it).
    pub breaker_failures: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    pub queue: QueueDepth,
}

/// A printer as the API shows it: secrets appear only by name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "office-2f", "display_name": "2nd floor office", "backend": "lianke",
    "locator": {"device_id": "lk112312312312", "device_port": 1},
    "secrets_set": ["device_key"], "default_options": {"paper": "A4"}, "enabled": true,
    "device": "lianke:lk112312312312", "max_in_flight": 1,
    "owner_tenant": "demo", "shared_with": ["billing"],
    "health": {"status": "ok", "online": true, "last_seen_at": "2026-11-23T08:05:00Z", "circuit": "closed",
               "consecutive_failures": 0, "breaker_failures": 0,
               "queue": {"pending": 0, "processing": 1, "unconfirmed": 0}},
    "created_at": "2026-11-23T08:00:00Z", "updated_at": "2026-11-23T08:00:00Z"
}))]
pub struct PrinterView {
    pub id: String,
    pub display_name: String,
    pub backend: String,
    #[schema(value_type = Object)]
    pub locator: Value,
    /// Names of the secrets configured (values are never returned).
    pub secrets_set: Vec<String>,
    pub default_options: JobOptions,
    pub enabled: bool,
    pub device: String,
    pub max_in_flight: i32,
    /// The tenant whose `printers:admin` keys manage this printer.
    pub owner_tenant: String,
    /// Tenants that may print on it besides the owner (shown to the owner only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities_fetched_at: Option<DateTime<Utc>>,
    pub health: PrinterHealth,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PrinterView {
    /// The printer as `viewer` (a tenant) sees it: only the owner sees whom it is shared with.
    pub fn from_row(row: PrinterRow, breaker_threshold: i32, viewer: &str) -> PrinterView {
        let mut view = PrinterView::from_row_at(row, breaker_threshold, Utc::now());
        if view.owner_tenant != viewer {
            view.shared_with.clear();
        }
        view
    }

    /// The printer as it was at `now`, as its owner sees it (a webhook event renders the
    /// circuit as it was when the event happened; events go to the owner's endpoints).
    pub fn from_row_at(row: PrinterRow, breaker_threshold: i32, now: DateTime<Utc>) -> PrinterView {
        let mut secrets_set: Vec<String> = row
            .secrets
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        secrets_set.sort();
        let circuit = match row.breaker_open_until {
            _ if row.breaker_failures < breaker_threshold => CircuitState::Closed,
            Some(until) if until > now => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        };
        let last_error = row.last_error.map(|message| LastError {
            code: row.last_error_code,
            vendor_code: row.last_error_vendor_code,
            message,
            at: row.last_error_at,
        });
        let mut view = PrinterView {
            id: row.id,
            display_name: row.display_name,
            backend: row.backend,
            locator: row.locator,
            secrets_set,
            default_options: row.default_options.0,
            enabled: row.enabled,
            device: row.device,
            max_in_flight: row.max_in_flight,
            shared_with: row.shared_with,
            owner_tenant: row.owner_tenant,
            capabilities_fetched_at: row.capabilities_at,
            health: PrinterHealth {
                status: HealthStatus::Ok,
                online: row.online,
                last_seen_at: row.last_seen_at,
                status_checked_at: row.status_checked_at,
                circuit,
                circuit_open_until: row.breaker_open_until.filter(|u| *u > now),
                consecutive_failures: row.consecutive_failures,
                breaker_failures: row.breaker_failures,
                last_error,
                queue: QueueDepth::default(),
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        view.set_queue(QueueDepth::default());
        view
    }

    /// Sets the queue depth and the at-a-glance status that depends on it.
    pub fn set_queue(&mut self, queue: QueueDepth) {
        let h = &mut self.health;
        h.queue = queue;
        h.status = if h.circuit == CircuitState::Open || h.online == Some(false) {
            HealthStatus::Failing
        } else if h.consecutive_failures > 0
            || h.circuit == CircuitState::HalfOpen
            || queue.unconfirmed > 0
        {
            HealthStatus::Degraded
        } else {
            HealthStatus::Ok
        };
    }
}

/// Fills each view's queue depth from the live jobs (one query).
pub async fn with_queues(
    state: &AppState,
    mut views: Vec<PrinterView>,
) -> Result<Vec<PrinterView>, ApiError> {
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let depths = store::printers::queue_depths(&state.pool, Some(&ids)).await?;
    for view in &mut views {
        let queue = depths
            .iter()
            .find(|(id, ..)| *id == view.id)
            .map(|&(_, pending, processing, unconfirmed)| QueueDepth {
                pending,
                processing,
                unconfirmed,
            })
            .unwrap_or_default();
        view.set_queue(queue);
    }
    Ok(views)
}

async fn view_with_queue(
    state: &AppState,
    row: PrinterRow,
    viewer: &str,
) -> Result<PrinterView, ApiError> {
    let view = PrinterView::from_row(row, state.engine.settings().breaker_threshold, viewer);
    Ok(with_queues(state, vec![view])
        .await?
        .pop()
        .unwrap_or_else(|| unreachable!("one view in, one out")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrinterList {
    pub items: Vec<PrinterView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CapabilitiesView {
    pub printer_id: String,
    pub capabilities: Capabilities,
    pub fetched_at: DateTime<Utc>,
    /// `cache` or `vendor` (fetched for this request).
    pub source: String,
    /// The file types the printer takes as a file (upload or base64).
    pub document_types: DocumentTypes,
}

/// Which file types a printer takes as it is, and which the gateway converts for it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"native": ["png", "jpeg", "bmp", "docx"], "by_conversion": ["pdf"]}))]
pub struct DocumentTypes {
    /// Sent as they are.
    pub native: Vec<DocumentType>,
    /// Rendered by the gateway before the submit (a PDF → one PNG per page).
    pub by_conversion: Vec<DocumentType>,
}

fn document_types(state: &AppState, backend: &str) -> DocumentTypes {
    let (native, by_conversion) = state
        .backends
        .get(backend)
        .map(|b| crate::engine::route::document_types(b.as_ref()))
        .unwrap_or_default();
    DocumentTypes {
        native,
        by_conversion,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub printer_id: String,
    pub status: PrinterStatus,
    pub checked_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CapabilitiesQuery {
    /// Fetch from the vendor even when cached.
    #[serde(default)]
    pub refresh: bool,
}

/// Register a printer.
#[utoipa::path(post, path = "/v1/printers", tag = "printers",
    security(("bearer" = [])),
    params(VerifyQuery),
    request_body = CreatePrinter,
    responses(
        (status = 201, description = "Registered", body = PrinterView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, unknown backend, bad backend configuration, or the vendor refused the credentials (`vendor_auth_failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor could not be asked (retry, or ?verify=false)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_printer(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Query(verify): Query<VerifyQuery>,
    Json(input): Json<CreatePrinter>,
) -> Result<Response, ApiError> {
    let id = PrinterId::parse(&input.id)
        .map_err(|detail| ApiError::unprocessable("invalid_field", detail.to_string()))?;
    let draft = PrinterDraft {
        id: id.to_string(),
        display_name: input.display_name.unwrap_or_else(|| id.to_string()),
        locator: input.locator,
        secrets: input.secrets,
        default_options: input.default_options,
        enabled: input.enabled,
        max_in_flight: input.max_in_flight,
        owner_tenant: caller.tenant.clone(),
        shared_with: input.shared_with,
    };
    let row = state
        .service()
        .register_printer(&input.backend, draft, verify.verify, WhenTaken::Refuse)
        .await?;
    let location = format!("/v1/printers/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(PrinterView::from_row(
            row,
            state.engine.settings().breaker_threshold,
            &caller.tenant,
        )),
    )
        .into_response())
}

/// List printers.
#[utoipa::path(get, path = "/v1/printers", tag = "printers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The printers the key's tenant owns or that are shared with it", body = PrinterList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_printers(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
) -> Result<Json<PrinterList>, ApiError> {
    let threshold = state.engine.settings().breaker_threshold;
    let rows = if caller.is_admin() {
        store::printers::list(&state.pool).await?
    } else {
        store::printers::list_usable_by(&state.pool, &caller.tenant).await?
    };
    let items = rows
        .into_iter()
        .map(|r| PrinterView::from_row(r, threshold, &caller.tenant))
        .collect();
    let items = with_queues(&state, items).await?;
    Ok(Json(PrinterList { items }))
}

/// A printer the caller's tenant owns or that is shared with it (any printer for an
/// `admin` key, which reads across tenants); any other is 404.
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<PrinterRow, ApiError> {
    store::printers::get(&state.pool, id)
        .await?
        .filter(|row| caller.is_admin() || row.usable_by(&caller.tenant))
        .ok_or_else(|| ApiError::not_found(&format!("Printer `{}`", super::bounds::quote(id))))
}

/// A printer the caller's tenant owns (to change it): 404 when invisible, 403 when only
/// shared with it.
async fn load_owned(state: &AppState, caller: &Caller, id: &str) -> Result<PrinterRow, ApiError> {
    let row = load(state, caller, id).await?;
    if !row.usable_by(&caller.tenant) {
        // an admin key reads every printer but changes only its own tenant's
        return Err(ApiError::not_found(&format!(
            "Printer `{}`",
            super::bounds::quote(id)
        )));
    }
    if row.owner_tenant != caller.tenant {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_printer_owner",
            format!(
                "Printer `{id}` is shared with tenant `{}` but owned by another tenant; only its owner can change it.",
                caller.tenant
            ),
        ));
    }
    Ok(row)
}

/// Get a printer.
#[utoipa::path(get, path = "/v1/printers/{id}", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id")),
    responses(
        (status = 200, description = "The printer", body = PrinterView),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_printer(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
    Path(id): Path<String>,
) -> Result<Json<PrinterView>, ApiError> {
    let row = load(&state, &caller, &id).await?;
    Ok(Json(view_with_queue(&state, row, &caller.tenant).await?))
}

/// Change a printer.
#[utoipa::path(patch, path = "/v1/printers/{id}", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id"), VerifyQuery),
    request_body = UpdatePrinter,
    responses(
        (status = 200, description = "Updated", body = PrinterView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or backend configuration, or the vendor refused new credentials (`vendor_auth_failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor could not be asked about new credentials (retry, or ?verify=false)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_printer(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
    Query(verify): Query<VerifyQuery>,
    Json(input): Json<UpdatePrinter>,
) -> Result<Json<PrinterView>, ApiError> {
    let row = load_owned(&state, &caller, &id).await?;
    let changes = PrinterChanges {
        display_name: input.display_name,
        locator: input.locator,
        secrets: input.secrets,
        default_options: input.default_options,
        enabled: input.enabled,
        max_in_flight: input.max_in_flight,
        shared_with: input.shared_with,
    };
    let updated = state
        .service()
        .update_printer(row, changes, verify.verify)
        .await?;
    Ok(Json(
        view_with_queue(&state, updated, &caller.tenant).await?,
    ))
}

/// Delete a printer that has no jobs (disable it otherwise).
#[utoipa::path(delete, path = "/v1/printers/{id}", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The printer has jobs", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_printer(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    load_owned(&state, &caller, &id).await?;
    match store::printers::delete(&state.pool, &id).await? {
        Deleted::Yes => {
            state.engine.printer_cache().invalidate(Some(&id));
            Ok(StatusCode::NO_CONTENT)
        }
        Deleted::NotFound => Err(ApiError::not_found(&format!(
            "Printer `{}`",
            super::bounds::quote(&id)
        ))),
        Deleted::HasJobs => Err(ApiError::conflict(
            "printer_has_jobs",
            format!(
                "Printer `{id}` has jobs and keeps them for their history; disable it with PATCH {{\"enabled\": false}} instead."
            ),
        )),
    }
}

/// A vendor error on one of the printer's vendor routes (capabilities, live status).
fn read_problem(err: VendorError) -> ApiError {
    vendor_problem(
        VendorCall::Read {
            vendor: "The vendor",
        },
        &err,
    )
}

/// A device to look behind.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "backend": "lianke",
    "locator": {"device_id": "demo-lk-1"},
    "secrets": {"device_key": "demo-lk-key"}
}))]
pub struct DiscoverRequest {
    /// `lianke`, `zhimu` or `wecom`.
    #[schema(pattern = "^(lianke|zhimu|wecom)$")]
    pub backend: String,
    #[schema(value_type = Object)]
    pub locator: Value,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub secrets: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveredPrinters {
    pub items: Vec<DiscoveredPrinter>,
}

/// List the printers behind a vendor device, ready to register.
///
/// For Lianke: give the box's `device_id` and `device_key`; each printer on its ports comes
/// back with the `locator` to register it with (`POST /v1/printers`). Nothing is stored.
#[utoipa::path(post, path = "/v1/printers/discover", tag = "printers",
    security(("bearer" = [])),
    request_body = DiscoverRequest,
    responses(
        (status = 200, description = "The printers found", body = DiscoveredPrinters),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The vendor refused the request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The backend has no discovery, a field is missing, or the vendor refused the device id or key (`vendor_auth_failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Backend not configured, or the device is busy", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn discover_printers(
    State(state): State<AppState>,
    _caller: Scoped<PrintersAdmin>,
    Json(input): Json<DiscoverRequest>,
) -> Result<Json<DiscoveredPrinters>, ApiError> {
    if state.backends.get(&input.backend).is_none() {
        return Err(ApiError::unprocessable(
            "unknown_backend",
            format!(
                "Backend `{}` is not configured in this gateway; configured: {:?}.",
                super::bounds::quote(&input.backend),
                state.backends.names()
            ),
        ));
    }
    let found = state
        .service()
        .discover(&input.backend, &input.locator, &input.secrets)
        .await?;
    match found {
        None => Err(ApiError::unprocessable(
            "discovery_not_supported",
            format!("The `{}` backend cannot list printers.", input.backend),
        )),
        Some(Err(err)) if err.code == ErrorCode::VendorRejected && err.vendor_code.is_none() => {
            Err(ApiError::unprocessable("invalid_field", err.message))
        }
        Some(Err(err)) => Err(vendor_problem(VendorCall::Setup, &err)),
        Some(Ok(items)) => Ok(Json(DiscoveredPrinters { items })),
    }
}

/// What a housekeeping call did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"printer_id": "office-2f", "action": "reset_error_limit", "jobs_resumed": 3, "vendor_data": null}))]
pub struct HousekeepingResult {
    pub printer_id: String,
    pub action: String,
    /// Pending jobs of the printer made due now.
    pub jobs_resumed: u64,
    #[schema(value_type = Object)]
    pub vendor_data: Value,
}

async fn housekeeping(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Housekeeping,
    name: &str,
) -> Result<Json<HousekeepingResult>, ApiError> {
    let row = load_owned(state, caller, id).await?;
    let outcome = state
        .service()
        .housekeeping(&row, action)
        .await?
        .ok_or_else(|| {
            ApiError::unprocessable(
                "not_supported",
                format!("The `{}` backend does not offer {name}.", row.backend),
            )
        })?;
    let data = outcome.map_err(|err| vendor_problem(VendorCall::Setup, &err))?;
    let mut resumed = 0;
    if action == Housekeeping::ResetErrorLimit {
        // The vendor lifted its suspension: close the breaker, resume waiting jobs.
        store::printers::record_success(&state.pool, &row.id).await?;
        resumed = store::jobs::make_printer_jobs_due(&state.pool, &row.id).await?;
    }
    tracing::info!(printer_id = %row.id, action = name, resumed, "printer housekeeping done");
    Ok(Json(HousekeepingResult {
        printer_id: row.id,
        action: name.to_owned(),
        jobs_resumed: resumed,
        vendor_data: data.get("vendor_data").cloned().unwrap_or(Value::Null),
    }))
}

/// Lift the vendor's suspension of a printer after too many failed tasks.
///
/// Lianke suspends a box after 30 consecutive failed tasks (code 11203); this calls its
/// `reset_printing_error_limit` (10 times a day per box), closes the printer's breaker and
/// resumes its waiting jobs. Fix the printer first.
#[utoipa::path(post, path = "/v1/printers/{id}/reset-error-limit", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id")),
    responses(
        (status = 200, description = "Reset", body = HousekeepingResult),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to reset (Lianke 11201), or the device is busy (Lianke 10009) or offline; try again", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The backend has no such call", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Today's resets are used up (Lianke 11200)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_error_limit(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
) -> Result<Json<HousekeepingResult>, ApiError> {
    housekeeping(
        &state,
        &caller,
        &id,
        Housekeeping::ResetErrorLimit,
        "reset_error_limit",
    )
    .await
}

/// Drop the tasks queued at the vendor for a printer.
///
/// Lianke `flush_jobs`: queued tasks are revoked (printing ones go on); their jobs become
/// `canceled` as the gateway learns of it.
#[utoipa::path(post, path = "/v1/printers/{id}/flush-queue", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id")),
    responses(
        (status = 200, description = "Flushed", body = HousekeepingResult),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The backend has no such call", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor failed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The device is busy or offline; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn flush_queue(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<String>,
) -> Result<Json<HousekeepingResult>, ApiError> {
    housekeeping(
        &state,
        &caller,
        &id,
        Housekeeping::FlushQueue,
        "flush_queue",
    )
    .await
}

/// A printer's capabilities, normalised; cached from the vendor.
#[utoipa::path(get, path = "/v1/printers/{id}/capabilities", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id"), CapabilitiesQuery),
    responses(
        (status = 200, description = "Capabilities", body = CapabilitiesView),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The vendor refused what was sent (`vendor_refused_input`, with the vendor's code and words)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn printer_capabilities(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
    Path(id): Path<String>,
    Query(query): Query<CapabilitiesQuery>,
) -> Result<Json<CapabilitiesView>, ApiError> {
    let row = load(&state, &caller, &id).await?;
    if !query.refresh
        && let (Some(caps), Some(at)) = (&row.capabilities, row.capabilities_at)
    {
        return Ok(Json(CapabilitiesView {
            printer_id: row.id.clone(),
            capabilities: caps.0.clone(),
            fetched_at: at,
            source: "cache".into(),
            document_types: document_types(&state, &row.backend),
        }));
    }
    let report = state
        .service()
        .refresh_capabilities(&row)
        .await?
        .map_err(read_problem)?;
    Ok(Json(CapabilitiesView {
        document_types: document_types(&state, &row.backend),
        printer_id: row.id,
        capabilities: report.capabilities,
        fetched_at: Utc::now(),
        source: "vendor".into(),
    }))
}

/// A printer's live status, asked of the vendor now.
#[utoipa::path(get, path = "/v1/printers/{id}/status", tag = "printers",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Printer id")),
    responses(
        (status = 200, description = "Live status", body = StatusView),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read` and `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such printer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The vendor refused what was sent (`vendor_refused_input`, with the vendor's code and words)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The vendor failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn printer_status(
    State(state): State<AppState>,
    caller: Scoped<PrintersRead>,
    Path(id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let row = load(&state, &caller, &id).await?;
    let status = state.service().status(&row).await?.map_err(read_problem)?;
    Ok(Json(StatusView {
        printer_id: row.id,
        status,
        checked_at: Utc::now(),
    }))
}
