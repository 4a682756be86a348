//! Reading a vendor webhook's body only after its request was authenticated, and only up to
//! what that vendor sends: an unauthenticated post costs no body read at all, an
//! authenticated one at most its route's limit (not `MAX_BODY_BYTES`).

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::error::ApiError;
use crate::observe;

/// Reads at most `limit` bytes of `body`: a `Content-Length` above it is refused before
/// anything is read, a longer stream as soon as it passes the limit (413 either way).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    vendor: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "A {vendor} webhook body is at most {limit} bytes; nothing was done."
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request("invalid_body", "The request body could not be read.")
        })?;
        observe::webhook_body_bytes(vendor, chunk.len());
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
