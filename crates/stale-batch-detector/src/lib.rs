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
        MetricSet::new(FUNCTION, &self.config.pool_name)
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
mod tests;
