//! Neutral ⇄ Zhimu, every table checkable line by line against `zhimu-openapi.txt`:
//! documents → `mediaFormat`+`mediaSource` (§3.6.2), options → `config`, `taskStatus` →
//! job states (§3.7.3, SPEC §2), refusals → the error catalog, `queryPrinterDetail` →
//! the neutral capability document (§3.5.3).

use serde_json::{Map, Value, json};

use super::wire::{Color, Orientation, PrinterDetail, Side, TaskData, TaskStatus};
use crate::backends::{
    OutcomeClass, SubmitFailure, TaskProgress, UnsupportedDocument, UnsupportedOption, VendorError,
};
use crate::domain::capabilities::PaperSize;
use crate::domain::options::{self, ColorMode, PageRanges, Paper, Scale, Sides};
use crate::domain::{
    Capabilities, Decision, DocumentKind, DocumentType, ErrorCode, JobError, JobOptions,
};

// ----- documents ------------------------------------------------------------------------

/// `mediaFormat` (§3.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    Html,
    Png,
    Jpg,
    Bmp,
    Word,
    Excel,
    Ppt,
    Text,
}

impl MediaFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaFormat::Html => "HTML",
            MediaFormat::Png => "PNG",
            MediaFormat::Jpg => "JPG",
            MediaFormat::Bmp => "BMP",
            MediaFormat::Word => "WORD",
            MediaFormat::Excel => "EXCEL",
            MediaFormat::Ppt => "PPT",
            MediaFormat::Text => "TEXT",
        }
    }
}

/// `mediaSource` (§3.6.2): what `content` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource {
    /// A link Zhimu fetches.
    Url,
    /// The file's bytes in Base64.
    Base64,
    /// The text or HTML itself.
    String,
}

impl MediaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaSource::Url => "URL",
            MediaSource::Base64 => "BASE64",
            MediaSource::String => "STRING",
        }
    }
}

/// The 15 combinations the doc lists (§3.6.2), written there as FORMAT+SOURCE.
pub const DOCUMENTED_COMBINATIONS: [(MediaFormat, MediaSource); 15] = [
    (MediaFormat::Html, MediaSource::String),
    (MediaFormat::Html, MediaSource::Url),
    (MediaFormat::Png, MediaSource::Url),
    (MediaFormat::Png, MediaSource::Base64),
    (MediaFormat::Jpg, MediaSource::Url),
    (MediaFormat::Jpg, MediaSource::Base64),
    (MediaFormat::Bmp, MediaSource::Url),
    (MediaFormat::Bmp, MediaSource::Base64),
    (MediaFormat::Word, MediaSource::Url),
    (MediaFormat::Word, MediaSource::Base64),
    (MediaFormat::Excel, MediaSource::Url),
    (MediaFormat::Excel, MediaSource::Base64),
    (MediaFormat::Ppt, MediaSource::Url),
    (MediaFormat::Ppt, MediaSource::Base64),
    (MediaFormat::Text, MediaSource::String),
];

/// What Zhimu takes, for the sentence a refused caller reads.
pub const ACCEPTED: &str = "Zhimu takes png, jpg, bmp, doc, docx, xls, xlsx, ppt, pptx and html as a url, the same except html as base64 or an upload, and text or html inline (`text`, `html`, or a txt/html file)";

/// The format of a document type; `None` for types Zhimu cannot print at all (PDF and GIF
/// are not in the doc's list).
fn format_of(doc_type: DocumentType) -> Option<MediaFormat> {
    match doc_type {
        DocumentType::Png => Some(MediaFormat::Png),
        DocumentType::Jpeg => Some(MediaFormat::Jpg),
        DocumentType::Bmp => Some(MediaFormat::Bmp),
        DocumentType::Doc | DocumentType::Docx => Some(MediaFormat::Word),
        DocumentType::Xls | DocumentType::Xlsx => Some(MediaFormat::Excel),
        DocumentType::Ppt | DocumentType::Pptx => Some(MediaFormat::Ppt),
        DocumentType::Text => Some(MediaFormat::Text),
        DocumentType::Html => Some(MediaFormat::Html),
        DocumentType::Pdf | DocumentType::Gif => None,
    }
}

/// The `mediaFormat`+`mediaSource` for a document, or the sentence refusing it.
pub fn media(
    kind: DocumentKind,
    doc_type: Option<DocumentType>,
) -> Result<(MediaFormat, MediaSource), UnsupportedDocument> {
    let Some(doc_type) = doc_type else {
        return Err(format!(
            "Zhimu needs the document's type and this {} document has none it can tell: give `content_type` or a `filename` with an extension. {ACCEPTED}.",
            kind.as_str()
        ).into());
    };
    let refused = || {
        UnsupportedDocument(format!(
            "Zhimu cannot print a {} document given as {}. {ACCEPTED}.",
            doc_type.extension(),
            kind.as_str()
        ))
    };
    let format = format_of(doc_type).ok_or_else(refused)?;
    match (kind, format) {
        (DocumentKind::Text | DocumentKind::Html, _) => Ok((format, MediaSource::String)),
        // The doc has no TEXT+URL.
        (DocumentKind::Url, MediaFormat::Text) => Err(refused()),
        (DocumentKind::Url, _) => Ok((format, MediaSource::Url)),
        // Text and HTML files go inline: there is no TEXT+BASE64 or HTML+BASE64.
        (DocumentKind::Upload | DocumentKind::Base64, MediaFormat::Text | MediaFormat::Html) => {
            Ok((format, MediaSource::String))
        }
        (DocumentKind::Upload | DocumentKind::Base64, _) => Ok((format, MediaSource::Base64)),
    }
}

