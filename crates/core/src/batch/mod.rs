//! Document batches: the tracking row, its state machine and the rules every writer follows
//! (DESIGN.md sections 3 and 4, invariants 5 and 6).
//!
//! ```text
//!             create (new batch, attempt 1)
//!   (absent) ------------------------------> RUNNING(n, S) --succeed--> SUCCEEDED
//!                                             |  ^      |  \
//!                            release (invoke  |  |start |   \--fail (n = max)--> FAILED
//!                            failed, same n)  v  |      |
//!                                          PENDING(n) <-+--retry (n < max): PENDING(n+1)
//! ```
//!
//! - PENDING(n): accepted, waiting for attempt n; only a request carrying exactly attempt n
//!   starts it.
//! - RUNNING(n, S): attempt n runs on session S, until `deadline`. Only RUNNING rows carry
//!   `runningShard`, so the sparse index the detector queries holds nothing else.
//! - Every transition is a conditional write on the expected status, attempt and session
//!   ([`Transition`]); whoever loses a race sees `ConditionFailed` and backs off. That is what
//!   makes "exactly one outcome per attempt" hold between the agent, the invoker and any number
//!   of overlapping detector runs.

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod message;
pub mod notification;
pub mod ports;
pub mod retry;
pub mod settings;

use crate::session::SessionId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every batch's documents live under `incoming/<batchId>/`, next to its manifest.
pub const INCOMING_PREFIX: &str = "incoming/";
pub const MANIFEST_NAME: &str = "manifest.json";

const MAX_BATCH_ID_LEN: usize = 128;

/// A batch's ID: 1..=128 of `[A-Za-z0-9._-]`, starting with a letter or digit.
///
/// It is a path segment of S3 keys and the tracking table's key, so it excludes `/`, and
/// starting alphanumeric rules out `.` and `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BatchId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "batch id {0:?} must be 1..=128 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
)]
pub struct InvalidBatchId(pub String);

impl BatchId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidBatchId> {
        let raw = raw.into();
        let starts_well = raw.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        let charset = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !starts_well || !charset || raw.len() > MAX_BATCH_ID_LEN {
            return Err(InvalidBatchId(raw));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `incoming/<batchId>/`: the only prefix this batch's documents may come from.
    pub fn incoming_prefix(&self) -> String {
        format!("{INCOMING_PREFIX}{}/", self.0)
    }

    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_NAME}", self.incoming_prefix())
    }
}

