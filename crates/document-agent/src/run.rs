//! One batch attempt, run in the background, on the attempt the row assigned to this session
//! ([`crate::ownership`]): read the row's documents, process them, confirm the row still
//! assigns the attempt to this session, write the result to S3 under a key only this session
//! writes, confirm again, publish it to the results queue FIRST, then mark the row SUCCEEDED
//! with a write conditioned on this attempt and this session.
//!
//! If the row moved on before publishing (the detector or the invoker settled the attempt),
//! nothing is published: the run is superseded. If it moves on between the notice and the
//! final write, the notice stays out and the table refuses the write; the row says which
//! attempt counts. If the work fails, the agent expires its own attempt so the detector
//! retries it now instead of at the deadline.

use crate::config::RunSettings;
use crate::ownership::{self, OwnedAttempt, RowDocument};
use crate::processor::{Document, DocumentProcessor, DocumentRecord};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tracing::{info, warn};
use warmpool_core::batch::message::{self, ResultNotice};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, TrackingTable};
use warmpool_core::batch::{
    BatchId, BatchStatus, Change, ObjectRef, PinnedDocument, RunningAttempt, Transition, agent_gave_up,
};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::session::SessionId;

/// The longest reason the agent writes into `lastError` (and so the failure notice), in bytes,
/// marker included: a processor or an S3 error can say anything at any length.
pub const MAX_REASON_BYTES: usize = 1_000;

/// Tries of each table call after the work is done (the ownership checks and the final
/// write): a transport failure there would otherwise throw away a finished batch and make the
/// detector run it again.
const RECORD_TRIES: u32 = 3;
const RECORD_BACKOFF: Duration = Duration::from_millis(200);
/// Bytes of SHA-256 in a session's tag: 128 bits, so two sessions never share a result key.
const SESSION_TAG_BYTES: usize = 16;

/// Everything a run needs; shared by every session's task.
pub struct Services<T, S, Q, P> {
    pub table: T,
    pub store: S,
    pub results: Q,
    pub processor: P,
    pub results_bucket: String,
    pub results_prefix: String,
    pub settings: RunSettings,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome", content = "detail")]
pub enum RunOutcome {
    /// Published and the row is SUCCEEDED.
    Recorded,
    /// The row had moved on: another attempt (or session) owns the batch. Nothing was published
    /// if it moved before the notice; else the notice is out and the row says it does not count.
    Superseded,
    /// The work failed; the attempt was handed back to the detector. The reason is bounded.
    GaveUp(String),
    /// The session ended under the run (crash or StopRuntimeSession); nothing was finished.
    Aborted,
}

/// Why a run stopped before it published.
enum Stop {
    Superseded,
    Failed(String),
}

/// The result document, at [`Services::result_location`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult<'a> {
    pub v: u8,
    pub batch_id: &'a BatchId,
    pub attempt: u32,
    pub session_id: &'a SessionId,
    pub started_at: u64,
    pub finished_at: u64,
    pub documents: Vec<DocumentRecord>,
}

/// A session's tag in result keys: the first 128 bits of SHA-256 over the session ID, in hex.
/// It tells sessions apart without revealing the ID (a bearer secret; generated IDs carry 122
/// random bits, so the hash cannot be walked back).
pub fn session_tag(session_id: &SessionId) -> String {
    let digest = Sha256::new()
        .chain_update(b"warmpool result key v1\n")
        .chain_update(session_id.as_str().as_bytes())
        .finalize();
    digest[..SESSION_TAG_BYTES].iter().map(|b| format!("{b:02x}")).collect()
}

impl<T: TrackingTable, S: DocumentStore, Q: MessageSink, P: DocumentProcessor> Services<T, S, Q, P> {
    /// `<prefix><batchId>/attempt-<n>/session-<tag>.json`: one key per attempt and session, so
    /// two sessions never write the same object, whether or not a hand-over renumbers the
    /// attempt.
    pub fn result_location(&self, attempt: &RunningAttempt) -> ObjectRef {
        ObjectRef::new(
            &self.results_bucket,
            format!(
                "{}{}/attempt-{}/session-{}.json",
                self.results_prefix,
                attempt.batch_id,
                attempt.attempt,
                session_tag(&attempt.session_id)
            ),
        )
    }

