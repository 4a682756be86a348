//! `POST /webhooks/wecom`: WeCom push callbacks (`wecom-cloud-printer-reference.md`, "Push
//! callbacks"). No API key: the message is authenticated by `msg_signature` (SHA-1 over the
//! sorted callback token, timestamp, nonce and ciphertext, compared in constant time) and
//! decrypted with the callback EncodingAESKey. WeCom wants an answer within 1000 ms, so the
//! handler only verifies, de-duplicates on `base_info.req_id` (a row per message, shared by
//! every replica) and queues the message; the WeCom bridge does the work in the background.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, Problem, Query};
use crate::backends::wecom::crypto::{AesKey, signature_matches};
use crate::backends::wecom::wire::{PushBody, PushMessage};
use crate::store::{self, wecom::NewPush};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// SHA-1 of the sorted (token, timestamp, nonce, encrypt).
    pub msg_signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    /// URL verification only (GET): the encrypted string to echo back decrypted.
    pub echostr: Option<String>,
}

/// The body WeCom posts.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"tousername": "ww1234", "encrypt": "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS"}))]
pub struct WecomPushBody {
    pub tousername: Option<String>,
    /// base64(AES-256-CBC(random ‖ length ‖ message ‖ receive id)).
    pub encrypt: String,
}

/// The largest WeCom push body read (WeCom's are under 64 KB); only read once the
/// signature parameters are there.
pub const WECOM_PUSH_MAX_BYTES: usize = 64 * 1024;

struct CallbackKeys {
    token: String,
    key: AesKey,
}

fn keys(state: &AppState) -> Result<CallbackKeys, ApiError> {
    let (Some(token), Some(key)) = (
        &state.config.wecom.wecom_callback_token,
        &state.config.wecom.wecom_callback_aes_key,
    ) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "wecom_push_not_configured",
            "WeCom pushes are not configured on this gateway (WECOM_CALLBACK_TOKEN, WECOM_CALLBACK_AES_KEY).",
        ));
    };
    let key = AesKey::from_encoding_aes_key(key.expose_secret())
        .map_err(|_| ApiError::Internal("WECOM_CALLBACK_AES_KEY is invalid".into()))?;
    Ok(CallbackKeys {
        token: token.expose_secret().to_owned(),
        key,
    })
}

fn forged() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "The msg_signature does not match this gateway's WeCom callback token; nothing was done.",
    )
}

fn verify(keys: &CallbackKeys, query: &PushQuery, encrypt: &str) -> Result<(), ApiError> {
    let (Some(signature), Some(timestamp), Some(nonce)) =
        (&query.msg_signature, &query.timestamp, &query.nonce)
    else {
        return Err(forged());
    };
    if signature_matches(&keys.token, timestamp, nonce, encrypt, signature) {
        Ok(())
    } else {
        Err(forged())
    }
}

fn undecryptable() -> ApiError {
    ApiError::bad_request(
        "invalid_wecom_message",
        "The message could not be decrypted with this gateway's EncodingAESKey, or is not a WeCom push message.",
    )
}

fn success() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response()
}

/// WeCom push callback.
///
/// `printer_job_submit` imports the job at once (the pull remains the backstop),
/// `printer_job_del` cancels it, `bind` obtains the device secret, `model_ticket` keeps the
/// newest ticket. Answered with `success` as soon as the message is verified and queued;
/// a repeated `req_id` is answered the same way and ignored. The body (at most 64 KiB) is
/// read only when the signature parameters are present.
#[utoipa::path(post, path = "/webhooks/wecom", tag = "webhooks",
    params(PushQuery),
    request_body = WecomPushBody,
    responses(
        (status = 200, description = "Queued (or a duplicate, ignored)", body = String, content_type = "text/plain"),
        (status = 400, description = "Not a WeCom push, or not decryptable", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad msg_signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "WeCom pushes are not configured", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn wecom_push(
    State(state): State<AppState>,
    Query(query): Query<PushQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let answer = handle_push(state, query, &headers, body).await;
    let result = match &answer {
        Ok(fresh) => {
            crate::observe::CallbackAnswer::Acked(if *fresh { "applied" } else { "duplicate" })
        }
        Err(err) => crate::observe::CallbackAnswer::Refused(err.code()),
    };
    crate::observe::callback(
        crate::backends::wecom::NAME,
        crate::observe::callback_result(result),
    );
    answer.map(|_| success())
}

/// Verifies, decrypts and queues one push; true when it was new.
async fn handle_push(
    state: AppState,
    query: PushQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<bool, ApiError> {
    let keys = keys(&state)?;
    // The signature covers the body, so it can only be checked after reading it: what can be
    // checked first is, and the read is bounded by what WeCom sends.
    if query.msg_signature.is_none() || query.timestamp.is_none() || query.nonce.is_none() {
        return Err(forged());
    }
    let body = super::body::read_limited(
        headers,
        body,
        WECOM_PUSH_MAX_BYTES,
        crate::backends::wecom::NAME,
    )
    .await?;
    let body: PushBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            "invalid_wecom_message",
            "The body must be WeCom's JSON {\"tousername\", \"encrypt\"}.",
        )
    })?;
    verify(&keys, &query, &body.encrypt)?;
    let (plain, _receive_id) = keys
        .key
        .decrypt_message(&body.encrypt)
        .map_err(|_| undecryptable())?;
    let payload: Value = serde_json::from_slice(&plain).map_err(|_| undecryptable())?;
    let message: PushMessage =
        serde_json::from_value(payload.clone()).map_err(|_| undecryptable())?;
    let push = NewPush {
        req_id: message.base_info.req_id.clone(),
        event: message.event.clone(),
        device_sn: message.base_info.device_sn.clone(),
        jobid: message.jobid.clone(),
        open_userid: message.open_userid.clone(),
        payload,
    };
    let fresh = store::wecom::enqueue_push(&state.pool, &push).await?;
    tracing::info!(
        req_id = %push.req_id,
        event = %push.event,
        duplicate = !fresh,
        "WeCom push received"
    );
    Ok(fresh)
}

/// WeCom callback URL verification.
///
/// When the callback URL is saved in WeCom, WeCom calls it with `echostr`; the gateway
/// checks the signature and answers the decrypted `echostr`.
#[utoipa::path(get, path = "/webhooks/wecom", tag = "webhooks",
    params(PushQuery),
    responses(
        (status = 200, description = "The decrypted echostr", body = String, content_type = "text/plain"),
        (status = 400, description = "No or undecryptable echostr", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad msg_signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "WeCom pushes are not configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn wecom_verify_url(
    State(state): State<AppState>,
    Query(query): Query<PushQuery>,
) -> Result<Response, ApiError> {
    let keys = keys(&state)?;
    let Some(echostr) = query.echostr.clone() else {
        return Err(ApiError::bad_request(
            "invalid_wecom_message",
            "URL verification needs `echostr`.",
        ));
    };
    verify(&keys, &query, &echostr)?;
    let (plain, _) = keys
        .key
        .decrypt_message(&echostr)
        .map_err(|_| undecryptable())?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        plain,
    )
        .into_response())
}
