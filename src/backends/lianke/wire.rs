//! Lianke v3 wire formats, field by field as `lianke-v3.readable.txt` gives them. Names are
//! Lianke's own (`task_state`, `driver_name`, `Capabilities.Papers`, …) so each struct can
//! be checked against the doc line by line.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Every Lianke reply: `{code, msg, data}`, HTTP 200 even for errors (`code` ≠ 200).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(deserialize_with = "lenient_code")]
    pub code: i64,
    #[serde(default)]
    pub msg: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// Lianke writes codes as numbers; accept numeric strings too rather than fail a reply.
fn lenient_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    code_of(&v).ok_or_else(|| serde::de::Error::custom(format!("`code` is not a number: {v}")))
}

pub fn code_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `task_state` of `GET /api/print/job`, `status` of `query_device_task`, and `task_state`
/// of the result callback. Unknown words are kept, never guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiankeTaskState {
    /// READY 排队中
    Ready,
    /// PARSING 解析中
    Parsing,
    /// SENDING 发送中
    Sending,
    /// SUCCESS 成功 (the print result is in `task_result.code`)
    Success,
    /// FAILURE 失败
    Failure,
    /// SET_REVOKE 标记为撤回
    SetRevoke,
    /// REVOKED 撤回成功
    Revoked,
    /// A word the doc does not list.
    Unknown(String),
}

impl LiankeTaskState {
    pub fn parse(s: &str) -> LiankeTaskState {
        match s {
            "READY" => LiankeTaskState::Ready,
            "PARSING" => LiankeTaskState::Parsing,
            "SENDING" => LiankeTaskState::Sending,
            "SUCCESS" => LiankeTaskState::Success,
            "FAILURE" => LiankeTaskState::Failure,
            "SET_REVOKE" => LiankeTaskState::SetRevoke,
            "REVOKED" => LiankeTaskState::Revoked,
            other => LiankeTaskState::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            LiankeTaskState::Ready => "READY",
            LiankeTaskState::Parsing => "PARSING",
            LiankeTaskState::Sending => "SENDING",
            LiankeTaskState::Success => "SUCCESS",
            LiankeTaskState::Failure => "FAILURE",
            LiankeTaskState::SetRevoke => "SET_REVOKE",
            LiankeTaskState::Revoked => "REVOKED",
            LiankeTaskState::Unknown(s) => s,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            LiankeTaskState::Success | LiankeTaskState::Failure | LiankeTaskState::Revoked
        )
    }
}

impl<'de> Deserialize<'de> for LiankeTaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(LiankeTaskState::parse(&String::deserialize(d)?))
    }
}

/// `task_result`: `code` 200 printed, anything else did not (`msg` says why).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskResult {
    #[serde(deserialize_with = "lenient_code")]
    pub code: i64,
    #[serde(default)]
    pub msg: Option<String>,
}

/// `data` of `POST /api/print/job`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubmitData {
    pub task_id: String,
}

/// `data` of `GET /api/print/job`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskData {
    pub task_state: LiankeTaskState,
    #[serde(default)]
    pub task_result: Option<TaskResult>,
}

/// `data` of `POST /api/print/query_device_task` (the device's tasks of the last day),
/// each task kept as sent and read into a [`DeviceTask`] by the caller.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceTaskRows {
    #[serde(default)]
    pub task_list: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeviceTask {
    pub task_id: String,
    #[serde(default)]
    pub result: Option<TaskResult>,
    pub status: LiankeTaskState,
    /// China Standard Time, `YYYY-MM-DD HH:MM:SS`.
    #[serde(default)]
    pub create_at: Option<String>,
}

/// `data` of `GET /api/external_api/printer_list`.
#[derive(Debug, Clone, Deserialize)]
pub struct PrinterList {
    #[serde(default)]
    pub row: Vec<PrinterListRow>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrinterListRow {
    /// The `printerModel` parameter of a submit.
    pub driver_name: String,
    #[serde(default)]
    pub printer_name: Option<String>,
    /// 0 awaiting adaptation, 1 adapted, 2 unsupported.
    #[serde(default)]
    pub driver_type: Option<i64>,
    /// The USB port (`devicePort`); network printers report 631 and use port 1.
    #[serde(default)]
    pub port: Option<u32>,
    /// Whether `printer_status` works for this printer.
    #[serde(default)]
    pub support_status: Option<bool>,
    /// Network printers: idle, printing, stopped (the example also shows `outOfPaper`).
    #[serde(default)]
    pub printer_state: Option<String>,
    #[serde(default)]
    pub ip_addr: Option<String>,
}

/// Port 631 in `printer_list` means a network printer, addressed as `devicePort` 1.
pub const NETWORK_PRINTER_PORT: u32 = 631;

/// `data` of `GET /api/print/printer_params` ("调用后请保存缓存数据").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrinterParams {
    #[serde(rename = "Capabilities", default)]
    pub capabilities: ParamsCapabilities,
    #[serde(rename = "DevMode", default)]
    pub dev_mode: Option<DevMode>,
}

