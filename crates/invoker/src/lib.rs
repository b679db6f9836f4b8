//! invoker: starts document batches from the batch queue, one isolated AgentCore session per
//! attempt (SQS event source, `ReportBatchItemFailures`).
//!
//! For each record: classify it (S3 notification for `incoming/<batchId>/manifest.json`, a
//! direct `{"v":1,...}` request, or S3's test event), read and check the manifest, decide with
//! the tracking row whether this request may start an attempt ([`admit`]), take a session
//! from the warm pool in-process (fresh fallback), record RUNNING with a conditional write,
//! and hand the batch to the agent. A record that fails is reported alone; the others proceed.
//!
//! RUNNING is written *before* the invocation: the agent's completion write is conditioned on
//! RUNNING with its session, so a fast agent must find the row already there. If the
//! invocation then fails, the row goes back to PENDING at the same attempt (the attempt never
//! started) and the record is retried by SQS; on its last delivery the failure counts as a
//! failed attempt instead, so the batch is never stranded in the DLQ. If even that write
//! fails, the row stays RUNNING and the detector settles it at its deadline.

mod config;

pub use config::Config;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use tracing::{Instrument, info, info_span, warn};
use warmpool_core::AgentError;
use warmpool_core::aws::sqs_event::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsRecord};
use warmpool_core::batch::message::{Accepted, AgentInvocation, BatchPayload, BatchRequest, VERSION};
use warmpool_core::batch::notification::{Incoming, ManifestCreated, classify};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, TrackingTable};
use warmpool_core::batch::retry::{Retrier, SettleError, Settlement, stop_session};
use warmpool_core::batch::{Admission, BatchId, BatchRow, BatchStatus, Change, RunningAttempt, Transition, admit};
use warmpool_core::clock::Clock;
use warmpool_core::error::{StoreError, StoreErrorKind, TableError};
use warmpool_core::manifest::{InvalidBatch, Manifest, check_documents};
use warmpool_core::metrics::MetricSet;
use warmpool_core::pool::{ClaimError, Claimer, Source};
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};
use warmpool_core::session::SessionId;

pub const FUNCTION: &str = "invoker";

/// What one request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Started {
        batch_id: BatchId,
        attempt: u32,
        session_id: SessionId,
        source: Source,
    },
    /// Already running or finished, or an older attempt: acknowledged without a second run.
    Duplicate {
        batch_id: BatchId,
        status: BatchStatus,
        attempt: u32,
    },
    /// Nothing to do (S3's test event, notifications about non-manifest objects).
    Ignored { reason: String },
    /// The invocation failed on the record's last delivery, so the attempt was settled as a
    /// failed one (next attempt enqueued, or the batch FAILED).
    AttemptSettled { batch_id: BatchId, settlement: Settlement },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("batch {batch_id} refused: {reason}")]
    InvalidBatch { batch_id: BatchId, reason: InvalidBatch },
    #[error("manifest of batch {batch_id} could not be read: {source}")]
    Manifest {
        batch_id: BatchId,
        #[source]
        source: StoreError,
    },
    #[error("batch {batch_id} is {status} at attempt {current}, not yet waiting for attempt {requested}")]
    Early {
        batch_id: BatchId,
        status: BatchStatus,
        current: u32,
        requested: u32,
    },
    #[error("no session for batch {batch_id}: {source}")]
    Claim {
        batch_id: BatchId,
        #[source]
        source: ClaimError,
    },
    #[error("tracking table: {0}")]
    Table(#[from] TableError),
    #[error("batch {batch_id} attempt {attempt} not handed to the agent: {reason}")]
    Invoke {
        batch_id: BatchId,
        attempt: u32,
        reason: String,
        #[source]
        source: Option<AgentError>,
    },
    #[error("settling batch {batch_id} after its last delivery failed: {source}")]
    Settle {
        batch_id: BatchId,
        #[source]
        source: SettleError,
    },
}

impl RecordError {
    /// Whether a later delivery can succeed. Either way the record is reported as failed: a
    /// non-retryable one reaches the DLQ through redrive, with this reason in the logs.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Malformed(_) | Self::InvalidBatch { .. } => false,
            Self::Manifest { source, .. } => source.is_retryable(),
            Self::Early { .. } | Self::Invoke { .. } => true,
            Self::Claim { source, .. } => source.is_retryable(),
            Self::Table(e) => e.is_retryable(),
            Self::Settle { source, .. } => source.is_retryable(),
        }
    }
}

