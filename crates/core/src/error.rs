//! Errors of the core, each knowing whether retrying can help.

use std::error::Error as StdError;

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A deploy-time mistake: surfaces at init, never on an event.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {key} = {value:?} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// The receipt handle is no longer ours (visibility expired, message gone).
    ReceiptInvalid,
    Throttled,
    /// Timeouts, connection failures, 5xx: the outcome of the call is unknown.
    Transport,
    /// Anything else the service refused (bad request, missing queue, access denied).
    Rejected,
}

#[derive(Debug, thiserror::Error)]
#[error("pool queue {operation} failed ({kind:?}): {message}")]
pub struct QueueError {
    pub operation: &'static str,
    pub kind: QueueErrorKind,
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

impl QueueError {
    pub fn new(operation: &'static str, kind: QueueErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, QueueErrorKind::Throttled | QueueErrorKind::Transport)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentErrorKind {
    /// Session-creation rate exceeded (ThrottlingException, 429).
    Throttled,
    /// Active-session cap reached (ServiceQuotaExceededException).
    QuotaExceeded,
    /// AgentCore or the network failed; the session may or may not exist.
    Server,
    /// The agent inside the session failed (RuntimeClientError) or crashed.
    Agent,
    /// ResourceNotFoundException. On StopRuntimeSession: the session has ended already (or
    /// never existed), which is what a stop wants. On InvokeAgentRuntime: the runtime or its
    /// endpoint does not exist (an unknown session ID is not an error there: it cold-starts).
    NotFound,
    /// ValidationException, AccessDeniedException, ...: never retried.
    Rejected,
}

#[derive(Debug, thiserror::Error)]
#[error("agent runtime {operation} failed ({kind:?}): {message}")]
pub struct AgentError {
    pub operation: &'static str,
    pub kind: AgentErrorKind,
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

impl AgentError {
    pub fn new(operation: &'static str, kind: AgentErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            AgentErrorKind::Throttled | AgentErrorKind::QuotaExceeded | AgentErrorKind::Server
        )
    }

    pub fn is_throttle(&self) -> bool {
        matches!(self.kind, AgentErrorKind::Throttled | AgentErrorKind::QuotaExceeded)
    }

    /// Whether a microVM may exist for the session after this failure, so that it should be
    /// stopped rather than left to bill memory until its idle timeout.
    pub fn may_have_created_session(&self) -> bool {
        matches!(self.kind, AgentErrorKind::Server | AgentErrorKind::Agent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionErrorKind {
    /// No control plane configured: nothing to read.
    NotConfigured,
    Throttled,
    /// Timeouts, connection failures, 5xx.
    Transport,
    /// The endpoint answered without a live version (still being created, or failed).
    NoLiveVersion,
    /// Anything else refused (missing endpoint, access denied).
    Rejected,
}

/// Reading the endpoint's live version failed; replenish goes on with the last one it read.
#[derive(Debug, thiserror::Error)]
#[error("agent version read failed ({kind:?}): {message}")]
pub struct VersionError {
    pub kind: VersionErrorKind,
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

impl VersionError {
    pub fn new(kind: VersionErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn not_configured() -> Self {
        Self::new(VersionErrorKind::NotConfigured, "no version source")
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, VersionErrorKind::Throttled | VersionErrorKind::Transport)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("replenish trigger failed: {message}")]
pub struct TriggerError {
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableErrorKind {
    /// The row was not in the state the write expected: another writer got there first.
    /// This is how the tracking table decides races, not a failure of the table.
    ConditionFailed,
    Throttled,
    /// Timeouts, connection failures, 5xx: the outcome of the call is unknown.
    Transport,
    /// A stored row that does not read as a tracking row.
    Corrupt,
    /// Anything else the service refused (missing table, access denied, bad request).
    Rejected,
}

#[derive(Debug, thiserror::Error)]
#[error("tracking table {operation} failed ({kind:?}): {message}")]
pub struct TableError {
    pub operation: &'static str,
    pub kind: TableErrorKind,
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

impl TableError {
    pub fn new(operation: &'static str, kind: TableErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, TableErrorKind::Throttled | TableErrorKind::Transport)
    }

    pub fn is_condition_failed(&self) -> bool {
        self.kind == TableErrorKind::ConditionFailed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    /// The object is larger than the caller allows.
    TooLarge,
    Throttled,
    Transport,
    Rejected,
}

#[derive(Debug, thiserror::Error)]
#[error("document store {operation} of {location} failed ({kind:?}): {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub location: String,
    pub kind: StoreErrorKind,
    pub message: String,
    #[source]
    pub source: Option<BoxError>,
}

impl StoreError {
    pub fn new(
        operation: &'static str,
        location: impl Into<String>,
        kind: StoreErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            location: location.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Throttled | StoreErrorKind::Transport)
    }
}