// ----- options --------------------------------------------------------------------------

/// What a `vendor_options` value must look like.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Bool,
    Int,
    Number,
    Text,
    Word(&'static [&'static str]),
    Object,
    Any,
}

/// The documented `config` fields (§3.7.3) with no neutral option; passed through.
const CONFIG_OPTIONS: &[(&str, Expect)] = &[
    ("pagesPerSheet", Expect::Int),
    ("header", Expect::Any),
    ("footer", Expect::Any),
    ("marginTop", Expect::Number),
    ("marginBottom", Expect::Number),
    ("marginLeft", Expect::Number),
    ("marginRight", Expect::Number),
    ("quality", Expect::Word(&["HIGH", "NORMAL", "LOW", "DRAFT"])),
    ("collate", Expect::Word(&["COLLATE", "UNCOLLATE"])),
    ("repeats", Expect::Int),
    ("xdpi", Expect::Int),
    ("ydpi", Expect::Int),
    ("booklet", Expect::Any),
    ("mediaType", Expect::Text),
    ("monoPages", Expect::Any),
    ("pageRotate", Expect::Int),
    ("contentAdaptive", Expect::Bool),
    ("finishings", Expect::Any),
    ("labels", Expect::Any),
    ("watermark", Expect::Any),
];

/// Task fields beside `config` (§3.6.2 example), for HTML and URL content.
const TASK_OPTIONS: &[(&str, Expect)] = &[
    ("javascript", Expect::Bool),
    ("printBackground", Expect::Bool),
    ("headers", Expect::Object),
];

/// Config fields the gateway fills from neutral options; set those instead.
const NEUTRAL_EQUIVALENTS: &[(&str, &str)] = &[
    ("color", "color"),
    ("side", "sides"),
    ("paperConfig", "paper"),
    ("orientation", "orientation"),
    ("copies", "copies"),
    ("pageRanges", "page_ranges"),
    ("scale", "scale"),
    ("autofit", "scale"),
    ("fullfill", "scale"),
    ("inputSlot", "tray"),
];

fn fits(expect: Expect, value: &Value) -> bool {
    match expect {
        Expect::Bool => value.is_boolean(),
        Expect::Int => value.is_i64() || value.is_u64(),
        Expect::Number => value.is_number(),
        Expect::Text => value.is_string(),
        Expect::Word(words) => value.as_str().is_some_and(|w| words.contains(&w)),
        Expect::Object => value
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        Expect::Any => true,
    }
}

fn describe(expect: Expect) -> String {
    match expect {
        Expect::Bool => "true or false".into(),
        Expect::Int => "an integer".into(),
        Expect::Number => "a number".into(),
        Expect::Text => "a string".into(),
        Expect::Word(words) => format!("one of {}", words.join(", ")),
        Expect::Object => "an object of string values".into(),
        Expect::Any => "any JSON value".into(),
    }
}

/// Checks `vendor_options` against the allow-list of documented Zhimu fields.
pub fn check_vendor_options(options: &Map<String, Value>) -> Result<(), UnsupportedOption> {
    for (key, value) in options {
        if let Some((_, neutral)) = NEUTRAL_EQUIVALENTS.iter().find(|(k, _)| k == key) {
            return Err(format!(
                "vendor option `{key}` is set from the neutral option `{neutral}`; use that instead"
            )
            .into());
        }
        let Some((_, expect)) = CONFIG_OPTIONS
            .iter()
            .chain(TASK_OPTIONS)
            .find(|(k, _)| k == key)
        else {
            let known: Vec<&str> = CONFIG_OPTIONS
                .iter()
                .chain(TASK_OPTIONS)
                .map(|(k, _)| *k)
                .collect();
            return Err(format!(
                "vendor option `{key}` is not accepted by the zhimu backend; it accepts {}",
                known.join(", ")
            )
            .into());
        };
        if !fits(*expect, value) {
            return Err(format!(
                "vendor option `{key}` must be {}, got {value}",
                describe(*expect)
            )
            .into());
        }
    }
    Ok(())
}

/// `pageRanges` (§ printer config): a string; the doc gives no grammar, so the common
/// `"1-3,5"` form (ranges with a dash, separated by commas, no spaces).
/// That is the neutral written form of [`PageRanges`].
fn page_ranges_value(ranges: &PageRanges) -> String {
    ranges.to_string()
}

fn color(mode: ColorMode) -> Color {
    match mode {
        ColorMode::Monochrome => Color::Monochrome,
        ColorMode::Color => Color::Color,
    }
}

