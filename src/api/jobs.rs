//! `/v1/jobs`: accept (JSON or multipart), read, list, history, cancel, resolve.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::{JobsRead, JobsWrite, PrintersAdmin, Scoped};
use super::error::{ApiError, Json, Path, Problem, Query};
use crate::domain::document::Sniffed;
use crate::domain::{
    DocumentKind, DocumentType, EventSource, JobError, JobOptions, JobState, OptionsMode,
    Transition,
};
use crate::service::jobs::{CancelRequest, Canceled, JobRequest};
use crate::store::documents::NewDocument;
use crate::store::jobs::{JobRow, JobUpdate, ListCursor, ListFilter};
use crate::store::{self};

/// The document to print: exactly one of `url`, `base64`, `text`, `html`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://files.example.com/invoice-1043.pdf"}))]
pub struct DocumentInput {
    /// A public http(s) URL the vendor fetches.
    pub url: Option<String>,
    /// The file's bytes, base64-encoded (standard alphabet).
    pub base64: Option<String>,
    /// Plain text (UTF-8).
    pub text: Option<String>,
    /// An HTML page.
    pub html: Option<String>,
    /// The file's content type; with `base64` it is checked against the file's magic bytes.
    pub content_type: Option<String>,
    /// A file name; its extension may give the type.
    pub filename: Option<String>,
}

