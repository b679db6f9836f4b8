//! Document batches: the tracking row, its state machine and the rules every writer follows
//! (docs/architecture.md, "Document batches"; invariants 5, 6 and 8).
//!
//! ```text
//!   (absent) --accept--> PENDING(1) --start on S--> RUNNING(1, S) --succeed--> SUCCEEDED --close-->
//!      |                    |   ^                      |      |
//!      | refuse             |   |  hand over (n < max): |      +--fail (n = max)--> FAILED --close-->
//!      v                    |   +-- PENDING(n + 1) <---+
//!   FAILED                  +-- not started by its start-by time: PENDING(n + 1), or FAILED
//! ```
//!
//! - `attempt` numbers hand-overs: every session a batch is given gets a new number, so one
//!   attempt never runs on two sessions (results and notices are keyed by attempt).
//! - PENDING(n): accepted, waiting for attempt n; `deadline` is its start-by time.
//! - RUNNING(n, S): attempt n runs on session S until `deadline`.
//! - SUCCEEDED / FAILED: settled; until `closedAt` is written the row still owes a follow-up
//!   (stop the session, send the failure notice) due at `deadline`.
//! - Every row that is not closed carries `runningShard`, so the sparse index the detector
//!   queries holds exactly the rows that owe it something, and nothing else.
//! - Every transition is a conditional write on the expected status, attempt and session
//!   ([`Transition`]) and stamps the row with its own `writeId`, so a writer whose write landed
//!   but lost its answer can tell that from a lost race ([`write`]).

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod manifest;
pub mod message;
pub mod notification;
pub mod ports;
pub mod settings;
pub mod settle;
mod transition;
pub mod write;

pub use transition::{Change, Expected, FOLLOW_UP_GRACE_MS, Refused, Transition};

use crate::session::SessionId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every batch's documents live under `incoming/<batchId>/`, next to its manifest.
pub const INCOMING_PREFIX: &str = "incoming/";
pub const MANIFEST_NAME: &str = "manifest.json";

const MAX_BATCH_ID_LEN: usize = 128;
/// S3's limit on a key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest `lastError` a row or a failure notice carries, in bytes.
pub const MAX_ERROR_BYTES: usize = 2048;
const TRUNCATED: &str = " [truncated]";

/// At most `max` bytes of `text`, cut on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error text as every row and notice stores it: at most [`MAX_ERROR_BYTES`], cut on a
/// character boundary and marked when cut. An agent's error or answer is not ours to bound,
/// and an unbounded one would push a row past DynamoDB's item limit.
pub fn bounded_error(text: &str) -> String {
    bounded(text, MAX_ERROR_BYTES)
}

/// `text` if it fits in `max_bytes`; else its start, cut on a character boundary, and a marker
/// that says it was cut, the whole within `max_bytes`.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    format!("{}{TRUNCATED}", clip(text, max_bytes.saturating_sub(TRUNCATED.len())))
}

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
        Self::checked(bucket, key)
    }

    /// An object S3 can actually hold: bucket names 3..=63 of `[a-z0-9.-]`, keys 1..=1024
    /// bytes. Every object a batch names is built here or through [`ObjectRef::parse`], so a
    /// manifest can never name what a stored row could not be read back with.
    pub fn checked(bucket: &str, key: &str) -> Result<Self, InvalidObjectRef> {
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok || key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(InvalidObjectRef(format!("s3://{bucket}/{}", clip(key, 200))));
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

/// A document of a batch as its row pins it: the object, and the version and size S3 reported
/// when the batch was accepted, so every attempt reads the same bytes. Direct requests and
/// rows written before pinning carry `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedDocument {
    pub object: ObjectRef,
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

impl From<ObjectRef> for PinnedDocument {
    fn from(object: ObjectRef) -> Self {
        Self {
            object,
            version_id: None,
            size: None,
        }
    }
}

/// Written as its object's `s3://` URI, as document lists always were.
impl fmt::Display for PinnedDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.object.fmt(f)
    }
}

