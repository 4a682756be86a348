//! `/v1/backends/zhimu/...`: the Zhimu app's printers. Zhimu printers are shared from a
//! PC running the Zhimu service; an operator binds one to the gateway's app with its share
//! code and verification code, lists what the app can use, registers gateway printers
//! from that list (`POST /v1/printers` with the `locator` shown), and unbinds.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{PrintersAdmin, Scoped};
use super::error::{ApiError, Json, Path, Problem, Query};
use crate::backends::VendorError;
use crate::backends::zhimu::{self, ZhimuBackend, ZhimuLocator, ZhimuPrinter};
use crate::domain::{Decision, ErrorCode};
use crate::store;

/// A share code and verification code, as the Zhimu service shows them on the sharing PC.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"share_ticket": "830487711", "password": "2598"}))]
pub struct BindShare {
    /// The printer's share code (`shareTicket`).
    pub share_ticket: String,
    /// The verification code (`password`); not stored.
    pub password: String,
}

/// A printer the Zhimu app can use, and the gateway printers registered on it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "locator": {"share_sn": "pkDgrqeA", "printer_name": "佳能复合机", "device_type": "printer"},
    "printer_alias": "1 楼公区打印机",
    "registered_as": ["office-1f"]
}))]
pub struct ZhimuPrinterView {
    /// The `locator` to register a gateway printer with (`POST /v1/printers`).
    pub locator: ZhimuLocator,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printer_alias: Option<String>,
    /// Ids of the gateway printers with this locator.
    pub registered_as: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZhimuPrinterList {
    pub items: Vec<ZhimuPrinterView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnbindQuery {
    /// The device type (`printer` unless Zhimu listed another).
    #[serde(default = "printer")]
    pub device_type: String,
}

fn printer() -> String {
    "printer".to_owned()
}

fn zhimu_backend(state: &AppState) -> Result<Arc<ZhimuBackend>, ApiError> {
    state
        .backends
        .get_as::<ZhimuBackend>(zhimu::NAME)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "The zhimu backend is not configured in this gateway; set ZHIMU_APP_ID and ZHIMU_APP_KEY.",
            )
        })
}

fn vendor_problem(err: VendorError) -> ApiError {
    super::error::vendor_problem(super::error::VendorCall::Read { vendor: "Zhimu" }, &err)
}

/// The gateway's Zhimu printers with their locators, read once per request.
async fn registered(state: &AppState) -> Result<Vec<(String, ZhimuLocator)>, ApiError> {
    Ok(store::printers::list(&state.pool)
        .await?
        .into_iter()
        .filter(|p| p.backend == zhimu::NAME)
        .filter_map(|p| ZhimuLocator::parse(&p.locator).ok().map(|l| (p.id, l)))
        .collect())
}

/// The ids of the gateway printers registered on `locator`.
fn registered_as(registered: &[(String, ZhimuLocator)], locator: &ZhimuLocator) -> Vec<String> {
    registered
        .iter()
        .filter(|(_, l)| l == locator)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Bind a shared printer to the gateway's Zhimu app.
///
/// Zhimu `addSharePrinter`. The answer's `locator` registers a gateway printer with
/// `POST /v1/printers` (backend `zhimu`).
#[utoipa::path(post, path = "/v1/backends/zhimu/shares", tag = "zhimu",
    security(("bearer" = [])),
    request_body = BindShare,
    responses(
        (status = 201, description = "Bound", body = ZhimuPrinter),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Zhimu refused the share code or verification code", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Zhimu failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The zhimu backend is not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bind_share(
    State(state): State<AppState>,
    _caller: Scoped<PrintersAdmin>,
    Json(input): Json<BindShare>,
) -> Result<Response, ApiError> {
    for (field, value) in [
        ("share_ticket", &input.share_ticket),
        ("password", &input.password),
    ] {
        if value.trim().is_empty() || value.len() > 64 {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("`{field}` must be 1-64 characters."),
            ));
        }
    }
    let backend = zhimu_backend(&state)?;
    let bound = backend
        .bind_share(input.share_ticket.trim(), input.password.trim())
        .await
        .map_err(|err| match (err.code, err.decision) {
            (ErrorCode::VendorRejected, Decision::Fail) => ApiError::unprocessable(
                "share_refused",
                format!(
                    "Zhimu refused the share code or verification code: {}. Check both on the sharing PC's Zhimu service.",
                    err.vendor_message.as_deref().unwrap_or("no reason given")
                ),
            ),
            _ => vendor_problem(err),
        })?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/v1/backends/zhimu/printers")],
        Json(bound),
    )
        .into_response())
}

/// List the printers the gateway's Zhimu app can use.
///
/// Zhimu `queryPrinters`, with the gateway printers registered on each.
#[utoipa::path(get, path = "/v1/backends/zhimu/printers", tag = "zhimu",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The app's printers", body = ZhimuPrinterList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The vendor refused what was sent (`vendor_refused_input`, with the vendor's code and words)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Zhimu failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The zhimu backend is not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_printers(
    State(state): State<AppState>,
    _caller: Scoped<PrintersAdmin>,
) -> Result<Json<ZhimuPrinterList>, ApiError> {
    let backend = zhimu_backend(&state)?;
    let printers = backend.bound_printers().await.map_err(vendor_problem)?;
    // One read of the printers for the whole list (not one per Zhimu printer).
    let registered = registered(&state).await?;
    let mut items = Vec::with_capacity(printers.len());
    for ZhimuPrinter {
        locator,
        printer_alias,
    } in printers
    {
        let registered_as = registered_as(&registered, &locator);
        items.push(ZhimuPrinterView {
            locator,
            printer_alias,
            registered_as,
        });
    }
    Ok(Json(ZhimuPrinterList { items }))
}

/// Unbind a printer from the gateway's Zhimu app.
///
/// Zhimu `revokeSharePrinter`. Gateway printers registered on it stay (disable or delete
/// them); their new jobs fail with `printer_not_found` until it is bound again.
#[utoipa::path(delete, path = "/v1/backends/zhimu/printers/{share_sn}/{printer_name}", tag = "zhimu",
    security(("bearer" = [])),
    params(
        ("share_sn" = String, Path, description = "The sharing PC's server SN"),
        ("printer_name" = String, Path, description = "The printer's name on that PC"),
        UnbindQuery,
    ),
    responses(
        (status = 204, description = "Unbound"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The app has no such printer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The vendor refused what was sent (`vendor_refused_input`, with the vendor's code and words)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Zhimu failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The zhimu backend is not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn unbind_printer(
    State(state): State<AppState>,
    _caller: Scoped<PrintersAdmin>,
    Path((share_sn, printer_name)): Path<(String, String)>,
    Query(query): Query<UnbindQuery>,
) -> Result<StatusCode, ApiError> {
    let backend = zhimu_backend(&state)?;
    let locator = ZhimuLocator {
        share_sn,
        printer_name,
        device_type: query.device_type,
    };
    backend
        .unbind(&locator)
        .await
        .map_err(|err| match err.code {
            ErrorCode::PrinterNotFound => ApiError::not_found(&format!(
                "Zhimu printer `{}` on server `{}` (type `{}`) bound to this app",
                locator.printer_name, locator.share_sn, locator.device_type
            )),
            _ => vendor_problem(err),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