fn side(sides: Sides) -> Side {
    match sides {
        Sides::OneSided => Side::OneSide,
        Sides::TwoSidedLongEdge => Side::Duplex,
        Sides::TwoSidedShortEdge => Side::Tumble,
    }
}

fn orientation(o: options::Orientation) -> Orientation {
    match o {
        options::Orientation::Portrait => Orientation::Portrait,
        options::Orientation::Landscape => Orientation::Landscape,
    }
}

/// The task's `config` and extra task fields from the neutral options (and the allowed
/// `vendor_options`). A named paper carries its size when the printer's capabilities know
/// it.
pub fn task_config(
    options: &JobOptions,
    capabilities: Option<&Capabilities>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut config = Map::new();
    if let Some(copies) = options.copies {
        config.insert("copies".into(), json!(copies));
    }
    match &options.paper {
        Some(Paper::Named(name)) => {
            let paper = match capabilities.and_then(|c| c.find_paper(name)) {
                Some(known) => {
                    json!({"name": known.name, "width": known.width_mm, "height": known.height_mm})
                }
                None => json!({"name": name}),
            };
            config.insert("paperConfig".into(), paper);
        }
        Some(Paper::Custom {
            width_mm,
            height_mm,
        }) => {
            config.insert(
                "paperConfig".into(),
                json!({"width": width_mm, "height": height_mm}),
            );
        }
        None => {}
    }
    if let Some(o) = options.orientation {
        config.insert("orientation".into(), json!(orientation(o)));
    }
    if let Some(c) = options.color {
        config.insert("color".into(), json!(color(c)));
    }
    if let Some(s) = options.sides {
        config.insert("side".into(), json!(side(s)));
    }
    if let Some(ranges) = options.parsed_page_ranges() {
        config.insert("pageRanges".into(), json!(page_ranges_value(&ranges)));
    }
    // Zhimu has `autofit` (fit the page), `fullfill` (fill the paper) and `scale`.
    match options.scale {
        Some(Scale::Fit | Scale::FitWidth | Scale::FitHeight) => {
            config.insert("autofit".into(), json!(true));
        }
        Some(Scale::Fill | Scale::Cover) => {
            config.insert("autofit".into(), json!(false));
            config.insert("fullfill".into(), json!(true));
        }
        Some(Scale::None) => {
            config.insert("autofit".into(), json!(false));
        }
        Some(Scale::Percent(p)) => {
            config.insert("autofit".into(), json!(false));
            config.insert("scale".into(), json!(p));
        }
        None => {}
    }
    if let Some(tray) = &options.tray {
        config.insert("inputSlot".into(), json!(tray));
    }
    let mut extras = Map::new();
    for (key, value) in &options.vendor_options {
        if TASK_OPTIONS.iter().any(|(k, _)| k == key) {
            extras.insert(key.clone(), value.clone());
        } else {
            config.insert(key.clone(), value.clone());
        }
    }
    (config, extras)
}

// ----- task status ----------------------------------------------------------------------

/// `taskStatus` → the neutral progress (SPEC §2): SUBMITTED, QUEUED, PRINTING are
/// processing; FINISHED completed; ERROR failed with `statusDetail` as the reason;
/// CANCELED canceled (by the sharing PC's user: Zhimu has no cancel call).
pub fn task_progress(data: &TaskData) -> TaskProgress {
    let processing = |reason: &str| TaskProgress::Processing {
        reason: reason.to_owned(),
    };
    match &data.task_status {
        TaskStatus::Submitted => processing("sending"),
        TaskStatus::Queued => processing("queued_at_vendor"),
        TaskStatus::Printing => processing("printing"),
        TaskStatus::Finished => TaskProgress::Completed,
        TaskStatus::Error => {
            let detail = data
                .status_detail
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| "ERROR".to_owned());
            TaskProgress::Failed {
                error: JobError {
                    code: ErrorCode::PrintFailed,
                    message: format!("Zhimu reports the task failed: {detail}"),
                    vendor_code: Some("ERROR".to_owned()),
                    vendor_message: Some(detail),
                },
            }
        }
        TaskStatus::Canceled => TaskProgress::Canceled,
        // Not in the doc: keep polling rather than guess an outcome; the raw word is
        // kept as `vendor_status` for an operator to see.
        TaskStatus::Unknown(word) => {
            tracing::warn!(task_status = %word, "Zhimu sent a taskStatus the doc does not list; the job stays processing");
            processing("vendor_status_unknown")
        }
    }
}

/// The separator of the task ids of a job printed as one task per page (a rendered PDF:
/// the doc's `newPrintTask` takes one `content` per task). Zhimu's task ids are
/// `controlSn-suffix`, without commas.
pub const TASK_SEPARATOR: char = ',';

