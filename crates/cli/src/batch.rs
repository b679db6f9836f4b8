//! A batch as a user sees it, for `warmpool batch submit <folder>` and
//! `warmpool batch status <batchId>` (their flags are in `cmd/batch/`). Submit uploads the
//! folder's files under `incoming/<batchId>/`, then the manifest last (its notification means
//! "complete"); status reads the tracking row.

use crate::error::CliError;
use crate::table::{Table, duration_ms};
use futures::StreamExt;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::batch::manifest::{BatchLimits, Manifest, ManifestDocument};
use warmpool_core::batch::ports::{DocumentStore, TrackingTable};
use warmpool_core::batch::{BatchId, BatchRow, MANIFEST_NAME, ObjectRef};

/// Files uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// Folder depth walked at most.
const MAX_DEPTH: usize = 8;
const POLL: Duration = Duration::from_millis(500);

/// What `batch submit` uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    pub batch_id: BatchId,
    pub manifest: ObjectRef,
    pub documents: Vec<ManifestDocument>,
}

/// A batch ID from the folder's name and a random suffix, so resubmitting a folder makes a
/// new batch (the same ID would be acknowledged as a duplicate).
pub fn batch_id_for(folder: &Path) -> Result<BatchId, CliError> {
    let name: String = folder
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("batch")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "batch" } else { name };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    BatchId::parse(format!("{name}-{suffix}")).map_err(|e| CliError::invalid("folder", e.to_string()))
}

