//! The one error type that becomes HTTP: `application/problem+json` (RFC 9457) with a
//! stable `code` callers can match on and a `detail` sentence they can act on. Server-side
//! failures are logged in full and answered with an opaque 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backends::VendorError;
use crate::domain::ErrorCode;
use crate::engine::EngineError;
use crate::service::printers::vendor_words;
use crate::service::{Refusal, ServiceError};
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/printer_disabled",
    "title": "Printer disabled",
    "status": 409,
    "code": "printer_disabled",
    "detail": "Printer `office-2f` is disabled; enable it with PATCH /v1/printers/office-2f or choose another printer."
}))]
pub struct Problem {
    /// `/problems/{code}`: stable, one per code.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code.
    pub code: String,
    /// What was wrong, in words a caller can act on.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Client {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The database cannot be reached right now: 503 with `Retry-After`, never a 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// Seconds a caller is told to wait when the database is away.
pub const RETRY_AFTER_SECS: u32 = 2;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Client {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// The stable code this error is answered with (`internal` for server faults).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} does not exist."),
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(scope: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "This API key lacks the `{scope}` scope; create a key with it (print-gateway api-keys create --scopes {scope})."
            ),
        )
    }

    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

/// A `detail` is cut to this many characters (caller input quoted in it is already cut to
/// [`super::bounds::QUOTE_MAX_CHARS`]; this is the backstop for every other sentence).
const DETAIL_MAX_CHARS: usize = 1024;

pub fn problem_response(status: StatusCode, code: &str, detail: String) -> Response {
    let detail = match detail.char_indices().nth(DETAIL_MAX_CHARS) {
        Some((at, _)) => format!("{}…", &detail[..at]),
        None => detail,
    };
    let body = Problem {
        kind: format!("/problems/{code}"),
        title: title(status),
        status: status.as_u16(),
        code: code.to_owned(),
        detail,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                code,
                detail,
            } => problem_response(status, code, detail),
            ApiError::Unavailable(message) => {
                tracing::warn!(error = %message, "database unavailable; answered 503");
                let mut response = problem_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    format!(
                        "The gateway's database is unavailable right now; nothing was changed. Try again in {RETRY_AFTER_SECS} s."
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                response
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "request failed");
                problem_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "The gateway failed to handle this request; it has been logged. Try again later.".into(),
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Db(db) => db.into(),
            StoreError::Objects(detail) => ApiError::Unavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&err) {
            ApiError::Unavailable(err.to_string())
        } else {
            ApiError::Internal(err.to_string())
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Refused {
                refusal,
                code,
                detail,
            } => ApiError::new(
                match refusal {
                    Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::Conflict => StatusCode::CONFLICT,
                    Refusal::NotFound => StatusCode::NOT_FOUND,
                    Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                },
                code,
                detail,
            ),
            // Only printer registration asks the vendor; the printers API words it.
            ServiceError::Unverified(err) => {
                with_verify_hint(vendor_problem(VendorCall::Setup, &err))
            }
            ServiceError::Store(err) => err.into(),
            ServiceError::Internal(message) => ApiError::Internal(message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Store(store) => store.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::unprocessable(
                "invalid_field",
                format!(
                    "The JSON body does not match the expected shape: {}",
                    err.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                ),
            ),
            JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(
                "invalid_json",
                format!(
                    "The body is not valid JSON: {}",
                    err.body_text()
                        .trim_start_matches("Failed to parse the request body as JSON: ")
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as `Content-Type: application/json`.",
            ),
            JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large("The request body is larger than MAX_BODY_BYTES allows.")
            }
            other => ApiError::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(
            "invalid_path",
            format!("A path parameter is malformed: {}", rejection.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "A query parameter is malformed: {}",
                rejection
                    .body_text()
                    .trim_start_matches("Failed to deserialize query string: ")
            ),
        )
    }
}

/// JSON body extractor whose rejections are problems. Strings with NUL characters are
/// refused here (Postgres cannot store them in text or jsonb).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        refuse_nul(&value)?;
        serde_json::from_value(value).map(Json).map_err(|err| {
            ApiError::unprocessable(
                "invalid_field",
                format!("The JSON body does not match the expected shape: {err}"),
            )
        })
    }
}

