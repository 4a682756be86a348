//! Vendor callbacks. No API key: Lianke signs nothing, so each job's callback URL carries an
//! HMAC token of the job id (`callback_token`), checked in constant time before anything
//! else. Forged or unknown callbacks change nothing; duplicates are answered 200 (Lianke
//! retries at 0/5/10 s until it gets a 200); only forward moves are applied.
//!
//! A callback is answered once it is durably recorded (the callback inbox, one statement):
//! the engine confirms it with Lianke and applies it afterwards, in batches
//! (`engine::callbacks`), so no request waits on a vendor call.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Json, Path, Problem, Query};
use crate::backends::lianke::webhook::{LiankeCallback, Mismatch};
use crate::backends::lianke::{self, Locator};
use crate::domain::{EventSource, JobState, Transition};
use crate::observe;
use crate::store::callbacks::NewCallback;
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
#[schema(example = json!({"status": "recorded", "job_state": "processing"}))]
pub struct CallbackAck {
    /// `recorded` (kept durably; the gateway confirms the task's state with Lianke and
    /// applies it shortly), `duplicate` (already known or already recorded, nothing
    /// changed).
    pub status: &'static str,
    /// The job's state when the callback was answered.
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

fn mismatch(job_id: Uuid, mismatch: Mismatch) -> ApiError {
    tracing::warn!(%job_id, %mismatch, "Lianke callback for another task or device refused");
    ApiError::conflict("callback_mismatch", mismatch.to_string())
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
/// name the job's `task_id` and `device_id`. Answered 200 once the callback is recorded;
/// the job's state follows after the gateway confirmed the task's state with Lianke.
#[utoipa::path(post, path = "/webhooks/lianke/{job_id}", tag = "webhooks",
    params(("job_id" = String, Path, description = "The job the callback URL was made for"), CallbackQuery),
    request_body = LiankeCallbackBody,
    responses(
        (status = 200, description = "Recorded (applied shortly), or a duplicate of what is known", body = CallbackAck),
        (status = 400, description = "Not a Lianke callback body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task or device is not the job's", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 8 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable, or the job's submit is being settled; Lianke retries", body = Problem, content_type = "application/problem+json"),
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
    let report = callback.report();
    let progress = serde_json::to_value(&report.progress)
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    let device = lianke::device_name(&callback.body.device_id);
    let ends_task = callback.is_terminal();
    let new = NewCallback {
        job_id,
        backend: lianke::NAME,
        device,
        task_id: callback.body.task_id.clone(),
        progress,
        vendor_status: report.vendor_status.clone(),
        body: callback.raw.clone(),
        ends_task,
        // Lianke's own answer is trusted over an unsigned body before a job ends.
        confirm: ends_task && state.config.lianke.lianke_confirm_callbacks,
        lease: state.engine.callback_lease(),
    };
    // One statement checks the job, its printer, device and task and records the callback
    // (with the other callbacks arriving at the same moment); what it found tells the other
    // answers apart. A job still awaiting (or having lost) its submit's answer is settled
    // first, then the callback recorded.
    for _ in 0..3 {
        let receipt = state
            .engine
            .callback_recorder()
            .write(new.clone())
            .await?
            .ok_or_else(unknown_job)?;
        if receipt.recorded {
            state.engine.callback_recorded(&new);
            return Ok(Json(CallbackAck {
                status: "recorded",
                job_state: JobState::Processing,
            }));
        }
        if receipt.backend != lianke::NAME {
            return Err(unknown_job());
        }
        let locator =
            Locator::parse(&receipt.locator).map_err(|err| ApiError::Internal(err.to_string()))?;
        callback
            .check(&locator.device_id, receipt.vendor_task_id.as_deref())
            .map_err(|m| mismatch(job_id, m))?;
        let current = receipt.state;
        match current {
            JobState::Completed | JobState::Failed | JobState::Canceled => {
                return Ok(Json(CallbackAck {
                    status: "duplicate",
                    job_state: current,
                }));
            }
            // This callback (or one that ends the task) is recorded already.
            JobState::Processing if receipt.recorded_task.is_some() => {
                return Ok(Json(CallbackAck {
                    status: "duplicate",
                    job_state: current,
                }));
            }
            // Its recorded callback was applied or replaced meanwhile: look again.
            JobState::Processing => {}
            // The callback arrived on this job's own HMAC-signed URL: Lianke has a task made
            // from this job's submit. That is evidence of the job's task, whether the
            // submit's answer is still in flight (pending) or was lost (unconfirmed) —
            // better evidence than any lookup by time. If the submit's answer gets there
            // first, the next round reads what it recorded.
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
                store::jobs::apply_on(&state.pool, job_id, &confirm).await?;
            }
        }
    }
    Err(not_ready("The job's submit is being settled; try again."))
}
