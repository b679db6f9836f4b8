//! Settling a failed attempt: one more attempt, or the end of the batch. The detector uses it
//! for attempts past their deadline and the invoker for invocations refused too often, so both
//! follow one rule and the table decides every race.

use super::message::{self, BatchRequest, FailureNotice};
use super::ports::{MessageSink, TrackingTable};
use super::{AfterFailure, BatchId, BatchRow, Change, Transition};
use crate::clock::Clock;
use crate::error::{QueueError, TableError};
use crate::ports::AgentRuntime;
use crate::session::SessionId;
use std::time::Duration;
use tracing::{info, warn};

/// Tries of a failure notice before giving up on it (the row says FAILED whatever happens).
const NOTICE_TRIES: u32 = 3;
const NOTICE_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Retried {
        next_attempt: u32,
    },
    Failed {
        notified: bool,
    },
    /// Another writer settled this attempt first: the agent finished it, or another detector
    /// run failed it. Nothing was changed.
    AlreadySettled,
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("batch {0} has no attempt running")]
    NotRunning(BatchId),
    #[error("could not enqueue the retry: {0}")]
    Enqueue(#[source] QueueError),
    #[error(transparent)]
    Table(#[from] TableError),
}

impl SettleError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotRunning(_) => false,
            Self::Enqueue(e) => e.is_retryable(),
            Self::Table(e) => e.is_retryable(),
        }
    }
}

/// What settling an attempt needs. Borrowed, so each function keeps owning its clients.
pub struct Retrier<'a, T, Q, A, C> {
    pub table: &'a T,
    /// Receives `{"v":1,...,"attempt":n+1}` requests.
    pub batch_queue: &'a Q,
    pub failure_queue: &'a Q,
    pub agent: &'a A,
    pub clock: &'a C,
    /// Delay of a retry message, so the table write that follows the send lands first.
    pub retry_delay: Duration,
}

impl<T: TrackingTable, Q: MessageSink, A: AgentRuntime, C: Clock> Retrier<'_, T, Q, A, C> {
    /// Fails the RUNNING attempt of `row` with `reason`: enqueue attempt n + 1 and move the row
    /// to PENDING(n + 1), or, at the last attempt, FAILED plus a failure notice. Then stops the
    /// attempt's session. Exactly one caller wins an attempt; the others get `AlreadySettled`.
    pub async fn fail_attempt(&self, row: &BatchRow, reason: &str) -> Result<Settlement, SettleError> {
        let attempt = row
            .running_attempt()
            .ok_or_else(|| SettleError::NotRunning(row.batch_id.clone()))?;
        let reason = reason.to_string();
        let settlement = match row.after_failed_attempt() {
            AfterFailure::Retry { next_attempt } => {
                // Sent before the row moves. If the write then fails or loses, the message is
                // early (retried) or a duplicate (acknowledged); sent after, a crash between the
                // two would leave a PENDING row that nothing ever starts.
                let request = BatchRequest::new(row.batch_id.clone(), row.documents.clone(), next_attempt);
                self.batch_queue
                    .send(&request.to_body(), self.retry_delay)
                    .await
                    .map_err(SettleError::Enqueue)?;
                let retry = Transition::of_running(&attempt, Change::Retry { reason }, self.clock.now_ms());
                if !self.won(self.table.transition(&retry).await)? {
                    return Ok(Settlement::AlreadySettled);
                }
                Settlement::Retried { next_attempt }
            }
            AfterFailure::Exhausted => {
                // The row is the truth, so it moves first; the notice follows, retried.
                let fail =
                    Transition::of_running(&attempt, Change::Fail { reason: reason.clone() }, self.clock.now_ms());
                if !self.won(self.table.transition(&fail).await)? {
                    return Ok(Settlement::AlreadySettled);
                }
                Settlement::Failed {
                    notified: self.notify_failure(row, &reason).await,
                }
            }
        };
        info!(batch_id = %row.batch_id, attempt = row.attempt, session_id = %attempt.session_id, outcome = ?settlement, "attempt failed");
        stop_session(self.agent, &attempt.session_id).await;
        Ok(settlement)
    }

    fn won(&self, written: Result<(), TableError>) -> Result<bool, SettleError> {
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failed() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn notify_failure(&self, row: &BatchRow, reason: &str) -> bool {
        let notice = FailureNotice {
            v: message::VERSION,
            batch_id: row.batch_id.clone(),
            attempts: row.attempt,
            last_error: reason.to_string(),
            documents: row.documents.clone(),
            failed_at: self.clock.now_ms(),
        };
        let body = message::to_body(&notice);
        for n in 0..NOTICE_TRIES {
            match self.failure_queue.send(&body, Duration::ZERO).await {
                Ok(()) => return true,
                Err(error) => {
                    warn!(batch_id = %row.batch_id, %error, try_number = n + 1, "failure notice not sent");
                    tokio::time::sleep(NOTICE_BACKOFF * 2u32.pow(n)).await;
                }
            }
        }
        false
    }
}

