//! Admission of a new batch: the manifest is read and checked, every document is looked up
//! (HeadObject) and pinned to the version and size S3 reports, and the batch is accepted as
//! PENDING(1), or, when a document is missing or not as declared, settled FAILED at once with
//! its reason, without a session ever being claimed.

use crate::{Invoker, Outcome, RecordError, Request};
use futures::StreamExt;
use tracing::{info, warn};
use warmpool_core::batch::manifest::{InvalidBatch, Manifest};
use warmpool_core::batch::notification::ManifestCreated;
use warmpool_core::batch::ports::{DocumentStore, MessageSink, Redelivery, TrackingTable};
use warmpool_core::batch::write::{self, Written};
use warmpool_core::batch::{BatchRow, PinnedDocument};
use warmpool_core::clock::{Clock, millis};
use warmpool_core::error::{StoreError, StoreErrorKind};
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};

/// HeadObject calls in flight for one batch.
const HEAD_CONCURRENCY: usize = 8;

/// What admission made of a new batch.
pub(crate) enum Admitted {
    /// Accepted and waiting for its first session.
    Accepted(BatchRow),
    /// Settled at admission; nothing more to do for this record.
    Settled(Outcome),
    /// Another delivery accepted it first: this is its row.
    Existing(BatchRow),
}

/// Why the documents could not be pinned.
enum Unpinned {
    /// For good: the batch fails with this reason.
    Refused(String),
    /// S3 could not answer now; a later delivery tries again.
    Unavailable(StoreError),
}

impl<T, S, Q, A, P, R, C, V> Invoker<T, S, Q, A, P, R, C, V>
where
    T: TrackingTable,
    S: DocumentStore,
    Q: MessageSink,
    A: AgentRuntime,
    P: PoolQueue,
    R: ReplenishTrigger,
    C: Clock,
    V: Redelivery,
{
    pub(crate) async fn read_manifest(&self, created: ManifestCreated) -> Result<Request, RecordError> {
        let ManifestCreated { batch_id, manifest } = created;
        let limits = &self.config.limits;
        let invalid = |reason| RecordError::InvalidBatch {
            batch_id: batch_id.clone(),
            reason,
        };
        // The bucket rule applies to manifests too: a notification from another bucket could
        // otherwise make the agent read objects it was never meant to.
        if manifest.bucket != self.config.documents_bucket {
            return Err(invalid(InvalidBatch::WrongBucket {
                location: manifest.to_string(),
                bucket: self.config.documents_bucket.clone(),
            }));
        }
        let raw = match self.store.get(&manifest, limits.max_manifest_bytes).await {
            Ok(object) => object.bytes,
            Err(error) if error.kind == StoreErrorKind::TooLarge => {
                return Err(invalid(InvalidBatch::ManifestTooLarge {
                    size: limits.max_manifest_bytes + 1,
                    limit: limits.max_manifest_bytes,
                }));
            }
            Err(source) => {
                return Err(RecordError::Manifest {
                    batch_id: batch_id.clone(),
                    source,
                });
            }
        };
        let documents = Manifest::documents_from(&raw, &batch_id, &manifest.bucket, limits).map_err(invalid)?;
        Ok(Request {
            batch_id,
            attempt: 1,
            documents,
        })
    }

    /// Accepts `request` (attempt 1 of a batch without a row) as PENDING(1) with its
    /// documents pinned, or settles it FAILED with the reason a document gave.
    pub(crate) async fn accept(&self, request: &Request) -> Result<Admitted, RecordError> {
        let now = self.claimer.clock.now_ms();
        let max_attempts = self.config.max_attempts.get();
        let batch_id = &request.batch_id;
        let (row, refusal) = match self.pin(&request.documents).await {
            Ok(pinned) => {
                let start_by = now + millis(self.config.pending_timeout);
                let row = BatchRow::new_pending(batch_id.clone(), pinned, max_attempts, now, start_by);
                (row, None)
            }
            Err(Unpinned::Refused(reason)) => {
                let row = BatchRow::refused(batch_id.clone(), request.documents.clone(), max_attempts, now, &reason);
                (row, Some(reason))
            }
            Err(Unpinned::Unavailable(source)) => {
                return Err(RecordError::Document {
                    batch_id: batch_id.clone(),
                    source,
                });
            }
        };
        match write::create(&self.table, &row).await? {
            Written::Superseded(Some(existing)) => Ok(Admitted::Existing(*existing)),
            Written::Superseded(None) => Err(RecordError::Malformed(format!("batch {batch_id} vanished"))),
            Written::Landed => match refusal {
                None => Ok(Admitted::Accepted(row)),
                Some(reason) => {
                    warn!(%batch_id, %reason, "batch refused at admission");
                    // The notice and the close; what fails here the detector finishes.
                    if let Err(error) = self.retrier().follow_up(&row).await {
                        info!(%batch_id, %error, "follow-up of a refused batch left to the detector");
                    }
                    Ok(Admitted::Settled(Outcome::Refused {
                        batch_id: batch_id.clone(),
                        reason,
                    }))
                }
            },
        }
    }

    /// Looks every document up, in order, and pins it: version and size as S3 reports them,
    /// checked against the declared size and the limits.
    async fn pin(&self, documents: &[PinnedDocument]) -> Result<Vec<PinnedDocument>, Unpinned> {
        // Futures built in a loop, not by a closure: a closure returning a borrowing future does
        // not prove `Send` for every lifetime, which the Lambda runtime's handler needs.
        let mut lookups = Vec::with_capacity(documents.len());
        for document in documents {
            lookups.push(self.store.head(&document.object));
        }
        let heads: Vec<_> = futures::stream::iter(lookups)
            .buffered(HEAD_CONCURRENCY)
            .collect()
            .await;
        let limits = &self.config.limits;
        let mut pinned = Vec::with_capacity(heads.len());
        let mut total = 0u64;
        for (document, head) in documents.iter().zip(heads) {
            let location = &document.object;
            let head = match head {
                Ok(head) => head,
                Err(error) if error.is_retryable() => return Err(Unpinned::Unavailable(error)),
                Err(error) if error.kind == StoreErrorKind::NotFound => {
                    return Err(Unpinned::Refused(format!("document {location} is missing")));
                }
                Err(error) => {
                    return Err(Unpinned::Refused(format!(
                        "document {location} cannot be read: {error}"
                    )));
                }
            };
            if let Some(declared) = document.size
                && declared != head.size
            {
                return Err(Unpinned::Refused(format!(
                    "document {location} is {} bytes, the manifest declared {declared}",
                    head.size
                )));
            }
            if head.size > limits.max_document_bytes {
                return Err(Unpinned::Refused(format!(
                    "document {location} is {} bytes, more than the {} allowed",
                    head.size, limits.max_document_bytes
                )));
            }
            total = total.saturating_add(head.size);
            pinned.push(PinnedDocument {
                object: location.clone(),
                version_id: head.version_id,
                size: Some(head.size),
            });
        }
        if total > limits.max_batch_bytes {
            return Err(Unpinned::Refused(format!(
                "documents total {total} bytes, more than the {} allowed",
                limits.max_batch_bytes
            )));
        }
        Ok(pinned)
    }
}