/// What happened to one SQS record: for the response, the logs and tests.
#[derive(Debug)]
pub struct RecordReport {
    pub message_id: String,
    pub result: Result<Vec<Outcome>, RecordError>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvokerError {
    /// Without an ID a failure cannot be reported for one record; failing the invocation makes
    /// SQS keep the whole batch rather than silently drop that record.
    #[error("record {0} of the event has no messageId")]
    UnidentifiedRecord(usize),
}

impl InvokerError {
    pub fn is_retryable(&self) -> bool {
        true
    }
}

impl From<InvokerError> for Diagnostic {
    fn from(error: InvokerError) -> Self {
        Diagnostic {
            error_type: "UnidentifiedRecord".into(),
            error_message: error.to_string(),
        }
    }
}

/// The partial batch response: every failed record, whatever the reason, so that SQS keeps it
/// (and redrives it to the DLQ once its receive count is exhausted).
pub fn batch_response(reports: &[RecordReport]) -> SqsBatchResponse {
    SqsBatchResponse {
        batch_item_failures: reports
            .iter()
            .filter(|r| r.result.is_err())
            .map(|r| BatchItemFailure {
                item_identifier: r.message_id.clone(),
            })
            .collect(),
    }
}

/// The function: ports plus the pool claimer.
pub struct Invoker<T, S, Q, A, P, R, C> {
    pub config: Config,
    pub table: T,
    pub store: S,
    /// The batch queue itself: retries on the invocation's last delivery go back to it.
    pub batch_queue: Q,
    pub failure_queue: Q,
    pub agent: A,
    pub claimer: Claimer<P, R, C>,
}

impl<T, S, Q, A, P, R, C> Invoker<T, S, Q, A, P, R, C>
where
    T: TrackingTable,
    S: DocumentStore,
    Q: MessageSink,
    A: AgentRuntime,
    P: PoolQueue,
    R: ReplenishTrigger,
    C: Clock,
{
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, InvokerError> {
        let reports = self.handle_records(event.payload).await?;
        Ok(batch_response(&reports))
    }

    /// Every record of the event, in order, each with what happened to it.
    pub async fn handle_records(&self, event: SqsEvent) -> Result<Vec<RecordReport>, InvokerError> {
        if let Some(index) = event.records.iter().position(|r| r.message_id.is_empty()) {
            return Err(InvokerError::UnidentifiedRecord(index));
        }
        let reports: Vec<RecordReport> = futures::stream::iter(event.records)
            .map(|record| {
                let span = info_span!("record", message_id = %record.message_id);
                async move {
                    let result = self.process(&record).await;
                    match &result {
                        Ok(outcomes) => info!(outcomes = ?outcomes, "record done"),
                        Err(error) => {
                            warn!(error = %error, retryable = error.is_retryable(), receive_count = record.receive_count(), "record failed")
                        }
                    }
                    RecordReport {
                        message_id: record.message_id,
                        result,
                    }
                }
                .instrument(span)
            })
            .buffered(self.config.record_concurrency)
            .collect()
            .await;
        self.emit_metrics(&reports);
        Ok(reports)
    }

    async fn process(&self, record: &SqsRecord) -> Result<Vec<Outcome>, RecordError> {
        let body = record
            .body
            .as_deref()
            .ok_or_else(|| RecordError::Malformed("record has no body".into()))?;
        let requests = match classify(body).map_err(|e| RecordError::Malformed(e.0))? {
            Incoming::TestEvent => {
                return Ok(vec![Outcome::Ignored {
                    reason: "s3:TestEvent".into(),
                }]);
            }
            Incoming::Ignored { keys } => {
                return Ok(vec![Outcome::Ignored {
                    reason: format!("not batch manifests: {keys:?}"),
                }]);
            }
            Incoming::Request(request) => {
                check_documents(
                    &request.batch_id,
                    &request.documents,
                    &self.config.documents_bucket,
                    &self.config.limits,
                )
                .map_err(|reason| RecordError::InvalidBatch {
                    batch_id: request.batch_id.clone(),
                    reason,
                })?;
                vec![request]
            }
            Incoming::Manifests(manifests) => {
                let mut requests = Vec::with_capacity(manifests.len());
                for manifest in manifests {
                    requests.push(self.read_manifest(manifest).await?);
                }
                requests
            }
        };
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(self.start(&request, record.receive_count()).await?);
        }
        Ok(outcomes)
    }