/// Best effort: a session whose attempt is over must stop billing, and AgentCore ends a
/// stopped microVM at once. A failure (already ended, unknown) costs money, never correctness:
/// the session is never used again either way.
pub async fn stop_session<A: AgentRuntime>(agent: &A, session_id: &SessionId) {
    if let Err(error) = agent.stop(session_id).await {
        info!(%session_id, %error, "stopping the session failed; it will idle out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::fakes::{MemorySink, MemoryTable};
    use crate::batch::{BatchStatus, ObjectRef};
    use crate::clock::ManualClock;
    use crate::fakes::ScriptedAgent;

    struct World {
        table: MemoryTable,
        batch_queue: MemorySink,
        failure_queue: MemorySink,
        agent: ScriptedAgent,
        clock: ManualClock,
    }

    impl World {
        fn new() -> Self {
            Self {
                table: MemoryTable::default(),
                batch_queue: MemorySink::default(),
                failure_queue: MemorySink::default(),
                agent: ScriptedAgent::default(),
                clock: ManualClock::at(100_000),
            }
        }

        fn retrier(&self) -> Retrier<'_, MemoryTable, MemorySink, ScriptedAgent, ManualClock> {
            Retrier {
                table: &self.table,
                batch_queue: &self.batch_queue,
                failure_queue: &self.failure_queue,
                agent: &self.agent,
                clock: &self.clock,
                retry_delay: Duration::ZERO,
            }
        }

        fn running(&self, attempt: u32, max_attempts: u32) -> BatchRow {
            let mut row = BatchRow::new_running(
                BatchId::parse("case-1").unwrap(),
                vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
                max_attempts,
                SessionId::generate(),
                1_000,
                2_000,
            );
            row.attempt = attempt;
            self.table.insert(row.clone());
            row
        }
    }

    #[tokio::test]
    async fn a_failed_attempt_below_the_limit_enqueues_the_next_and_waits_for_it() {
        let world = World::new();
        let row = world.running(1, 3);

        let settlement = world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(settlement, Settlement::Retried { next_attempt: 2 });
        let stored = world.table.row(&row.batch_id).unwrap();
        assert_eq!((stored.status, stored.attempt), (BatchStatus::Pending, 2));
        let sent: Vec<BatchRequest> = world
            .batch_queue
            .bodies()
            .iter()
            .map(|b| BatchRequest::parse(serde_json::from_str(b).unwrap()).unwrap())
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].attempt, &sent[0].documents), (2, &row.documents));
        assert_eq!(world.agent.stopped(), vec![row.session_id.clone().unwrap()]);
    }

    #[tokio::test]
    async fn the_last_attempt_fails_the_batch_and_sends_it_to_the_failure_queue() {
        let world = World::new();
        let row = world.running(3, 3);

        let settlement = world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(settlement, Settlement::Failed { notified: true });
        let stored = world.table.row(&row.batch_id).unwrap();
        assert_eq!(stored.status, BatchStatus::Failed);
        assert_eq!(stored.last_error.as_deref(), Some("deadline passed"));
        assert!(world.batch_queue.bodies().is_empty());
        let notice: FailureNotice = serde_json::from_str(&world.failure_queue.bodies()[0]).unwrap();
        assert_eq!((notice.attempts, notice.batch_id), (3, row.batch_id.clone()));
    }

    #[tokio::test]
    async fn an_attempt_the_agent_finished_first_is_left_alone() {
        let world = World::new();
        let row = world.running(1, 3);
        let attempt = row.running_attempt().unwrap();
        world
            .table
            .transition(&Transition::of_running(
                &attempt,
                Change::Succeed { result_ref: "r".into() },
                5,
            ))
            .await
            .unwrap();

        let settlement = world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(settlement, Settlement::AlreadySettled);
        assert_eq!(world.table.row(&row.batch_id).unwrap().status, BatchStatus::Succeeded);
        assert!(world.agent.stopped().is_empty(), "a loser changes nothing");
    }

    #[tokio::test]
    async fn two_settlers_of_the_same_attempt_give_exactly_one_outcome() {
        let world = World::new();
        let row = world.running(1, 3);
        let (first, second) = (world.retrier(), world.retrier());
        let (a, b) = tokio::join!(first.fail_attempt(&row, "first"), second.fail_attempt(&row, "second"));
        let outcomes = [a.unwrap(), b.unwrap()];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Settlement::Retried { .. }))
                .count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(world.table.row(&row.batch_id).unwrap().attempt, 2);
    }

    #[tokio::test]
    async fn a_retry_that_cannot_be_enqueued_leaves_the_row_running_for_the_next_run() {
        let world = World::new();
        let row = world.running(1, 3);
        world.batch_queue.fail_next(1);

        let error = world.retrier().fail_attempt(&row, "late").await.unwrap_err();

        assert!(matches!(error, SettleError::Enqueue(_)));
        assert!(error.is_retryable());
        assert_eq!(world.table.row(&row.batch_id).unwrap().status, BatchStatus::Running);
    }
}
