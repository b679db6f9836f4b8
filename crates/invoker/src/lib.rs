//! invoker: starts document batches from the batch queue, one isolated AgentCore session per
//! attempt (SQS event source, `ReportBatchItemFailures`).
//!
//! For each record: classify it (S3 notification for `incoming/<batchId>/manifest.json`, a
//! direct `{"v":1,...}` request, or S3's test event); for a new batch, check its manifest and
//! every document (HeadObject: there, and of the declared size) and accept it as PENDING(1)
//! with each document's version pinned, or fail it at once with its reason ([`admission`]);
//! then decide with the tracking row whether this request may start an attempt
//! ([`warmpool_core::batch::admit`]),
//! take a session from the batch pool with enough lifetime left for the batch, record RUNNING
//! with a conditional write, and hand the batch to the agent ([`start`]). A record that fails
//! is reported alone; the others proceed.
//!
//! RUNNING is written *before* the invocation: the agent's completion write is conditioned on
//! RUNNING with its session, so a fast agent must find the row already there. If the
//! invocation then fails, whether or not the agent started, the attempt is over: the batch is
//! handed over to the next attempt number (or FAILED at the last one) and the session stopped,
//! so one attempt never runs on two sessions. If the pool has no session, the batch waits:
//! the record comes back after a short visibility, and the row's start-by time bounds the wait.

mod admission;
mod config;
mod start;

pub use config::Config;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};
use warmpool_core::aws::sqs_event::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsRecord};
use warmpool_core::batch::manifest::{InvalidBatch, check_documents};
use warmpool_core::batch::message::BatchRequest;
use warmpool_core::batch::notification::{Incoming, classify};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, Redelivery, TrackingTable};
use warmpool_core::batch::settle::{Retrier, SettleError, Settlement};
use warmpool_core::batch::{BatchId, BatchStatus, PinnedDocument};
use warmpool_core::clock::Clock;
use warmpool_core::error::AgentError;
use warmpool_core::error::{StoreError, TableError};
use warmpool_core::metrics::MetricSet;
use warmpool_core::pool::claim::{ClaimError, Claimer, Source};
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};
use warmpool_core::session::SessionId;

pub const FUNCTION: &str = "invoker";
/// Longest redelivery delay of a record that failed for a passing reason.
const MAX_RECORD_RETRY: Duration = Duration::from_secs(300);

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
    /// Failed at admission with its reason (a document missing or not as declared): no
    /// session was used.
    Refused { batch_id: BatchId, reason: String },
    /// Still no session on the record's last delivery: acknowledged, because the row is
    /// accepted and the detector hands it over at its start-by time.
    Waiting { batch_id: BatchId, attempt: u32 },
    /// Nothing to do (S3's test event, notifications about non-manifest objects).
    Ignored { reason: String },
    /// The invocation failed, so the attempt was settled as a failed one (next attempt
    /// enqueued, or the batch FAILED) and its session stopped.
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
    #[error("documents of batch {batch_id} could not be checked: {source}")]
    Document {
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
    #[error("no pooled session with enough lifetime for batch {batch_id} attempt {attempt} yet")]
    NoSession { batch_id: BatchId, attempt: u32 },
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
    #[error("settling batch {batch_id} after its invocation failed: {source}")]
    Settle {
        batch_id: BatchId,
        #[source]
        source: SettleError,
    },
}

impl RecordError {
    /// Whether a later delivery can succeed. Either way the record is reported as failed: a
    /// non-retryable one reaches the DLQ through redrive, with this reason in the logs; a
    /// retryable one comes back soon ([`Invoker::redeliver`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Malformed(_) | Self::InvalidBatch { .. } => false,
            Self::Manifest { source, .. } | Self::Document { source, .. } => source.is_retryable(),
            Self::Early { .. } | Self::Invoke { .. } | Self::NoSession { .. } => true,
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

/// One batch request, however it arrived: its documents as declared (a manifest declares
/// sizes, a direct request does not), not yet pinned.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub batch_id: BatchId,
    pub attempt: u32,
    pub documents: Vec<PinnedDocument>,
}

impl From<BatchRequest> for Request {
    fn from(request: BatchRequest) -> Self {
        Self {
            batch_id: request.batch_id,
            attempt: request.attempt,
            documents: request.documents.into_iter().map(Into::into).collect(),
        }
    }
}

