//! What the agent does with each document, behind a trait so that a model-backed processor
//! (summaries, extraction) can replace the reference one without touching the batch run.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use warmpool_core::batch::ObjectRef;

/// One document as read from S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub location: ObjectRef,
    pub bytes: Vec<u8>,
    /// As S3 reports it, if set at upload.
    pub content_type: Option<String>,
}

/// The per-document record in a batch result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentRecord {
    pub location: ObjectRef,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    /// Present for text documents.
    pub text: Option<TextStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TextStats {
    pub lines: usize,
    pub words: usize,
    pub characters: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("processing {location} failed: {reason}")]
pub struct ProcessError {
    pub location: ObjectRef,
    pub reason: String,
}

pub trait DocumentProcessor: Send + Sync + 'static {
    fn process(&self, document: Document) -> impl Future<Output = Result<DocumentRecord, ProcessError>> + Send;
}

/// The reference processor: size, SHA-256, content type, and line/word/character counts for
/// text. Deterministic, so a result can be checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct BasicProcessor;

impl DocumentProcessor for BasicProcessor {
    async fn process(&self, document: Document) -> Result<DocumentRecord, ProcessError> {
        Ok(describe(&document))
    }
}

/// The reference record of one document (the whole work of [`BasicProcessor`]).
pub fn describe(document: &Document) -> DocumentRecord {
    let content_type = content_type(document);
    let text = is_text(&content_type)
        .then(|| std::str::from_utf8(&document.bytes).ok())
        .flatten()
        .map(|text| TextStats {
            lines: text.lines().count(),
            words: text.split_whitespace().count(),
            characters: text.chars().count(),
        });
    DocumentRecord {
        location: document.location.clone(),
        size: document.bytes.len() as u64,
        sha256: Sha256::digest(&document.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        content_type,
        text,
    }
}

fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(
            content_type,
            "application/json" | "application/xml" | "application/x-ndjson"
        )
}

/// S3's type unless it is the uninformative default; else from the extension; else sniffed:
/// valid UTF-8 without NUL bytes is text.
fn content_type(document: &Document) -> String {
    let declared = document
        .content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "application/octet-stream" && t != "binary/octet-stream");
    if let Some(declared) = declared {
        return declared;
    }
    let extension = document
        .location
        .key
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let by_extension = match extension.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "",
    };
    if !by_extension.is_empty() {
        return by_extension.into();
    }
    let looks_like_text = !document.bytes.contains(&0) && std::str::from_utf8(&document.bytes).is_ok();
    if looks_like_text {
        "text/plain"
    } else {
        "application/octet-stream"
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(key: &str, bytes: &[u8], content_type: Option<&str>) -> Document {
        Document {
            location: ObjectRef::new("docs", key),
            bytes: bytes.to_vec(),
            content_type: content_type.map(str::to_string),
        }
    }

    #[test]
    fn a_text_document_gets_its_checksum_and_text_statistics() {
        let record = describe(&document("incoming/c/a.txt", b"hello world\nsecond line\n", None));
        assert_eq!(record.size, 24);
        assert_eq!(record.content_type, "text/plain");
        assert_eq!(
            record.text,
            Some(TextStats {
                lines: 2,
                words: 4,
                characters: 24
            })
        );
        assert_eq!(
            describe(&document("x", b"abc", None)).sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_binary_document_has_no_text_statistics() {
        let record = describe(&document("incoming/c/photo", &[0xff, 0xd8, 0x00, 0x10], None));
        assert_eq!(record.content_type, "application/octet-stream");
        assert_eq!(record.text, None);
        let jpeg = describe(&document("incoming/c/photo.JPG", b"text-looking", None));
        assert_eq!((jpeg.content_type.as_str(), jpeg.text), ("image/jpeg", None));
    }

    #[test]
    fn the_uploaders_content_type_wins_unless_it_is_the_default() {
        let record = describe(&document(
            "incoming/c/a.bin",
            b"{}",
            Some("application/json; charset=utf-8"),
        ));
        assert_eq!(record.content_type, "application/json");
        assert!(record.text.is_some());
        let record = describe(&document("incoming/c/a.md", b"# t", Some("binary/octet-stream")));
        assert_eq!(record.content_type, "text/markdown");
    }
}