/// Refuses JSON holding a NUL character in any string or key.
pub fn refuse_nul(value: &serde_json::Value) -> Result<(), ApiError> {
    fn has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => {
                map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
            }
            _ => false,
        }
    }
    if has_nul(value) {
        Err(ApiError::unprocessable(
            "invalid_field",
            "Strings may not contain NUL characters (\\u0000).",
        ))
    } else {
        Ok(())
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path extractor whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query extractor whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Turns plain-text error responses from lower layers (body limit, timeout, unknown
/// route, wrong method) into problems, so every error a caller sees has the same shape.
///
/// Also refuses URLs with an encoded NUL (`%00`) in the path or query, before any handler
/// (one middleware for both: each `from_fn` layer costs every request a boxed future).
pub async fn problemify(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    if uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00")) {
        return problem_response(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "The URL contains a NUL character (%00).".into(),
        );
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "No such route; see /docs for the API.".to_owned(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This route does not take that method; see /docs.".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than MAX_BODY_BYTES allows.".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "The request took longer than REQUEST_TIMEOUT_SECS.".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Unsupported Content-Type.".to_owned(),
        ),
        s if s.is_server_error() => (
            "internal_error",
            "The gateway failed to handle this request.".to_owned(),
        ),
        _ => (
            "bad_request",
            "The request could not be handled.".to_owned(),
        ),
    };
    let mut problem = problem_response(status, code, detail);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

fn with_verify_hint(err: ApiError) -> ApiError {
    match err {
        ApiError::Client {
            status,
            code,
            detail,
        } => ApiError::Client {
            status,
            code,
            detail: format!(
                "{detail} The printer was not saved; fix the credentials, or send ?verify=false to save it without asking the vendor."
            ),
        },
        other => other,
    }
}

/// What a vendor call was for, which decides how its failure is told to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorCall<'a> {
    /// A read on a registered printer made for the caller (capabilities, live status, a
    /// vendor's own listing): `vendor` names who answered.
    Read { vendor: &'a str },
    /// An operator's setup call: the registration check of a printer's credentials,
    /// discovery, housekeeping.
    Setup,
}

/// The one table from a vendor error to the caller's answer. The vendor's code and words
/// are included; secrets never are (they are not in errors).
///
/// | error | read | setup |
/// |---|---|---|
/// | backend has no such call | 422 `not_supported` | 502 (its code) |
/// | device busy / offline | 409 (its code), "try again shortly" | 409 (its code) |
/// | printer not found | 409 `printer_not_found` | 502 `printer_not_found` |
/// | printer's credentials refused | 409 `printer_auth_failed` | 422 `vendor_auth_failed` |
/// | gateway's own credentials refused | 502 `vendor_error` | 502 `vendor_app_auth_failed` |
/// | rate limited | 429 `vendor_rate_limited` | 429 `vendor_rate_limited` |
/// | vendor refused the input | 422 `vendor_refused_input` | 409 `vendor_rejected` |
/// | anything else (down, slow, nonsense) | 502 `vendor_error` | 502 (its code) |
pub fn vendor_problem(call: VendorCall<'_>, err: &VendorError) -> ApiError {
    use ErrorCode::*;
    use VendorCall::{Read, Setup};
    let words = vendor_words(err);
    let message = &err.message;
    let own_code = err.code.as_str();
    let (status, code, detail) = match (call, err.code) {
        // The printer's backend has no such call (a WeCom printer has no capabilities).
        (Read { .. }, BackendUnavailable) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_supported",
            format!("{message}{words}."),
        ),
        // Not a fault of the gateway or the vendor: the device is taken (another call
        // holds it) or offline, a state of the printer that conflicts with asking it now.
        (Read { .. }, DeviceBusy | DeviceOffline) => (
            StatusCode::CONFLICT,
            own_code,
            format!("{message}{words}; try again shortly."),
        ),
        (Setup, DeviceBusy | DeviceOffline) => {
            (StatusCode::CONFLICT, own_code, format!("{message}{words}."))
        }
        // The printer as registered no longer matches the vendor (unbound, removed, or its
        // credentials changed there): fix the registration, not a vendor fault.
        (Read { .. }, PrinterNotFound | PrinterAuthFailed) => {
            (StatusCode::CONFLICT, own_code, format!("{message}{words}."))
        }
        (Setup, PrinterAuthFailed) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "vendor_auth_failed",
            format!("The vendor refused the printer's credentials: {message}{words}."),
        ),
        // The gateway's own credentials (not the printer's): a configuration problem.
        (Setup, VendorAuthFailed) => (
            StatusCode::BAD_GATEWAY,
            "vendor_app_auth_failed",
            format!("The vendor refused the gateway's own credentials: {message}{words}."),
        ),
        (Read { vendor }, VendorRateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            own_code,
            format!("{vendor} limits how often this may be asked: {message}{words}."),
        ),
        (Setup, VendorRateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            own_code,
            format!("{message}{words}."),
        ),
        // The vendor refusing what the caller sent (a parameter, a name, a task id) is the
        // caller's error.
        (Read { vendor }, VendorRejected) if !err.outcome_unknown => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "vendor_refused_input",
            format!("{vendor} refused what was sent: {message}{words}."),
        ),
        (Setup, VendorRejected) => (StatusCode::CONFLICT, own_code, format!("{message}{words}.")),
        (Read { vendor }, _) => (
            StatusCode::BAD_GATEWAY,
            "vendor_error",
            format!("{vendor} could not answer ({}): {message}{words}", err.code),
        ),
        (Setup, _) => (
            StatusCode::BAD_GATEWAY,
            own_code,
            format!("{message}{words}."),
        ),
    };
    ApiError::new(status, code, detail)
}
