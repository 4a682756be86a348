//! WeCom wire formats, field by field as `wecom-get-printer-job-list.md` and
//! `wecom-cloud-printer-reference.md` give them. Every call is a JSON POST with the token in
//! the query string; every reply carries `errcode`/`errmsg`, except the three token calls,
//! which include `errcode` only when they fail.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope every printer call answers with (`errcode` 0 = ok).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// Absent on a successful token call (documented quirk).
    pub errcode: Option<i64>,
    #[serde(default)]
    pub errmsg: Option<String>,
}

// ----- tokens [95992] [95993] [96022]

#[derive(Debug, Serialize)]
pub struct GetModelToken<'a> {
    pub model_id: &'a str,
    pub model_secret: &'a str,
    pub model_ticket: &'a str,
}

#[derive(Deserialize)]
pub struct ModelToken {
    pub model_access_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Serialize)]
pub struct GetDeviceSecret<'a> {
    pub auth_code: &'a str,
}

#[derive(Deserialize)]
pub struct DeviceSecret {
    pub device_secret: String,
    #[serde(default)]
    pub device_access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct GetDeviceToken<'a> {
    pub device_sn: &'a str,
    pub device_secret: &'a str,
}

#[derive(Deserialize)]
pub struct DeviceToken {
    pub device_access_token: String,
    pub expires_in: u64,
}

// ----- device/get_printer_job_list [96407]

/// The list request. With a non-empty `jobid_list` WeCom ignores every other filter.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GetPrinterJobList {
    pub open_userid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// Opaque; absent on the first page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1-200 (WeCom's default is 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub begin_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobid_list: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrinterJobList {
    #[serde(default)]
    pub printer_job_list: Vec<PrinterJob>,
    /// Absent when the list is exhausted.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// One WeCom job as the list shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrinterJob {
    pub jobid: String,
    #[serde(default)]
    pub open_userid: String,
    #[serde(default)]
    pub createtime: i64,
    /// 1 when submitted after a scan.
    #[serde(default)]
    pub submitted: Option<i64>,
    /// 0 unprinted, 1 printed, 2 failed.
    #[serde(default)]
    pub status: u32,
    #[serde(default)]
    pub errcode: Option<i64>,
    #[serde(default)]
    pub errmsg: Option<String>,
    #[serde(default)]
    pub doc_name: String,
    /// Bytes (may be absent for jpg).
    #[serde(default)]
    pub doc_size: Option<u64>,
    #[serde(default)]
    pub setting_list: Vec<Setting>,
    /// Undocumented field of the doc's example (`"state": "machine_02"`), kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

/// A `setting_list` entry: a UTF-8 key and one or more values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    #[serde(default)]
    pub value: Vec<String>,
}

// ----- device/get_printer_job_download_url [96408]

#[derive(Debug, Serialize)]
pub struct GetDownloadUrl<'a> {
    pub jobid: &'a str,
}

#[derive(Deserialize)]
pub struct DownloadUrl {
    /// Valid 10 minutes.
    pub download_url: String,
    pub encoding_aeskey: String,
}

// ----- device/report_printer_job_status [96409]

/// Note the numbers: **1 = failed, 2 = succeeded** (the list uses 1 ok / 2 failed).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReportPrinterJobStatus {
    pub jobid: String,
    pub status: u32,
    /// Required when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// Required when failed, UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
}

// ----- push callbacks [96062]

/// The POST body of a push.
#[derive(Debug, Clone, Deserialize)]
pub struct PushBody {
    #[serde(default)]
    pub tousername: Option<String>,
    pub encrypt: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PushBaseInfo {
    pub req_id: String,
    #[serde(default)]
    pub create_time: Option<i64>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub device_sn: Option<String>,
}

/// A decrypted push message: `base_info` plus the event's own fields.
#[derive(Debug, Clone, Deserialize)]
pub struct PushMessage {
    pub base_info: PushBaseInfo,
    pub event: String,
    #[serde(default)]
    pub open_userid: Option<String>,
    #[serde(default)]
    pub jobid: Option<String>,
    #[serde(default)]
    pub auth_code: Option<String>,
    #[serde(default)]
    pub model_ticket: Option<String>,
}
