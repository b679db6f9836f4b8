//! stale-batch-detector: on a schedule, finds RUNNING attempts past their deadline (the sparse
//! index, never a scan) and fails each one: attempt n + 1 on a new session, or FAILED and the
//! failure queue after the last attempt. The session of a failed attempt is stopped.
//!
//! Safe to run twice at once and against an agent finishing in the same instant: each attempt
//! is settled by one conditional write ([`Retrier::fail_attempt`]); the losers change nothing.

mod config;

pub use config::Config;

use futures::StreamExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};
use warmpool_core::batch::ports::{MessageSink, TrackingTable};
use warmpool_core::batch::retry::{Retrier, Settlement};
use warmpool_core::batch::{BatchId, BatchRow, agent_gave_up};
use warmpool_core::clock::Clock;
use warmpool_core::error::TableError;
use warmpool_core::metrics::MetricSet;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::schedule::is_scheduled_event;

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

/// One attempt this run settled, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub batch_id: BatchId,
    pub attempt: u32,
    /// `retried`, `failed` or `alreadySettled`.
    pub outcome: &'static str,
}

/// What a run did: returned to synchronous callers, logged and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub overdue: usize,
    pub retried: usize,
    pub failed: usize,
    pub already_settled: usize,
    /// Attempts whose settling failed (enqueue or table errors); the next run tries again.
    pub errors: usize,
    /// Overdue attempts left for the next run because this one ran out of time.
    pub deferred: usize,
    pub settled: Vec<Settled>,
}

pub struct Detector<T, Q, A, C> {
    pub config: Config,
    pub table: T,
    pub batch_queue: Q,
    pub failure_queue: Q,
    pub agent: A,
    pub clock: C,
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
fn reason(row: &BatchRow, now_ms: u64) -> String {
    match &row.last_error {
        Some(error) if error.starts_with(&agent_gave_up(row.attempt, "")) => error.clone(),
        _ => format!(
            "attempt {} on session {} passed its deadline {} ms ago",
            row.attempt,
            row.session_id.as_ref().map_or("-", |s| s.as_str()),
            now_ms.saturating_sub(row.deadline.unwrap_or(now_ms))
        ),
    }
}

impl<T: TrackingTable, Q: MessageSink, A: AgentRuntime, C: Clock> Detector<T, Q, A, C> {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunReport, DetectorError> {
        parse_trigger(&event.payload)?;
        // Settling stops before Lambda's deadline, so the run reports instead of timing out.
        let budget = self
            .config
            .run_budget
            .remaining(event.context.deadline, self.clock.now_ms());
        let run_deadline = Instant::now() + budget;
        let now = self.clock.now_ms();
        let overdue = self
            .table
            .overdue(now, self.config.max_batches_per_run)
            .await
            .map_err(DetectorError::Table)?;
        let retrier = Retrier {
            table: &self.table,
            batch_queue: &self.batch_queue,
            failure_queue: &self.failure_queue,
            agent: &self.agent,
            clock: &self.clock,
            retry_delay: self.config.retry_delay,
        };
        let results: Vec<(BatchRow, Option<Result<Settlement, String>>)> = futures::stream::iter(overdue)
            .map(|row| {
                let retrier = &retrier;
                async move {
                    if Instant::now() >= run_deadline {
                        return (row, None);
                    }
                    let result = retrier
                        .fail_attempt(&row, &reason(&row, now))
                        .await
                        .map_err(|e| e.to_string());
                    (row, Some(result))
                }
            })
            .buffer_unordered(self.config.settle_concurrency)
            .collect()
            .await;

        let mut report = RunReport {
            overdue: results.len(),
            ..RunReport::default()
        };
        for (row, result) in results {
            let outcome = match result {
                None => {
                    report.deferred += 1;
                    continue;
                }
                Some(Err(error)) => {
                    warn!(batch_id = %row.batch_id, attempt = row.attempt, %error, "could not settle an overdue attempt; the next run retries");
                    report.errors += 1;
                    continue;
                }
                Some(Ok(Settlement::Retried { .. })) => {
                    report.retried += 1;
                    "retried"
                }
                Some(Ok(Settlement::Failed { .. })) => {
                    report.failed += 1;
                    "failed"
                }
                Some(Ok(Settlement::AlreadySettled)) => {
                    report.already_settled += 1;
                    "alreadySettled"
                }
            };
            report.settled.push(Settled {
                batch_id: row.batch_id,
                attempt: row.attempt,
                outcome,
            });
        }
        MetricSet::new(FUNCTION)
            .count("BatchesStale", report.overdue as u32)
            .count("BatchesRetried", report.retried as u32)
            .count("BatchesFailed", report.failed as u32)
            .count("StaleAlreadySettled", report.already_settled as u32)
            .count("SettleErrors", report.errors as u32)
            .emit(self.clock.now_ms());
        info!(
            overdue = report.overdue,
            retried = report.retried,
            failed = report.failed,
            already_settled = report.already_settled,
            errors = report.errors,
            deferred = report.deferred,
            "detector run done"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::batch::fakes::{MemorySink, MemoryTable};
    use warmpool_core::batch::{BatchStatus, Change, ObjectRef, Transition};
    use warmpool_core::clock::ManualClock;
    use warmpool_core::config::Env;
    use warmpool_core::fakes::ScriptedAgent;
    use warmpool_core::session::SessionId;

    const NOW: u64 = 1_800_000_000_000;

    type TestDetector = Detector<MemoryTable, MemorySink, ScriptedAgent, ManualClock>;

    fn detector() -> TestDetector {
        Detector {
            config: Config::from_env(&Env::from_pairs(config::tests::REQUIRED)).unwrap(),
            table: MemoryTable::default(),
            batch_queue: MemorySink::default(),
            failure_queue: MemorySink::default(),
            agent: ScriptedAgent::default(),
            clock: ManualClock::at(NOW),
        }
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