impl TryFrom<String> for BatchId {
    type Error = InvalidBatchId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<BatchId> for String {
    fn from(id: BatchId) -> Self {
        id.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An S3 object, written `s3://bucket/key` in every message and row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an s3://<bucket>/<key> location")]
pub struct InvalidObjectRef(pub String);

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidObjectRef> {
        let invalid = || InvalidObjectRef(raw.to_string());
        let rest = raw.strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(invalid)?;
        // S3's own limits: bucket names 3..=63 of [a-z0-9.-], keys 1..=1024 bytes.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok || key.is_empty() || key.len() > 1024 {
            return Err(invalid());
        }
        Ok(Self::new(bucket, key))
    }
}

impl TryFrom<String> for ObjectRef {
    type Error = InvalidObjectRef;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ObjectRef> for String {
    fn from(object: ObjectRef) -> Self {
        object.to_string()
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tracking row (times in epoch milliseconds). The storage-only attributes
/// (`runningShard`, `expiresAt`) are derived by the table adapter, not kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRow {
    pub batch_id: BatchId,
    pub status: BatchStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    /// The session of the current (RUNNING) or last finished attempt; never set while PENDING.
    pub session_id: Option<SessionId>,
    pub documents: Vec<ObjectRef>,
    /// When the batch was accepted: the start of "deadline x maxAttempts" (invariant 6).
    pub accepted_at: u64,
    pub started_at: Option<u64>,
    pub deadline: Option<u64>,
    pub updated_at: u64,
    pub last_error: Option<String>,
    pub result_ref: Option<String>,
}

impl BatchRow {
    /// A new batch whose first attempt starts now on `session_id`.
    pub fn new_running(
        batch_id: BatchId,
        documents: Vec<ObjectRef>,
        max_attempts: u32,
        session_id: SessionId,
        now_ms: u64,
        deadline: u64,
    ) -> Self {
        Self {
            batch_id,
            status: BatchStatus::Running,
            attempt: 1,
            max_attempts,
            session_id: Some(session_id),
            documents,
            accepted_at: now_ms,
            started_at: Some(now_ms),
            deadline: Some(deadline),
            updated_at: now_ms,
            last_error: None,
            result_ref: None,
        }
    }

    /// The attempt in flight, if the row is RUNNING.
    pub fn running_attempt(&self) -> Option<RunningAttempt> {
        match (&self.status, &self.session_id) {
            (BatchStatus::Running, Some(session_id)) => Some(RunningAttempt {
                batch_id: self.batch_id.clone(),
                attempt: self.attempt,
                session_id: session_id.clone(),
            }),
            _ => None,
        }
    }

    /// What follows a failed attempt: another one, or the end.
    pub fn after_failed_attempt(&self) -> AfterFailure {
        if self.attempt < self.max_attempts {
            AfterFailure::Retry {
                next_attempt: self.attempt + 1,
            }
        } else {
            AfterFailure::Exhausted
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    Retry { next_attempt: u32 },
    Exhausted,
}

/// What a request for attempt `n` of a batch may do, given the row as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No row yet and attempt 1: a new batch.
    StartNew,
    /// The row waits for exactly this attempt.
    StartPending,
    /// Already running, finished, or past this attempt: acknowledge, never a second run.
    Duplicate { status: BatchStatus, attempt: u32 },
    /// The row has not reached this attempt yet: a retry message that overtook the detector's
    /// write. Retried later, not dropped.
    Early { status: BatchStatus, attempt: u32 },
    /// A retry of a batch that was never accepted.
    Unknown,
}

/// The admission rule (invariant 6: a duplicate never starts a second run).
pub fn admit(row: Option<&BatchRow>, attempt: u32) -> Admission {
    let Some(row) = row else {
        return if attempt == 1 {
            Admission::StartNew
        } else {
            Admission::Unknown
        };
    };
    let seen = (row.status, row.attempt);
    let duplicate = Admission::Duplicate {
        status: row.status,
        attempt: row.attempt,
    };
    match seen {
        (status, _) if status.is_terminal() => duplicate,
        (_, current) if current > attempt => duplicate,
        (BatchStatus::Pending, current) if current == attempt => Admission::StartPending,
        (_, current) if current == attempt => duplicate,
        (status, current) => Admission::Early {
            status,
            attempt: current,
        },
    }
}

/// An attempt in flight, as the agent (payload + session header) and the detector (row) know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunningAttempt {
    pub batch_id: BatchId,
    pub attempt: u32,
    pub session_id: SessionId,
}

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
    /// RUNNING(n, S) -> PENDING(n): the invocation failed, so the attempt never started.
    Release { reason: String },
    /// RUNNING(n, S) -> PENDING(n + 1).
    Retry { reason: String },
    /// RUNNING(n, S) -> FAILED.
    Fail { reason: String },
    /// RUNNING(n, S) -> SUCCEEDED.
    Succeed { result_ref: String },
    /// RUNNING(n, S) stays RUNNING with its deadline moved to now: the agent gave up, so the
    /// detector settles the attempt on its next run by the usual rule.
    Expire { reason: String },
}

/// One conditional write: applies only if the row is exactly as `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub batch_id: BatchId,
    pub expected: Expected,
    pub change: Change,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch {batch_id} is {found_status} attempt {found_attempt}, not as the write expected")]
pub struct Refused {
    pub batch_id: BatchId,
    pub found_status: BatchStatus,
    pub found_attempt: u32,
}

impl Transition {
    pub fn start(batch_id: BatchId, attempt: u32, session_id: SessionId, at: u64, deadline: u64) -> Self {
        Self {
            batch_id,
            expected: Expected {
                status: BatchStatus::Pending,
                attempt,
                session_id: None,
            },
            change: Change::Start { session_id, deadline },
            at,
        }
    }

    /// A change of the attempt in flight; `change` must not be [`Change::Start`].
    pub fn of_running(attempt: &RunningAttempt, change: Change, at: u64) -> Self {
        Self {
            batch_id: attempt.batch_id.clone(),
            expected: Expected {
                status: BatchStatus::Running,
                attempt: attempt.attempt,
                session_id: Some(attempt.session_id.clone()),
            },
            change,
            at,
        }
    }

    /// The status the row has after this transition.
    pub fn target_status(&self) -> BatchStatus {
        match self.change {
            Change::Start { .. } | Change::Expire { .. } => BatchStatus::Running,
            Change::Release { .. } | Change::Retry { .. } => BatchStatus::Pending,
            Change::Fail { .. } => BatchStatus::Failed,
            Change::Succeed { .. } => BatchStatus::Succeeded,
        }
    }