    async fn read_manifest(&self, created: ManifestCreated) -> Result<BatchRequest, RecordError> {
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
        Ok(BatchRequest::new(batch_id, documents, 1))
    }

    async fn start(&self, request: &BatchRequest, receive_count: u32) -> Result<Outcome, RecordError> {
        let batch_id = &request.batch_id;
        let row = self.table.get(batch_id).await?;
        let admission = admit(row.as_ref(), request.attempt);
        match admission {
            Admission::StartNew | Admission::StartPending => {}
            Admission::Duplicate { status, attempt } => {
                return Ok(Outcome::Duplicate {
                    batch_id: batch_id.clone(),
                    status,
                    attempt,
                });
            }
            Admission::Early { status, attempt } => {
                return Err(RecordError::Early {
                    batch_id: batch_id.clone(),
                    status,
                    current: attempt,
                    requested: request.attempt,
                });
            }
            Admission::Unknown => {
                return Err(RecordError::Malformed(format!(
                    "attempt {} of batch {batch_id}, which was never accepted",
                    request.attempt
                )));
            }
        }

        // Invariant 5: a pooled session is handed out once (the claim), a fresh one is new;
        // either way this attempt is the only one that will ever use it.
        let claim = self.claimer.claim().await.map_err(|source| RecordError::Claim {
            batch_id: batch_id.clone(),
            source,
        })?;
        let session_id = claim.session.session_id.clone();
        let now = self.claimer.clock.now_ms();
        let deadline = now + self.config.batch_deadline.as_millis() as u64;
        let written = match admission {
            Admission::StartNew => {
                let row = BatchRow::new_running(
                    batch_id.clone(),
                    request.documents.clone(),
                    self.config.max_attempts,
                    session_id.clone(),
                    now,
                    deadline,
                );
                self.table.create(&row).await
            }
            _ => {
                let start = Transition::start(batch_id.clone(), request.attempt, session_id.clone(), now, deadline);
                self.table.transition(&start).await
            }
        };
        if let Err(error) = written {
            // Never used, and never returned to the pool (invariant 1): stop it.
            stop_session(&self.agent, &session_id).await;
            if error.is_condition_failed() {
                // A concurrent delivery of the same request started it first.
                let row = self.table.get(batch_id).await?;
                return Ok(Outcome::Duplicate {
                    batch_id: batch_id.clone(),
                    status: row.as_ref().map_or(BatchStatus::Running, |r| r.status),
                    attempt: row.as_ref().map_or(request.attempt, |r| r.attempt),
                });
            }
            return Err(error.into());
        }

        let attempt = RunningAttempt {
            batch_id: batch_id.clone(),
            attempt: request.attempt,
            session_id: session_id.clone(),
        };
        let payload = AgentInvocation::Batch(BatchPayload {
            v: VERSION,
            batch_id: batch_id.clone(),
            attempt: request.attempt,
            documents: request.documents.clone(),
            deadline,
        });
        match self.hand_over(&attempt, &payload.to_bytes()).await {
            Ok(()) => {
                info!(batch_id = %batch_id, attempt = request.attempt, session_id = %session_id, source = ?claim.session.source, "batch started");
                Ok(Outcome::Started {
                    batch_id: batch_id.clone(),
                    attempt: request.attempt,
                    session_id,
                    source: claim.session.source,
                })
            }
            Err(failure) => self.after_failed_invocation(&attempt, failure, receive_count).await,
        }
    }

