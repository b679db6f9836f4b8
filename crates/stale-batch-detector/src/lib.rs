//! stale-batch-detector: on a schedule, reads the rows of the sparse index that are due (never
//! a scan) and settles each one by the rule its status gives:
//! - RUNNING past its deadline: the attempt failed; attempt n + 1 on a new session, or FAILED
//!   after the last attempt; its session is stopped.
//! - PENDING past its start-by time (its request was lost, or no session came): counted as a
//!   failed attempt the same way, so a batch is terminal within its attempts however every
//!   delivery fails.
//! - SUCCEEDED or FAILED with the follow-up owed: stop the session, send the failure notice
//!   until one is recorded, close the row.
//! - A row that does not read: counted, quarantined (FAILED by key, conditional on it still
//!   being what was read) and skipped. No row can stop a run.
//!
//! Each run starts at the next shard of the index, so no shard waits for another to drain.
//! Safe to run twice at once and against an agent finishing in the same instant: each step is
//! one conditional write ([`Retrier`]); the losers change nothing.

mod config;

pub use config::Config;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::time::Instant;
use tracing::{error, info, warn};
use warmpool_core::batch::ports::{Due, MessageSink, TrackingTable, UnreadableRow};
use warmpool_core::batch::settle::{Retrier, Settlement};
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, agent_gave_up};
use warmpool_core::clock::Clock;
use warmpool_core::error::TableError;
use warmpool_core::metrics::MetricSet;
use warmpool_core::num::count_u32;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::schedule::is_scheduled_event;
use warmpool_core::session::LogKey;

pub const FUNCTION: &str = "stale-batch-detector";

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("invalid event: {0}")]
    Validation(String),
    #[error("cannot read overdue batches: {0}")]
    Table(#[source] TableError),
}

impl DetectorError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Validation(_) => false,
            Self::Table(e) => e.is_retryable(),
        }
    }
}

impl From<DetectorError> for Diagnostic {
    fn from(error: DetectorError) -> Self {
        let error_type = match error {
            DetectorError::Validation(_) => "ValidationError",
            DetectorError::Table(_) => "TrackingTableUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// One row this run acted on, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub batch_id: BatchId,
    pub attempt: u32,
    /// Attempts: `retried`, `failed` or `alreadySettled`; follow-ups: `closed` or `owed`.
    pub outcome: &'static str,
}

/// What a run did: returned to synchronous callers, logged and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// RUNNING attempts past their deadline.
    pub overdue: usize,
    /// PENDING attempts past their start-by time.
    pub pending_expired: usize,
    pub retried: usize,
    pub failed: usize,
    pub already_settled: usize,
    /// Settled rows whose follow-up this run finished (session stopped, notice recorded).
    pub closed: usize,
    /// Rows that did not read, and how many of them this run quarantined.
    pub unreadable: usize,
    pub quarantined: usize,
    /// Rows whose settling failed (enqueue or table errors); the next run tries again.
    pub errors: usize,
    /// Due rows left for the next run because this one ran out of time.
    pub deferred: usize,
    /// The shard this run read first.
    pub first_shard: u32,
    /// Attempts settled (RUNNING and PENDING rows).
    pub settled: Vec<Settled>,
    /// Follow-ups of settled rows.
    pub followed_up: Vec<Settled>,
}

pub struct Detector<T, Q, A, C> {
    pub config: Config,
    pub table: T,
    pub batch_queue: Q,
    pub failure_queue: Q,
    pub agent: A,
    pub clock: C,
    /// The shard the next run reads first: random per instance, then one further per run.
    next_shard: AtomicU32,
}

fn parse_trigger(payload: &Value) -> Result<(), DetectorError> {
    let scheduled = is_scheduled_event(payload);
    let manual = payload.is_null() || payload.as_object().is_some_and(|o| o.is_empty());
    if scheduled || manual {
        Ok(())
    } else {
        Err(DetectorError::Validation(
            "expected an EventBridge scheduled event or {}".into(),
        ))
    }
}

/// Why an attempt is being failed, for the row's `lastError` and the failure notice: the
/// agent's own reason if it gave this attempt up (see [`agent_gave_up`]), else the deadline.
/// The session appears as its keyed hash: `lastError` reaches the failure notice's readers.
fn reason(row: &BatchRow, now_ms: u64, log_key: &LogKey) -> String {
    let late_by = now_ms.saturating_sub(row.deadline.unwrap_or(now_ms));
    match &row.last_error {
        Some(error) if error.starts_with(&agent_gave_up(row.attempt, "")) => error.clone(),
        _ if row.status == BatchStatus::Pending => format!(
            "attempt {} found no session by its start-by time ({late_by} ms ago)",
            row.attempt
        ),
        _ => format!(
            "attempt {} on session {} passed its deadline {late_by} ms ago",
            row.attempt,
            row.session_id
                .as_ref()
                .map_or_else(|| "-".to_string(), |s| s.log_id(log_key).to_string()),
        ),
    }
}

/// What one due row came to.
enum Acted {
    Attempt(Settlement),
    FollowUp { closed: bool },
    Quarantined,
    Skipped,
    Failed(String),
}

impl<T: TrackingTable, Q: MessageSink, A: AgentRuntime, C: Clock> Detector<T, Q, A, C> {
    pub fn new(config: Config, table: T, batch_queue: Q, failure_queue: Q, agent: A, clock: C) -> Self {
        Self {
            config,
            table,
            batch_queue,
            failure_queue,
            agent,
            clock,
            next_shard: AtomicU32::new(rand::random()),
        }
    }

