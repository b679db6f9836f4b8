//! Settling attempts and batches, by one rule for every settler (the detector for attempts
//! past their deadline or never started, the invoker for invocations that failed, either for a
//! batch refused at admission): hand the batch over to its next attempt, or end it; then stop
//! the session and, for a FAILED batch, send the failure notice and record that it was sent.
//! Every write goes through [`super::write`], so a write that landed and lost its answer is
//! still acted on as the settler's own.

use super::message::{self, BatchRequest, FailureNotice};
use super::ports::{MessageSink, TrackingTable};
use super::write::{self, Written};
use super::{AfterFailure, BatchId, BatchRow, BatchStatus, Change, Transition, bounded_error};
use crate::clock::{Clock, millis};
use crate::error::{QueueError, TableError};
use crate::ports::AgentRuntime;
use crate::session::{LogKey, SessionId};
use crate::stop::{STOP_BACKOFF, stop_until_gone};
use std::time::Duration;
use tracing::{info, warn};

/// Tries of a failure notice in one follow-up; the row keeps it owed until one is recorded.
const NOTICE_TRIES: u32 = 3;
const NOTICE_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Handed over: attempt `next_attempt` waits for a session.
    Retried { next_attempt: u32 },
    /// The batch is FAILED by this settler; `closed` once its notice is recorded and its
    /// session stopped (otherwise the detector finishes the follow-up).
    Failed { closed: bool },
    /// Another writer settled this attempt first: the agent finished it, or another settler
    /// failed it. Its session was stopped all the same.
    AlreadySettled,
}

/// What a follow-up of a settled row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUp {
    pub session_stopped: bool,
    /// A failure notice was sent by this follow-up.
    pub notice_sent: bool,
    /// The row was closed (by this follow-up or, found so, by another).
    pub closed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("batch {0} is not in a state this settler acts on")]
    NotSettleable(BatchId),
    #[error("could not enqueue the retry: {0}")]
    Enqueue(#[source] QueueError),
    #[error(transparent)]
    Table(#[from] TableError),
}

impl SettleError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotSettleable(_) => false,
            Self::Enqueue(e) => e.is_retryable(),
            Self::Table(e) => e.is_retryable(),
        }
    }
}

/// What settling needs. Borrowed, so each function keeps owning its clients.
pub struct Retrier<'a, T, Q, A, C> {
    pub table: &'a T,
    /// Receives `{"v":1,...,"attempt":n+1}` requests.
    pub batch_queue: &'a Q,
    pub failure_queue: &'a Q,
    pub agent: &'a A,
    pub clock: &'a C,
    /// Delay of a retry message, so the table write that follows the send lands first.
    pub retry_delay: Duration,
    /// How long a handed-over attempt may wait for a session before it counts as failed.
    pub pending_timeout: Duration,
    /// Session IDs appear in logs only as [`SessionId::log_id`] under this key.
    pub log_key: &'a LogKey,
}

