//! The batch manifest (`incoming/<batchId>/manifest.json`) and the limits every batch obeys,
//! however it arrives.
//!
//! ```json
//! {"v": 1, "batchId": "case-4711",
//!  "documents": [{"key": "incoming/case-4711/claim.txt", "size": 5120}]}
//! ```
//!
//! The manifest is uploaded last, after its documents, so its notification means "complete".
//! Every key must lie under the batch's own prefix: a manifest can never make the agent read
//! another batch's (or anyone's) objects.

use crate::batch::{BatchId, MANIFEST_NAME, ObjectRef, PinnedDocument};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub v: u8,
    pub batch_id: BatchId,
    pub documents: Vec<ManifestDocument>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestDocument {
    pub key: String,
    /// Bytes, as uploaded; the agent refuses an object larger than the per-document limit
    /// whatever the manifest says.
    pub size: u64,
}

/// Limits on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_documents: usize,
    pub max_document_bytes: u64,
    pub max_batch_bytes: u64,
    pub max_manifest_bytes: u64,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_documents: 100,
            max_document_bytes: 10 * 1024 * 1024,
            max_batch_bytes: 100 * 1024 * 1024,
            max_manifest_bytes: 256 * 1024,
        }
    }
}

/// The document list travels in an SQS message (256 KiB) and a DynamoDB item (400 KB):
/// this leaves room for everything else in either.
pub const MAX_DOCUMENT_LIST_BYTES: usize = 192 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBatch {
    #[error("manifest is not a v1 manifest: {0}")]
    Schema(String),
    #[error("manifest version {0} is not supported")]
    Version(u8),
    #[error("manifest names batch {found} but sits under {expected}'s prefix")]
    BatchIdMismatch { expected: BatchId, found: BatchId },
    #[error("manifest is {size} bytes, more than the {limit} allowed")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("a batch needs at least one document")]
    Empty,
    #[error("{count} documents, more than the {limit} allowed")]
    TooManyDocuments { count: usize, limit: usize },
    #[error("document {key:?} is outside the batch's prefix {prefix}")]
    OutsidePrefix { key: String, prefix: String },
    #[error("document {location} is not in the documents bucket {bucket}")]
    WrongBucket { location: String, bucket: String },
    #[error("document {0} is not an object S3 can hold (bucket name, or a key of 1..=1024 bytes)")]
    NotAnObject(String),
    #[error("document key {0:?} has an empty, '.' or '..' path segment")]
    UnsafeKey(String),
    #[error("document {0:?} is the manifest itself")]
    ManifestListed(String),
    #[error("document {0:?} is listed twice")]
    Duplicate(String),
    #[error("document {key:?} is {size} bytes, more than the {limit} allowed")]
    DocumentTooLarge { key: String, size: u64, limit: u64 },
    #[error("documents total {total} bytes, more than the {limit} allowed")]
    BatchTooLarge { total: u64, limit: u64 },
    #[error("the document list takes {bytes} bytes, more than the {limit} a message can carry")]
    ListTooLong { bytes: usize, limit: usize },
}

impl Manifest {
    /// Parses and validates a manifest found at `incoming/<batch_id>/manifest.json` in `bucket`,
    /// returning the batch's documents with their declared sizes (not yet pinned to versions).
    pub fn documents_from(
        raw: &[u8],
        batch_id: &BatchId,
        bucket: &str,
        limits: &BatchLimits,
    ) -> Result<Vec<PinnedDocument>, InvalidBatch> {
        if raw.len() as u64 > limits.max_manifest_bytes {
            return Err(InvalidBatch::ManifestTooLarge {
                size: raw.len() as u64,
                limit: limits.max_manifest_bytes,
            });
        }
        let manifest: Manifest = serde_json::from_slice(raw).map_err(|e| InvalidBatch::Schema(e.to_string()))?;
        if manifest.v != 1 {
            return Err(InvalidBatch::Version(manifest.v));
        }
        if &manifest.batch_id != batch_id {
            return Err(InvalidBatch::BatchIdMismatch {
                expected: batch_id.clone(),
                found: manifest.batch_id,
            });
        }
        let mut total = 0u64;
        for document in &manifest.documents {
            if document.size > limits.max_document_bytes {
                return Err(InvalidBatch::DocumentTooLarge {
                    key: document.key.clone(),
                    size: document.size,
                    limit: limits.max_document_bytes,
                });
            }
            total = total.saturating_add(document.size);
        }
        if total > limits.max_batch_bytes {
            return Err(InvalidBatch::BatchTooLarge {
                total,
                limit: limits.max_batch_bytes,
            });
        }
        let objects: Vec<ObjectRef> = manifest
            .documents
            .iter()
            .map(|d| ObjectRef::new(bucket, &d.key))
            .collect();
        check_documents(batch_id, &objects, bucket, limits)?;
        Ok(objects
            .into_iter()
            .zip(&manifest.documents)
            .map(|(object, declared)| PinnedDocument {
                object,
                version_id: None,
                size: Some(declared.size),
            })
            .collect())
    }
}