    /// Invokes the agent, bounded, and checks that it accepted this very batch attempt.
    async fn hand_over(&self, attempt: &RunningAttempt, payload: &[u8]) -> Result<(), RecordError> {
        let failed = |reason: String, source: Option<AgentError>| RecordError::Invoke {
            batch_id: attempt.batch_id.clone(),
            attempt: attempt.attempt,
            reason,
            source,
        };
        let answer = tokio::time::timeout(
            self.config.invoke_timeout,
            self.agent.invoke(&attempt.session_id, payload),
        )
        .await
        .map_err(|_| failed(format!("no answer within {:?}", self.config.invoke_timeout), None))?
        .map_err(|e| failed(e.to_string(), Some(e)))?;
        match serde_json::from_slice::<Accepted>(&answer) {
            Ok(accepted)
                if accepted.status == Accepted::STATUS
                    && accepted.batch_id == attempt.batch_id
                    && accepted.attempt == attempt.attempt =>
            {
                Ok(())
            }
            _ => Err(failed(
                format!(
                    "the agent did not accept the batch: {}",
                    String::from_utf8_lossy(&answer)
                ),
                None,
            )),
        }
    }

    async fn after_failed_invocation(
        &self,
        attempt: &RunningAttempt,
        failure: RecordError,
        receive_count: u32,
    ) -> Result<Outcome, RecordError> {
        let reason = failure.to_string();
        if receive_count >= self.config.max_receive_count {
            // The last delivery: SQS would move the record to the DLQ and strand the batch.
            let row = self.table.get(&attempt.batch_id).await?;
            if let Some(row) = row.filter(|r| r.running_attempt().as_ref() == Some(attempt)) {
                let settlement =
                    self.retrier()
                        .fail_attempt(&row, &reason)
                        .await
                        .map_err(|source| RecordError::Settle {
                            batch_id: attempt.batch_id.clone(),
                            source,
                        })?;
                return Ok(Outcome::AttemptSettled {
                    batch_id: attempt.batch_id.clone(),
                    settlement,
                });
            }
        }
        let release = Transition::of_running(attempt, Change::Release { reason }, self.claimer.clock.now_ms());
        match self.table.transition(&release).await {
            Ok(()) => stop_session(&self.agent, &attempt.session_id).await,
            Err(error) if error.is_condition_failed() => {
                // Settled meanwhile (the agent did run it, or the detector failed it).
                info!(batch_id = %attempt.batch_id, "attempt settled by another writer after its invocation failed");
            }
            // Still RUNNING: the detector settles it at its deadline.
            Err(error) => {
                warn!(batch_id = %attempt.batch_id, %error, "could not release the attempt; the detector will")
            }
        }
        Err(failure)
    }