/// Each map is "display name → the value to send" (e.g. `Papers."A4": 9` → `dmPaperSize=9`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ParamsCapabilities {
    #[serde(rename = "Bins", default, deserialize_with = "name_map")]
    pub bins: BTreeMap<String, i64>,
    #[serde(rename = "Color", default, deserialize_with = "name_map")]
    pub color: BTreeMap<String, i64>,
    #[serde(rename = "Copies", default)]
    pub copies: Option<i64>,
    #[serde(rename = "Duplex", default, deserialize_with = "name_map")]
    pub duplex: BTreeMap<String, i64>,
    #[serde(rename = "MediaTypes", default, deserialize_with = "name_map")]
    pub media_types: BTreeMap<String, i64>,
    #[serde(rename = "Orientation", default, deserialize_with = "name_map")]
    pub orientation: BTreeMap<String, i64>,
    #[serde(rename = "Papers", default, deserialize_with = "name_map")]
    pub papers: BTreeMap<String, i64>,
}

/// A `{name: number}` map or `null`; names are trimmed (the doc's paper names carry
/// stray `\r\n`), non-numeric values skipped.
fn name_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i64>, D::Error> {
    let v = Option::<serde_json::Map<String, Value>>::deserialize(d)?;
    Ok(v.unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| code_of(&v).map(|n| (k.trim().to_owned(), n)))
        .collect())
}

/// The driver's defaults, used where the job does not say.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DevMode {
    #[serde(rename = "PaperSize", default)]
    pub paper_size: Option<i64>,
    #[serde(rename = "DefaultSource", default)]
    pub default_source: Option<i64>,
}

/// One row of `GET /api/print/paper_dimension_list` (sizes in 0.1 mm).
#[derive(Debug, Clone, Deserialize)]
pub struct PaperDimension {
    #[serde(deserialize_with = "lenient_code")]
    pub paper_id: i64,
    #[serde(default)]
    pub physical_height: Option<f64>,
    #[serde(default)]
    pub physical_width: Option<f64>,
}

/// `data` of `GET /api/device/device_info`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceInfo {
    pub info: DeviceInfoInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeviceInfoInfo {
    /// 1 online, 0 offline, null never switched on.
    #[serde(default)]
    pub online: Option<i64>,
    #[serde(default)]
    pub usb_port_num: Option<u32>,
}

/// `data` of `GET /api/device/printer_status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterStatusData {
    #[serde(default)]
    pub head_opened: bool,
    #[serde(default)]
    pub paper_jam: bool,
    #[serde(default)]
    pub out_of_paper: bool,
    #[serde(default)]
    pub out_of_ribbon: bool,
    #[serde(default)]
    pub out_of_ink: bool,
    #[serde(default)]
    pub pause: bool,
    #[serde(default)]
    pub printing: bool,
    #[serde(default)]
    pub msg: Option<String>,
}

/// The body Lianke POSTs to `callbackUrl` when a task ends.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackBody {
    pub device_id: String,
    pub task_id: String,
    pub task_state: LiankeTaskState,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub finish_time: Option<String>,
    #[serde(default)]
    pub task_result: Option<TaskResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_callback_example_parses() {
        let body = r#"{"device_id": "lk112312312312", "task_id": "bd85931c-38fa-4891-b1fa-5e1cf160ec12",
            "task_state": "SUCCESS", "create_time": "2022-03-01 17:15:02", "finish_time": "2022-03-01 17:30:58",
            "task_result": {"code": 503, "msg": "设备连接异常，请检查设备网络"}}"#;
        let cb: CallbackBody = serde_json::from_str(body).unwrap();
        assert_eq!(cb.task_state, LiankeTaskState::Success);
        assert_eq!(cb.task_result.unwrap().code, 503);
    }

    #[test]
    fn unknown_task_states_are_kept() {
        let t: TaskData = serde_json::from_str(r#"{"task_state": "ARCHIVED"}"#).unwrap();
        assert_eq!(t.task_state, LiankeTaskState::Unknown("ARCHIVED".into()));
        assert_eq!(t.task_state.as_str(), "ARCHIVED");
    }

    #[test]
    fn paper_names_are_trimmed_and_null_maps_are_empty() {
        let p: PrinterParams = serde_json::from_str(
            r#"{"Capabilities": {"Papers": {"A4连续纸(22.86x27.96)\r\n": 512, "A4": 9}, "Bins": null, "Copies": 999}}"#,
        )
        .unwrap();
        assert_eq!(
            p.capabilities.papers.get("A4连续纸(22.86x27.96)"),
            Some(&512)
        );
        assert!(p.capabilities.bins.is_empty());
    }
}