/// The function: ports plus the pool claimer.
pub struct Invoker<T, S, Q, A, P, R, C, V> {
    pub config: Config,
    pub table: T,
    pub store: S,
    /// The batch queue itself: hand-overs send the next attempt's request to it.
    pub batch_queue: Q,
    pub failure_queue: Q,
    pub agent: A,
    /// Claims from the batch pool (never get-session's pool).
    pub claimer: Claimer<P, R, C>,
    /// The batch queue as the records' source: brings a record back early.
    pub redelivery: V,
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
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, InvokerError> {
        let reports = self.handle_records(event.payload).await?;
        Ok(batch_response(&reports))
    }

    /// Every record of the event, in order, each with what happened to it.
    pub async fn handle_records(&self, event: SqsEvent) -> Result<Vec<RecordReport>, InvokerError> {
        if let Some(index) = event.records.iter().position(|r| r.message_id.is_empty()) {
            return Err(InvokerError::UnidentifiedRecord(index));
        }
        let concurrency = usize::try_from(self.config.record_concurrency.get()).unwrap_or(1);
        let reports: Vec<RecordReport> = futures::stream::iter(event.records)
            .map(|record| {
                let span = info_span!("record", message_id = %record.message_id);
                async move {
                    let result = self.process(&record).await;
                    match &result {
                        Ok(outcomes) => info!(outcomes = ?outcomes, "record done"),
                        Err(error) => {
                            warn!(error = %error, retryable = error.is_retryable(), receive_count = record.receive_count(), "record failed");
                            if error.is_retryable() {
                                self.redeliver(&record).await;
                            }
                        }
                    }
                    RecordReport {
                        message_id: record.message_id,
                        result,
                    }
                }
                .instrument(span)
            })
            .buffered(concurrency)
            .collect()
            .await;
        self.emit_metrics(&reports);
        Ok(reports)
    }

    /// Brings a record that failed for a passing reason back after a short, growing delay
    /// instead of the queue's visibility timeout. Best effort: if it fails, the record comes
    /// back at the visibility timeout, and the row's start-by time still bounds the wait.
    async fn redeliver(&self, record: &SqsRecord) {
        if record.receipt_handle.is_empty() {
            return;
        }
        let doublings = record.receive_count().saturating_sub(1).min(8);
        let after = (self.config.record_retry * 2u32.pow(doublings)).min(MAX_RECORD_RETRY);
        if let Err(error) = self.redelivery.redeliver_after(&record.receipt_handle, after).await {
            warn!(%error, "could not shorten the record's visibility; it returns at the queue's timeout");
        }
    }

    async fn process(&self, record: &SqsRecord) -> Result<Vec<Outcome>, RecordError> {
        let body = record
            .body
            .as_deref()
            .ok_or_else(|| RecordError::Malformed("record has no body".into()))?;
        let requests: Vec<Request> = match classify(body).map_err(|e| RecordError::Malformed(e.0))? {
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
                vec![request.into()]
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

    fn retrier(&self) -> Retrier<'_, T, Q, A, C> {
        Retrier {
            table: &self.table,
            batch_queue: &self.batch_queue,
            failure_queue: &self.failure_queue,
            agent: &self.agent,
            clock: &self.claimer.clock,
            retry_delay: self.config.retry_delay,
            pending_timeout: self.config.pending_timeout,
            log_key: &self.claimer.policy.log_key,
        }
    }

    fn emit_metrics(&self, reports: &[RecordReport]) {
        let mut counts = [0u32; 8];
        for report in reports {
            match &report.result {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        let slot = match outcome {
                            Outcome::Started {
                                source: Source::Pool, ..
                            } => 0,
                            // The invoker claims without leases: nothing is ever reused.
                            Outcome::Started {
                                source: Source::Fresh | Source::Reused,
                                ..
                            } => 1,
                            Outcome::Duplicate { .. } => 2,
                            Outcome::Ignored { .. } => 3,
                            Outcome::AttemptSettled { .. } => 4,
                            Outcome::Refused { .. } => 6,
                            Outcome::Waiting { .. } => 7,
                        };
                        counts[slot] += 1;
                    }
                }
                Err(RecordError::NoSession { .. }) => {
                    counts[5] += 1;
                    counts[7] += 1;
                }
                Err(_) => counts[5] += 1,
            }
        }
        MetricSet::new(FUNCTION, &self.config.pool_name)
            .count("BatchesStarted", counts[0] + counts[1])
            .count("BatchSessionFromPool", counts[0])
            .count("BatchSessionFresh", counts[1])
            .count("BatchDuplicates", counts[2])
            .count("RecordsIgnored", counts[3])
            .count("AttemptsSettledByInvoker", counts[4])
            .count("RecordFailures", counts[5])
            .count("BatchesRefusedAtAdmission", counts[6])
            .count("BatchesWaitingForSession", counts[7])
            .emit(self.claimer.clock.now_ms());
    }
}

#[cfg(test)]
mod tests;