/// A new print job.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "printer_id": "demo-lianke",
    "document": {"url": "https://files.example.com/invoice-1043.pdf"},
    "options": {"copies": 2, "paper": "A4"},
    "metadata": {"order": "1043"}
}))]
/// Document kinds per backend: Lianke takes every kind (`url`, `base64`, `text`, `html`;
/// PDF, Office, images, text, HTML); Zhimu takes images and Office files by URL or base64
/// and `text`/`html` inline, not GIF; a PDF for Zhimu (base64 or upload) is rendered by
/// the gateway to one PNG per page (`page_ranges` honoured) and sent as one task per page;
/// a WeCom printer takes no jobs from the API (submit to its target printer).
pub struct CreateJob {
    /// The printer to print on; or give `pool_id`.
    #[schema(min_length = 1, max_length = 64)]
    pub printer_id: Option<String>,
    /// A pool (`/v1/pools`) to print on instead of one printer: the gateway chooses a
    /// member that can print, and moves the job to another while it is still pending if
    /// that one fails. Exactly one of `printer_id` and `pool_id`.
    #[schema(min_length = 1, max_length = 64)]
    pub pool_id: Option<String>,
    pub document: DocumentInput,
    #[serde(default)]
    pub options: JobOptions,
    #[serde(default)]
    pub options_mode: OptionsMode,
    /// Free JSON object, returned as given: at most 16 KiB serialized, 64 keys, 8 levels deep.
    #[schema(schema_with = super::bounds::metadata_schema)]
    pub metadata: Option<Value>,
    /// Fail the job with `expired` if it has not reached the vendor by then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The multipart form of a new job: a `file` part and the other fields as text parts
/// (`options` and `metadata` as JSON text).
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "documents the multipart form for OpenAPI")]
pub struct CreateJobForm {
    #[schema(min_length = 1, max_length = 64)]
    printer_id: Option<String>,
    #[schema(min_length = 1, max_length = 64)]
    pool_id: Option<String>,
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    #[schema(value_type = Option<String>, example = "{\"copies\":2}")]
    options: Option<String>,
    options_mode: Option<OptionsMode>,
    /// A JSON object as text: at most 16 KiB, 64 keys, 8 levels deep.
    #[schema(value_type = Option<String>, max_length = 16384)]
    metadata: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

/// What the API shows of a job's document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentInfo {
    pub kind: DocumentKind,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub doc_type: Option<DocumentType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A print job.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019ab5d2-6a4e-7c1b-9a53-0d8f2e1c4b7a",
    "printer_id": "office-2f",
    "source": "api",
    "state": "processing",
    "state_reason": "printing",
    "vendor_status": "SENDING",
    "vendor_task_id": "581decf2-c6f6-4163-8646-5dcc0c3c1c05",
    "attempts": 1,
    "cancel_requested": false,
    "document": {"kind": "url", "type": "pdf", "size_bytes": 0, "url": "https://files.example.com/invoice-1043.pdf"},
    "options": {"copies": 2, "paper": "A4"},
    "options_mode": "strict",
    "dropped_options": [],
    "metadata": {"order": "1043"},
    "created_at": "2026-11-23T08:00:00Z",
    "updated_at": "2026-11-23T08:00:02Z",
    "dispatched_at": "2026-11-23T08:00:00.050Z"
}))]
pub struct JobView {
    pub id: Uuid,
    /// The tenant that owns the job (what an `admin` key sees across tenants).
    pub tenant: String,
    /// The printer; for a pool job, the member chosen (it may change while the job is
    /// `pending`, never after it was submitted).
    pub printer_id: String,
    /// The pool the job was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    /// What the gateway converted the document from before sending it (`pdf`: rendered to
    /// one PNG per page for a printer that takes images but not PDF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<String>,
    /// Pages sent, when the gateway rendered them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_count: Option<i32>,
    /// `api` or `wecom`.
    pub source: String,
    pub state: JobState,
    /// The finer stage or the reason for the state (e.g. `retry_scheduled`, `printing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The vendor's own status word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_task_id: Option<String>,
    /// Submit attempts so far.
    pub attempts: i32,
    /// When the gateway will next try to submit (pending jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub document: DocumentInfo,
    /// The options applied (after printer defaults and the capability check).
    pub options: JobOptions,
    pub options_mode: OptionsMode,
    /// Options dropped in `best_effort` mode.
    pub dropped_options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl JobView {
    pub fn from_row(row: JobRow) -> Result<JobView, ApiError> {
        let state = row.state;
        let document: DocumentInfo = serde_json::from_value(row.document_info)
            .map_err(|err| ApiError::Internal(format!("job {} document_info: {err}", row.id)))?;
        Ok(JobView {
            id: row.id,
            tenant: row.tenant,
            printer_id: row.printer_id,
            pool_id: row.pool_id,
            converted_from: row.converted_from,
            page_count: row.page_count,
            source: row.source.as_str().to_owned(),
            state,
            state_reason: row.state_reason,
            vendor_status: row.vendor_status,
            error: row.error.map(|e| e.0),
            vendor_task_id: row.vendor_task_id,
            attempts: row.attempts,
            next_attempt_at: if state == JobState::Pending {
                row.due_at
            } else {
                None
            },
            cancel_requested: row.cancel_requested,
            document,
            options: row.options.0,
            options_mode: row.options_mode,
            dropped_options: row.dropped_options,
            metadata: row.metadata,
            idempotency_key: row.idempotency_key,
            created_at: row.created_at,
            updated_at: row.updated_at,
            dispatched_at: row.dispatched_at,
            completed_at: row.completed_at,
            expires_at: row.expires_at,
        })
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One entry of a job's history.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 42, "at": "2026-11-23T08:00:00.050Z", "source": "dispatcher", "kind": "state_changed",
    "from_state": "pending", "to_state": "processing", "reason": "submitted",
    "vendor_payload": {"code": 200, "msg": "success", "data": {"task_id": "581decf2-c6f6-4163-8646-5dcc0c3c1c05"}}
}))]
pub struct JobEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub source: EventSource,
    /// `accepted`, `state_changed`, `retry_scheduled`, `vendor_progress`, `cancel_requested`, …
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_state: Option<JobState>,
    pub to_state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The vendor's raw answer or callback body, where there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_payload: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvents {
    pub items: Vec<JobEvent>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// pending, processing, unconfirmed, completed, failed or canceled.
    pub state: Option<String>,
    pub printer_id: Option<String>,
    /// `api` or `wecom`.
    pub source: Option<String>,
    /// RFC 3339; only jobs created after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// RFC 3339; only jobs created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// 1-200, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Free search, exact match: a job id, an idempotency key or a vendor task id.
    #[param(max_length = 255)]
    pub q: Option<String>,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Set on the answer to a replayed request (the original job, not a new one).
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Accept a print job.
///
/// Stores the job and answers at once with 202; the vendor is contacted in the background.
/// With an `Idempotency-Key` header, a replay with the same body returns the original job
/// with 200, and the same key with another body is refused with 422.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1-255 visible ASCII characters, scoped to your tenant.")),
    request_body(content(
        (CreateJob = "application/json"),
        (CreateJobForm = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "Accepted", body = JobView),
        (status = 200, description = "Replay of an earlier request with the same Idempotency-Key (header `Idempotent-Replayed: true`)", body = JobView,
            headers(("Idempotent-Replayed" = String, description = "`true`: this is the original job, nothing new was accepted"))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:write`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The printer is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or document too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, unknown printer, unsupported option or document, reused Idempotency-Key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_job(
    State(state): State<AppState>,
    caller: Scoped<JobsWrite>,
    request: Request,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(request.headers())?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();

    let (input, upload, request_hash) = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|err| {
                ApiError::bad_request(
                    "invalid_multipart",
                    format!("The multipart body is malformed: {}", err.body_text()),
                )
            })?;
        read_multipart(multipart).await?
    } else if content_type.starts_with("application/json") || content_type.contains("+json") {
        let body = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .map_err(|_| {
                ApiError::too_large("The request body is larger than MAX_BODY_BYTES allows.")
            })?;
        let value: Value = serde_json::from_slice(&body).map_err(|err| {
            ApiError::bad_request("invalid_json", format!("The body is not valid JSON: {err}"))
        })?;
        super::error::refuse_nul(&value)?;
        let hash = canonical_hash(&value);
        let input: CreateJob = serde_json::from_value(value).map_err(|err| {
            ApiError::unprocessable(
                "invalid_field",
                format!("The job does not match the expected shape: {err}"),
            )
        })?;
        (input, None, hash)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the job as `application/json` or as `multipart/form-data` with a `file` part.",
        ));
    };

    if let Some(metadata) = &input.metadata {
        super::bounds::check_metadata(metadata)?;
    }
    let (printer_id, pool_id) = match (input.printer_id, input.pool_id) {
        (Some(printer), None) => (printer, None),
        (None, Some(pool)) => (String::new(), Some(pool)),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "Give exactly one of `printer_id` and `pool_id`.",
            ));
        }
    };
    for (field, value) in [
        ("printer_id", Some(&printer_id)),
        ("pool_id", pool_id.as_ref()),
    ] {
        if let Some(value) = value
            && value.chars().count() > super::bounds::PRINTER_ID_MAX
        {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!(
                    "`{field}` is at most {} characters; got `{}`.",
                    super::bounds::PRINTER_ID_MAX,
                    super::bounds::quote(value)
                ),
            ));
        }
    }
    let document = parse_document(&input.document, upload, state.config.max_document_bytes)?;
    let info = document.info();
    let service = state.service();
    let new_job = service
        .prepare_job(JobRequest {
            tenant: caller.tenant.clone(),
            printer_id,
            pool_id,
            options: input.options,
            options_mode: input.options_mode,
            metadata: input.metadata,
            expires_at: input.expires_at,
            document_kind: info.kind,
            doc_type: info.doc_type,
            document_info: serde_json::to_value(&info)
                .map_err(|err| ApiError::Internal(err.to_string()))?,
            idempotency_key: idempotency_key.clone(),
            request_hash: Some(request_hash.clone()),
            source: EventSource::Api,
            vendor_ids: None,
        })
        .await?;
    match service
        .accept_job(new_job, document.new_document, EventSource::Api)
        .await?
    {
        Some(row) => {
            let location = format!("/v1/jobs/{}", row.id);
            let view = JobView::from_row(row)?;
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(view),
            )
                .into_response())
        }
        None => {
            // The key was used before: same request → the original job; else refuse.
            let key = idempotency_key.unwrap_or_default();
            let existing = store::jobs::get_by_idempotency_key(&state.pool, &caller.tenant, &key)
                .await?
                .ok_or_else(|| ApiError::Internal("idempotency conflict without a job".into()))?;
            if existing.request_hash.as_deref() == Some(request_hash.as_slice()) {
                Ok((
                    StatusCode::OK,
                    [(IDEMPOTENT_REPLAYED, "true")],
                    Json(JobView::from_row(existing)?),
                )
                    .into_response())
            } else {
                Err(ApiError::unprocessable(
                    "idempotency_key_reused",
                    format!(
                        "Idempotency-Key `{key}` was already used with a different request (job {}); use a new key for a new job.",
                        existing.id
                    ),
                ))
            }
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters.",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// SHA-256 of the JSON with object keys sorted, so key order does not change the hash.
fn canonical_hash(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for key in keys {
                    out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                    out.push(b':');
                    write(&map[key], out);
                    out.push(b',');
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for item in items {
                    write(item, out);
                    out.push(b',');
                }
                out.push(b']');
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    Sha256::digest(&out).to_vec()
}

/// A file part from a multipart request.
pub struct Upload {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

async fn read_multipart(
    mut multipart: Multipart,
) -> Result<(CreateJob, Option<Upload>, Vec<u8>), ApiError> {
    let bad = |detail: String| ApiError::bad_request("invalid_multipart", detail);
    let mut fields = serde_json::Map::new();
    let mut upload = None;
    let mut hasher = Sha256::new();
    while let Some(field) = multipart.next_field().await.map_err(|err| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("The request body is larger than MAX_BODY_BYTES allows.")
        } else {
            bad(format!(
                "The multipart body is malformed: {}",
                err.body_text()
            ))
        }
    })? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(|err| {
                    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::too_large(
                            "The request body is larger than MAX_BODY_BYTES allows.",
                        )
                    } else {
                        bad(format!(
                            "The `file` part could not be read: {}",
                            err.body_text()
                        ))
                    }
                })?;
                hasher.update(b"file\0");
                hasher.update(filename.as_deref().unwrap_or("").as_bytes());
                hasher.update(b"\0");
                hasher.update(Sha256::digest(&bytes));
                upload = Some(Upload {
                    filename,
                    content_type,
                    bytes,
                });
            }
            "printer_id" | "pool_id" | "options" | "options_mode" | "metadata" | "expires_at" => {
                let text = field.text().await.map_err(|err| {
                    bad(format!(
                        "The `{name}` part could not be read: {}",
                        err.body_text()
                    ))
                })?;
                let value = match name.as_str() {
                    "options" | "metadata" => serde_json::from_str(&text).map_err(|err| {
                        ApiError::unprocessable(
                            "invalid_field",
                            format!("The `{name}` part must be JSON: {err}"),
                        )
                    })?,
                    _ => Value::String(text),
                };
                fields.insert(name, value);
            }
            other => {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!(
                        "Unknown multipart part `{other}`; expected file, printer_id or pool_id, options, options_mode, metadata, expires_at."
                    ),
                ));
            }
        }
    }
    let Some(upload) = upload else {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "The multipart body needs a `file` part.",
        ));
    };
    let fields_value = Value::Object(fields.clone());
    super::error::refuse_nul(&fields_value)?;
    hasher.update(canonical_hash(&fields_value));
    fields.insert("document".into(), Value::Object(serde_json::Map::new()));
    let input: CreateJob = serde_json::from_value(Value::Object(fields)).map_err(|err| {
        ApiError::unprocessable(
            "invalid_field",
            format!("The job does not match the expected shape: {err}"),
        )
    })?;
    Ok((input, Some(upload), hasher.finalize().to_vec()))
}

/// A parsed document, ready for the store.
pub struct ParsedDocument {
    pub new_document: NewDocument,
}

impl ParsedDocument {
    pub fn info(&self) -> DocumentInfo {
        let d = &self.new_document;
        DocumentInfo {
            kind: d.kind,
            doc_type: d.doc_type,
            content_type: d.content_type.clone(),
            filename: d.filename.clone(),
            size_bytes: d.size() as u64,
            url: d.url.clone(),
        }
    }
}

/// Turns the caller's document into a stored document: one source, size within limits,
/// declared type consistent with the bytes.
pub fn parse_document(
    input: &DocumentInput,
    upload: Option<Upload>,
    max_bytes: u64,
) -> Result<ParsedDocument, ApiError> {
    let too_big = |size: u64| {
        ApiError::too_large(format!(
            "The document is {size} bytes; the limit is {max_bytes} bytes (MAX_DOCUMENT_BYTES)."
        ))
    };
    let given = [
        input.url.is_some(),
        input.base64.is_some(),
        input.text.is_some(),
        input.html.is_some(),
        upload.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(ApiError::unprocessable(
            "invalid_document",
            "`document` must have exactly one of `url`, `base64`, `text` or `html` (or send a multipart `file` part instead).",
        ));
    }
    let declared = declared_type(input.content_type.as_deref(), input.filename.as_deref())?;

    if let Some(upload) = upload {
        if upload.bytes.len() as u64 > max_bytes {
            return Err(too_big(upload.bytes.len() as u64));
        }
        let part_type = upload
            .content_type
            .as_deref()
            .filter(|ct| !ct.starts_with("application/octet-stream"));
        let declared = declared_type(part_type, upload.filename.as_deref())?;
        let doc_type = checked_type(declared, &upload.bytes)?;
        return Ok(ParsedDocument {
            new_document: NewDocument {
                kind: DocumentKind::Upload,
                doc_type: Some(doc_type),
                content_type: Some(doc_type.content_type().to_owned()),
                filename: Some(
                    upload
                        .filename
                        .unwrap_or_else(|| format!("document.{}", doc_type.extension())),
                ),
                url: None,
                content: Some(upload.bytes),
            },
        });
    }
    if let Some(url) = &input.url {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && url.len() <= 2048)
            .ok_or_else(|| ApiError::unprocessable("invalid_document", format!("`document.url` must be an http(s) URL of at most 2048 characters, got {url:?}.")))?;
        let doc_type = declared.or_else(|| DocumentType::from_extension(parsed.path()));
        return Ok(ParsedDocument {
            new_document: NewDocument {
                kind: DocumentKind::Url,
                doc_type,
                content_type: doc_type.map(|t| t.content_type().to_owned()),
                filename: input.filename.clone(),
                url: Some(url.clone()),
                content: None,
            },
        });
    }
    if let Some(encoded) = &input.base64 {
        let estimated = (encoded.len() as u64 / 4) * 3;
        if estimated > max_bytes + 3 {
            return Err(too_big(estimated));
        }
        let cleaned: String = encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cleaned.as_bytes())
            .map_err(|err| {
                ApiError::unprocessable(
                    "invalid_document",
                    format!("`document.base64` is not valid base64: {err}."),
                )
            })?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        let doc_type = checked_type(declared, &bytes)?;
        return Ok(ParsedDocument {
            new_document: NewDocument {
                kind: DocumentKind::Base64,
                doc_type: Some(doc_type),
                content_type: Some(doc_type.content_type().to_owned()),
                filename: Some(
                    input
                        .filename
                        .clone()
                        .unwrap_or_else(|| format!("document.{}", doc_type.extension())),
                ),
                url: None,
                content: Some(Bytes::from(bytes)),
            },
        });
    }
    let (kind, doc_type, text) = match (&input.text, &input.html) {
        (Some(text), _) => (DocumentKind::Text, DocumentType::Text, text),
        (_, Some(html)) => (DocumentKind::Html, DocumentType::Html, html),
        _ => unreachable!("exactly one source was checked above"),
    };
    if text.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_document",
            format!("`document.{}` is empty.", kind.as_str()),
        ));
    }
    if text.len() as u64 > max_bytes {
        return Err(too_big(text.len() as u64));
    }
    Ok(ParsedDocument {
        new_document: NewDocument {
            kind,
            doc_type: Some(doc_type),
            content_type: Some(format!("{}; charset=utf-8", doc_type.content_type())),
            filename: Some(
                input
                    .filename
                    .clone()
                    .unwrap_or_else(|| format!("document.{}", doc_type.extension())),
            ),
            url: None,
            content: Some(Bytes::from(text.clone().into_bytes())),
        },
    })
}

fn declared_type(
    content_type: Option<&str>,
    filename: Option<&str>,
) -> Result<Option<DocumentType>, ApiError> {
    if let Some(ct) = content_type {
        return DocumentType::from_content_type(ct)
            .map(Some)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unsupported_document_type",
                    format!(
                        "Content type {ct:?} is not a supported document type; supported: {}.",
                        DocumentType::all_names().join(", ")
                    ),
                )
            });
    }
    Ok(filename.and_then(DocumentType::from_extension))
}

/// The declared type must agree with the magic bytes; without a declaration, the bytes decide.
fn checked_type(declared: Option<DocumentType>, bytes: &[u8]) -> Result<DocumentType, ApiError> {
    let sniffed = DocumentType::sniff(bytes);
    match declared {
        Some(t) if t.matches(sniffed) => Ok(t),
        Some(t) => Err(ApiError::unprocessable(
            "document_type_mismatch",
            format!(
                "The document was declared as {} but its content is not a {} file.",
                t.extension(),
                t.extension()
            ),
        )),
        None => match sniffed {
            Sniffed::Exactly(t) => Ok(t),
            _ => Err(ApiError::unprocessable(
                "unsupported_document_type",
                "The document's type could not be told from its bytes; give `content_type` or a `filename` with an extension.",
            )),
        },
    }
}

/// Get a job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Scoped<JobsRead>,
    Path(id): Path<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    let row = store::jobs::get_visible(&state.pool, caller.readable_tenant(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Job {id}")))?;
    Ok(Json(JobView::from_row(row)?))
}

/// List jobs, newest first, with a keyset cursor.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = [])),
    params(ListJobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Scoped<JobsRead>,
    Query(query): Query<ListJobsQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be between 1 and 200, got {limit}."),
        ));
    }
    let job_state = match query.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("`state` must be one of pending, processing, unconfirmed, completed, failed, canceled; got {s:?}."))
        })?),
    };
    let source = match query.source.as_deref() {
        None => None,
        Some(s) => Some(
            EventSource::parse(s)
                .filter(|source| matches!(source, EventSource::Api | EventSource::Wecom))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("`source` must be `api` or `wecom`, got {s:?}."),
                    )
                })?,
        ),
    };
    if query.q.as_ref().is_some_and(|q| q.len() > 255) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`q` is an id, idempotency key or vendor task id of at most 255 characters.",
        ));
    }
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = ListFilter {
        state: job_state,
        printer_id: query.printer_id,
        source,
        created_after: query.created_after,
        created_before: query.created_before,
        search: query
            .q
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_owned()),
    };
    let (rows, more) = store::jobs::list(
        &state.pool,
        caller.readable_tenant(),
        &filter,
        cursor,
        limit,
    )
    .await?;
    let next_cursor = if more {
        rows.last().map(|r| {
            encode_cursor(ListCursor {
                created_at: r.created_at,
                id: r.id,
            })
        })
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(JobView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(JobPage { items, next_cursor }))
}

fn encode_cursor(cursor: ListCursor) -> String {
    let raw = format!("v1:{}:{}", cursor.created_at.timestamp_micros(), cursor.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(raw: &str) -> Result<ListCursor, ApiError> {
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
    let (Some("v1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(ListCursor { created_at, id })
}

/// A job's history: every state change with its source and the vendor's raw payloads.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Events, oldest first", body = JobEvents),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn job_events(
    State(state): State<AppState>,
    caller: Scoped<JobsRead>,
    Path(id): Path<Uuid>,
) -> Result<Json<JobEvents>, ApiError> {
    store::jobs::get_visible(&state.pool, caller.readable_tenant(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Job {id}")))?;
    let rows = store::events::for_job(&state.pool, id).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(JobEvent {
            id: row.id,
            at: row.at,
            source: row.source,
            kind: row.kind.clone(),
            from_state: row.from_state,
            to_state: row.to_state,
            reason: row.reason,
            message: row.message,
            vendor_payload: row.vendor_payload,
        });
    }
    Ok(Json(JobEvents { items }))
}

/// Cancel a job.
///
/// A pending job is canceled at once (200). A job the vendor already has is canceled
/// there in the background (202, `cancel_requested: true`); vendors without a cancel call
/// answer 409. Finished jobs answer 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        (status = 202, description = "Cancel requested from the vendor", body = JobView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:write`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Finished, or the vendor cannot cancel", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Scoped<JobsWrite>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let request = CancelRequest {
        source: EventSource::Api,
        reason: "canceled",
        message: None,
    };
    let (status, row) = match state
        .service()
        .cancel_job(Some(&caller.tenant), id, &request)
        .await?
    {
        Canceled::Now(row) => (StatusCode::OK, row),
        Canceled::Requested(row) | Canceled::AlreadyRequested(row) => (StatusCode::ACCEPTED, row),
    };
    Ok((status, Json(JobView::from_row(row)?)).into_response())
}

/// How an operator settles an `unconfirmed` job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolveOutcome {
    /// It printed: the job becomes `completed`.
    Printed,
    /// It did not print: the job becomes `failed` with code `operator_not_printed`.
    NotPrinted,
}