impl<T: TrackingTable, Q: MessageSink, A: AgentRuntime, C: Clock> Retrier<'_, T, Q, A, C> {
    /// Fails attempt n of `row` (RUNNING, or PENDING and never started) with `reason`: enqueue
    /// attempt n + 1 and move the row to PENDING(n + 1), or, at the last attempt, FAILED plus
    /// the follow-up. The attempt's session is stopped whoever wins. Exactly one settler wins
    /// an attempt; the others get `AlreadySettled`.
    pub async fn fail_attempt(&self, row: &BatchRow, reason: &str) -> Result<Settlement, SettleError> {
        if !matches!(row.status, BatchStatus::Running | BatchStatus::Pending) {
            return Err(SettleError::NotSettleable(row.batch_id.clone()));
        }
        let now = self.clock.now_ms();
        let settlement = match row.after_failed_attempt() {
            AfterFailure::Retry { next_attempt } => {
                // Sent before the row moves. If the write then fails or loses, the message is
                // early (retried) or a duplicate (acknowledged); sent after, a crash between the
                // two would leave a PENDING row waiting for a request nobody sends (the
                // detector would hand it over again at its start-by time, one attempt later).
                let request = BatchRequest::new(row.batch_id.clone(), row.objects(), next_attempt);
                self.batch_queue
                    .send(&request.to_body(), self.retry_delay)
                    .await
                    .map_err(SettleError::Enqueue)?;
                let change = Change::Retry {
                    reason: reason.to_string(),
                    start_by: now + millis(self.pending_timeout),
                };
                let retry = Transition::of_row(row, change, now);
                match write::transition(self.table, &retry).await? {
                    Written::Landed => Settlement::Retried { next_attempt },
                    Written::Superseded(_) => Settlement::AlreadySettled,
                }
            }
            AfterFailure::Exhausted => {
                let fail = Transition::of_row(
                    row,
                    Change::Fail {
                        reason: reason.to_string(),
                    },
                    now,
                );
                match write::transition(self.table, &fail).await? {
                    Written::Landed => {
                        // The row as this write left it; the follow-up stops the session.
                        let failed = fail.apply(row).unwrap_or_else(|_| row.clone());
                        let follow_up = self.follow_up(&failed).await?;
                        Settlement::Failed {
                            closed: follow_up.closed,
                        }
                    }
                    Written::Superseded(_) => Settlement::AlreadySettled,
                }
            }
        };
        info!(batch_id = %row.batch_id, attempt = row.attempt, outcome = ?settlement, "attempt failed");
        if let Some(session_id) = &row.session_id
            && !matches!(settlement, Settlement::Failed { .. })
        {
            stop_session(self.agent, session_id, self.log_key).await;
        }
        Ok(settlement)
    }

    /// The follow-up a settled row owes: stop its session, send its failure notice if it is
    /// FAILED and none was recorded, then close it. Whatever is not done stays owed: the row
    /// keeps its place in the detector's index until the close lands.
    pub async fn follow_up(&self, row: &BatchRow) -> Result<FollowUp, SettleError> {
        if !row.owes_follow_up() {
            return Err(SettleError::NotSettleable(row.batch_id.clone()));
        }
        let session_stopped = match &row.session_id {
            Some(session_id) => stop_session(self.agent, session_id, self.log_key).await,
            None => true,
        };
        let owes_notice = row.status == BatchStatus::Failed && row.notified_at.is_none();
        let notice_sent = owes_notice && self.notify_failure(row).await;
        let mut follow_up = FollowUp {
            session_stopped,
            notice_sent,
            closed: false,
        };
        if !session_stopped || (owes_notice && !notice_sent) {
            return Ok(follow_up);
        }
        let close = Transition::of_row(
            row,
            Change::Close {
                notified: row.status == BatchStatus::Failed,
            },
            self.clock.now_ms(),
        );
        follow_up.closed = match write::transition(self.table, &close).await {
            Ok(Written::Landed) => true,
            Ok(Written::Superseded(found)) => found.is_some_and(|r| r.closed_at.is_some()),
            Err(error) => {
                // The notice went out; the next follow-up may send it once more.
                warn!(batch_id = %row.batch_id, %error, "could not close the row; the detector will");
                false
            }
        };
        Ok(follow_up)
    }

    async fn notify_failure(&self, row: &BatchRow) -> bool {
        let notice = FailureNotice {
            v: message::VERSION,
            batch_id: row.batch_id.clone(),
            attempts: row.attempt,
            last_error: bounded_error(row.last_error.as_deref().unwrap_or("failed")),
            documents: row.objects(),
            failed_at: row.updated_at,
        };
        let body = message::to_body(&notice);
        for n in 0..NOTICE_TRIES {
            match self.failure_queue.send(&body, Duration::ZERO).await {
                Ok(()) => return true,
                Err(error) => {
                    warn!(batch_id = %row.batch_id, %error, try_number = n + 1, "failure notice not sent");
                    if n + 1 < NOTICE_TRIES {
                        tokio::time::sleep(NOTICE_BACKOFF * 2u32.pow(n)).await;
                    }
                }
            }
        }
        false
    }
}

/// How long one stop of a settled attempt's session keeps retrying (throttles, 5xx, lost
/// answers), with one client token; what is left after it stays owed (`false`).
/// Longer than a pool run's ([`crate::stop::STOP_BUDGET`]): a settled attempt's stop is the
/// last thing its writer does, and one that gives up is owed until the detector's next run.
pub const SETTLED_STOP_BUDGET: Duration = Duration::from_secs(10);