/// Every regular, non-hidden file under `folder`, sorted, with its `/`-separated relative path.
fn files(folder: &Path, limit: usize) -> Result<Vec<(String, PathBuf)>, CliError> {
    let read_error = |path: &Path, source: std::io::Error| CliError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut found = Vec::new();
    let mut pending = vec![(folder.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| read_error(&dir, e))? {
            let entry = entry.map_err(|e| read_error(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return Err(CliError::invalid("folder", format!("{:?} is not UTF-8", entry.path())));
            };
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|e| read_error(&entry.path(), e))?;
            if kind.is_dir() && depth < MAX_DEPTH {
                pending.push((entry.path(), format!("{relative}/"), depth + 1));
            } else if kind.is_file() {
                if relative == MANIFEST_NAME {
                    return Err(CliError::invalid(
                        "folder",
                        "manifest.json is written by submit; rename that file",
                    ));
                }
                found.push((relative, entry.path()));
                if found.len() > limit {
                    return Err(CliError::invalid("folder", format!("more than {limit} files")));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Uploads the folder's files, then the manifest, and returns what it uploaded.
pub async fn submit<S: DocumentStore>(
    store: &S,
    bucket: &str,
    folder: &Path,
    batch_id: BatchId,
    limits: &BatchLimits,
) -> Result<Submission, CliError> {
    let mut contents = Vec::new();
    for (relative, path) in files(folder, limits.max_documents)? {
        let bytes = std::fs::read(&path).map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?;
        contents.push((relative, bytes));
    }
    submit_files(store, bucket, batch_id, contents, limits).await
}

/// Uploads `(relative path, bytes)` under the batch's prefix, then the manifest last.
pub async fn submit_files<S: DocumentStore>(
    store: &S,
    bucket: &str,
    batch_id: BatchId,
    files: Vec<(String, Vec<u8>)>,
    limits: &BatchLimits,
) -> Result<Submission, CliError> {
    let prefix = batch_id.incoming_prefix();
    let (documents, contents): (Vec<ManifestDocument>, Vec<Vec<u8>>) = files
        .into_iter()
        .map(|(relative, bytes)| {
            let document = ManifestDocument {
                key: format!("{prefix}{relative}"),
                size: bytes.len() as u64,
            };
            (document, bytes)
        })
        .unzip();
    let manifest = Manifest {
        v: 1,
        batch_id: batch_id.clone(),
        documents,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    // The same rules the invoker applies, before anything is uploaded.
    Manifest::documents_from(&manifest_bytes, &batch_id, bucket, limits)
        .map_err(|e| CliError::invalid("folder", e.to_string()))?;

    let uploads: Vec<Result<(), CliError>> = futures::stream::iter(manifest.documents.iter().zip(contents))
        .map(|(document, bytes)| async move {
            store
                .put(
                    &ObjectRef::new(bucket, &document.key),
                    bytes,
                    content_type(&document.key),
                )
                .await
                .map_err(CliError::from)
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .collect()
        .await;
    uploads.into_iter().collect::<Result<(), _>>()?;
    let manifest_location = ObjectRef::new(bucket, batch_id.manifest_key());
    store
        .put(&manifest_location, manifest_bytes, "application/json")
        .await?;
    Ok(Submission {
        batch_id,
        manifest: manifest_location,
        documents: manifest.documents,
    })
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

pub fn render_submission(submission: &Submission) -> String {
    let mut table = Table::new().values_left();
    table.row(["batch", submission.batch_id.as_str()]);
    table.row(["manifest".to_string(), submission.manifest.to_string()]);
    for document in &submission.documents {
        table.row([
            "document".to_string(),
            format!("{} ({} bytes)", document.key, document.size),
        ]);
    }
    table.render()
}

/// The row, waiting up to `wait` for it to exist and finish; each reading is handed to
/// `observe` (what a progress line shows).
pub async fn status<T: TrackingTable>(
    table: &T,
    batch_id: &BatchId,
    wait: Duration,
    mut observe: impl FnMut(Option<&BatchRow>),
) -> Result<Option<BatchRow>, CliError> {
    let until = Instant::now() + wait;
    loop {
        let row = table.get(batch_id).await?;
        observe(row.as_ref());
        let finished = row.as_ref().is_some_and(|r| r.status.is_terminal());
        if finished || Instant::now() + POLL > until {
            return Ok(row);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The row as a key/value table, with where the time went and, if known, whether the batch
/// landed on a warm microVM.
pub fn render_status(row: &BatchRow, microvm: Option<&str>) -> String {
    let since_accepted = |at: u64| duration_ms(at.saturating_sub(row.accepted_at));
    let mut table = Table::new().values_left();
    table.row(["batch", row.batch_id.as_str()]);
    table.row(["status", row.status.as_str()]);
    table.row([
        "attempt".to_string(),
        format!("{} of {}", row.attempt, row.max_attempts),
    ]);
    table.row([
        "session".to_string(),
        row.session_id.as_ref().map_or("-".into(), |s| s.to_string()),
    ]);
    if let Some(warmth) = microvm {
        table.row(["microVM", warmth]);
    }
    table.row(["documents".to_string(), row.documents.len().to_string()]);
    if let Some(started) = row.started_at {
        table.row([
            "started".to_string(),
            format!("{} after acceptance", since_accepted(started)),
        ]);
    }
    if row.status.is_terminal() {
        table.row([
            "finished".to_string(),
            format!("{} after acceptance", since_accepted(row.updated_at)),
        ]);
        if let Some(started) = row.started_at {
            table.row([
                "last attempt ran".to_string(),
                duration_ms(row.updated_at.saturating_sub(started)),
            ]);
        }
    } else if let Some(deadline) = row.deadline {
        table.row([
            "deadline".to_string(),
            format!("{} after acceptance", since_accepted(deadline)),
        ]);
    }
    if let Some(result) = &row.result_ref {
        table.row(["result", result.as_str()]);
    }
    if let Some(error) = &row.last_error {
        table.row(["last error", error.as_str()]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::batch::BatchStatus;
    use warmpool_core::batch::fakes::MemoryStore;
    use warmpool_core::session::SessionId;

    fn folder(files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("warmpool-submit-{}", uuid::Uuid::new_v4().simple()));
        for (name, body) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        root
    }

    #[tokio::test]
    async fn submit_uploads_every_file_under_the_batch_prefix_then_the_manifest() {
        let root = folder(&[("a.txt", "alpha"), ("sub/b.md", "# beta"), (".hidden", "x")]);
        let store = MemoryStore::default();
        let id = BatchId::parse("case-9").unwrap();

        let submission = submit(&store, "docs", &root, id.clone(), &BatchLimits::default())
            .await
            .unwrap();

        let keys: Vec<&str> = submission.documents.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["incoming/case-9/a.txt", "incoming/case-9/sub/b.md"]);
        let stored = store
            .object(&ObjectRef::new("docs", "incoming/case-9/sub/b.md"))
            .unwrap();
        assert_eq!(
            (stored.bytes.as_slice(), stored.content_type.as_deref()),
            (&b"# beta"[..], Some("text/markdown"))
        );
        let manifest = store.object(&submission.manifest).unwrap();
        let documents = Manifest::documents_from(&manifest.bytes, &id, "docs", &BatchLimits::default()).unwrap();
        assert_eq!(documents.len(), 2);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn an_empty_or_oversized_folder_is_refused_before_any_upload() {
        let empty = folder(&[(".keep", "")]);
        let store = MemoryStore::default();
        let id = BatchId::parse("case-9").unwrap();
        assert!(
            submit(&store, "docs", &empty, id.clone(), &BatchLimits::default())
                .await
                .is_err()
        );
        let big = folder(&[("a.txt", "0123456789")]);
        let limits = BatchLimits {
            max_document_bytes: 5,
            ..BatchLimits::default()
        };
        let error = submit(&store, "docs", &big, id, &limits).await.unwrap_err();
        assert!(error.to_string().contains("more than the 5 allowed"), "{error}");
        assert!(store.object(&ObjectRef::new("docs", "incoming/case-9/a.txt")).is_none());
    }

    #[test]
    fn batch_ids_come_from_the_folder_name_and_are_new_each_time() {
        let a = batch_id_for(Path::new("/tmp/Claim 4711")).unwrap();
        let b = batch_id_for(Path::new("/tmp/Claim 4711")).unwrap();
        assert!(a.as_str().starts_with("Claim-4711-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn status_shows_the_outcome_and_where_the_time_went() {
        let mut row = BatchRow::new_running(
            BatchId::parse("case-9").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-9/a.txt")],
            3,
            SessionId::generate(),
            1_000,
            61_000,
        );
        row.started_at = Some(1_250);
        row.status = BatchStatus::Succeeded;
        row.updated_at = 3_000;
        row.result_ref = Some("s3://docs/results/case-9/attempt-1.json".into());
        let text = render_status(&row, Some("warm"));
        assert!(text.contains("SUCCEEDED"), "{text}");
        assert!(text.contains("1 of 3"), "{text}");
        assert!(text.contains("250 ms after acceptance"), "{text}");
        assert!(text.contains("results/case-9/attempt-1.json"), "{text}");
        assert!(text.contains("microVM           warm"), "{text}");
    }

    #[tokio::test]
    async fn status_waits_for_the_row_to_finish_and_shows_each_reading() {
        use warmpool_core::batch::fakes::MemoryTable;
        let table = std::sync::Arc::new(MemoryTable::default());
        let id = BatchId::parse("case-9").unwrap();
        let mut row = BatchRow::new_running(
            id.clone(),
            Vec::<warmpool_core::batch::PinnedDocument>::new(),
            3,
            SessionId::generate(),
            1_000,
            61_000,
        );
        let writer = {
            let table = table.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                table.insert(row.clone());
                tokio::time::sleep(Duration::from_millis(600)).await;
                row.status = BatchStatus::Succeeded;
                table.insert(row);
            })
        };
        let mut readings = Vec::new();
        let found = status(&*table, &id, Duration::from_secs(10), |r| {
            readings.push(r.map(|r| r.status))
        })
        .await
        .unwrap();
        writer.await.unwrap();
        assert_eq!(found.map(|r| r.status), Some(BatchStatus::Succeeded));
        assert_eq!(readings.first(), Some(&None));
        assert!(readings.contains(&Some(BatchStatus::Running)), "{readings:?}");
        assert_eq!(readings.last(), Some(&Some(BatchStatus::Succeeded)));
    }
}