/// The job's state when it was sent as one task per page: failed as soon as a page failed
/// (the error names the page); canceled when a page was canceled and every page has ended;
/// completed when every page printed; else still processing, in the stage of the first
/// page not finished.
pub fn combined_progress(pages: &[TaskProgress]) -> TaskProgress {
    if let Some((n, error)) = pages.iter().enumerate().find_map(|(n, p)| match p {
        TaskProgress::Failed { error } => Some((n, error)),
        _ => None,
    }) {
        let mut error = error.clone();
        error.message = format!("page {} of {}: {}", n + 1, pages.len(), error.message);
        return TaskProgress::Failed { error };
    }
    if let Some(unfinished) = pages
        .iter()
        .find(|p| matches!(p, TaskProgress::Processing { .. }))
    {
        return unfinished.clone();
    }
    if pages.iter().any(|p| matches!(p, TaskProgress::Canceled)) {
        return TaskProgress::Canceled;
    }
    TaskProgress::Completed
}

/// The vendor status kept on the job: `taskStatus`, with `statusDetail` after a slash when
/// it says more (`QUEUED/PAPER_EMPTY`), so a change of detail is recorded too.
pub fn vendor_status(data: &TaskData) -> String {
    let status = data.task_status.as_str();
    match data.status_detail.as_deref().map(str::trim) {
        Some(detail) if !detail.is_empty() && detail != status => format!("{status}/{detail}"),
        _ => status.to_owned(),
    }
}

// ----- error catalog --------------------------------------------------------------------

/// What a `success:false` answer (or an HTTP refusal) means. The doc lists no error codes,
/// only the `message` text, so refusals are told apart by HTTP status and words in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `Api-Access-Token` is missing, unknown or expired (HTTP 401/403, or a message
    /// naming the token).
    TokenRejected,
    /// The printer (server SN + name + type) is unknown or not bound to this app.
    UnknownPrinter,
    /// The sharing PC or its printer is offline.
    PrinterOffline,
    /// `task/get` knows no such task.
    UnknownTask,
    /// `addSharePrinter` refused the share code or the verification code.
    ShareRefused,
    /// Anything else: parameters, content, the vendor's own trouble.
    Other,
}

/// Classifies a refusal by HTTP status and message.
pub fn classify(http_status: u16, message: &str) -> Refusal {
    let lower = message.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if matches!(http_status, 401 | 403) || has(&["token", "令牌"]) {
        Refusal::TokenRejected
    } else if has(&["共享码", "验证码", "shareticket"]) {
        Refusal::ShareRefused
    } else if has(&["任务不存在", "task not found"]) {
        Refusal::UnknownTask
    } else if has(&["设备不存在", "未绑定", "打印机不存在", "printer not found"]) {
        Refusal::UnknownPrinter
    } else if has(&["离线", "offline"]) {
        Refusal::PrinterOffline
    } else {
        Refusal::Other
    }
}

/// The catalog row of a refusal: neutral code and decision, the vendor's words kept.
pub fn refusal_error(refusal: Refusal, http_status: u16, message: &str) -> VendorError {
    let vendor_code = if http_status == 200 {
        "success:false".to_owned()
    } else {
        format!("http {http_status}")
    };
    let error = match refusal {
        Refusal::TokenRejected => VendorError::new(
            ErrorCode::VendorAuthFailed,
            Decision::RefreshTokenOnce,
            "Zhimu rejected the app token",
        ),
        Refusal::UnknownPrinter => VendorError::new(
            ErrorCode::PrinterNotFound,
            Decision::Fail,
            "Zhimu does not know this printer or it is not bound to the app (check share_sn, printer_name, device_type; bind it with POST /v1/backends/zhimu/shares)",
        ),
        Refusal::PrinterOffline => VendorError::new(
            ErrorCode::DeviceOffline,
            Decision::WaitForDevice,
            "the printer's sharing PC is offline",
        ),
        Refusal::UnknownTask => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "Zhimu has no such task",
        ),
        Refusal::ShareRefused => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Fail,
            "Zhimu refused the share code or verification code",
        ),
        Refusal::Other => VendorError::new(
            ErrorCode::VendorRejected,
            Decision::Retry,
            format!("Zhimu refused the call: {message}"),
        ),
    };
    error.with_vendor(vendor_code, message)
}

/// SPEC §4 outcome classes of a failed `newPrintTask`, one row per kind of failure. Any
/// 5xx without Zhimu's envelope (a proxy's 502/503/504) may follow the task's creation, so
/// the submit is never sent again after one: a resend could print twice.
pub fn submit_outcome(failure: SubmitFailure) -> OutcomeClass {
    match failure {
        SubmitFailure::ConnectFailed => OutcomeClass::NotSent,
        SubmitFailure::TimedOut => OutcomeClass::Unknown,
        SubmitFailure::ConnectionBroken => OutcomeClass::Unknown,
        SubmitFailure::HttpStatus(500..=599) => OutcomeClass::Unknown,
        SubmitFailure::HttpStatus(_) => OutcomeClass::NotSent,
        SubmitFailure::UnreadableAnswer => OutcomeClass::Unknown,
        SubmitFailure::Envelope => OutcomeClass::Catalog,
    }
}

