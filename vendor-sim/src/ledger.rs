//! The record of every vendor request the simulator received, so tests can assert
//! "this job was submitted exactly once". Secrets are masked before they are stored.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Which fake vendor answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Lianke,
    Zhimu,
    Wecom,
}

impl Vendor {
    /// The vendor serving `path`, by the prefixes the vendors themselves use.
    pub fn from_path(path: &str) -> Option<Vendor> {
        if path.starts_with("/api/") {
            Some(Vendor::Lianke)
        } else if path == "/openapi" || path.starts_with("/openapi/") {
            Some(Vendor::Zhimu)
        } else if path.starts_with("/cgi-bin/") || path.starts_with("/wecom-download/") {
            Some(Vendor::Wecom)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Lianke => "lianke",
            Vendor::Zhimu => "zhimu",
            Vendor::Wecom => "wecom",
        }
    }
}

/// A file part of a multipart request: recorded by name, size and digest, never by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFile {
    /// The form field name (e.g. `jobFile`).
    pub field: String,
    pub file_name: Option<String>,
    pub size: usize,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

/// One request received by a fake vendor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Increasing from 1 in arrival order.
    pub seq: u64,
    pub vendor: Vendor,
    /// The request path, e.g. `/api/print/job` or `/cgi-bin/openhw/device/get_printer_job_list`.
    pub endpoint: String,
    pub method: String,
    /// Query, form and JSON body fields (nested JSON flattened with dots, e.g.
    /// `data.task.controlSn`); secrets masked, long values summarised.
    pub fields: BTreeMap<String, String>,
    pub files: Vec<LedgerFile>,
    pub received_at: DateTime<Utc>,
    /// HTTP status of the reply, once sent.
    pub http_status: Option<u16>,
    /// The vendor's own result code (Lianke `code`, WeCom `errcode`, Zhimu 1/0 for
    /// `success`), once sent.
    pub vendor_code: Option<i64>,
    /// True when a scripted fault answered instead of the vendor logic.
    pub faulted: bool,
}

impl LedgerEntry {
    /// A recorded field, by name (`deviceId`, `task_id`, `data.task.controlSn`, `jobid`, …).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Selects ledger entries; every `Some` must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerFilter {
    pub vendor: Option<Vendor>,
    /// Exact path, e.g. `/api/print/job`.
    pub endpoint: Option<String>,
    /// `GET`, `POST`, `DELETE`.
    pub method: Option<String>,
    /// `name=value` pairs that must all be recorded as given.
    pub fields: BTreeMap<String, String>,
    /// Only entries with `seq` greater than this.
    pub after_seq: Option<u64>,
}

impl LedgerFilter {
    pub fn vendor(vendor: Vendor) -> Self {
        LedgerFilter {
            vendor: Some(vendor),
            ..LedgerFilter::default()
        }
    }

    pub fn endpoint(mut self, method: &str, path: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self.endpoint = Some(path.to_owned());
        self
    }

    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn matches(&self, e: &LedgerEntry) -> bool {
        self.vendor.is_none_or(|v| v == e.vendor)
            && self.endpoint.as_deref().is_none_or(|p| p == e.endpoint)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&e.method))
            && self.after_seq.is_none_or(|s| e.seq > s)
            && self
                .fields
                .iter()
                .all(|(k, v)| e.fields.get(k).is_some_and(|x| x == v))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    entries: Mutex<Vec<LedgerEntry>>,
}

impl Ledger {
    pub(crate) fn record(&self, mut entry: LedgerEntry) -> u64 {
        let mut entries = lock(&self.entries);
        entry.seq = entries.last().map_or(1, |e| e.seq + 1);
        let seq = entry.seq;
        entries.push(entry);
        seq
    }

    pub(crate) fn complete(
        &self,
        seq: u64,
        http_status: u16,
        vendor_code: Option<i64>,
        faulted: bool,
    ) {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.iter_mut().rev().find(|e| e.seq == seq) {
            e.http_status = Some(http_status);
            e.vendor_code = vendor_code;
            e.faulted = faulted;
        }
    }

    pub(crate) fn query(&self, filter: &LedgerFilter) -> Vec<LedgerEntry> {
        lock(&self.entries)
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// Locks a mutex, recovering the data if a previous holder panicked (the simulator's
/// state stays usable for the rest of a test run).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Field names whose values are secrets in one of the three vendor APIs.
const SECRET_FIELDS: &[&str] = &[
    "deviceKey",
    "appkey",
    "appKey",
    "signature",
    "password",
    "device_secret",
    "model_secret",
    "model_ticket",
    "auth_code",
    "device_access_token",
    "model_access_token",
    "Api-Access-Token",
    "ApiKey",
    "token",
    "encoding_aeskey",
];

pub(crate) fn is_secret(name: &str) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(leaf))
}

/// Masks a secret: its length and the first two characters, never the rest.
pub fn mask(value: &str) -> String {
    let head: String = value.chars().take(2).collect();
    format!("{head}***({})", value.chars().count())
}

/// Longer text values (base64 documents, HTML) are summarised by length and digest.
const MAX_FIELD_LEN: usize = 512;

pub(crate) fn field_value(name: &str, value: &str) -> String {
    if is_secret(name) {
        mask(value)
    } else if value.len() > MAX_FIELD_LEN {
        format!(
            "<{} bytes sha256={}>",
            value.len(),
            sha256_hex(value.as_bytes())
        )
    } else {
        value.to_owned()
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Flattens a JSON value into dotted scalar fields (`data.task.name`), at most 4 levels.
pub(crate) fn flatten_json(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    fn go(prefix: &str, value: &Value, depth: usize, out: &mut BTreeMap<String, String>) {
        let text = match value {
            Value::Object(map) if depth < 4 => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    go(&key, v, depth + 1, out);
                }
                return;
            }
            Value::String(s) => s.clone(),
            Value::Null => "null".to_owned(),
            other => other.to_string(),
        };
        if !prefix.is_empty() {
            let v = field_value(prefix, &text);
            out.insert(prefix.to_owned(), v);
        }
    }
    go(prefix, value, 0, out);
}
