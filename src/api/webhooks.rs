//! Vendor callbacks. No API key: Lianke signs nothing, so each job's callback URL carries an
//! HMAC token of the job id (`callback_token`), checked in constant time before anything
//! else. Forged or unknown callbacks change nothing; duplicates are answered 200 (Lianke
//! retries at 0/5/10 s until it gets a 200); only forward moves are applied.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Json, Path, Problem, Query};
use crate::backends::TaskReport;
use crate::backends::lianke::webhook::LiankeCallback;
use crate::backends::lianke::{self, Locator};
use crate::domain::{EventSource, JobState, Transition};
use crate::engine::printer_context;
use crate::observe;
use crate::store::{self, jobs::JobUpdate};

/// The largest Lianke callback body read (Lianke's are well under 4 KB); only read once the
/// URL's token is checked.
pub const LIANKE_CALLBACK_MAX_BYTES: usize = 8 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The per-job token the gateway put in the callback URL.
    pub token: Option<String>,
}

/// What the gateway did with a callback.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "applied", "job_state": "completed"}))]
pub struct CallbackAck {
    /// `applied` (the job moved or its stage was recorded), `duplicate` (already known,
    /// nothing changed).
    pub status: &'static str,
    pub job_state: JobState,
}

/// Lianke's result callback, as its doc shows it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "device_id": "lk112312312312", "task_id": "bd85931c-38fa-4891-b1fa-5e1cf160ec12",
    "task_state": "SUCCESS", "create_time": "2022-03-01 17:15:02", "finish_time": "2022-03-01 17:30:58",
    "task_result": {"code": 200, "msg": "success"}
}))]
pub struct LiankeCallbackBody {
    pub device_id: String,
    pub task_id: String,
    /// READY, PARSING, SENDING, SUCCESS, FAILURE, SET_REVOKE, REVOKED.
    pub task_state: String,
    pub create_time: Option<String>,
    pub finish_time: Option<String>,
    #[schema(value_type = Object)]
    pub task_result: Option<serde_json::Value>,
}

fn unknown_job() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_job",
        "No Lianke job has this callback URL.",
    )
}

fn not_ready(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "callback_not_ready",
        detail,
    )
}