/// An HTTP failure without a readable envelope (its outcome class is set by the caller
/// from [`submit_outcome`] when the call was a submit).
pub fn http_error(http_status: u16) -> VendorError {
    let error = match http_status {
        401 | 403 => return refusal_error(Refusal::TokenRejected, http_status, ""),
        504 => VendorError::new(
            ErrorCode::VendorTimeout,
            Decision::Retry,
            "Zhimu's gateway timed out (HTTP 504)",
        )
        .counting_for_breaker(true),
        500..=599 => VendorError::new(
            ErrorCode::VendorUnavailable,
            Decision::Retry,
            format!("Zhimu answered HTTP {http_status}"),
        ),
        _ => VendorError::new(
            ErrorCode::VendorProtocolError,
            Decision::Retry,
            format!("Zhimu answered HTTP {http_status} without its usual envelope"),
        ),
    };
    error.with_vendor(format!("http {http_status}"), "")
}

/// An answer that is not the documented shape. On a submit that Zhimu answered with
/// HTTP 2xx, the task may exist: the outcome is unknown.
pub fn unreadable_answer(what: &str, submit: bool) -> VendorError {
    let error = VendorError::new(
        ErrorCode::VendorProtocolError,
        Decision::Retry,
        format!("Zhimu's answer could not be read: {what}"),
    );
    if submit {
        error.outcome_unknown()
    } else {
        error
    }
}

// ----- capabilities ---------------------------------------------------------------------

/// `queryPrinterDetail` → the neutral document. Qualities, dpis, collates, margins and
/// `supportsCopies` stay in the raw answer cached beside it.
pub fn capabilities(detail: &PrinterDetail) -> Capabilities {
    let mut color_modes = Vec::new();
    for c in &detail.supported_colors {
        let mode = match c {
            Color::Color => ColorMode::Color,
            Color::Monochrome => ColorMode::Monochrome,
            Color::Unknown(word) => {
                tracing::warn!(color = %word, "Zhimu listed a color mode the doc does not; ignored");
                continue;
            }
        };
        if !color_modes.contains(&mode) {
            color_modes.push(mode);
        }
    }
    let mut sides = Vec::new();
    for s in &detail.supported_sides {
        let neutral = match s {
            Side::OneSide => Sides::OneSided,
            Side::Duplex => Sides::TwoSidedLongEdge,
            Side::Tumble => Sides::TwoSidedShortEdge,
            Side::Unknown(word) => {
                tracing::warn!(side = %word, "Zhimu listed a side the doc does not; ignored");
                continue;
            }
        };
        if !sides.contains(&neutral) {
            sides.push(neutral);
        }
    }
    let mut orientations = Vec::new();
    for o in &detail.supported_orientations {
        let neutral = match o {
            Orientation::Portrait => options::Orientation::Portrait,
            Orientation::Landscape => options::Orientation::Landscape,
            Orientation::Unknown(word) => {
                tracing::warn!(orientation = %word, "Zhimu listed an orientation the doc does not; ignored");
                continue;
            }
        };
        if !orientations.contains(&neutral) {
            orientations.push(neutral);
        }
    }
    let papers = detail
        .supported_papers
        .iter()
        .filter(|p| !p.name.trim().is_empty())
        .map(|p| PaperSize {
            id: p.name.clone(),
            name: p.name.clone(),
            width_mm: p.width,
            height_mm: p.height,
        })
        .collect();
    Capabilities {
        papers,
        color_modes,
        sides,
        // The neutral bound is 999 copies; Zhimu's `upperCopies` (9999 in the doc) caps it.
        copies_max: detail.upper_copies.map_or(999, |n| n.clamp(1, 999) as u16),
        orientations,
        trays: Vec::new(),
        media_types: Vec::new(),
        // `paperConfig` takes a width and height in mm (§3.6.2 example).
        custom_paper: true,
        qualities: detail
            .supported_qualities
            .iter()
            .map(|q| q.to_ascii_lowercase())
            .collect(),
        resolutions_dpi: detail
            .supported_dpis
            .iter()
            .filter_map(|pair| match pair.as_slice() {
                [x, y] => Some(format!("{x}x{y}")),
                [x] => Some(format!("{x}x{x}")),
                _ => None,
            })
            .collect(),
        collate: (!detail.supported_collates.is_empty()).then(|| {
            detail.supported_collates.iter().any(|c| c == "COLLATE")
                && detail.supported_collates.iter().any(|c| c == "UNCOLLATE")
        }),
    }
}

/// Why a queryPrinterDetail `data` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableDetail {
    #[error("the capabilities string is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected a JSON string, got {0}")]
    NotAString(Value),
    #[error("the capabilities document has an unexpected shape: {0}")]
    Shape(serde_json::Error),
}

