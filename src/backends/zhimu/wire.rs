//! Zhimu's wire format, field by field from `zhimu-openapi.txt`: JSON bodies in, the
//! `{success, message, data}` envelope out (§2.3). Vendor enums keep values this gateway
//! does not know in an explicit `Unknown` variant, which the mappings log and handle.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A vendor enum: known words, and `Unknown(word)` for anything else.
macro_rules! vendor_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
            /// A value the doc does not list.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl From<String> for $name {
            fn from(word: String) -> Self {
                match word.as_str() {
                    $($word => $name::$variant,)+
                    _ => $name::Unknown(word),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map($name::from)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

vendor_enum!(
    /// `taskStatus` (§3.7.3).
    TaskStatus {
        Submitted = "SUBMITTED",
        Queued = "QUEUED",
        Printing = "PRINTING",
        Finished = "FINISHED",
        Error = "ERROR",
        Canceled = "CANCELED",
    }
);

vendor_enum!(
    /// `supportedColors` / `config.color`.
    Color { Color = "COLOR", Monochrome = "MONOCHROME" }
);

vendor_enum!(
    /// `supportedSides` / `config.side`: DUPLEX flips on the long edge, TUMBLE on the short.
    Side { OneSide = "ONESIDE", Duplex = "DUPLEX", Tumble = "TUMBLE" }
);

vendor_enum!(
    /// `supportedOrientations` / `config.orientation`.
    Orientation { Portrait = "PORTRAIT", Landscape = "LANDSCAPE" }
);

/// The envelope of every answer (§2.3). `data` is absent or null on errors.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub success: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// `POST /openapi/getToken` (§3.1.2).
#[derive(Debug, Clone, Serialize)]
pub struct GetTokenRequest {
    pub appid: String,
    /// Milliseconds since the epoch, as a string.
    pub timestamp: String,
    pub oncestr: String,
    pub signature: String,
}

/// Its `data` (§3.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenData {
    pub token: String,
    /// Milliseconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// `POST /openapi/control/addSharePrinter` (§3.2.2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddShareRequest {
    pub share_ticket: String,
    pub password: String,
}

/// A printer the app can use: the `data` of addSharePrinter (§3.2.3) and each item of
/// queryPrinters (§3.4.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedPrinter {
    /// The server SN of the sharing PC (`shareSn` / `controlSn` elsewhere).
    pub sn: String,
    pub printer_name: String,
    pub device_type: String,
    #[serde(default)]
    pub printer_alias: Option<String>,
}

/// Names one printer: revokeSharePrinter (§3.3.2) and queryPrinterDetail (§3.5.2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterRef {
    pub printer_name: String,
    pub share_sn: String,
    pub device_type: String,
}

/// queryPrinterDetail's capabilities document (§3.5.3), which arrives as a JSON *string*
/// inside `data`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrinterDetail {
    pub supported_colors: Vec<Color>,
    pub default_color: Option<Color>,
    pub supports_copies: Option<bool>,
    pub upper_copies: Option<u32>,
    pub lower_copies: Option<u32>,
    pub supported_dpis: Vec<Vec<f64>>,
    pub supported_orientations: Vec<Orientation>,
    pub default_orientation: Option<Orientation>,
    pub supported_collates: Vec<String>,
    pub default_collate: Option<String>,
    pub supported_qualities: Vec<String>,
    pub default_quality: Option<String>,
    pub supported_sides: Vec<Side>,
    pub default_side: Option<Side>,
    pub dpi: Option<f64>,
    pub default_pages_per_sheet: Option<u32>,
    pub supported_papers: Vec<Paper>,
    pub default_paper: Option<Paper>,
}

/// A paper of the capabilities document; sizes in millimetres.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Paper {
    pub name: String,
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub left: Option<f64>,
    pub top: Option<f64>,
    pub system: Option<bool>,
}

/// `POST /openapi` (§3.6.2).
#[derive(Debug, Clone, Serialize)]
pub struct NewPrintTask {
    /// Always `newPrintTask`.
    pub command: &'static str,
    pub data: NewPrintTaskData,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewPrintTaskData {
    pub task: PrintTask,
}

/// The task of a `newPrintTask`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrintTask {
    /// The gateway's job id, so the task can be told apart at the vendor.
    pub name: String,
    pub device_name: String,
    pub device_type: String,
    pub control_sn: String,
    pub media_source: &'static str,
    pub media_format: &'static str,
    /// A URL, a Base64 string or the text/HTML itself, per `mediaSource`.
    pub content: String,
    /// `javascript`, `printBackground`, `headers` when the caller set them
    /// (`vendor_options`).
    #[serde(flatten)]
    pub extras: Map<String, Value>,
    pub config: Map<String, Value>,
}

/// Its `data` (§3.6.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitData {
    pub task_id: String,
}

/// `POST /openapi/task/get` (§3.7.2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskGetRequest {
    pub task_id: String,
    pub control_sn: String,
}

/// Its `data` (§3.7.3), the fields the gateway reads; the rest is kept raw.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskData {
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub task_name: Option<String>,
    pub task_status: TaskStatus,
    #[serde(default)]
    pub status_detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_enum_words_are_kept() {
        let status: TaskStatus = serde_json::from_value(json!("PAUSED")).unwrap();
        assert_eq!(status, TaskStatus::Unknown("PAUSED".into()));
        assert_eq!(status.as_str(), "PAUSED");
        let known: TaskStatus = serde_json::from_value(json!("QUEUED")).unwrap();
        assert_eq!(known, TaskStatus::Queued);
        assert_eq!(serde_json::to_value(Side::Tumble).unwrap(), json!("TUMBLE"));
    }

    #[test]
    fn the_documented_task_answer_parses() {
        let data: TaskData = serde_json::from_value(json!({
            "taskId": "pkDgrqeA-amel55ta2gw0", "taskName": "Task001", "copies": 1,
            "taskStatus": "FINISHED", "statusDetail": "PRINTING", "unimsn": "pkDgrqeA"
        }))
        .unwrap();
        assert_eq!(data.task_status, TaskStatus::Finished);
        assert_eq!(data.status_detail.as_deref(), Some("PRINTING"));
    }

    #[test]
    fn a_submit_body_has_the_documented_shape() {
        let body = NewPrintTask {
            command: "newPrintTask",
            data: NewPrintTaskData {
                task: PrintTask {
                    name: "Task001".into(),
                    device_name: "佳能复合机".into(),
                    device_type: "printer".into(),
                    control_sn: "pkDgrqeA".into(),
                    media_source: "URL",
                    media_format: "PNG",
                    content: "https://example.com/a.png".into(),
                    extras: Map::new(),
                    config: Map::from_iter([("color".to_owned(), json!("COLOR"))]),
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"command": "newPrintTask", "data": {"task": {
                "name": "Task001", "deviceName": "佳能复合机", "deviceType": "printer",
                "controlSn": "pkDgrqeA", "mediaSource": "URL", "mediaFormat": "PNG",
                "content": "https://example.com/a.png", "config": {"color": "COLOR"}
            }}})
        );
    }
}