    fn retrier(&self) -> Retrier<'_, T, Q, A, C> {
        Retrier {
            table: &self.table,
            batch_queue: &self.batch_queue,
            failure_queue: &self.failure_queue,
            agent: &self.agent,
            clock: &self.claimer.clock,
            retry_delay: self.config.retry_delay,
        }
    }

    fn emit_metrics(&self, reports: &[RecordReport]) {
        let mut counts = [0u32; 6];
        for report in reports {
            match &report.result {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        let slot = match outcome {
                            Outcome::Started {
                                source: Source::Pool, ..
                            } => 0,
                            Outcome::Started {
                                source: Source::Fresh, ..
                            } => 1,
                            Outcome::Duplicate { .. } => 2,
                            Outcome::Ignored { .. } => 3,
                            Outcome::AttemptSettled { .. } => 4,
                        };
                        counts[slot] += 1;
                    }
                }
                Err(_) => counts[5] += 1,
            }
        }
        MetricSet::new(FUNCTION)
            .count("BatchesStarted", counts[0] + counts[1])
            .count("BatchSessionFromPool", counts[0])
            .count("BatchSessionFresh", counts[1])
            .count("BatchDuplicates", counts[2])
            .count("RecordsIgnored", counts[3])
            .count("AttemptsSettledByInvoker", counts[4])
            .count("RecordFailures", counts[5])
            .emit(self.claimer.clock.now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use warmpool_core::AgentErrorKind;
    use warmpool_core::batch::ObjectRef;
    use warmpool_core::batch::fakes::{MemorySink, MemoryStore, MemoryTable};
    use warmpool_core::clock::ManualClock;
    use warmpool_core::config::Env;
    use warmpool_core::fakes::{MemoryPool, RecordingTrigger};
    use warmpool_core::session::PooledSession;

    const NOW: u64 = 1_800_000_000_000;
    const BUCKET: &str = "warmpool-documents";

    /// An agent that accepts batches as the reference agent does, with scripted failures.
    #[derive(Default)]
    struct AcceptingAgent {
        failures: Mutex<Vec<AgentErrorKind>>,
        answer_override: Mutex<Option<Vec<u8>>>,
        batches: Mutex<Vec<(SessionId, BatchPayload)>>,
        stopped: Mutex<Vec<SessionId>>,
    }

    impl AgentRuntime for AcceptingAgent {
        async fn invoke(&self, session_id: &SessionId, payload: &[u8]) -> Result<Vec<u8>, AgentError> {
            if let Some(kind) = self.failures.lock().unwrap().pop() {
                return Err(AgentError::new("invoke", kind, "scripted failure"));
            }
            let AgentInvocation::Batch(batch) = serde_json::from_slice(payload).unwrap() else {
                return Ok(br#"{"status":"warm"}"#.to_vec());
            };
            self.batches.lock().unwrap().push((session_id.clone(), batch.clone()));
            if let Some(answer) = self.answer_override.lock().unwrap().clone() {
                return Ok(answer);
            }
            Ok(serde_json::to_vec(&Accepted {
                status: Accepted::STATUS.into(),
                batch_id: batch.batch_id,
                attempt: batch.attempt,
            })
            .unwrap())
        }

        async fn stop(&self, session_id: &SessionId) -> Result<(), AgentError> {
            self.stopped.lock().unwrap().push(session_id.clone());
            Ok(())
        }
    }

    type TestInvoker =
        Invoker<MemoryTable, MemoryStore, MemorySink, AcceptingAgent, MemoryPool, RecordingTrigger, ManualClock>;

    fn invoker() -> TestInvoker {
        let config = Config::from_env(&Env::from_pairs(config::tests::REQUIRED)).unwrap();
        Invoker {
            table: MemoryTable::default(),
            store: MemoryStore::default(),
            batch_queue: MemorySink::default(),
            failure_queue: MemorySink::default(),
            agent: AcceptingAgent::default(),
            claimer: Claimer {
                queue: MemoryPool::default(),
                trigger: RecordingTrigger::default(),
                clock: ManualClock::at(NOW),
                policy: config.claim,
            },
            config,
        }
    }

    fn id(raw: &str) -> BatchId {
        BatchId::parse(raw).unwrap()
    }

    fn record(message_id: &str, body: &str, receive_count: u32) -> SqsRecord {
        SqsRecord {
            message_id: message_id.into(),
            body: Some(body.into()),
            attributes: [("ApproximateReceiveCount".to_string(), receive_count.to_string())].into(),
            ..SqsRecord::default()
        }
    }

    fn notification(key: &str) -> String {
        json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":BUCKET},"object":{"key":key,"size":1}}}]})
        .to_string()
    }

    fn upload_manifest(f: &TestInvoker, batch: &str, keys: &[&str]) {
        let documents: Vec<_> = keys.iter().map(|k| json!({"key": k, "size": 3})).collect();
        let manifest = json!({"v":1,"batchId":batch,"documents":documents}).to_string();
        f.store
            .insert(ObjectRef::new(BUCKET, id(batch).manifest_key()), manifest, None);
    }

    async fn run(f: &TestInvoker, records: Vec<SqsRecord>) -> Vec<RecordReport> {
        f.handle_records(SqsEvent { records }).await.unwrap()
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn the_sample_event_starts_a_new_batch_and_a_retry_and_ignores_the_test_event() {
        let f = invoker();
        let pooled = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 1_000);
        f.claimer.queue.push(&pooled);
        upload_manifest(&f, "case-4711", &["incoming/case-4711/claim-form.txt"]);
        let mut waiting = BatchRow::new_running(
            id("case-4712"),
            vec![ObjectRef::new(BUCKET, "incoming/case-4712/letter.txt")],
            3,
            SessionId::generate(),
            NOW - 10_000,
            NOW - 5_000,
        );
        (waiting.status, waiting.attempt, waiting.session_id) = (BatchStatus::Pending, 2, None);
        f.table.insert(waiting);
        let event: SqsEvent = serde_json::from_str(include_str!("../../../events/invoker-sqs.json")).unwrap();

        let response = f.handle(LambdaEvent::new(event, Default::default())).await.unwrap();

        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let new = f.table.row(&id("case-4711")).unwrap();
        assert_eq!((new.status, new.attempt), (BatchStatus::Running, 1));
        assert_eq!(new.deadline, Some(NOW + 900_000));
        let retried = f.table.row(&id("case-4712")).unwrap();
        assert_eq!((retried.status, retried.attempt), (BatchStatus::Running, 2));
        let sessions: HashSet<SessionId> = [new.session_id.clone().unwrap(), retried.session_id.unwrap()].into();
        assert_eq!(sessions.len(), 2, "one session per batch");
        assert!(
            sessions.contains(&pooled.session_id),
            "the first claim took the pooled session"
        );
        let batches = f.agent.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 2);
        assert!(
            batches
                .iter()
                .all(|(session, batch)| { f.table.row(&batch.batch_id).unwrap().session_id.as_ref() == Some(session) })
        );
    }

    #[tokio::test]
    async fn a_duplicate_notification_is_acknowledged_without_a_second_run() {
        let f = invoker();
        upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
        let body = notification("incoming/case-1/manifest.json");

        let reports = run(&f, vec![record("m-1", &body, 1), record("m-2", &body, 1)]).await;
        let later = run(&f, vec![record("m-3", &body, 1)]).await;

        let outcomes: Vec<&Outcome> = reports
            .iter()
            .chain(&later)
            .flat_map(|r| r.result.as_ref().unwrap())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| matches!(o, Outcome::Started { .. })).count(),
            1
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Duplicate { .. }))
                .count(),
            2
        );
        assert_eq!(f.agent.batches.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn malformed_records_fail_alone_with_a_reason_and_the_valid_one_proceeds() {
        let f = invoker();
        upload_manifest(&f, "good", &["incoming/good/a.txt"]);
        upload_manifest(&f, "escape", &["incoming/other/secret.txt"]);
        f.store.insert(
            ObjectRef::new(BUCKET, "incoming/broken/manifest.json"),
            r#"{"v":1,"batchId":"broken","documents":"all of them"}"#,
            None,
        );
        let records = vec![
            record("bad-json", "this is not json", 1),
            record("escape", &notification("incoming/escape/manifest.json"), 1),
            record("good", &notification("incoming/good/manifest.json"), 1),
            record("broken", &notification("incoming/broken/manifest.json"), 1),
            SqsRecord {
                message_id: "no-body".into(),
                ..SqsRecord::default()
            },
        ];

        let reports = run(&f, records.clone()).await;
        let response = f
            .handle(LambdaEvent::new(SqsEvent { records }, Default::default()))
            .await
            .unwrap();

        let reason = |id: &str| {
            let report = reports.iter().find(|r| r.message_id == id).unwrap();
            let error = report.result.as_ref().unwrap_err();
            assert!(!error.is_retryable(), "{id}: {error}");
            error.to_string()
        };
        assert!(reason("bad-json").contains("not JSON"));
        assert!(reason("escape").contains("outside the batch's prefix"));
        assert!(reason("broken").contains("not a v1 manifest"));
        assert!(reason("no-body").contains("no body"));
        assert!(matches!(
            reports[2].result.as_ref().unwrap()[0],
            Outcome::Started { .. }
        ));
        assert_eq!(failed_ids(&response), vec!["bad-json", "escape", "broken", "no-body"]);
        assert!(
            f.table.row(&id("escape")).is_none(),
            "a refused batch is never accepted"
        );
    }

    #[tokio::test]
    async fn a_retry_that_arrives_before_the_row_waits_for_it_is_kept_for_later() {
        let f = invoker();
        let running = BatchRow::new_running(
            id("case-1"),
            vec![ObjectRef::new(BUCKET, "incoming/case-1/a.txt")],
            3,
            SessionId::generate(),
            NOW,
            NOW + 1,
        );
        f.table.insert(running.clone());
        let retry = BatchRequest::new(id("case-1"), running.documents.clone(), 2).to_body();

        let reports = run(&f, vec![record("m-1", &retry, 1)]).await;

        let error = reports[0].result.as_ref().unwrap_err();
        assert!(
            matches!(error, RecordError::Early { .. }) && error.is_retryable(),
            "{error}"
        );
        assert!(f.agent.batches.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_retry_for_a_batch_never_accepted_is_malformed() {
        let f = invoker();
        let retry = BatchRequest::new(id("ghost"), vec![ObjectRef::new(BUCKET, "incoming/ghost/a")], 2).to_body();
        let reports = run(&f, vec![record("m-1", &retry, 1)]).await;
        assert!(matches!(reports[0].result, Err(RecordError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_failed_invocation_releases_the_attempt_stops_the_session_and_fails_the_record() {
        let f = invoker();
        upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
        f.agent.failures.lock().unwrap().push(AgentErrorKind::Throttled);
        let body = notification("incoming/case-1/manifest.json");

        let reports = run(&f, vec![record("m-1", &body, 1)]).await;

        let error = reports[0].result.as_ref().unwrap_err();
        assert!(
            matches!(error, RecordError::Invoke { .. }) && error.is_retryable(),
            "{error}"
        );
        let row = f.table.row(&id("case-1")).unwrap();
        assert_eq!(
            (row.status, row.attempt, row.session_id.as_ref()),
            (BatchStatus::Pending, 1, None)
        );
        assert_eq!(f.agent.stopped.lock().unwrap().len(), 1);

        // The redelivery starts the same attempt, on another session.
        let reports = run(&f, vec![record("m-1", &body, 2)]).await;
        assert!(matches!(
            reports[0].result.as_ref().unwrap()[0],
            Outcome::Started { attempt: 1, .. }
        ));
        let started = f.table.row(&id("case-1")).unwrap();
        assert_ne!(Some(&f.agent.stopped.lock().unwrap()[0]), started.session_id.as_ref());
    }

    #[tokio::test]
    async fn on_its_last_delivery_a_failed_invocation_counts_as_a_failed_attempt() {
        let f = invoker();
        upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
        f.agent.failures.lock().unwrap().push(AgentErrorKind::Agent);
        let body = notification("incoming/case-1/manifest.json");

        let reports = run(&f, vec![record("m-1", &body, f.config.max_receive_count)]).await;

        assert!(matches!(
            reports[0].result.as_ref().unwrap()[0],
            Outcome::AttemptSettled {
                settlement: Settlement::Retried { next_attempt: 2 },
                ..
            }
        ));
        let row = f.table.row(&id("case-1")).unwrap();
        assert_eq!((row.status, row.attempt), (BatchStatus::Pending, 2));
        let retry = BatchRequest::parse(serde_json::from_str(&f.batch_queue.bodies()[0]).unwrap()).unwrap();
        assert_eq!(retry.attempt, 2);
    }

    #[tokio::test]
    async fn an_agent_that_answers_without_accepting_the_batch_is_a_failed_invocation() {
        let f = invoker();
        upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
        *f.agent.answer_override.lock().unwrap() = Some(br#"{"status":"warm"}"#.to_vec());

        let reports = run(
            &f,
            vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
        )
        .await;

        let error = reports[0].result.as_ref().unwrap_err().to_string();
        assert!(error.contains("did not accept"), "{error}");
        assert_eq!(f.table.row(&id("case-1")).unwrap().status, BatchStatus::Pending);
    }

    #[tokio::test]
    async fn a_direct_request_outside_the_documents_bucket_is_refused() {
        let f = invoker();
        let request = BatchRequest::new(id("c"), vec![ObjectRef::new("someone-elses", "incoming/c/a")], 1).to_body();
        let reports = run(&f, vec![record("m-1", &request, 1)]).await;
        assert!(matches!(reports[0].result, Err(RecordError::InvalidBatch { .. })));
    }

    #[tokio::test]
    async fn a_lost_table_write_before_the_invocation_leaves_nothing_running_and_stops_the_session() {
        let f = invoker();
        upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
        f.table.fail_next_writes(1);

        let reports = run(
            &f,
            vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
        )
        .await;

        assert!(reports[0].result.as_ref().unwrap_err().is_retryable());
        assert!(f.table.row(&id("case-1")).is_none());
        assert!(
            f.agent.batches.lock().unwrap().is_empty(),
            "never invoked without a row"
        );
        assert_eq!(f.agent.stopped.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_record_without_a_message_id_fails_the_whole_event_so_nothing_is_dropped() {
        let f = invoker();
        let error = f
            .handle_records(SqsEvent {
                records: vec![record("m-1", "{}", 1), record("", "{}", 1)],
            })
            .await
            .unwrap_err();
        assert!(matches!(error, InvokerError::UnidentifiedRecord(1)));
    }
}
