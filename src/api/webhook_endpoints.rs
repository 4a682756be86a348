//! `/v1/webhook-endpoints` (scope `webhooks:admin`): a tenant's endpoints for signed
//! outbound webhooks, their secrets (shown once, rotated with an overlap), the delivery log,
//! manual redelivery and a test ping.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{Caller, Scoped, WebhooksAdmin};
use super::error::{ApiError, Json, Path, Problem, Query};
use super::events::parse_event_types;
use crate::engine::outbox::{event_id, is_private};
use crate::store::webhooks::{AttemptRow, DeliveryRow, EndpointFields, EndpointRow};
use crate::store::{self};
use crate::webhook_signature;

const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

/// An endpoint to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://billing.example.com/hooks/print",
    "description": "billing app",
    "event_types": ["job.completed", "job.failed", "job.unconfirmed"]
}))]
pub struct CreateEndpoint {
    /// https (http only when WEBHOOK_ALLOW_HTTP is set); at most 2048 characters.
    pub url: String,
    /// At most 500 characters.
    pub description: Option<String>,
    /// The event types to send; absent or empty = all.
    pub event_types: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Changes to an endpoint; absent fields stay. Enabling a disabled endpoint clears its
/// failure marks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    /// An empty string removes it.
    pub description: Option<String>,
    /// Empty = all.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    /// Deliveries succeed (or none has exhausted its retries).
    Active,
    /// A delivery exhausted its retry schedule; the next success clears this.
    Failing,
    /// Not sent to: disabled by the tenant, or after failing for WEBHOOK_DISABLE_AFTER_SECS.
    Disabled,
}

