//! Events: the body every webhook delivery carries, and `GET /v1/events`, the same events
//! as a keyset feed for apps that cannot receive webhooks.

use axum::extract::State;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{JobsRead, Scoped};
use super::error::{ApiError, Json, Problem, Query};
use super::jobs::JobView;
use super::printers::PrinterView;
use crate::engine::outbox::{RenderError, event_id};
use crate::store::jobs::JobRow;
use crate::store::printers::PrinterRow;
use crate::store::webhooks::{FeedCursor, OutboxEventRow};
use crate::store::{self};

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 10] = [
    "job.processing",
    "job.completed",
    "job.failed",
    "job.canceled",
    "job.unconfirmed",
    "job.resolved",
    "printer.offline",
    "printer.online",
    "printer.circuit_opened",
    "printer.circuit_closed",
];

/// An event, as POSTed to webhook endpoints and listed by `GET /v1/events`.
///
/// `job.*` events carry the job as `GET /v1/jobs/{id}` returns it right after the change;
/// `printer.*` events the printer as `GET /v1/printers/{id}` does; `ping` (from
/// `POST /v1/webhook-endpoints/{id}/test`) the endpoint id. An operator's resolve of an
/// `unconfirmed` job writes `job.completed` or `job.failed` and then `job.resolved`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "evt_1042",
    "type": "job.completed",
    "timestamp": "2026-11-23T08:00:07.120Z",
    "sequence": 2,
    "data": {
        "id": "019ab5d2-6a4e-7c1b-9a53-0d8f2e1c4b7a", "printer_id": "office-2f", "source": "api",
        "state": "completed", "state_reason": "printed", "vendor_task_id": "581decf2-c6f6-4163-8646-5dcc0c3c1c05",
        "attempts": 1, "cancel_requested": false,
        "document": {"kind": "url", "type": "pdf", "size_bytes": 0, "url": "https://files.example.com/invoice-1043.pdf"},
        "options": {"copies": 2, "paper": "A4"}, "options_mode": "strict", "dropped_options": [],
        "metadata": {"order": "1043"},
        "created_at": "2026-11-23T08:00:00Z", "updated_at": "2026-11-23T08:00:07.120Z",
        "dispatched_at": "2026-11-23T08:00:00.050Z", "completed_at": "2026-11-23T08:00:07.120Z"
    }
}))]
pub struct Event {
    /// `evt_…`, also the `webhook-id` header; the same on every retry (deduplicate on it).
    pub id: String,
    /// `job.processing`, `job.completed`, `job.failed`, `job.canceled`, `job.unconfirmed`,
    /// `job.resolved`, `printer.offline`, `printer.online`, `printer.circuit_opened`,
    /// `printer.circuit_closed` or `ping`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change happened.
    pub timestamp: DateTime<Utc>,
    /// Grows with every event of the same job (1, 2, 3, …) or printer: an event whose
    /// sequence is below one already seen for that object is stale and can be dropped.
    pub sequence: i64,
    pub data: EventData,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    Job(Box<JobView>),
    Printer(Box<PrinterView>),
    Ping(PingData),
}

/// The data of a `ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PingData {
    pub endpoint_id: Uuid,
}

/// Builds the event body from its outbox row.
pub fn render(row: &OutboxEventRow, breaker_threshold: i32) -> Result<Event, RenderError> {
    let snapshot = |part: &'static str| {
        move |source| RenderError::Snapshot {
            id: row.id,
            part,
            source,
        }
    };
    let data = if row.job_id.is_some() {
        let job: JobRow =
            serde_json::from_value(row.snapshot.clone()).map_err(snapshot("job snapshot"))?;
        EventData::Job(Box::new(
            JobView::from_row(job).map_err(|err| RenderError::View(err.to_string()))?,
        ))
    } else if row.printer_id.is_some() {
        let printer: PrinterRow =
            serde_json::from_value(row.snapshot.clone()).map_err(snapshot("printer snapshot"))?;
        EventData::Printer(Box::new(PrinterView::from_row_at(
            printer,
            breaker_threshold,
            row.created_at,
        )))
    } else {
        #[derive(Deserialize)]
        struct Ping {
            endpoint_id: Uuid,
        }
        let ping: Ping = serde_json::from_value(row.snapshot.clone()).map_err(snapshot("ping"))?;
        EventData::Ping(PingData {
            endpoint_id: ping.endpoint_id,
        })
    };
    Ok(Event {
        id: event_id(row.id),
        kind: row.kind.clone(),
        timestamp: row.created_at,
        sequence: row.sequence.unwrap_or(row.id),
        data,
    })
}

/// The JSON body of a delivery.
pub fn render_body(row: &OutboxEventRow, breaker_threshold: i32) -> Result<Vec<u8>, RenderError> {
    let event = render(row, breaker_threshold)?;
    serde_json::to_vec(&event).map_err(RenderError::Encode)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only these types, comma-separated (e.g. `job.completed,job.failed`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// `next_cursor` of the previous page; absent = from the oldest event kept.
    pub cursor: Option<String>,
    /// 1-500, default 100.
    pub limit: Option<u32>,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Pass as `cursor` next time. When `items` is empty, poll again later with the same
    /// cursor: events appear in the order their changes committed, none is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The events of your jobs and of the printers, oldest first: the webhook stream as a feed.
///
/// Keep the `next_cursor` of each page and poll with it: one cheap request covers every job.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Bad type, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Scoped<JobsRead>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be between 1 and 500, got {limit}."),
        ));
    }
    let types = match query.kind.as_deref() {
        None => Vec::new(),
        Some(list) => parse_event_types(list.split(',').map(str::trim))
            .map_err(|detail| ApiError::bad_request("invalid_query", detail.to_string()))?,
    };
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let (rows, last) =
        store::webhooks::feed(&state.pool, &caller.tenant, &types, after, limit).await?;
    let threshold = state.engine.settings().breaker_threshold;
    let items = rows
        .iter()
        .map(|row| render(row, threshold).map_err(|err| ApiError::Internal(err.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = last.or(after).map(encode_cursor);
    Ok(Json(EventPage { items, next_cursor }))
}

/// An event type name that is not one of [`EVENT_TYPES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown event type {0:?}; the types are {types}.", types = EVENT_TYPES.join(", "))]
pub struct UnknownEventType(String);

/// Checks event type names against [`EVENT_TYPES`].
pub fn parse_event_types<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>, UnknownEventType> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !EVENT_TYPES.contains(&name) {
            return Err(UnknownEventType(name.to_owned()));
        }
        if !out.iter().any(|t| t == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn encode_cursor(cursor: FeedCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("e1:{}:{}", cursor.txid, cursor.id))
}

fn decode_cursor(raw: &str) -> Result<FeedCursor, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_cursor",
            "`cursor` is not one this API issued; pass `next_cursor` from the previous page unchanged.",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some("e1"), Some(txid), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad);
    Ok(FeedCursor {
        txid: number(txid)?,
        id: number(id)?,
    })
}
