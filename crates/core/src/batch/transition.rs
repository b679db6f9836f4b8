//! The transitions of a tracking row: what each writer expects to find, and what it changes.
//! [`Transition::apply`] is the specification; the DynamoDB adapter expresses the same check and
//! change as one conditional UpdateItem.

use super::{BatchId, BatchRow, BatchStatus, RunningAttempt, bounded_error, new_write_id};
use crate::session::SessionId;

/// How long the writer of a FAILED row has to send its notice and close the row before the
/// detector does it instead. Longer than any writer's notice retries, so the two rarely both
/// send; short enough that a notice lost with its writer is sent within a detector run or two.
pub const FOLLOW_UP_GRACE_MS: u64 = 60_000;

/// What a status the row is expected to be in looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub status: BatchStatus,
    pub attempt: u32,
    pub session_id: Option<SessionId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// PENDING(n) -> RUNNING(n) on a new session.
    Start { session_id: SessionId, deadline: u64 },
    /// RUNNING(n, S) or PENDING(n) -> PENDING(n + 1), waiting for a session until `start_by`.
    /// Every hand-over, whatever its cause, takes the next attempt number.
    Retry { reason: String, start_by: u64 },
    /// RUNNING(n, S) or PENDING(n) -> FAILED; its follow-up is due [`FOLLOW_UP_GRACE_MS`] later.
    Fail { reason: String },
    /// RUNNING(n, S) -> SUCCEEDED; its follow-up (stopping S) is due at once.
    Succeed { result_ref: String },
    /// RUNNING(n, S) stays RUNNING with its deadline moved to now: the agent gave up, so the
    /// detector settles the attempt on its next run by the usual rule.
    Expire { reason: String },
    /// SUCCEEDED or FAILED, follow-up done: the session was stopped and, for FAILED, the notice
    /// sent (`notified`). The row leaves the detector's index.
    Close { notified: bool },
}

/// One conditional write: applies only if the row is exactly as `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub batch_id: BatchId,
    pub expected: Expected,
    pub change: Change,
    pub at: u64,
    /// Stamped on the row by this write alone: see [`super::write`].
    pub write_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {batch_id} is {found_status} attempt {found_attempt}, not as the write expected")]
pub struct Refused {
    pub batch_id: BatchId,
    pub found_status: BatchStatus,
    pub found_attempt: u32,
}

impl Transition {
    fn new(batch_id: BatchId, expected: Expected, change: Change, at: u64) -> Self {
        Self {
            batch_id,
            expected,
            change,
            at,
            write_id: new_write_id(),
        }
    }

    pub fn start(batch_id: BatchId, attempt: u32, session_id: SessionId, at: u64, deadline: u64) -> Self {
        let expected = Expected {
            status: BatchStatus::Pending,
            attempt,
            session_id: None,
        };
        Self::new(batch_id, expected, Change::Start { session_id, deadline }, at)
    }

    /// A change of the attempt in flight; `change` must not be [`Change::Start`].
    pub fn of_running(attempt: &RunningAttempt, change: Change, at: u64) -> Self {
        let expected = Expected {
            status: BatchStatus::Running,
            attempt: attempt.attempt,
            session_id: Some(attempt.session_id.clone()),
        };
        Self::new(attempt.batch_id.clone(), expected, change, at)
    }

    /// A change of `row` exactly as it was read.
    pub fn of_row(row: &BatchRow, change: Change, at: u64) -> Self {
        Self::new(row.batch_id.clone(), row.expected(), change, at)
    }

    /// The status the row has after this transition.
    pub fn target_status(&self) -> BatchStatus {
        match self.change {
            Change::Start { .. } | Change::Expire { .. } => BatchStatus::Running,
            Change::Retry { .. } => BatchStatus::Pending,
            Change::Fail { .. } => BatchStatus::Failed,
            Change::Succeed { .. } => BatchStatus::Succeeded,
            Change::Close { .. } => self.expected.status,
        }
    }

    /// When the row is next due for the detector after this transition, if it stays in the
    /// index at all (a closed row leaves it).
    pub fn due_at(&self) -> Option<u64> {
        match &self.change {
            Change::Start { deadline, .. } => Some(*deadline),
            Change::Retry { start_by, .. } => Some(*start_by),
            Change::Fail { .. } => Some(self.at + FOLLOW_UP_GRACE_MS),
            Change::Succeed { .. } | Change::Expire { .. } => Some(self.at),
            Change::Close { .. } => None,
        }
    }

    /// The `lastError` this transition writes, bounded.
    pub fn error_text(&self) -> Option<String> {
        match &self.change {
            Change::Retry { reason, .. } | Change::Fail { reason } | Change::Expire { reason } => {
                Some(bounded_error(reason))
            }
            _ => None,
        }
    }

    pub fn matches(&self, row: &BatchRow) -> bool {
        row.batch_id == self.batch_id
            && row.status == self.expected.status
            && row.attempt == self.expected.attempt
            && row.session_id == self.expected.session_id
    }

    /// The specification of every transition, applied to an in-memory row.
    pub fn apply(&self, row: &BatchRow) -> Result<BatchRow, Refused> {
        if !self.matches(row) {
            return Err(Refused {
                batch_id: row.batch_id.clone(),
                found_status: row.status,
                found_attempt: row.attempt,
            });
        }
        let mut next = row.clone();
        next.status = self.target_status();
        next.updated_at = self.at;
        next.write_id = Some(self.write_id.clone());
        if let Some(error) = self.error_text() {
            next.last_error = Some(error);
        }
        if let Some(due) = self.due_at() {
            next.deadline = Some(due);
        }
        match &self.change {
            Change::Start { session_id, .. } => {
                next.session_id = Some(session_id.clone());
                next.started_at = Some(self.at);
            }
            Change::Retry { .. } => {
                next.attempt += 1;
                next.session_id = None;
            }
            Change::Succeed { result_ref } => next.result_ref = Some(result_ref.clone()),
            Change::Close { notified } => {
                next.closed_at = Some(self.at);
                if *notified && next.notified_at.is_none() {
                    next.notified_at = Some(self.at);
                }
            }
            Change::Fail { .. } | Change::Expire { .. } => {}
        }
        Ok(next)
    }
}