/// `data` of queryPrinterDetail: a JSON string holding the document (§3.5.3). An object
/// is accepted too, in case Zhimu ever sends it unwrapped.
pub fn parse_detail(data: &Value) -> Result<(PrinterDetail, Value), UnreadableDetail> {
    let document = match data {
        Value::String(text) => {
            serde_json::from_str::<Value>(text).map_err(UnreadableDetail::NotJson)?
        }
        Value::Object(_) => data.clone(),
        other => return Err(UnreadableDetail::NotAString(other.clone())),
    };
    let detail = serde_json::from_value::<PrinterDetail>(document.clone())
        .map_err(UnreadableDetail::Shape)?;
    Ok((detail, document))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::options::Orientation as NeutralOrientation;

    use DocumentKind as K;
    use DocumentType as T;
    use MediaFormat as F;
    use MediaSource as S;

    type Row = (K, T, Option<(F, S)>);

    /// One row per (kind, type) pair: the combination sent, or refused.
    #[test]
    fn every_document_kind_and_type_has_its_media_combination() {
        let rows: &[Row] = &[
            (K::Url, T::Png, Some((F::Png, S::Url))),
            (K::Url, T::Jpeg, Some((F::Jpg, S::Url))),
            (K::Url, T::Bmp, Some((F::Bmp, S::Url))),
            (K::Url, T::Doc, Some((F::Word, S::Url))),
            (K::Url, T::Docx, Some((F::Word, S::Url))),
            (K::Url, T::Xls, Some((F::Excel, S::Url))),
            (K::Url, T::Xlsx, Some((F::Excel, S::Url))),
            (K::Url, T::Ppt, Some((F::Ppt, S::Url))),
            (K::Url, T::Pptx, Some((F::Ppt, S::Url))),
            (K::Url, T::Html, Some((F::Html, S::Url))),
            (K::Url, T::Text, None),
            (K::Url, T::Pdf, None),
            (K::Url, T::Gif, None),
            (K::Base64, T::Png, Some((F::Png, S::Base64))),
            (K::Base64, T::Jpeg, Some((F::Jpg, S::Base64))),
            (K::Base64, T::Bmp, Some((F::Bmp, S::Base64))),
            (K::Base64, T::Docx, Some((F::Word, S::Base64))),
            (K::Base64, T::Xlsx, Some((F::Excel, S::Base64))),
            (K::Base64, T::Pptx, Some((F::Ppt, S::Base64))),
            (K::Base64, T::Text, Some((F::Text, S::String))),
            (K::Base64, T::Html, Some((F::Html, S::String))),
            (K::Base64, T::Pdf, None),
            (K::Upload, T::Doc, Some((F::Word, S::Base64))),
            (K::Upload, T::Xls, Some((F::Excel, S::Base64))),
            (K::Upload, T::Ppt, Some((F::Ppt, S::Base64))),
            (K::Upload, T::Gif, None),
            (K::Upload, T::Pdf, None),
            (K::Text, T::Text, Some((F::Text, S::String))),
            (K::Html, T::Html, Some((F::Html, S::String))),
        ];
        for (kind, doc_type, expected) in rows {
            let got = media(*kind, Some(*doc_type)).ok();
            assert_eq!(got, *expected, "{kind:?} {doc_type:?}");
            if let Some(pair) = got {
                assert!(
                    DOCUMENTED_COMBINATIONS.contains(&pair),
                    "{pair:?} is documented"
                );
            }
        }
    }

    #[test]
    fn a_refusal_names_the_type_and_what_is_accepted() {
        let err = media(K::Url, Some(T::Pdf)).unwrap_err();
        assert!(err.0.contains("pdf") && err.0.contains("png, jpg"), "{err}");
        let err = media(K::Url, None).unwrap_err();
        assert!(err.0.contains("content_type"), "{err}");
    }

    #[test]
    fn a_job_of_one_task_per_page_combines_their_states() {
        let processing = |r: &str| TaskProgress::Processing { reason: r.into() };
        let failed = TaskProgress::Failed {
            error: JobError {
                code: ErrorCode::PrintFailed,
                message: "Zhimu reports the task failed: PAPER_JAM".into(),
                vendor_code: Some("ERROR".into()),
                vendor_message: Some("PAPER_JAM".into()),
            },
        };
        let done = TaskProgress::Completed;
        assert_eq!(combined_progress(&[done.clone(), done.clone()]), done);
        assert_eq!(
            combined_progress(&[done.clone(), processing("printing"), processing("sending")]),
            processing("printing"),
            "the stage of the first page not finished"
        );
        match combined_progress(&[done.clone(), processing("printing"), failed.clone()]) {
            TaskProgress::Failed { error } => {
                assert!(
                    error.message.starts_with("page 3 of 3: "),
                    "{}",
                    error.message
                );
                assert_eq!(error.code, ErrorCode::PrintFailed);
            }
            other => panic!("a failed page fails the job: {other:?}"),
        }
        assert_eq!(
            combined_progress(&[TaskProgress::Canceled, processing("queued_at_vendor")]),
            processing("queued_at_vendor"),
            "canceled only once every page has ended"
        );
        assert_eq!(
            combined_progress(&[done.clone(), TaskProgress::Canceled]),
            TaskProgress::Canceled
        );
    }

    #[test]
    fn every_task_status_maps_to_its_neutral_state() {
        let data = |status: &str, detail: Option<&str>| TaskData {
            task_id: None,
            task_name: None,
            task_status: TaskStatus::from(status.to_owned()),
            status_detail: detail.map(str::to_owned),
        };
        let processing = |r: &str| TaskProgress::Processing { reason: r.into() };
        assert_eq!(
            task_progress(&data("SUBMITTED", None)),
            processing("sending")
        );
        assert_eq!(
            task_progress(&data("QUEUED", None)),
            processing("queued_at_vendor")
        );
        assert_eq!(
            task_progress(&data("PRINTING", None)),
            processing("printing")
        );
        assert_eq!(
            task_progress(&data("FINISHED", None)),
            TaskProgress::Completed
        );
        assert_eq!(
            task_progress(&data("CANCELED", None)),
            TaskProgress::Canceled
        );
        match task_progress(&data("ERROR", Some("PAPER_EMPTY"))) {
            TaskProgress::Failed { error } => {
                assert_eq!(error.code, ErrorCode::PrintFailed);
                assert_eq!(error.vendor_message.as_deref(), Some("PAPER_EMPTY"));
                assert!(error.message.contains("PAPER_EMPTY"));
            }
            other => panic!("ERROR must fail the job, got {other:?}"),
        }
        assert_eq!(
            task_progress(&data("PAUSED", None)),
            processing("vendor_status_unknown")
        );
        assert_eq!(vendor_status(&data("QUEUED", Some("QUEUED"))), "QUEUED");
        assert_eq!(
            vendor_status(&data("ERROR", Some("PAPER_EMPTY"))),
            "ERROR/PAPER_EMPTY"
        );
    }

    /// One row per catalog arm: (HTTP status, message) → (refusal, code, decision).
    #[test]
    fn refusals_map_to_the_catalog() {
        let rows: &[(u16, &str, Refusal, ErrorCode, Decision)] = &[
            (
                401,
                "Api-Access-Token 已过期",
                Refusal::TokenRejected,
                ErrorCode::VendorAuthFailed,
                Decision::RefreshTokenOnce,
            ),
            (
                200,
                "token无效",
                Refusal::TokenRejected,
                ErrorCode::VendorAuthFailed,
                Decision::RefreshTokenOnce,
            ),
            (
                200,
                "设备不存在或未绑定",
                Refusal::UnknownPrinter,
                ErrorCode::PrinterNotFound,
                Decision::Fail,
            ),
            (
                200,
                "打印机离线",
                Refusal::PrinterOffline,
                ErrorCode::DeviceOffline,
                Decision::WaitForDevice,
            ),
            (
                200,
                "任务不存在",
                Refusal::UnknownTask,
                ErrorCode::VendorRejected,
                Decision::Fail,
            ),
            (
                200,
                "验证码错误",
                Refusal::ShareRefused,
                ErrorCode::VendorRejected,
                Decision::Fail,
            ),
            (
                200,
                "共享码不存在",
                Refusal::ShareRefused,
                ErrorCode::VendorRejected,
                Decision::Fail,
            ),
            (
                200,
                "模拟错误 -1",
                Refusal::Other,
                ErrorCode::VendorRejected,
                Decision::Retry,
            ),
        ];
        for (status, message, refusal, code, decision) in rows {
            assert_eq!(classify(*status, message), *refusal, "{message}");
            let error = refusal_error(*refusal, *status, message);
            assert_eq!(
                (error.code, error.decision),
                (*code, *decision),
                "{message}"
            );
            assert_eq!(error.vendor_message.as_deref(), Some(*message));
        }
    }

    #[test]
    fn http_failures_map_to_the_catalog() {
        let e = http_error(503);
        assert_eq!(
            (e.code, e.decision),
            (ErrorCode::VendorUnavailable, Decision::Retry)
        );
        let e = http_error(504);
        assert_eq!(
            (e.code, e.decision),
            (ErrorCode::VendorTimeout, Decision::Retry)
        );
        let e = http_error(401);
        assert_eq!(e.decision, Decision::RefreshTokenOnce);
        let e = http_error(404);
        assert_eq!(e.code, ErrorCode::VendorProtocolError);
        assert!(unreadable_answer("x", true).outcome_unknown);
        assert!(!unreadable_answer("x", false).outcome_unknown);
    }

    #[test]
    fn a_submit_is_never_sent_again_after_any_5xx_without_the_envelope() {
        for status in [500, 502, 503, 504, 599] {
            assert_eq!(
                submit_outcome(SubmitFailure::HttpStatus(status)),
                OutcomeClass::Unknown,
                "{status}"
            );
        }
        for status in [400, 404, 413, 429] {
            assert_eq!(
                submit_outcome(SubmitFailure::HttpStatus(status)),
                OutcomeClass::NotSent,
                "{status}"
            );
        }
        assert_eq!(
            submit_outcome(SubmitFailure::ConnectFailed),
            OutcomeClass::NotSent
        );
        assert_eq!(
            submit_outcome(SubmitFailure::TimedOut),
            OutcomeClass::Unknown
        );
        assert_eq!(
            submit_outcome(SubmitFailure::ConnectionBroken),
            OutcomeClass::Unknown
        );
        assert_eq!(
            submit_outcome(SubmitFailure::UnreadableAnswer),
            OutcomeClass::Unknown
        );
        assert_eq!(
            submit_outcome(SubmitFailure::Envelope),
            OutcomeClass::Catalog
        );
    }

    #[test]
    fn options_become_the_documented_config_fields() {
        let options = JobOptions {
            copies: Some(3),
            paper: Some(Paper::Named("a4".into())),
            orientation: Some(NeutralOrientation::Landscape),
            color: Some(ColorMode::Color),
            sides: Some(Sides::TwoSidedShortEdge),
            page_ranges: Some("1-3, 5".into()),
            scale: Some(Scale::Fit),
            tray: None,
            vendor_options: Map::from_iter([
                ("quality".to_owned(), json!("HIGH")),
                ("javascript".to_owned(), json!(true)),
            ]),
        };
        let caps = Capabilities {
            papers: vec![PaperSize {
                id: "A4".into(),
                name: "A4".into(),
                width_mm: Some(210.0),
                height_mm: Some(297.0),
            }],
            ..Default::default()
        };
        let (config, extras) = task_config(&options, Some(&caps));
        assert_eq!(
            Value::Object(config),
            json!({"copies": 3, "paperConfig": {"name": "A4", "width": 210.0, "height": 297.0},
                   "orientation": "LANDSCAPE", "color": "COLOR", "side": "TUMBLE",
                   "pageRanges": "1-3,5", "autofit": true, "quality": "HIGH"})
        );
        assert_eq!(Value::Object(extras), json!({"javascript": true}));

        let custom = JobOptions {
            paper: Some(Paper::Custom {
                width_mm: 105.0,
                height_mm: 156.0,
            }),
            sides: Some(Sides::OneSided),
            color: Some(ColorMode::Monochrome),
            scale: Some(Scale::Percent(80)),
            ..Default::default()
        };
        let (config, _) = task_config(&custom, None);
        assert_eq!(
            Value::Object(config),
            json!({"paperConfig": {"width": 105.0, "height": 156.0}, "color": "MONOCHROME",
                   "side": "ONESIDE", "autofit": false, "scale": 80})
        );
    }

    #[test]
    fn vendor_options_are_allow_listed_and_typed() {
        let ok = Map::from_iter([
            ("quality".to_owned(), json!("DRAFT")),
            ("marginTop".to_owned(), json!(5.5)),
            ("headers".to_owned(), json!({"Cookie": "a=b"})),
        ]);
        assert!(check_vendor_options(&ok).is_ok());
        let unknown = Map::from_iter([("dmPaperSize".to_owned(), json!(9))]);
        assert!(
            check_vendor_options(&unknown)
                .unwrap_err()
                .0
                .contains("dmPaperSize")
        );
        let neutral = Map::from_iter([("side".to_owned(), json!("DUPLEX"))]);
        assert!(
            check_vendor_options(&neutral)
                .unwrap_err()
                .0
                .contains("`sides`")
        );
        let badly_typed = Map::from_iter([("quality".to_owned(), json!("BEST"))]);
        assert!(
            check_vendor_options(&badly_typed)
                .unwrap_err()
                .0
                .contains("HIGH")
        );
    }

    #[test]
    fn the_documented_capabilities_normalise() {
        let doc = r#"{"supportedColors":["MONOCHROME"],"defaultColor":"MONOCHROME","supportsCopies":false,"upperCopies":9999,"lowerCopies":1,"supportedDpis":[[300,300],[600,600],[1200,1200]],"supportedOrientations":["PORTRAIT","LANDSCAPE"],"defaultOrientation":"PORTRAIT","supportedCollates":["COLLATE","UNCOLLATE"],"defaultCollate":"COLLATE","supportedQualities":["HIGH","NORMAL","LOW","DRAFT"],"defaultQuality":"NORMAL","supportedSides":["ONESIDE","DUPLEX","TUMBLE","FANCY"],"defaultSide":"ONESIDE","dpi":300,"defaultPagesPerSheet":1,"supportedPapers":[{"name":"Letter","width":215.9,"height":279.4,"left":5.08,"top":5.08,"system":false},{"name":"A4","width":210.0,"height":297.0,"left":5.08,"top":5.08,"system":false}],"defaultPaper":{"name":"A4","width":210.0,"height":297.0,"left":5.08,"top":5.08,"system":false}}"#;
        let (detail, raw) = parse_detail(&Value::String(doc.into())).unwrap();
        assert_eq!(raw["dpi"], 300);
        let caps = capabilities(&detail);
        assert_eq!(caps.color_modes, vec![ColorMode::Monochrome]);
        assert_eq!(
            caps.sides,
            vec![
                Sides::OneSided,
                Sides::TwoSidedLongEdge,
                Sides::TwoSidedShortEdge
            ],
            "an unknown side is dropped"
        );
        assert_eq!(caps.copies_max, 999);
        assert_eq!(
            caps.orientations,
            vec![NeutralOrientation::Portrait, NeutralOrientation::Landscape]
        );
        assert_eq!(caps.papers.len(), 2);
        assert_eq!(caps.papers[1].width_mm, Some(210.0));
        assert!(caps.custom_paper);
        assert_eq!(caps.qualities, vec!["high", "normal", "low", "draft"]);
        assert_eq!(
            caps.resolutions_dpi,
            vec!["300x300", "600x600", "1200x1200"]
        );
        assert_eq!(caps.collate, Some(true));
        assert!(parse_detail(&json!(42)).is_err());
    }
}
