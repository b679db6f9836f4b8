//! Starting an attempt: admission by the row, a session from the batch pool with enough
//! lifetime for the batch, RUNNING recorded, the batch handed to the agent; and what follows a
//! failed hand-over.

use crate::admission::Admitted;
use crate::{Invoker, Outcome, RecordError, Request};
use tracing::{info, warn};
use warmpool_core::batch::message::{Accepted, AgentInvocation, BatchPayload, VERSION};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, Redelivery, TrackingTable};
use warmpool_core::batch::settle::stop_session;
use warmpool_core::batch::write::{self, Written};
use warmpool_core::batch::{Admission, BatchRow, BatchStatus, RunningAttempt, Transition, admit, bounded_error};
use warmpool_core::clock::{Clock, millis};
use warmpool_core::pool::claim::ClaimError;
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};

/// The next step for a request, given the row.
enum Step {
    Start(BatchRow),
    Accept,
    Done(Outcome),
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
    pub(crate) async fn start(&self, request: &Request, receive_count: u32) -> Result<Outcome, RecordError> {
        let row = self.table.get(&request.batch_id).await?;
        let pending = match step(row, request)? {
            Step::Start(row) => row,
            Step::Done(outcome) => return Ok(outcome),
            Step::Accept => match self.accept(request).await? {
                Admitted::Accepted(row) => row,
                Admitted::Settled(outcome) => return Ok(outcome),
                Admitted::Existing(row) => match step(Some(row), request)? {
                    Step::Start(row) => row,
                    Step::Done(outcome) => return Ok(outcome),
                    Step::Accept => return Err(RecordError::Malformed("batch row vanished".into())),
                },
            },
        };
        self.start_pending(&pending, receive_count).await
    }

    /// Starts the attempt `pending` (PENDING(n)) waits for, on a session of its own.
    async fn start_pending(&self, pending: &BatchRow, receive_count: u32) -> Result<Outcome, RecordError> {
        let batch_id = &pending.batch_id;
        let claim = match self.claimer.claim().await {
            Ok(claim) => claim,
            Err(ClaimError::PoolEmpty) if receive_count >= self.config.max_receive_count.get() => {
                info!(%batch_id, attempt = pending.attempt, "still no session on the last delivery; the detector hands the batch over");
                return Ok(Outcome::Waiting {
                    batch_id: batch_id.clone(),
                    attempt: pending.attempt,
                });
            }
            Err(ClaimError::PoolEmpty) => {
                return Err(RecordError::NoSession {
                    batch_id: batch_id.clone(),
                    attempt: pending.attempt,
                });
            }
            Err(source) => {
                return Err(RecordError::Claim {
                    batch_id: batch_id.clone(),
                    source,
                });
            }
        };
        let session_id = claim.session.session_id.clone();
        let now = self.claimer.clock.now_ms();
        let deadline = now + millis(self.config.batch_deadline);
        let start = Transition::start(batch_id.clone(), pending.attempt, session_id.clone(), now, deadline);
        // Invariant 5: a pooled session is handed out once (the claim), a fresh one is new;
        // either way this attempt is the only one that will ever use it. Never used and never
        // returned to the pool (invariant 1), it is stopped if the start does not land.
        match write::transition(&self.table, &start).await {
            Ok(Written::Landed) => {}
            Ok(Written::Superseded(found)) => {
                stop_session(&self.agent, &session_id, &self.claimer.policy.log_key).await;
                return Ok(Outcome::Duplicate {
                    batch_id: batch_id.clone(),
                    status: found.as_ref().map_or(BatchStatus::Running, |r| r.status),
                    attempt: found.as_ref().map_or(pending.attempt, |r| r.attempt),
                });
            }
            Err(error) => {
                stop_session(&self.agent, &session_id, &self.claimer.policy.log_key).await;
                return Err(error.into());
            }
        }
        let running = start.apply(pending).unwrap_or_else(|_| pending.clone());
        let attempt = RunningAttempt {
            batch_id: batch_id.clone(),
            attempt: pending.attempt,
            session_id: session_id.clone(),
        };
        let payload = AgentInvocation::Batch(BatchPayload {
            v: VERSION,
            batch_id: batch_id.clone(),
            attempt: pending.attempt,
            documents: running.objects(),
            deadline,
        });
        match self.hand_over(&attempt, &payload.to_bytes()).await {
            Ok(()) => {
                info!(%batch_id, attempt = attempt.attempt, session = %session_id.log_id(&self.claimer.policy.log_key), source = ?claim.session.source, "batch started");
                Ok(Outcome::Started {
                    batch_id: batch_id.clone(),
                    attempt: attempt.attempt,
                    session_id,
                    source: claim.session.source,
                })
            }
            Err(failure) => self.after_failed_invocation(&running, failure).await,
        }
    }

    /// Invokes the agent, bounded, and checks that it accepted this very batch attempt.
    async fn hand_over(&self, attempt: &RunningAttempt, payload: &[u8]) -> Result<(), RecordError> {
        let failed = |reason: String, source| RecordError::Invoke {
            batch_id: attempt.batch_id.clone(),
            attempt: attempt.attempt,
            reason: bounded_error(&reason),
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

    /// The invocation failed: whether the agent started or not is unknown, so the attempt is
    /// over. It is settled as a failed attempt (the next attempt number on another session, or
    /// FAILED), which stops its session. If even that cannot be written, the session is
    /// stopped here and the row stays RUNNING for the detector to settle at its deadline.
    async fn after_failed_invocation(&self, running: &BatchRow, failure: RecordError) -> Result<Outcome, RecordError> {
        let reason = failure.to_string();
        match self.retrier().fail_attempt(running, &reason).await {
            Ok(settlement) => Ok(Outcome::AttemptSettled {
                batch_id: running.batch_id.clone(),
                settlement,
            }),
            Err(source) => {
                if let Some(session_id) = &running.session_id {
                    stop_session(&self.agent, session_id, &self.claimer.policy.log_key).await;
                }
                warn!(batch_id = %running.batch_id, error = %source, "could not settle the failed hand-over; the detector will");
                Err(RecordError::Settle {
                    batch_id: running.batch_id.clone(),
                    source,
                })
            }
        }
    }
}

/// What the row says a request may do.
fn step(row: Option<BatchRow>, request: &Request) -> Result<Step, RecordError> {
    let batch_id = &request.batch_id;
    match admit(row.as_ref(), request.attempt) {
        Admission::StartNew => Ok(Step::Accept),
        Admission::StartPending => row
            .map(Step::Start)
            .ok_or_else(|| RecordError::Malformed("batch row vanished".into())),
        Admission::Duplicate { status, attempt } => Ok(Step::Done(Outcome::Duplicate {
            batch_id: batch_id.clone(),
            status,
            attempt,
        })),
        Admission::Early { status, attempt } => Err(RecordError::Early {
            batch_id: batch_id.clone(),
            status,
            current: attempt,
            requested: request.attempt,
        }),
        Admission::Unknown => Err(RecordError::Malformed(format!(
            "attempt {} of batch {batch_id}, which was never accepted",
            request.attempt
        ))),
    }
}