/// Stops a session whose attempt is over, so it stops billing and holding an active-session
/// slot, retrying until AgentCore says it ended or is gone ([`stop_until_gone`]). `false`: it
/// may still run; the session is never used again either way, and a settled row's follow-up
/// stays owed so the detector tries again.
pub async fn stop_session<A: AgentRuntime>(agent: &A, session_id: &SessionId, log_key: &LogKey) -> bool {
    stop_until_gone(agent, session_id, SETTLED_STOP_BUDGET, &STOP_BACKOFF, log_key)
        .await
        .ended()
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
        log_key: LogKey,
    }

    impl World {
        fn new() -> Self {
            Self {
                table: MemoryTable::default(),
                batch_queue: MemorySink::default(),
                failure_queue: MemorySink::default(),
                agent: ScriptedAgent::default(),
                clock: ManualClock::at(100_000),
                log_key: LogKey::development(),
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
                pending_timeout: Duration::from_secs(300),
                log_key: &self.log_key,
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
        assert_eq!(stored.deadline, Some(100_000 + 300_000), "attempt 2 must start by then");
        let sent: Vec<BatchRequest> = world
            .batch_queue
            .bodies()
            .iter()
            .map(|b| BatchRequest::parse(serde_json::from_str(b).unwrap()).unwrap())
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].attempt, &sent[0].documents), (2, &row.objects()));
        assert_eq!(world.agent.stopped(), vec![row.session_id.clone().unwrap()]);
    }

    #[tokio::test]
    async fn the_last_attempt_fails_the_batch_and_sends_it_to_the_failure_queue() {
        let world = World::new();
        let row = world.running(3, 3);

        let settlement = world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(settlement, Settlement::Failed { closed: true });
        let stored = world.table.row(&row.batch_id).unwrap();
        assert_eq!(stored.status, BatchStatus::Failed);
        assert!(stored.notified_at.is_some() && stored.closed_at.is_some(), "{stored:?}");
        assert_eq!(world.agent.stopped(), vec![row.session_id.clone().unwrap()]);
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
        assert!(world.batch_queue.bodies().len() <= 1, "at most a duplicate request");
        assert_eq!(
            world.agent.stopped(),
            vec![row.session_id.clone().unwrap()],
            "a settled batch's session is stopped, whoever settled it"
        );
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
    async fn when_the_final_failure_lands_but_its_answer_is_lost_then_the_notice_is_sent_and_the_session_stopped() {
        let world = World::new();
        let row = world.running(3, 3);
        world.table.lose_next_acks(1);

        world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(world.table.row(&row.batch_id).unwrap().status, BatchStatus::Failed);
        assert_eq!(world.failure_queue.bodies().len(), 1, "the failure notice");
        assert_eq!(world.agent.stopped(), vec![row.session_id.clone().unwrap()]);
    }

    #[tokio::test]
    async fn when_a_retry_lands_but_its_answer_is_lost_then_the_session_is_still_stopped() {
        let world = World::new();
        let row = world.running(1, 3);
        world.table.lose_next_acks(1);

        world.retrier().fail_attempt(&row, "deadline passed").await.unwrap();

        assert_eq!(world.table.row(&row.batch_id).unwrap().attempt, 2);
        assert_eq!(world.agent.stopped(), vec![row.session_id.clone().unwrap()]);
    }

    #[tokio::test]
    async fn when_a_pending_attempt_never_started_then_it_is_handed_over_like_a_failed_one() {
        let world = World::new();
        let row = BatchRow::new_pending(
            BatchId::parse("case-1").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
            2,
            1_000,
            2_000,
        );
        world.table.insert(row.clone());

        let first = world.retrier().fail_attempt(&row, "no session").await.unwrap();
        let waiting = world.table.row(&row.batch_id).unwrap();
        let second = world.retrier().fail_attempt(&waiting, "no session").await.unwrap();

        assert_eq!(first, Settlement::Retried { next_attempt: 2 });
        assert_eq!(second, Settlement::Failed { closed: true });
        assert!(world.agent.stopped().is_empty(), "no session was ever used");
        assert_eq!(world.failure_queue.bodies().len(), 1);
    }

    #[tokio::test]
    async fn when_the_notice_cannot_be_sent_then_the_row_stays_owed_and_a_later_follow_up_sends_it_once() {
        let world = World::new();
        let row = world.running(3, 3);
        world.failure_queue.fail_next(NOTICE_TRIES);

        let settlement = world.retrier().fail_attempt(&row, "late").await.unwrap();
        assert_eq!(settlement, Settlement::Failed { closed: false });
        let owed = world.table.row(&row.batch_id).unwrap();
        assert!(owed.owes_follow_up() && owed.notified_at.is_none(), "{owed:?}");

        let follow_up = world.retrier().follow_up(&owed).await.unwrap();
        assert!(follow_up.notice_sent && follow_up.closed, "{follow_up:?}");
        let closed = world.table.row(&row.batch_id).unwrap();
        assert!(!closed.owes_follow_up());
        assert!(
            world.retrier().follow_up(&closed).await.is_err(),
            "nothing more is owed"
        );
        assert_eq!(world.failure_queue.bodies().len(), 1);
    }

    #[tokio::test]
    async fn when_the_close_lands_but_its_answer_is_lost_then_the_follow_up_is_still_done() {
        let world = World::new();
        let row = world.running(3, 3);
        let fail = Transition::of_row(&row, Change::Fail { reason: "x".into() }, 5);
        world.table.transition(&fail).await.unwrap();
        let failed = world.table.row(&row.batch_id).unwrap();
        world.table.lose_next_acks(1);

        let follow_up = world.retrier().follow_up(&failed).await.unwrap();

        assert!(follow_up.closed, "{follow_up:?}");
        assert_eq!(world.failure_queue.bodies().len(), 1);
    }

    #[tokio::test]
    async fn a_huge_reason_is_bounded_in_the_row_and_the_notice() {
        let world = World::new();
        let row = world.running(3, 3);
        world.retrier().fail_attempt(&row, &"ü".repeat(50_000)).await.unwrap();
        let stored = world.table.row(&row.batch_id).unwrap();
        assert!(stored.last_error.unwrap().len() <= crate::batch::MAX_ERROR_BYTES);
        let notice: FailureNotice = serde_json::from_str(&world.failure_queue.bodies()[0]).unwrap();
        assert!(notice.last_error.ends_with("[truncated]"));
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
