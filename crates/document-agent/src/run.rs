//! One batch attempt, run in the background: read every document, process it, write the
//! result to S3, publish it to the results queue FIRST, then mark the row SUCCEEDED with a
//! write conditioned on this attempt and this session. If the table refuses (the detector
//! settled the attempt first), the attempt is superseded: its result stays published but the
//! row says which attempt counts. If the work fails, the agent expires its own attempt so the
//! detector retries it now instead of at the deadline.

use crate::config::RunSettings;
use crate::processor::{Document, DocumentProcessor, DocumentRecord};
use futures::StreamExt;
use serde::Serialize;
use std::time::Duration;
use tracing::{info, warn};
use warmpool_core::batch::message::{self, ResultNotice};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, TrackingTable};
use warmpool_core::batch::{BatchId, Change, ObjectRef, RunningAttempt, Transition, agent_gave_up};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::session::SessionId;

/// Tries of the final table write; a transport failure there would otherwise throw away a
/// finished batch and make the detector run it again.
const RECORD_TRIES: u32 = 3;
const RECORD_BACKOFF: Duration = Duration::from_millis(200);

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
    /// Published, but the row had moved on: another attempt owns the batch.
    Superseded,
    /// The work failed; the attempt was handed back to the detector.
    GaveUp(String),
    /// The session ended under the run (crash or StopRuntimeSession); nothing was finished.
    Aborted,
}

/// The result document: `results/<batchId>/attempt-<n>.json`.
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

impl<T: TrackingTable, S: DocumentStore, Q: MessageSink, P: DocumentProcessor> Services<T, S, Q, P> {
    pub fn result_location(&self, attempt: &RunningAttempt) -> ObjectRef {
        ObjectRef::new(
            &self.results_bucket,
            format!(
                "{}{}/attempt-{}.json",
                self.results_prefix, attempt.batch_id, attempt.attempt
            ),
        )
    }

    pub async fn run(&self, attempt: &RunningAttempt, documents: &[ObjectRef]) -> RunOutcome {
        let started_at = SystemClock.now_ms();
        let published = match self.produce(attempt, documents, started_at).await {
            Ok(published) => published,
            Err(reason) => return self.give_up(attempt, reason).await,
        };
        self.record(attempt, &published).await
    }

    /// Reads, processes, writes and publishes; returns the result's location.
    async fn produce(
        &self,
        attempt: &RunningAttempt,
        documents: &[ObjectRef],
        started_at: u64,
    ) -> Result<ObjectRef, String> {
        let records: Vec<Result<DocumentRecord, String>> = futures::stream::iter(documents.to_vec())
            .map(|location| self.process_one(location))
            .buffered(self.settings.read_concurrency.max(1))
            .collect()
            .await;
        let documents = records.into_iter().collect::<Result<Vec<_>, _>>()?;
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
        let body = serde_json::to_vec_pretty(&result).map_err(|e| format!("result not serializable: {e}"))?;
        let location = self.result_location(attempt);
        self.store
            .put(&location, body, "application/json")
            .await
            .map_err(|e| e.to_string())?;
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
            .map_err(|e| e.to_string())?;
        Ok(location)
    }

    async fn process_one(&self, location: ObjectRef) -> Result<DocumentRecord, String> {
        let object = self
            .store
            .get(&location, self.settings.max_document_bytes)
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
                Ok(()) => {
                    info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, result = %result, "batch succeeded");
                    return RunOutcome::Recorded;
                }
                Err(error) if error.is_condition_failed() => {
                    info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, "attempt superseded before it could record its result");
                    return RunOutcome::Superseded;
                }
                Err(error) => {
                    warn!(batch_id = %attempt.batch_id, %error, try_number = n + 1, "recording the result failed");
                    tokio::time::sleep(RECORD_BACKOFF * 2u32.pow(n)).await;
                }
            }
        }
        // Still RUNNING: the detector retries the batch at its deadline.
        RunOutcome::GaveUp("the tracking table refused the result".into())
    }

    async fn give_up(&self, attempt: &RunningAttempt, reason: String) -> RunOutcome {
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