/// One tracking row (times in epoch milliseconds). The storage-only attributes
/// (`runningShard`, `expiresAt`) are derived by the table adapter, not kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRow {
    pub batch_id: BatchId,
    pub status: BatchStatus,
    /// The hand-over number: each session this batch is given runs its own attempt number.
    pub attempt: u32,
    pub max_attempts: u32,
    /// The session of the current (RUNNING) or last finished attempt; never set while PENDING.
    pub session_id: Option<SessionId>,
    /// The documents, pinned at admission. The agent reads these, never a payload's list.
    pub documents: Vec<PinnedDocument>,
    /// When the batch was accepted: the start of "deadline x maxAttempts" (invariant 6).
    pub accepted_at: u64,
    pub started_at: Option<u64>,
    /// PENDING: start-by time; RUNNING: the attempt's deadline; settled and not closed: when
    /// the follow-up is due.
    pub deadline: Option<u64>,
    pub updated_at: u64,
    pub last_error: Option<String>,
    pub result_ref: Option<String>,
    /// The `writeId` of the last transition that landed on this row.
    pub write_id: Option<String>,
    /// When the failure notice of a FAILED row was sent (and recorded).
    pub notified_at: Option<u64>,
    /// When the follow-up of a settled row was done; the row has left the detector's index.
    pub closed_at: Option<u64>,
}

fn pinned(documents: impl IntoIterator<Item = impl Into<PinnedDocument>>) -> Vec<PinnedDocument> {
    documents.into_iter().map(Into::into).collect()
}

impl BatchRow {
    /// A row as it is first written: status and the fields every row has; the constructors
    /// below fill the rest.
    fn accepted(
        batch_id: BatchId,
        status: BatchStatus,
        documents: Vec<PinnedDocument>,
        max_attempts: u32,
        now_ms: u64,
        deadline: u64,
    ) -> Self {
        Self {
            batch_id,
            status,
            attempt: 1,
            max_attempts,
            session_id: None,
            documents,
            accepted_at: now_ms,
            started_at: None,
            deadline: Some(deadline),
            updated_at: now_ms,
            last_error: None,
            result_ref: None,
            write_id: Some(new_write_id()),
            notified_at: None,
            closed_at: None,
        }
    }

    /// A new batch whose first attempt starts now on `session_id`.
    pub fn new_running(
        batch_id: BatchId,
        documents: impl IntoIterator<Item = impl Into<PinnedDocument>>,
        max_attempts: u32,
        session_id: SessionId,
        now_ms: u64,
        deadline: u64,
    ) -> Self {
        let mut row = Self::accepted(
            batch_id,
            BatchStatus::Running,
            pinned(documents),
            max_attempts,
            now_ms,
            deadline,
        );
        row.session_id = Some(session_id);
        row.started_at = Some(now_ms);
        row
    }

    /// A new batch, accepted and waiting for its first session until `start_by`.
    pub fn new_pending(
        batch_id: BatchId,
        documents: impl IntoIterator<Item = impl Into<PinnedDocument>>,
        max_attempts: u32,
        now_ms: u64,
        start_by: u64,
    ) -> Self {
        Self::accepted(
            batch_id,
            BatchStatus::Pending,
            pinned(documents),
            max_attempts,
            now_ms,
            start_by,
        )
    }

    /// A batch failed at admission (a document is missing, or not as declared): no session
    /// was used. Its notice is owed, as for any FAILED row.
    pub fn refused(
        batch_id: BatchId,
        documents: impl IntoIterator<Item = impl Into<PinnedDocument>>,
        max_attempts: u32,
        now_ms: u64,
        reason: &str,
    ) -> Self {
        let mut row = Self::accepted(
            batch_id,
            BatchStatus::Failed,
            pinned(documents),
            max_attempts,
            now_ms,
            now_ms + FOLLOW_UP_GRACE_MS,
        );
        row.last_error = Some(bounded_error(reason));
        row
    }

    /// The document objects, without their pins (for payloads, requests and notices).
    pub fn objects(&self) -> Vec<ObjectRef> {
        self.documents.iter().map(|d| d.object.clone()).collect()
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

    /// What follows a failed (or never started) attempt: another one, or the end.
    pub fn after_failed_attempt(&self) -> AfterFailure {
        if self.attempt < self.max_attempts {
            AfterFailure::Retry {
                next_attempt: self.attempt + 1,
            }
        } else {
            AfterFailure::Exhausted
        }
    }

    /// Settled, with its follow-up (session stop, failure notice) not yet done.
    pub fn owes_follow_up(&self) -> bool {
        self.status.is_terminal() && self.closed_at.is_none()
    }

    /// The row this writer expects to find when it changes it.
    pub fn expected(&self) -> Expected {
        Expected {
            status: self.status,
            attempt: self.attempt,
            session_id: self.session_id.clone(),
        }
    }
}

/// A fresh `writeId`: unique per write, so a writer recognises its own.
pub fn new_write_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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

/// The `lastError` an agent writes when it gives its own attempt up ([`Change::Expire`]), so
/// the detector can keep the agent's reason instead of "deadline passed".
pub fn agent_gave_up(attempt: u32, why: &str) -> String {
    format!("agent gave up attempt {attempt}: {why}")
}

#[cfg(test)]
mod tests;