    fn retrier(&self) -> Retrier<'_, T, Q, A, C> {
        Retrier {
            table: &self.table,
            batch_queue: &self.batch_queue,
            failure_queue: &self.failure_queue,
            agent: &self.agent,
            clock: &self.clock,
            retry_delay: self.config.retry_delay,
            pending_timeout: self.config.pending_timeout,
            log_key: &self.config.log_key,
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunReport, DetectorError> {
        parse_trigger(&event.payload)?;
        // Settling stops before Lambda's deadline, so the run reports instead of timing out.
        let budget = self
            .config
            .run_budget
            .remaining(event.context.deadline, self.clock.now_ms());
        let run_deadline = Instant::now() + budget;
        let now = self.clock.now_ms();
        let first_shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.config.layout.shards.max(1);
        let limit = usize::try_from(self.config.max_batches_per_run.get()).unwrap_or(usize::MAX);
        let due = self
            .table
            .overdue(now, limit, first_shard)
            .await
            .map_err(DetectorError::Table)?;
        let concurrency = usize::try_from(self.config.settle_concurrency.get()).unwrap_or(1);
        let results: Vec<(Due, Option<Acted>)> = futures::stream::iter(due)
            .map(|due| async move {
                if Instant::now() >= run_deadline {
                    return (due, None);
                }
                let acted = self.act(&due, now).await;
                (due, Some(acted))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let report = tally(results, first_shard);
        self.emit(&report);
        Ok(report)
    }

    async fn act(&self, due: &Due, now: u64) -> Acted {
        match due {
            Due::Readable(row) if row.owes_follow_up() => match self.retrier().follow_up(row).await {
                Ok(follow_up) => Acted::FollowUp {
                    closed: follow_up.closed,
                },
                Err(error) => Acted::Failed(error.to_string()),
            },
            Due::Readable(row) if matches!(row.status, BatchStatus::Running | BatchStatus::Pending) => {
                match self
                    .retrier()
                    .fail_attempt(row, &reason(row, now, &self.config.log_key))
                    .await
                {
                    Ok(settlement) => Acted::Attempt(settlement),
                    Err(error) => Acted::Failed(error.to_string()),
                }
            }
            Due::Readable(_) => Acted::Skipped,
            Due::Unreadable(row) => self.quarantine(row).await,
        }
    }

    /// A row that does not read is settled FAILED by its key, only if it is still what was read.
    async fn quarantine(&self, row: &UnreadableRow) -> Acted {
        error!(key = %row.key, reason = %row.reason, "tracking row does not read; quarantining it");
        let reason = format!(
            "quarantined by the stale-batch detector: the row does not read: {}",
            row.reason
        );
        match self.table.quarantine(row, &reason, self.clock.now_ms()).await {
            Ok(()) => Acted::Quarantined,
            // Changed since it was read: the next run sees it as it is now.
            Err(error) if error.is_condition_failed() => Acted::Skipped,
            Err(error) => Acted::Failed(error.to_string()),
        }
    }

    fn emit(&self, report: &RunReport) {
        MetricSet::new(FUNCTION)
            .count("BatchesStale", count_u32(report.overdue))
            .count("PendingExpired", count_u32(report.pending_expired))
            .count("BatchesRetried", count_u32(report.retried))
            .count("BatchesFailed", count_u32(report.failed))
            .count("StaleAlreadySettled", count_u32(report.already_settled))
            .count("FollowUpsClosed", count_u32(report.closed))
            .count("RowsUnreadable", count_u32(report.unreadable))
            .count("RowsQuarantined", count_u32(report.quarantined))
            .count("SettleErrors", count_u32(report.errors))
            .emit(self.clock.now_ms());
        info!(
            overdue = report.overdue,
            pending_expired = report.pending_expired,
            retried = report.retried,
            failed = report.failed,
            already_settled = report.already_settled,
            closed = report.closed,
            unreadable = report.unreadable,
            quarantined = report.quarantined,
            errors = report.errors,
            deferred = report.deferred,
            first_shard = report.first_shard,
            "detector run done"
        );
    }
}

fn tally(results: Vec<(Due, Option<Acted>)>, first_shard: u32) -> RunReport {
    let mut report = RunReport {
        first_shard,
        ..RunReport::default()
    };
    for (due, acted) in results {
        let row = match &due {
            Due::Readable(row) => Some(row),
            Due::Unreadable(_) => {
                report.unreadable += 1;
                None
            }
        };
        if let Some(row) = row.filter(|r| !r.owes_follow_up()) {
            match row.status {
                BatchStatus::Pending => report.pending_expired += 1,
                _ => report.overdue += 1,
            }
        }
        let entry = |outcome| {
            row.map(|r| Settled {
                batch_id: r.batch_id.clone(),
                attempt: r.attempt,
                outcome,
            })
        };
        match acted {
            None => report.deferred += 1,
            Some(Acted::Failed(error)) => {
                warn!(row = ?row.map(|r| &r.batch_id), %error, "could not settle a due row; the next run retries");
                report.errors += 1;
            }
            Some(Acted::Skipped) => {}
            Some(Acted::Quarantined) => report.quarantined += 1,
            Some(Acted::FollowUp { closed }) => {
                report.closed += usize::from(closed);
                report.followed_up.extend(entry(if closed { "closed" } else { "owed" }));
            }
            Some(Acted::Attempt(settlement)) => {
                let outcome = match settlement {
                    Settlement::Retried { .. } => {
                        report.retried += 1;
                        "retried"
                    }
                    Settlement::Failed { .. } => {
                        report.failed += 1;
                        "failed"
                    }
                    Settlement::AlreadySettled => {
                        report.already_settled += 1;
                        "alreadySettled"
                    }
                };
                report.settled.extend(entry(outcome));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::batch::fakes::{MemorySink, MemoryTable};
    use warmpool_core::batch::ports::Due;
    use warmpool_core::batch::{BatchStatus, Change, ObjectRef, Transition};
    use warmpool_core::clock::ManualClock;
    use warmpool_core::config::Env;
    use warmpool_core::fakes::ScriptedAgent;
    use warmpool_core::session::SessionId;

    const NOW: u64 = 1_800_000_000_000;

    type TestDetector = Detector<MemoryTable, MemorySink, ScriptedAgent, ManualClock>;

    fn detector() -> TestDetector {
        Detector::new(
            Config::from_env(&Env::from_pairs(config::tests::REQUIRED)).unwrap(),
            MemoryTable::default(),
            MemorySink::default(),
            MemorySink::default(),
            ScriptedAgent::default(),
            ManualClock::at(NOW),
        )
    }

    fn running(f: &TestDetector, name: &str, attempt: u32, deadline: u64) -> BatchRow {
        let mut row = BatchRow::new_running(
            BatchId::parse(name).unwrap(),
            vec![ObjectRef::new("docs", format!("incoming/{name}/a.txt"))],
            3,
            SessionId::generate(),
            deadline - 60_000,
            deadline,
        );
        row.attempt = attempt;
        f.table.insert(row.clone());
        row
    }

    fn schedule() -> LambdaEvent<Value> {
        let payload = serde_json::from_str(include_str!("../../../events/stale-batch-detector-schedule.json")).unwrap();
        LambdaEvent::new(payload, Default::default())
    }

    #[tokio::test]
    async fn overdue_attempts_are_retried_or_failed_and_timely_ones_are_left_alone() {
        let f = detector();
        let late = running(&f, "late", 1, NOW - 1);
        let last = running(&f, "last", 3, NOW - 5_000);
        let timely = running(&f, "timely", 1, NOW + 1);

        let report = f.handle(schedule()).await.unwrap();

        assert_eq!((report.overdue, report.retried, report.failed), (2, 1, 1));
        let row = |r: &BatchRow| f.table.row(&r.batch_id).unwrap();
        assert_eq!((row(&late).status, row(&late).attempt), (BatchStatus::Pending, 2));
        assert_eq!(row(&last).status, BatchStatus::Failed);
        assert!(
            row(&last)
                .last_error
                .unwrap()
                .contains("passed its deadline 5000 ms ago")
        );
        assert_eq!(row(&timely).status, BatchStatus::Running);
        assert_eq!(f.batch_queue.bodies().len(), 1);
        assert_eq!(f.failure_queue.bodies().len(), 1);
        let mut stopped = f.agent.stopped();
        stopped.sort();
        let mut expected = vec![late.session_id.unwrap(), last.session_id.unwrap()];
        expected.sort();
        assert_eq!(stopped, expected);
    }

    #[tokio::test]
    async fn two_overlapping_runs_settle_each_attempt_once() {
        let f = detector();
        for n in 0..10 {
            running(&f, &format!("b-{n}"), 1, NOW - 1);
        }

        let (a, b) = tokio::join!(f.handle(schedule()), f.handle(schedule()));

        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.retried + b.retried, 10, "{a:?} {b:?}");
        assert_eq!(a.already_settled + b.already_settled, a.overdue + b.overdue - 10);
        assert!(
            f.table
                .rows()
                .iter()
                .all(|r| (r.status, r.attempt) == (BatchStatus::Pending, 2))
        );
    }

    #[tokio::test]
    async fn an_attempt_the_agent_gave_up_is_failed_with_the_agents_reason() {
        let f = detector();
        let row = running(&f, "gave-up", 1, NOW + 600_000);
        let attempt = row.running_attempt().unwrap();
        f.table
            .transition(&Transition::of_running(
                &attempt,
                Change::Expire {
                    reason: agent_gave_up(1, "document incoming/gave-up/a.txt not found"),
                },
                NOW - 1,
            ))
            .await
            .unwrap();

        let report = f.handle(schedule()).await.unwrap();

        assert_eq!(report.retried, 1);
        let stored = f.table.row(&row.batch_id).unwrap();
        assert!(stored.last_error.unwrap().contains("not found"));
    }

    #[tokio::test]
    async fn a_failing_enqueue_is_counted_and_left_for_the_next_run() {
        let f = detector();
        let row = running(&f, "b", 1, NOW - 1);
        f.batch_queue.fail_next(1);

        let report = f.handle(schedule()).await.unwrap();
        assert_eq!((report.errors, report.retried), (1, 0));
        assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Running);

        let report = f.handle(schedule()).await.unwrap();
        assert_eq!(report.retried, 1);
    }

    #[tokio::test]
    async fn when_the_retry_request_of_a_pending_batch_is_lost_then_the_detector_resends_or_fails_it() {
        let f = detector();
        let row = running(&f, "stranded", 1, NOW - 1);
        f.handle(schedule()).await.unwrap();
        assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Pending);
        let sent_before = f.batch_queue.bodies().len();

        // The retry request went to the DLQ: nothing will ever start attempt 2.
        f.clock.advance(std::time::Duration::from_secs(3_600));
        f.handle(schedule()).await.unwrap();

        let stored = f.table.row(&row.batch_id).unwrap();
        assert!(
            f.batch_queue.bodies().len() > sent_before || stored.status == BatchStatus::Failed,
            "still {stored:?}"
        );
    }

    #[tokio::test]
    async fn when_a_batch_succeeded_then_the_detector_stops_its_session() {
        let f = detector();
        let row = running(&f, "done", 1, NOW + 600_000);
        let attempt = row.running_attempt().unwrap();
        f.table
            .transition(&Transition::of_running(
                &attempt,
                Change::Succeed { result_ref: "r".into() },
                NOW - 1,
            ))
            .await
            .unwrap();

        f.handle(schedule()).await.unwrap();

        assert_eq!(f.agent.stopped(), vec![row.session_id.unwrap()]);
    }

    #[tokio::test]
    async fn when_the_failure_notice_cannot_be_sent_then_a_later_run_sends_it() {
        let f = detector();
        let row = running(&f, "last", 3, NOW - 1);
        f.failure_queue.fail_next(3);
        f.handle(schedule()).await.unwrap();
        assert_eq!(f.table.row(&row.batch_id).unwrap().status, BatchStatus::Failed);
        assert!(f.failure_queue.bodies().is_empty());

        f.clock.advance(std::time::Duration::from_secs(300));
        f.handle(schedule()).await.unwrap();

        assert_eq!(f.failure_queue.bodies().len(), 1, "sent exactly once, by the later run");
    }

    #[tokio::test]
    async fn when_a_row_does_not_read_then_it_is_counted_quarantined_and_the_others_settle() {
        let f = detector();
        f.table
            .insert_unreadable("hostile", "document key longer than S3 allows", NOW - 10);
        let honest = running(&f, "honest", 1, NOW - 1);

        let report = f.handle(schedule()).await.unwrap();

        assert_eq!(
            (report.unreadable, report.quarantined, report.retried),
            (1, 1, 1),
            "{report:?}"
        );
        assert!(f.table.quarantined("hostile").unwrap().contains("does not read"));
        assert_eq!(f.table.row(&honest.batch_id).unwrap().attempt, 2);
        let again = f.handle(schedule()).await.unwrap();
        assert_eq!(again.unreadable, 0, "out of the index once quarantined");
    }

    #[tokio::test]
    async fn when_an_unreadable_row_changes_before_its_quarantine_then_it_is_left_for_the_next_run() {
        let f = detector();
        f.table.insert_unreadable("hostile", "bad", NOW - 10);
        let Due::Unreadable(read) = f.table.overdue(NOW, 10, 0).await.unwrap().remove(0) else {
            panic!("the fake reads it as unreadable");
        };
        f.table.touch_unreadable("hostile");

        assert!(matches!(f.quarantine(&read).await, Acted::Skipped));
        assert!(f.table.quarantined("hostile").is_none());
    }

    #[tokio::test]
    async fn successive_runs_start_at_successive_shards() {
        let f = detector();
        let first = f.handle(schedule()).await.unwrap().first_shard;
        let second = f.handle(schedule()).await.unwrap().first_shard;
        assert_eq!(second, (first + 1) % 8);
    }

    #[tokio::test]
    async fn a_closed_follow_up_is_not_done_again() {
        let f = detector();
        let row = running(&f, "done", 1, NOW + 600_000);
        let attempt = row.running_attempt().unwrap();
        f.table
            .transition(&Transition::of_running(
                &attempt,
                Change::Succeed { result_ref: "r".into() },
                NOW - 1,
            ))
            .await
            .unwrap();

        let first = f.handle(schedule()).await.unwrap();
        let second = f.handle(schedule()).await.unwrap();

        assert_eq!((first.closed, second.closed), (1, 0));
        assert!(f.table.row(&row.batch_id).unwrap().closed_at.is_some());
        assert_eq!(f.agent.stopped().len(), 1);
    }

    #[tokio::test]
    async fn a_manual_run_is_accepted_and_anything_else_is_a_validation_error() {
        let f = detector();
        assert!(
            f.handle(LambdaEvent::new(serde_json::json!({}), Default::default()))
                .await
                .is_ok()
        );
        let error = f
            .handle(LambdaEvent::new(serde_json::json!({"count": 1}), Default::default()))
            .await
            .unwrap_err();
        assert!(matches!(error, DetectorError::Validation(_)) && !error.is_retryable());
    }
}