    pub async fn run(&self, owned: &OwnedAttempt) -> RunOutcome {
        let attempt = &owned.attempt;
        let started_at = SystemClock.now_ms();
        match self.produce(owned, started_at).await {
            Ok(published) => self.record(attempt, &published).await,
            Err(Stop::Superseded) => {
                info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, "attempt taken away before publishing: nothing published");
                RunOutcome::Superseded
            }
            Err(Stop::Failed(reason)) => self.give_up(attempt, reason).await,
        }
    }

    /// Reads, processes, writes and publishes; returns the result's location.
    async fn produce(&self, owned: &OwnedAttempt, started_at: u64) -> Result<ObjectRef, Stop> {
        let attempt = &owned.attempt;
        let records: Vec<Result<DocumentRecord, String>> = futures::stream::iter(owned.documents.clone())
            .map(|document| self.process_one(&attempt.batch_id, document))
            .buffered(self.settings.read_concurrency.max(1))
            .collect()
            .await;
        let documents = records
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Stop::Failed)?;
        let document_count = documents.len();
        let result = BatchResult {
            v: message::VERSION,
            batch_id: &attempt.batch_id,
            attempt: attempt.attempt,
            session_id: &attempt.session_id,
            started_at,
            finished_at: SystemClock.now_ms(),
            documents,
        };
        let body =
            serde_json::to_vec_pretty(&result).map_err(|e| Stop::Failed(format!("result not serializable: {e}")))?;
        let location = self.result_location(attempt);
        self.confirm_ownership(attempt).await?;
        self.write_result(&location, body).await.map_err(Stop::Failed)?;
        // Again right before publishing: the write may have taken long, and the notice is what
        // consumers act on.
        self.confirm_ownership(attempt).await?;
        let notice = ResultNotice {
            v: message::VERSION,
            batch_id: attempt.batch_id.clone(),
            attempt: attempt.attempt,
            session_id: attempt.session_id.clone(),
            result_ref: location.clone(),
            document_count,
            finished_at: result.finished_at,
        };
        self.results
            .send(&message::to_body(&notice), Duration::ZERO)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(location)
    }

    /// The only write of a result object. The key is this session's own, so a plain put can
    /// only ever replace this session's earlier bytes (an SDK retry of the same put).
    async fn write_result(&self, location: &ObjectRef, body: Vec<u8>) -> Result<(), String> {
        self.store
            .put(location, body, "application/json")
            .await
            .map_err(|e| e.to_string())
    }

    /// `Ok` if the row still assigns the attempt to this session; a table that cannot say so
    /// after a few tries fails the run rather than publish on a guess.
    async fn confirm_ownership(&self, attempt: &RunningAttempt) -> Result<(), Stop> {
        for n in 0..RECORD_TRIES {
            match ownership::still_owns(&self.table, attempt).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(Stop::Superseded),
                Err(error) => {
                    warn!(batch_id = %attempt.batch_id, %error, try_number = n + 1, "confirming ownership failed");
                    tokio::time::sleep(RECORD_BACKOFF * 2u32.pow(n)).await;
                }
            }
        }
        Err(Stop::Failed(
            "the tracking table could not confirm this session still owns the attempt".into(),
        ))
    }

    /// Reads one document exactly as the row names it, and processes it.
    async fn process_one(&self, batch_id: &BatchId, document: RowDocument) -> Result<DocumentRecord, String> {
        let location = document.location;
        // The row's list passed the manifest check; this holds even if a row was forged.
        if !location.key.starts_with(&batch_id.incoming_prefix()) {
            return Err(format!("document {location} is outside the batch's prefix"));
        }
        // Exactly the version pinned at admission (the current one for rows without a pin):
        // every attempt reads the bytes the batch was accepted with.
        let pinned = PinnedDocument {
            object: location.clone(),
            version_id: document.version_id,
            size: None,
        };
        let object = self
            .store
            .get_pinned(&pinned, self.settings.max_document_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let document = Document {
            location,
            bytes: object.bytes,
            content_type: object.content_type,
        };
        self.processor.process(document).await.map_err(|e| e.to_string())
    }

    async fn record(&self, attempt: &RunningAttempt, result: &ObjectRef) -> RunOutcome {
        let succeed = Transition::of_running(
            attempt,
            Change::Succeed {
                result_ref: result.to_string(),
            },
            SystemClock.now_ms(),
        );
        for n in 0..RECORD_TRIES {
            match self.table.transition(&succeed).await {
                Ok(()) => return self.recorded(attempt, result),
                // A try whose answer was lost may have landed; the retry then fails its
                // condition against this very write.
                Err(error) if error.is_condition_failed() => {
                    if self.success_landed(attempt, result).await {
                        return self.recorded(attempt, result);
                    }
                    info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, "attempt superseded before it could record its result");
                    return RunOutcome::Superseded;
                }
                Err(error) => {
                    warn!(batch_id = %attempt.batch_id, %error, try_number = n + 1, "recording the result failed");
                    tokio::time::sleep(RECORD_BACKOFF * 2u32.pow(n)).await;
                }
            }
        }
        if self.success_landed(attempt, result).await {
            return self.recorded(attempt, result);
        }
        // Still RUNNING: the detector retries the batch at its deadline.
        RunOutcome::GaveUp("the tracking table refused the result".into())
    }

    fn recorded(&self, attempt: &RunningAttempt, result: &ObjectRef) -> RunOutcome {
        info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, result = %result, "batch succeeded");
        RunOutcome::Recorded
    }

    /// Whether the row is SUCCEEDED by exactly this attempt, session and result: this run's
    /// own write, whatever its answer said. A row that cannot be read counts as not landed.
    async fn success_landed(&self, attempt: &RunningAttempt, result: &ObjectRef) -> bool {
        match self.table.get(&attempt.batch_id).await {
            Ok(Some(row)) => {
                row.status == BatchStatus::Succeeded
                    && row.attempt == attempt.attempt
                    && row.session_id.as_ref() == Some(&attempt.session_id)
                    && row.result_ref.as_deref() == Some(result.to_string().as_str())
            }
            Ok(None) => false,
            Err(error) => {
                warn!(batch_id = %attempt.batch_id, %error, "cannot tell whether the result was recorded");
                false
            }
        }
    }

    async fn give_up(&self, attempt: &RunningAttempt, reason: String) -> RunOutcome {
        // The detector keeps the text and puts it in the failure notice: bounded here, with
        // the prefix it recognises intact.
        let reason = warmpool_core::batch::bounded(&reason, MAX_REASON_BYTES);
        warn!(batch_id = %attempt.batch_id, attempt = attempt.attempt, %reason, "giving the attempt up");
        let expire = Transition::of_running(
            attempt,
            Change::Expire {
                reason: agent_gave_up(attempt.attempt, &reason),
            },
            SystemClock.now_ms(),
        );
        if let Err(error) = self.table.transition(&expire).await {
            // The deadline still stands, so the detector gets to it anyway, later.
            warn!(batch_id = %attempt.batch_id, %error, "could not expire the attempt");
        }
        RunOutcome::GaveUp(reason)
    }
}
