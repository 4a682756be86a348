//! Reading request bodies that were buffered by the ledger layer: multipart form-data,
//! query strings and lenient JSON field access.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use serde_json::Value;

/// One part of a multipart/form-data body.
#[derive(Debug, Clone)]
pub(crate) struct FormPart {
    pub name: String,
    /// Present when the part was sent as a file.
    pub file_name: Option<String>,
    pub data: Bytes,
}

/// Parses a buffered multipart body; `Err` carries a reason fit for an error message.
pub(crate) async fn parse_multipart(
    content_type: &str,
    body: Bytes,
) -> Result<Vec<FormPart>, String> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
    let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| e.to_string())?;
        parts.push(FormPart {
            name,
            file_name,
            data,
        });
    }
    Ok(parts)
}

/// Decodes `a=1&b=2` (also used for urlencoded bodies); later duplicates win.
pub(crate) fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON field as text: strings as they are, numbers and booleans printed, else `None`.
pub(crate) fn json_text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a JSON object body; anything else is `None`.
pub(crate) fn json_object(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}
