//! Documents: what kind of input a job came with, and what type of file it is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How the caller supplied the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Url,
    Upload,
    Base64,
    Text,
    Html,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Url => "url",
            DocumentKind::Upload => "upload",
            DocumentKind::Base64 => "base64",
            DocumentKind::Text => "text",
            DocumentKind::Html => "html",
        }
    }

    pub fn parse(s: &str) -> Option<DocumentKind> {
        [
            DocumentKind::Url,
            DocumentKind::Upload,
            DocumentKind::Base64,
            DocumentKind::Text,
            DocumentKind::Html,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The file types the gateway knows, with their canonical content type and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    Pdf,
    Png,
    Jpeg,
    Bmp,
    Gif,
    Doc,
    Docx,
    Xls,
    Xlsx,
    Ppt,
    Pptx,
    Text,
    Html,
}

/// (type, content type, extension); the first content type per type is canonical.
const TABLE: &[(DocumentType, &str, &str)] = &[
    (DocumentType::Pdf, "application/pdf", "pdf"),
    (DocumentType::Png, "image/png", "png"),
    (DocumentType::Jpeg, "image/jpeg", "jpg"),
    (DocumentType::Jpeg, "image/jpg", "jpeg"),
    (DocumentType::Bmp, "image/bmp", "bmp"),
    (DocumentType::Gif, "image/gif", "gif"),
    (DocumentType::Doc, "application/msword", "doc"),
    (
        DocumentType::Docx,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (DocumentType::Xls, "application/vnd.ms-excel", "xls"),
    (
        DocumentType::Xlsx,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    (DocumentType::Ppt, "application/vnd.ms-powerpoint", "ppt"),
    (
        DocumentType::Pptx,
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    (DocumentType::Text, "text/plain", "txt"),
    (DocumentType::Html, "text/html", "html"),
];

impl DocumentType {
    pub fn content_type(self) -> &'static str {
        TABLE
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, ct, _)| *ct)
            .unwrap_or("application/octet-stream")
    }

    pub fn extension(self) -> &'static str {
        TABLE
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, _, ext)| *ext)
            .unwrap_or("bin")
    }

    pub fn from_content_type(content_type: &str) -> Option<DocumentType> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        TABLE
            .iter()
            .find(|(_, ct, _)| *ct == essence)
            .map(|(t, _, _)| *t)
    }

    pub fn from_extension(name: &str) -> Option<DocumentType> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        let ext = if ext == "htm" { "html".to_owned() } else { ext };
        TABLE.iter().find(|(_, _, e)| *e == ext).map(|(t, _, _)| *t)
    }

    pub fn all_names() -> Vec<&'static str> {
        let mut names: Vec<&str> = TABLE.iter().map(|(_, _, ext)| *ext).collect();
        names.dedup();
        names
    }

    /// What the first bytes say the file is. Office zip formats all start with `PK`,
    /// old Office formats with the OLE2 header, so those sniff to a family.
    pub fn sniff(bytes: &[u8]) -> Sniffed {
        if bytes.starts_with(b"%PDF-") {
            Sniffed::Exactly(DocumentType::Pdf)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Sniffed::Exactly(DocumentType::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Sniffed::Exactly(DocumentType::Jpeg)
        } else if bytes.starts_with(b"BM") {
            Sniffed::Exactly(DocumentType::Bmp)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Sniffed::Exactly(DocumentType::Gif)
        } else if bytes.starts_with(b"PK\x03\x04") {
            Sniffed::OfficeZip
        } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
            Sniffed::OfficeOle
        } else if std::str::from_utf8(&bytes[..bytes.len().min(4096)]).is_ok()
            || bytes.len() > 4096
                && std::str::from_utf8(&bytes[..4096]).is_err_and(|e| e.error_len().is_none())
        {
            Sniffed::TextLike
        } else {
            Sniffed::Unknown
        }
    }

    /// Whether bytes whose magic says `sniffed` may be declared as `self`.
    pub fn matches(self, sniffed: Sniffed) -> bool {
        use DocumentType::*;
        match sniffed {
            Sniffed::Exactly(t) => t == self,
            Sniffed::OfficeZip => matches!(self, Docx | Xlsx | Pptx),
            Sniffed::OfficeOle => matches!(self, Doc | Xls | Ppt),
            Sniffed::TextLike => matches!(self, Text | Html),
            Sniffed::Unknown => false,
        }
    }
}

/// The result of looking at a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Exactly(DocumentType),
    OfficeZip,
    OfficeOle,
    TextLike,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert!(DocumentType::Pdf.matches(DocumentType::sniff(b"%PDF-1.7\n")));
        assert!(!DocumentType::Pdf.matches(DocumentType::sniff(b"\x89PNG\r\n\x1a\n....")));
        assert!(DocumentType::Docx.matches(DocumentType::sniff(b"PK\x03\x04rest")));
        assert!(!DocumentType::Pdf.matches(DocumentType::sniff(&[0, 1, 2, 0xFF])));
        assert!(DocumentType::Text.matches(DocumentType::sniff("你好".as_bytes())));
    }

    #[test]
    fn types_from_names_and_content_types() {
        assert_eq!(
            DocumentType::from_extension("a.PDF"),
            Some(DocumentType::Pdf)
        );
        assert_eq!(
            DocumentType::from_extension("x.htm"),
            Some(DocumentType::Html)
        );
        assert_eq!(DocumentType::from_extension("noext"), None);
        assert_eq!(
            DocumentType::from_content_type("image/png; q=1"),
            Some(DocumentType::Png)
        );
        assert_eq!(DocumentType::Jpeg.extension(), "jpg");
    }
}