/// Lianke result callback for one job.
///
/// Lianke calls the `callbackUrl` the gateway gave it when a task ends. Authenticated by the
/// `token` query parameter, checked before the body is read; the body (at most 8 KiB) must
/// name the job's `task_id` and `device_id`.
#[utoipa::path(post, path = "/webhooks/lianke/{job_id}", tag = "webhooks",
    params(("job_id" = String, Path, description = "The job the callback URL was made for"), CallbackQuery),
    request_body = LiankeCallbackBody,
    responses(
        (status = 200, description = "Applied, or a duplicate of what is known", body = CallbackAck),
        (status = 400, description = "Not a Lianke callback body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task or device is not the job's", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 8 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Lianke could not confirm the task's state (or the database is unavailable); Lianke retries", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn lianke_callback(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CallbackAck>, ApiError> {
    let answer = handle_lianke_callback(state, job_id, query, &headers, body).await;
    let result = match &answer {
        Ok(ack) => observe::CallbackAnswer::Acked(ack.0.status),
        Err(err) => observe::CallbackAnswer::Refused(err.code()),
    };
    observe::callback(lianke::NAME, observe::callback_result(result));
    answer
}

async fn handle_lianke_callback(
    state: AppState,
    job_id: String,
    query: CallbackQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<CallbackAck>, ApiError> {
    // Authenticate first: nothing about jobs is read for a forged callback.
    let job_id = Uuid::parse_str(&job_id).map_err(|_| unknown_job())?;
    let token = query
        .token
        .ok_or_else(|| ApiError::unauthorized("The callback URL has no `token`."))?;
    if !state.engine.callback_keys().verify(job_id, &token) {
        tracing::warn!(%job_id, "Lianke callback with a wrong token refused");
        return Err(ApiError::unauthorized(
            "The callback's token does not match its job.",
        ));
    }
    let body =
        super::body::read_limited(headers, body, LIANKE_CALLBACK_MAX_BYTES, lianke::NAME).await?;
    let callback = LiankeCallback::parse(&body)
        .map_err(|detail| ApiError::bad_request("invalid_callback", detail.to_string()))?;
    let job = store::jobs::get_any(&state.pool, job_id)
        .await?
        .ok_or_else(unknown_job)?;
    let printer = store::printers::get(&state.pool, &job.printer_id)
        .await?
        .filter(|p| p.backend == lianke::NAME)
        .ok_or_else(unknown_job)?;
    let locator =
        Locator::parse(&printer.locator).map_err(|err| ApiError::Internal(err.to_string()))?;
    if let Err(mismatch) = callback.check(&locator.device_id, job.vendor_task_id.as_deref()) {
        tracing::warn!(%job_id, %mismatch, "Lianke callback for another task or device refused");
        return Err(ApiError::conflict(
            "callback_mismatch",
            mismatch.to_string(),
        ));
    }
    let backend = state.target(lianke::NAME)?.clone();
    let current = job.state;
    let duplicate = Json(CallbackAck {
        status: "duplicate",
        job_state: current,
    });
    let job = match current {
        JobState::Completed | JobState::Failed | JobState::Canceled => return Ok(duplicate),
        // The callback arrived on this job's own HMAC-signed URL: Lianke has a task made
        // from this job's submit. That is evidence of the job's task, whether the submit's
        // answer is still in flight (pending) or was lost (unconfirmed) — better evidence
        // than any lookup by time.
        JobState::Pending | JobState::Unconfirmed => {
            let t = Transition::new(current, JobState::Processing)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let confirm = JobUpdate::transition(t, EventSource::Callback)
                .reason("submit_confirmed")
                .message(format!(
                    "Lianke's callback on this job's own callback URL names task {}",
                    callback.body.task_id
                ))
                .vendor_task(callback.body.task_id.clone())
                .payload(Some(callback.raw.clone()))
                .settle_submit()
                .due(chrono::Utc::now());
            match store::jobs::apply_on(&state.pool, job_id, &confirm).await? {
                Some(row) => row,
                // The submit's answer (or another copy of this callback) got there first:
                // read again and carry on with what is recorded now.
                None => {
                    let row = store::jobs::get_any(&state.pool, job_id)
                        .await?
                        .ok_or_else(unknown_job)?;
                    if let Err(mismatch) =
                        callback.check(&locator.device_id, row.vendor_task_id.as_deref())
                    {
                        return Err(ApiError::conflict(
                            "callback_mismatch",
                            mismatch.to_string(),
                        ));
                    }
                    if row.state != JobState::Processing {
                        return Ok(Json(CallbackAck {
                            status: "duplicate",
                            job_state: row.state,
                        }));
                    }
                    row
                }
            }
        }
        JobState::Processing => job,
    };

    let mut report = callback.report();
    if callback.is_terminal() && state.config.lianke.lianke_confirm_callbacks {
        // Trust Lianke's own answer over an unsigned body before ending the job.
        let context = printer_context(&printer, state.engine.keyring())
            .map_err(|err| ApiError::Internal(err.to_string()))?;
        let confirmed = backend
            .task_status(&context, &callback.body.task_id)
            .await
            .map_err(|err| {
                tracing::warn!(%job_id, error = %err, "could not confirm a Lianke callback");
                not_ready("Lianke could not confirm the task's state; try again.")
            })?;
        if confirmed.progress != report.progress {
            tracing::warn!(%job_id, body = %report.vendor_status, vendor = %confirmed.vendor_status,
                "a Lianke callback disagrees with Lianke's task state; using Lianke's");
        }
        report = TaskReport {
            raw: Some(serde_json::json!({
                "callback": callback.raw,
                "confirmation": confirmed.raw,
            })),
            ..confirmed
        };
    }
    let applied = state
        .engine
        .apply_report(&job, report, EventSource::Callback, None, backend.as_ref())
        .await?;
    match applied {
        Some(row) => Ok(Json(CallbackAck {
            status: "applied",
            job_state: row.state,
        })),
        // Another callback copy or a poll got there first.
        None => {
            let now = store::jobs::get_any(&state.pool, job_id)
                .await?
                .ok_or_else(unknown_job)?;
            Ok(Json(CallbackAck {
                status: "duplicate",
                job_state: now.state,
            }))
        }
    }
}