/// The rules of this deployment for a batch's document list, from a manifest or a direct
/// request: in the documents bucket, at most `max_documents` of them; and the rules of every
/// stored list ([`check_document_list`]).
pub fn check_documents(
    batch_id: &BatchId,
    documents: &[ObjectRef],
    bucket: &str,
    limits: &BatchLimits,
) -> Result<(), InvalidBatch> {
    if documents.len() > limits.max_documents {
        return Err(InvalidBatch::TooManyDocuments {
            count: documents.len(),
            limit: limits.max_documents,
        });
    }
    if let Some(document) = documents.iter().find(|d| d.bucket != bucket) {
        return Err(InvalidBatch::WrongBucket {
            location: document.to_string(),
            bucket: bucket.to_string(),
        });
    }
    check_document_list(batch_id, documents)
}

/// The one rule for what a batch's document list may be, applied where a list enters (the
/// manifest check, direct requests) and where it is read back (the tracking row parser), so a
/// list that was accepted always reads back: a bounded, non-empty list of distinct objects S3
/// can hold, all under `incoming/<batchId>/`, without the manifest itself.
pub fn check_document_list(batch_id: &BatchId, documents: &[ObjectRef]) -> Result<(), InvalidBatch> {
    if documents.is_empty() {
        return Err(InvalidBatch::Empty);
    }
    let prefix = batch_id.incoming_prefix();
    let manifest_key = batch_id.manifest_key();
    let mut seen = HashSet::new();
    let mut list_bytes = 0;
    for document in documents {
        if ObjectRef::checked(&document.bucket, &document.key).is_err() {
            return Err(InvalidBatch::NotAnObject(format!(
                "s3://{}/{}... ({} bytes of key)",
                document.bucket,
                document.key.chars().take(64).collect::<String>(),
                document.key.len()
            )));
        }
        let Some(relative) = document.key.strip_prefix(&prefix) else {
            return Err(InvalidBatch::OutsidePrefix {
                key: document.key.clone(),
                prefix,
            });
        };
        if relative.split('/').any(|segment| matches!(segment, "" | "." | "..")) {
            return Err(InvalidBatch::UnsafeKey(document.key.clone()));
        }
        if document.key == manifest_key || relative == MANIFEST_NAME {
            return Err(InvalidBatch::ManifestListed(document.key.clone()));
        }
        if !seen.insert(document.key.as_str()) {
            return Err(InvalidBatch::Duplicate(document.key.clone()));
        }
        // The quoted URI and a comma, as it sits in the JSON list.
        list_bytes += document.to_string().len() + 3;
    }
    if list_bytes > MAX_DOCUMENT_LIST_BYTES {
        return Err(InvalidBatch::ListTooLong {
            bytes: list_bytes,
            limit: MAX_DOCUMENT_LIST_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch() -> BatchId {
        BatchId::parse("case-1").unwrap()
    }

    fn manifest(documents: serde_json::Value) -> Vec<u8> {
        json!({"v": 1, "batchId": "case-1", "documents": documents})
            .to_string()
            .into_bytes()
    }

    fn read(raw: &[u8]) -> Result<Vec<ObjectRef>, InvalidBatch> {
        Manifest::documents_from(raw, &batch(), "docs", &BatchLimits::default())
            .map(|documents| documents.into_iter().map(|d| d.object).collect())
    }

    #[test]
    fn the_sample_manifest_is_valid() {
        let raw = include_str!("../../../../events/batch-manifest.json");
        let id = BatchId::parse("case-4711").unwrap();
        let documents = Manifest::documents_from(raw.as_bytes(), &id, "docs", &BatchLimits::default()).unwrap();
        assert_eq!(documents.len(), 2);
        assert!(
            documents
                .iter()
                .all(|d| d.object.key.starts_with("incoming/case-4711/"))
        );
        assert!(documents.iter().all(|d| d.size.is_some() && d.version_id.is_none()));
    }

    #[test]
    fn a_valid_manifest_lists_its_documents_in_the_notifying_bucket() {
        let documents = read(&manifest(json!([
            {"key": "incoming/case-1/a.txt", "size": 3},
            {"key": "incoming/case-1/sub/b.pdf", "size": 4}
        ])))
        .unwrap();
        assert_eq!(
            documents,
            vec![
                ObjectRef::new("docs", "incoming/case-1/a.txt"),
                ObjectRef::new("docs", "incoming/case-1/sub/b.pdf")
            ]
        );
    }

    #[test]
    fn a_document_outside_the_batch_prefix_is_refused() {
        for key in [
            "incoming/case-2/a.txt",
            "incoming/case-10/a.txt",
            "secrets/a.txt",
            "incoming/case-1",
        ] {
            let error = read(&manifest(json!([{"key": key, "size": 1}]))).unwrap_err();
            assert!(matches!(error, InvalidBatch::OutsidePrefix { .. }), "{key}: {error}");
        }
        let error = read(&manifest(json!([{"key": "incoming/case-1/../case-2/a", "size": 1}]))).unwrap_err();
        assert!(matches!(error, InvalidBatch::UnsafeKey(_)), "{error}");
    }

    #[test]
    fn schema_version_and_batch_id_are_checked() {
        assert!(matches!(read(b"not json"), Err(InvalidBatch::Schema(_))));
        assert!(matches!(
            read(
                json!({"v":1,"batchId":"case-1","documents":[],"extra":1})
                    .to_string()
                    .as_bytes()
            ),
            Err(InvalidBatch::Schema(_))
        ));
        assert!(matches!(
            read(
                json!({"v":1,"batchId":"case-1","documents":[{"key":"incoming/case-1/a"}]})
                    .to_string()
                    .as_bytes()
            ),
            Err(InvalidBatch::Schema(_))
        ));
        assert!(matches!(
            read(json!({"v":2,"batchId":"case-1","documents":[]}).to_string().as_bytes()),
            Err(InvalidBatch::Version(2))
        ));
        assert!(matches!(
            read(json!({"v":1,"batchId":"case-2","documents":[]}).to_string().as_bytes()),
            Err(InvalidBatch::BatchIdMismatch { .. })
        ));
    }

    #[test]
    fn count_and_size_limits_are_enforced() {
        let limits = BatchLimits {
            max_documents: 2,
            max_document_bytes: 10,
            max_batch_bytes: 15,
            max_manifest_bytes: 400,
        };
        let read = |docs: serde_json::Value| Manifest::documents_from(&manifest(docs), &batch(), "docs", &limits);
        assert!(matches!(read(json!([])), Err(InvalidBatch::Empty)));
        assert!(matches!(
            read(
                json!([{"key":"incoming/case-1/a","size":1},{"key":"incoming/case-1/b","size":1},{"key":"incoming/case-1/c","size":1}])
            ),
            Err(InvalidBatch::TooManyDocuments { count: 3, limit: 2 })
        ));
        assert!(matches!(
            read(json!([{"key":"incoming/case-1/a","size":11}])),
            Err(InvalidBatch::DocumentTooLarge { .. })
        ));
        assert!(matches!(
            read(json!([{"key":"incoming/case-1/a","size":8},{"key":"incoming/case-1/b","size":8}])),
            Err(InvalidBatch::BatchTooLarge { total: 16, .. })
        ));
        let padded = json!({"v":1,"batchId":"case-1","documents":[{"key":format!("incoming/case-1/{}", "x".repeat(500)),"size":1}]});
        assert!(matches!(
            Manifest::documents_from(padded.to_string().as_bytes(), &batch(), "docs", &limits),
            Err(InvalidBatch::ManifestTooLarge { .. })
        ));
    }

    #[test]
    fn when_a_key_is_longer_than_s3_allows_then_the_manifest_is_refused() {
        let key = format!("incoming/case-1/{}", "k".repeat(1_100));
        assert!(matches!(
            read(&manifest(json!([{"key": key, "size": 1}]))),
            Err(InvalidBatch::NotAnObject(_))
        ));
        let longest = format!("incoming/case-1/{}", "k".repeat(1_024 - 16));
        assert!(read(&manifest(json!([{"key": longest, "size": 1}]))).is_ok());
    }

    #[test]
    fn duplicates_and_the_manifest_itself_are_refused() {
        assert!(matches!(
            read(&manifest(
                json!([{"key":"incoming/case-1/a","size":1},{"key":"incoming/case-1/a","size":1}])
            )),
            Err(InvalidBatch::Duplicate(_))
        ));
        assert!(matches!(
            read(&manifest(json!([{"key":"incoming/case-1/manifest.json","size":1}]))),
            Err(InvalidBatch::ManifestListed(_))
        ));
    }

    #[test]
    fn a_direct_request_must_stay_in_the_documents_bucket() {
        let documents = vec![ObjectRef::new("elsewhere", "incoming/case-1/a")];
        assert!(matches!(
            check_documents(&batch(), &documents, "docs", &BatchLimits::default()),
            Err(InvalidBatch::WrongBucket { .. })
        ));
    }

    #[test]
    fn a_list_too_long_for_one_message_is_refused() {
        let documents: Vec<ObjectRef> = (0..300)
            .map(|n| ObjectRef::new("docs", format!("incoming/case-1/{n}-{}", "x".repeat(900))))
            .collect();
        let limits = BatchLimits {
            max_documents: 1_000,
            ..BatchLimits::default()
        };
        assert!(matches!(
            check_documents(&batch(), &documents, "docs", &limits),
            Err(InvalidBatch::ListTooLong { .. })
        ));
    }
}