    /// The specification of every transition, applied to an in-memory row. The DynamoDB
    /// adapter expresses the same check and change as one conditional UpdateItem.
    pub fn apply(&self, row: &BatchRow) -> Result<BatchRow, Refused> {
        let matches = row.batch_id == self.batch_id
            && row.status == self.expected.status
            && row.attempt == self.expected.attempt
            && row.session_id == self.expected.session_id;
        if !matches {
            return Err(Refused {
                batch_id: row.batch_id.clone(),
                found_status: row.status,
                found_attempt: row.attempt,
            });
        }
        let mut next = row.clone();
        next.status = self.target_status();
        next.updated_at = self.at;
        match &self.change {
            Change::Start { session_id, deadline } => {
                next.session_id = Some(session_id.clone());
                next.started_at = Some(self.at);
                next.deadline = Some(*deadline);
            }
            Change::Release { reason } | Change::Retry { reason } => {
                if matches!(self.change, Change::Retry { .. }) {
                    next.attempt += 1;
                }
                next.session_id = None;
                next.deadline = None;
                next.last_error = Some(reason.clone());
            }
            Change::Fail { reason } => next.last_error = Some(reason.clone()),
            Change::Succeed { result_ref } => next.result_ref = Some(result_ref.clone()),
            Change::Expire { reason } => {
                next.deadline = Some(self.at);
                next.last_error = Some(reason.clone());
            }
        }
        Ok(next)
    }
}

/// The `lastError` an agent writes when it gives its own attempt up ([`Change::Expire`]), so
/// the detector can keep the agent's reason instead of "deadline passed".
pub fn agent_gave_up(attempt: u32, why: &str) -> String {
    format!("agent gave up attempt {attempt}: {why}")
}

/// The GSI partition of a RUNNING row. Spreading RUNNING rows over a few partition keys keeps
/// one hot key from limiting how many batches can start per second; the detector queries
/// every shard. FNV-1a, because the value is stored and must not change between builds.
pub fn running_shard(batch_id: &BatchId, shards: u32) -> u32 {
    let hash = batch_id
        .as_str()
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> BatchId {
        BatchId::parse(raw).unwrap()
    }

    fn row(status: BatchStatus, attempt: u32) -> BatchRow {
        let mut row = BatchRow::new_running(
            id("case-1"),
            vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
            3,
            SessionId::generate(),
            1_000,
            61_000,
        );
        row.status = status;
        row.attempt = attempt;
        if status == BatchStatus::Pending {
            row.session_id = None;
        }
        row
    }

    #[test]
    fn batch_ids_are_single_safe_path_segments() {
        for ok in ["case-4711", "a", "2026.01_claims-B", &"x".repeat(128)] {
            assert!(BatchId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(129), "-x"] {
            assert!(BatchId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(id("c1").manifest_key(), "incoming/c1/manifest.json");
    }

    #[test]
    fn object_refs_round_trip_as_s3_uris_and_refuse_anything_else() {
        let object = ObjectRef::parse("s3://my-docs/incoming/c1/a b.txt").unwrap();
        assert_eq!(
            (object.bucket.as_str(), object.key.as_str()),
            ("my-docs", "incoming/c1/a b.txt")
        );
        assert_eq!(object.to_string(), "s3://my-docs/incoming/c1/a b.txt");
        for bad in [
            "my-docs/a",
            "s3://my-docs",
            "s3://my-docs/",
            "s3://My_Docs/a",
            "https://x/y",
            "s3://ab/k",
        ] {
            assert!(ObjectRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_first_request_for_an_unknown_batch_starts_it_and_a_later_attempt_is_unknown() {
        assert_eq!(admit(None, 1), Admission::StartNew);
        assert_eq!(admit(None, 2), Admission::Unknown);
    }

    #[test]
    fn a_duplicate_of_a_running_or_finished_batch_is_acknowledged_without_a_second_run() {
        for status in [BatchStatus::Running, BatchStatus::Succeeded, BatchStatus::Failed] {
            assert!(matches!(admit(Some(&row(status, 1)), 1), Admission::Duplicate { .. }));
        }
    }

    #[test]
    fn a_retry_starts_only_if_the_row_waits_for_exactly_that_attempt() {
        assert_eq!(admit(Some(&row(BatchStatus::Pending, 2)), 2), Admission::StartPending);
        assert!(matches!(
            admit(Some(&row(BatchStatus::Pending, 3)), 2),
            Admission::Duplicate { .. }
        ));
        assert!(matches!(
            admit(Some(&row(BatchStatus::Running, 3)), 2),
            Admission::Duplicate { .. }
        ));
        assert!(matches!(
            admit(Some(&row(BatchStatus::Pending, 2)), 3),
            Admission::Early { .. }
        ));
        assert!(matches!(
            admit(Some(&row(BatchStatus::Running, 1)), 2),
            Admission::Early { .. }
        ));
        assert!(matches!(
            admit(Some(&row(BatchStatus::Succeeded, 1)), 2),
            Admission::Duplicate { .. }
        ));
    }

    #[test]
    fn a_transition_applies_only_to_the_expected_status_attempt_and_session() {
        let running = row(BatchStatus::Running, 1);
        let attempt = running.running_attempt().unwrap();
        let succeed = Transition::of_running(
            &attempt,
            Change::Succeed {
                result_ref: "s3://r/x".into(),
            },
            9,
        );
        let done = succeed.apply(&running).unwrap();
        assert_eq!(
            (done.status, done.result_ref.as_deref()),
            (BatchStatus::Succeeded, Some("s3://r/x"))
        );
        assert!(succeed.apply(&done).is_err(), "a second outcome for the same attempt");

        let other_session = RunningAttempt {
            session_id: SessionId::generate(),
            ..attempt.clone()
        };
        let foreign = Transition::of_running(&other_session, Change::Succeed { result_ref: "x".into() }, 9);
        assert!(foreign.apply(&running).is_err(), "another session's write");
    }

    #[test]
    fn retry_moves_to_the_next_attempt_and_clears_the_session_so_only_a_start_follows() {
        let running = row(BatchStatus::Running, 1);
        let attempt = running.running_attempt().unwrap();
        let retried = Transition::of_running(&attempt, Change::Retry { reason: "late".into() }, 70_000)
            .apply(&running)
            .unwrap();
        assert_eq!((retried.status, retried.attempt), (BatchStatus::Pending, 2));
        assert_eq!((retried.session_id.as_ref(), retried.deadline), (None, None));
        assert_eq!(admit(Some(&retried), 2), Admission::StartPending);

        let next = SessionId::generate();
        let started = Transition::start(id("case-1"), 2, next.clone(), 71_000, 131_000)
            .apply(&retried)
            .unwrap();
        assert_eq!((started.status, started.session_id), (BatchStatus::Running, Some(next)));
        assert_eq!(started.deadline, Some(131_000));
    }

    #[test]
    fn release_keeps_the_attempt_so_the_redelivered_request_starts_it_again() {
        let running = row(BatchStatus::Running, 2);
        let attempt = running.running_attempt().unwrap();
        let released = Transition::of_running(
            &attempt,
            Change::Release {
                reason: "invoke failed".into(),
            },
            5,
        )
        .apply(&running)
        .unwrap();
        assert_eq!((released.status, released.attempt), (BatchStatus::Pending, 2));
        assert_eq!(admit(Some(&released), 2), Admission::StartPending);
    }

    #[test]
    fn an_expired_attempt_stays_running_with_its_deadline_now() {
        let running = row(BatchStatus::Running, 1);
        let attempt = running.running_attempt().unwrap();
        let expired = Transition::of_running(
            &attempt,
            Change::Expire {
                reason: "S3 refused".into(),
            },
            5_000,
        )
        .apply(&running)
        .unwrap();
        assert_eq!((expired.status, expired.deadline), (BatchStatus::Running, Some(5_000)));
    }

    #[test]
    fn the_last_allowed_attempt_is_exhausted_after_failing() {
        assert_eq!(
            row(BatchStatus::Running, 2).after_failed_attempt(),
            AfterFailure::Retry { next_attempt: 3 }
        );
        assert_eq!(
            row(BatchStatus::Running, 3).after_failed_attempt(),
            AfterFailure::Exhausted
        );
    }

    #[test]
    fn running_shards_are_stable_and_within_range() {
        assert_eq!(running_shard(&id("case-1"), 8), running_shard(&id("case-1"), 8));
        let shards: std::collections::HashSet<u32> =
            (0..200).map(|n| running_shard(&id(&format!("b-{n}")), 8)).collect();
        assert!(shards.iter().all(|s| *s < 8));
        assert_eq!(shards.len(), 8, "200 ids should reach every shard");
        assert_eq!(running_shard(&id("x"), 0), 0);
    }
}
