//! The one router serving all three vendors and the control API, and the layer that
//! records every vendor request in the ledger and applies scripted faults.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use crate::core::Core;
use crate::faults::{FaultAction, FaultTarget};
use crate::form::{parse_multipart, parse_query};
use crate::ledger::{LedgerEntry, LedgerFile, Vendor, field_value, flatten_json, mask, sha256_hex};
use crate::{SimControl, control, lianke, wecom, zhimu};

/// Bodies above this are refused before any vendor logic (Lianke's own limit is 20 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Replies larger than this are not inspected for a vendor code.
const MAX_SNIFF: usize = 1024 * 1024;

pub(crate) fn build(sim: SimControl) -> Router {
    let core = Arc::clone(sim.core());
    Router::new()
        .merge(lianke::router().with_state(Arc::clone(sim.lianke())))
        .merge(zhimu::router().with_state(Arc::clone(sim.zhimu())))
        .merge(wecom::router().with_state(Arc::clone(sim.wecom())))
        .merge(control::router().with_state(sim))
        .layer(middleware::from_fn_with_state(core, observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The vendor's own error envelope for a scripted `VendorError` fault.
fn vendor_fault(vendor: Vendor, code: i64, msg: Option<String>) -> Response {
    match vendor {
        Vendor::Lianke => lianke::fault_reply(code, msg),
        Vendor::Zhimu => zhimu::fault_reply(code, msg),
        Vendor::Wecom => wecom::fault_reply(code, msg),
    }
}

async fn observe(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let Some(vendor) = Vendor::from_path(&path) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let method = parts.method.as_str().to_owned();

    let mut fields = BTreeMap::new();
    let mut files = Vec::new();
    if let Some(q) = parts.uri.query() {
        for (k, v) in parse_query(q) {
            let v = field_value(&k, &v);
            fields.insert(k, v);
        }
    }
    for h in ["ApiKey", "Api-Access-Token"] {
        if let Some(v) = parts.headers.get(h).and_then(|v| v.to_str().ok()) {
            fields.insert(format!("header.{h}"), mask(v));
        }
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        if let Ok(form) = parse_multipart(&content_type, bytes.clone()).await {
            for p in form {
                if p.file_name.is_some() {
                    files.push(LedgerFile {
                        field: p.name,
                        file_name: p.file_name,
                        size: p.data.len(),
                        sha256: sha256_hex(&p.data),
                    });
                } else {
                    let v = field_value(&p.name, &String::from_utf8_lossy(&p.data));
                    fields.insert(p.name, v);
                }
            }
        }
    } else if !bytes.is_empty()
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        flatten_json("", &v, &mut fields);
    }

    let verdict = core.faults.evaluate(&FaultTarget {
        vendor,
        endpoint: &path,
        method: &method,
        fields: &fields,
    });
    tracing::debug!(vendor = vendor.as_str(), %method, %path, ?fields, "vendor request");
    let seq = core.ledger.record(LedgerEntry {
        seq: 0,
        vendor,
        endpoint: path,
        method,
        fields,
        files,
        received_at: Utc::now(),
        http_status: None,
        vendor_code: None,
        faulted: false,
    });

    if !verdict.delay.is_zero() && !core.sleep(verdict.delay).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (resp, faulted) = match verdict.answer {
        Some(FaultAction::VendorError { code, msg }) => (vendor_fault(vendor, code, msg), true),
        Some(FaultAction::HttpStatus { status }) => (
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
            true,
        ),
        Some(FaultAction::Hang) => {
            core.sleep(core.hang_duration).await;
            (StatusCode::GATEWAY_TIMEOUT.into_response(), true)
        }
        Some(FaultAction::HttpStatusAfter { status }) => {
            let req = Request::from_parts(parts, Body::from(bytes));
            let _ = next.run(req).await;
            (
                StatusCode::from_u16(status)
                    .unwrap_or(StatusCode::BAD_GATEWAY)
                    .into_response(),
                true,
            )
        }
        Some(FaultAction::HangAfter) => {
            let req = Request::from_parts(parts, Body::from(bytes));
            let _ = next.run(req).await;
            core.sleep(core.hang_duration).await;
            (StatusCode::GATEWAY_TIMEOUT.into_response(), true)
        }
        Some(FaultAction::Latency { .. }) | None => {
            let req = Request::from_parts(parts, Body::from(bytes));
            (next.run(req).await, false)
        }
    };
    let status = resp.status().as_u16();
    let (resp, code) = sniff_vendor_code(vendor, resp).await;
    core.ledger.complete(seq, status, code, faulted);
    resp
}

/// Reads the vendor result code out of a JSON reply, leaving the reply intact.
async fn sniff_vendor_code(vendor: Vendor, resp: Response) -> (Response, Option<i64>) {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return (resp, None);
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_SNIFF).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    let code = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| match vendor {
            Vendor::Lianke => v.get("code").and_then(Value::as_i64),
            // Token calls omit errcode on success.
            Vendor::Wecom => Some(v.get("errcode").and_then(Value::as_i64).unwrap_or(0)),
            Vendor::Zhimu => v.get("success").and_then(Value::as_bool).map(i64::from),
        });
    (Response::from_parts(parts, Body::from(bytes)), code)
}