/// An operator's word on an `unconfirmed` job.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "printed", "note": "checked the tray on 2F: invoice 1043 is there"}))]
pub struct ResolveRequest {
    pub outcome: ResolveOutcome,
    /// Why, in the operator's words; kept in the job's history (at most 1,000 characters).
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

const MAX_NOTE_CHARS: usize = 1000;

/// Settle an unconfirmed job.
///
/// For a job whose submit's outcome the gateway could not determine (`state:
/// unconfirmed`): an operator who checked the printer says whether it printed. `printed`
/// makes it `completed`, `not_printed` makes it `failed` with code `operator_not_printed`
/// (resubmit it if it is still wanted). The event's source is `operator` and carries the
/// note. Any other state answers 409: the gateway settles those itself.
#[utoipa::path(post, path = "/v1/jobs/{id}/resolve", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    request_body(content = ResolveRequest, examples(
        ("printed" = (summary = "It printed", value = json!({"outcome": "printed", "note": "the page is in the tray"}))),
        ("not_printed" = (summary = "It did not print", value = json!({"outcome": "not_printed", "note": "nothing came out; resubmitting"}))),
    )),
    responses(
        (status = 200, description = "Settled: the job as it is now", body = JobView),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `printers:admin`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not `unconfirmed`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown outcome or a note that is too long", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resolve_job(
    State(state): State<AppState>,
    caller: Scoped<PrintersAdmin>,
    Path(id): Path<Uuid>,
    request: Request,
) -> Result<Json<JobView>, ApiError> {
    // The scope is checked before the body is read.
    let Json(body) = Json::<ResolveRequest>::from_request(request, &state).await?;
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`note` may hold at most {MAX_NOTE_CHARS} characters."),
        ));
    }
    let row = store::jobs::get(&state.pool, &caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("Job {id}")))?;
    let current = row.state;
    if current != JobState::Unconfirmed {
        return Err(ApiError::conflict(
            "job_not_unconfirmed",
            format!(
                "Job {id} is {current}, not unconfirmed; only an unconfirmed job is settled by an operator."
            ),
        ));
    }
    let said = note.map(|n| format!(": {n}")).unwrap_or_default();
    let update = match body.outcome {
        ResolveOutcome::Printed => JobUpdate::transition(
            Transition::new(current, JobState::Completed)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            EventSource::Operator,
        )
        .reason("operator_printed")
        .message(format!("an operator settled the job as printed{said}")),
        ResolveOutcome::NotPrinted => {
            let message = format!("an operator settled the job as not printed{said}");
            JobUpdate::transition(
                Transition::new(current, JobState::Failed)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                EventSource::Operator,
            )
            .reason("operator_not_printed")
            .message(message.clone())
            .error(JobError {
                code: crate::domain::ErrorCode::OperatorNotPrinted,
                message,
                vendor_code: None,
                vendor_message: None,
            })
        }
    };
    match store::jobs::apply_on(&state.pool, id, &update).await? {
        Some(row) => {
            tracing::info!(job_id = %id, outcome = ?body.outcome, "an operator settled an unconfirmed job");
            Ok(Json(JobView::from_row(row)?))
        }
        None => Err(ApiError::conflict(
            "job_not_unconfirmed",
            format!("Job {id} was settled by other evidence meanwhile; read it again."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = ListCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in [
            "",
            "abc",
            "djE6eDp5",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v2:1:x"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_hash_ignores_key_order_only() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":[1,2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"d":[1,2],"c":2},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"d":[2,1],"c":2},"a":1}"#).unwrap();
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_ne!(canonical_hash(&a), canonical_hash(&c));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The longer side of the preview in pixels: 16-1024, default 320.
    pub size: Option<u32>,
}

/// A small PNG of the job's first page (PDF and image jobs whose bytes the gateway holds).
#[utoipa::path(get, path = "/v1/jobs/{id}/preview.png", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id"), PreviewQuery),
    responses(
        (status = 200, description = "The first page as PNG", content_type = "image/png", body = Vec<u8>),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No preview for this document: not a PDF or an image, given by URL, or its bytes were purged (`preview_unavailable`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The document cannot be rendered (`document_unrenderable`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn job_preview(
    State(state): State<AppState>,
    caller: Scoped<JobsRead>,
    Path(id): Path<Uuid>,
    Query(query): Query<PreviewQuery>,
) -> Result<Response, ApiError> {
    let size = query.size.unwrap_or(320);
    if !(16..=1024).contains(&size) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`size` must be between 16 and 1024, got {size}."),
        ));
    }
    let tenant = (!caller.is_admin()).then_some(caller.tenant.as_str());
    let png = state.service().job_preview(tenant, id, size).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        png,
    )
        .into_response())
}