/// A webhook endpoint. The secret is shown only when created or rotated.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019ab5d2-7f00-7c1b-9a53-0d8f2e1c4b7a", "url": "https://billing.example.com/hooks/print",
    "description": "billing app", "event_types": ["job.completed", "job.failed"], "enabled": true,
    "status": "active", "created_at": "2026-11-23T08:00:00Z", "updated_at": "2026-11-23T08:00:00Z"
}))]
pub struct EndpointView {
    pub id: Uuid,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Empty = all event types.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub status: EndpointStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// `failing` when the gateway disabled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Until then the previous secret signs too (after a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointView {
    fn from_row(row: EndpointRow) -> EndpointView {
        let status = if !row.enabled {
            EndpointStatus::Disabled
        } else if row.failing_since.is_some() {
            EndpointStatus::Failing
        } else {
            EndpointStatus::Active
        };
        EndpointView {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types: row.event_types,
            enabled: row.enabled,
            status,
            failing_since: row.failing_since,
            disabled_reason: row.disabled_reason,
            previous_secret_expires_at: row.previous_secret_until.filter(|u| *u > Utc::now()),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new endpoint with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_` + base64 of 32 random bytes: verify `webhook-signature` with it.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

/// The new secret after a rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new signing secret (shown this once).
    #[schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
    pub secret: String,
    /// Until then deliveries carry signatures by both secrets.
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status; absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    pub latency_ms: i32,
    /// Why there was no answer (refused, timed out, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AttemptView {
    fn from_row(row: &AttemptRow) -> AttemptView {
        AttemptView {
            at: row.at,
            status: row.status,
            latency_ms: row.latency_ms,
            error: row.error.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; `next_attempt_at` says when it is tried.
    Pending,
    Delivered,
    /// The retry schedule is exhausted (a manual retry sends it once more).
    Failed,
}

/// One event's delivery to one endpoint, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 77, "event_id": "evt_1042", "event_type": "job.completed", "state": "pending",
    "attempt_count": 2, "next_attempt_at": "2026-11-23T08:05:07Z", "last_status": 500,
    "created_at": "2026-11-23T08:00:07Z",
    "attempts": [
        {"at": "2026-11-23T08:00:07.130Z", "status": 500, "latency_ms": 12},
        {"at": "2026-11-23T08:00:12.160Z", "status": 500, "latency_ms": 9}
    ]
}))]
pub struct DeliveryView {
    pub id: i64,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempt_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptView>,
}

impl DeliveryView {
    fn from_row(row: DeliveryRow, attempts: &[AttemptRow]) -> DeliveryView {
        let state = match row.state.as_str() {
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => DeliveryState::Pending,
        };
        DeliveryView {
            id: row.id,
            event_id: event_id(row.event_id),
            event_type: row.event_type,
            state,
            attempt_count: row.attempts,
            next_attempt_at: row.next_attempt_at.filter(|_| row.state == "pending"),
            last_status: row.last_status,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == row.id)
                .map(AttemptView::from_row)
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for older deliveries; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The ping sent by `POST …/test`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    /// The `ping` event's id.
    pub event_id: String,
    /// Follow it in the delivery log.
    pub delivery_id: i64,
}

/// Checks an endpoint URL: http(s) as configured, a host, no credentials, and (unless
/// WEBHOOK_ALLOW_PRIVATE_URLS) not a private, loopback or link-local address.
async fn check_url(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let bad = |detail: String| ApiError::unprocessable("invalid_webhook_url", detail);
    if raw.len() > MAX_URL {
        return Err(bad(format!("`url` is longer than {MAX_URL} characters.")));
    }
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|err| bad(format!("`url` is not a URL ({err}).")))?;
    let config = &state.config.webhooks;
    match url.scheme() {
        "https" => {}
        "http" if config.webhook_allow_http => {}
        "http" => {
            return Err(bad(
                "`url` must be https (plain http is accepted only when WEBHOOK_ALLOW_HTTP is set)."
                    .into(),
            ));
        }
        other => return Err(bad(format!("`url` must be https, not {other}."))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "`url` must not carry credentials; authenticate deliveries by their signature.".into(),
        ));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Err(bad("`url` has no host.".into()));
    };
    if !config.webhook_allow_private_urls {
        let refused = || {
            bad(format!(
                "`url` points to a private, loopback or link-local address ({host}); such endpoints are refused unless WEBHOOK_ALLOW_PRIVATE_URLS is set."
            ))
        };
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            if is_private(ip) {
                return Err(refused());
            }
        } else if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
            return Err(refused());
        } else {
            // Names are checked again at every delivery (the resolver drops private
            // addresses), so a name that does not resolve now is accepted.
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await;
            if let Ok(Ok(addrs)) = lookup {
                let addrs: Vec<_> = addrs.collect();
                if !addrs.is_empty() && addrs.iter().all(|a| is_private(a.ip())) {
                    return Err(refused());
                }
            }
        }
    }
    Ok(url.to_string())
}

fn check_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::unprocessable(
            "invalid_field",
            format!("`description` is longer than {MAX_DESCRIPTION} characters."),
        )),
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn check_types(types: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let types = types.unwrap_or_default();
    if types.len() > 50 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`event_types` lists more than 50 entries.",
        ));
    }
    parse_event_types(types.iter().map(String::as_str))
        .map_err(|detail| ApiError::unprocessable("unknown_event_type", detail.to_string()))
}

async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<EndpointRow, ApiError> {
    store::webhooks::get_endpoint(&state.pool, &caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Webhook endpoint {id}")))
}

/// Create a webhook endpoint.
///
/// The answer carries the signing `secret`, shown only this once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    security(("bearer" = [])),
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created, with its secret", body = CreatedEndpoint),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad URL (scheme, private address), description or event type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Json(input): Json<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let fields = EndpointFields {
        url: check_url(&state, &input.url).await?,
        description: check_description(input.description)?,
        event_types: check_types(input.event_types)?,
        enabled: input.enabled.unwrap_or(true),
    };
    let secret = webhook_signature::generate_secret();
    let row = store::webhooks::insert_endpoint(
        &state.pool,
        state.engine.keyring(),
        &caller.tenant,
        &fields,
        &secret,
    )
    .await?;
    let location = format!("/v1/webhook-endpoints/{}", row.id);
    let body = CreatedEndpoint {
        endpoint: EndpointView::from_row(row),
        secret,
    };
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// List your webhook endpoints.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Endpoints, oldest first", body = EndpointList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
) -> Result<Json<EndpointList>, ApiError> {
    let rows = store::webhooks::list_endpoints(&state.pool, &caller.tenant).await?;
    Ok(Json(EndpointList {
        items: rows.into_iter().map(EndpointView::from_row).collect(),
    }))
}

/// Get a webhook endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(EndpointView::from_row(
        load(&state, &caller, id).await?,
    )))
}

/// Change a webhook endpoint.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "Updated", body = EndpointView),
        (status = 400, description = "Malformed body or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad URL, description or event type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateEndpoint>,
) -> Result<Json<EndpointView>, ApiError> {
    let current = load(&state, &caller, id).await?;
    let fields = EndpointFields {
        url: match input.url {
            Some(url) => check_url(&state, &url).await?,
            None => current.url,
        },
        description: match input.description {
            Some(d) => check_description(Some(d))?,
            None => current.description,
        },
        event_types: match input.event_types {
            Some(types) => check_types(Some(types))?,
            None => current.event_types,
        },
        enabled: input.enabled.unwrap_or(current.enabled),
    };
    let row = store::webhooks::update_endpoint(&state.pool, &caller.tenant, id, &fields)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Webhook endpoint {id}")))?;
    Ok(Json(EndpointView::from_row(row)))
}

/// Delete a webhook endpoint (its pending deliveries go with it).
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    if store::webhooks::delete_endpoint(&state.pool, &caller.tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&format!("Webhook endpoint {id}")))
    }
}

/// Rotate an endpoint's signing secret.
///
/// Returns the new secret (shown this once). For WEBHOOK_SECRET_OVERLAP_SECS (default 24 h)
/// every delivery carries signatures by both the old and the new secret, so receivers can
/// switch without losing a message.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let secret = webhook_signature::generate_secret();
    let overlap = std::time::Duration::from_secs(state.config.webhooks.webhook_secret_overlap_secs);
    let row = store::webhooks::rotate_secret(
        &state.pool,
        state.engine.keyring(),
        &caller.tenant,
        id,
        &secret,
        overlap,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(&format!("Webhook endpoint {id}")))?;
    Ok(Json(RotatedSecret {
        secret,
        previous_secret_expires_at: row.previous_secret_until.unwrap_or_else(Utc::now),
    }))
}

/// The delivery log of an endpoint, newest first, with every attempt.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "Malformed id, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be between 1 and 100, got {limit}."),
        ));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                "`cursor` is not one this API issued; pass `next_cursor` from the previous page unchanged.",
            )
        })?),
    };
    load(&state, &caller, id).await?;
    let (rows, more) = store::webhooks::list_deliveries(&state.pool, id, before, limit).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts = store::webhooks::attempts_of(&state.pool, &ids).await?;
    let next_cursor = if more {
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        items: rows
            .into_iter()
            .map(|row| DeliveryView::from_row(row, &attempts))
            .collect(),
        next_cursor,
    }))
}

/// Send a delivery again now (whatever its state); earlier attempts stay in the log.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id"), ("delivery_id" = i64, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Queued for an attempt now", body = DeliveryView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint or delivery for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path((id, delivery_id)): Path<(Uuid, i64)>,
) -> Result<Response, ApiError> {
    load(&state, &caller, id).await?;
    if !store::webhooks::retry_delivery(&state.pool, id, delivery_id).await? {
        return Err(ApiError::not_found(&format!("Delivery {delivery_id}")));
    }
    let row = store::webhooks::get_delivery(&state.pool, id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Delivery {delivery_id}")))?;
    let attempts = store::webhooks::attempts_of(&state.pool, &[row.id]).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeliveryView::from_row(row, &attempts)),
    )
        .into_response())
}

/// Send a `ping` event to the endpoint through the normal delivery path (it waits while
/// the endpoint is disabled): follow it in the delivery log.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhook-endpoints",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 202, description = "The ping is queued", body = TestSent),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `webhooks:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_endpoint(
    State(state): State<AppState>,
    caller: Scoped<WebhooksAdmin>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let endpoint = load(&state, &caller, id).await?;
    let (event, delivery) = store::webhooks::insert_ping(&state.pool, &endpoint).await?;
    let delivery_id = delivery
        .ok_or_else(|| ApiError::Internal(format!("ping {} made no delivery", event.id)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            event_id: event_id(event.id),
            delivery_id,
        }),
    )
        .into_response())
}
