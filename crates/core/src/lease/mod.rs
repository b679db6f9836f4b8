//! Leases: sessions that belong to someone (docs/architecture.md, "Leases").
//!
//! With a lease table, a handout is recorded: who holds the session (a user, or nobody when
//! the caller named none), since when, and until when it can be alive. That buys four things
//! a bare claim cannot give:
//! - idempotent claims: a correlation ID names one handout for [`LeaseSettings::correlation_window`];
//! - affinity: a user's next call gets the session they hold while it is alive (`"source":
//!   "reused"`), one lease per user, one user per session;
//! - release: the holder ends the lease and the session is stopped at once;
//! - an audit trail: every handout, reuse, release and expiry, per user and per session.
//!
//! Every change is one all-or-nothing write of [`LeaseOp`]s, each conditioned on the item being
//! what the writer read (its `writeId`), so races are decided by the table, and a writer whose
//! write landed but lost its answer recognises its own `writeId` on the next read.
//!
//! [`handout`] is get-session's side (claim, reuse, release); [`sweep`] is replenish's (leases
//! whose session can no longer be alive, or whose holder abandoned them).

pub mod handout;
pub mod ports;
pub mod sweep;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
#[cfg(test)]
mod tests;

use crate::clock::millis;
use crate::pool::Lifecycle;
use crate::pool::claim::{ClaimedSession, Source};
use crate::session::SessionId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Longest user or correlation ID, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an ID from a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1..={MAX_ID_LEN} printable ASCII characters without spaces")]
pub struct InvalidId {
    pub field: &'static str,
}

fn checked(field: &'static str, raw: String) -> Result<String, InvalidId> {
    let printable = raw.chars().all(|c| c.is_ascii_graphic());
    if raw.is_empty() || raw.len() > MAX_ID_LEN || !printable {
        return Err(InvalidId { field });
    }
    Ok(raw)
}

/// Who a session is leased to: the application's user, passed to AgentCore as the runtime
/// user ID on every invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidId> {
        checked("userId", raw.into()).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A caller's name for one claim: retries under it get the same session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidId> {
        checked("correlationId", raw.into()).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! id_conversions {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = InvalidId;
            fn try_from(raw: String) -> Result<Self, InvalidId> {
                Self::parse(raw)
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
id_conversions!(UserId, CorrelationId);

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndReason {
    /// Its holder released it; the session was stopped.
    Released,
    /// Its session can no longer be alive (idle timeout or max lifetime passed).
    Expired,
    /// Held past the longest conversation allowed; the session was stopped.
    Abandoned,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub at: u64,
    pub reason: EndReason,
}

/// One lease: a handed-out session and its holder. Stored twice: under the session
/// (`session#<id>`: who it was handed to, which is what a release checks) and, for a user,
/// under the user (`user#<id>`: the user's current lease, whose `last_use_at` reuses refresh).
/// An anonymous lease's live state is its session item; a user's is the user item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub session_id: SessionId,
    pub user_id: Option<UserId>,
    /// How the session was first handed out: from the pool or fresh.
    pub source: Source,
    pub created_at: u64,
    pub last_ping_at: Option<u64>,
    pub bound_at: u64,
    pub last_use_at: u64,
    pub ended: Option<Ending>,
    /// Ended, and its StopRuntimeSession not yet known to have gone through: the sweep retries.
    pub stop_pending: bool,
    /// When the sweep should look at it next; `None` once nothing is left to do.
    pub due_at: Option<u64>,
    /// This write's ID: the next writer conditions on it.
    pub write_id: String,
}

impl Lease {
    /// The handout answer this lease gives its holder.
    pub fn answer(&self, source: Source) -> ClaimedSession {
        ClaimedSession {
            session_id: self.session_id.clone(),
            source,
            created_at: self.created_at,
            last_ping_at: self.last_ping_at,
            user_id: self.user_id.clone(),
        }
    }
}

/// How long a correlation ID names one handout, and how long leases and their audit stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub lifecycle: Lifecycle,
    /// `LEASE_CORRELATION_WINDOW_SECS` (300).
    pub correlation_window: Duration,
    /// `LEASE_MAX_CONVERSATION_SECS` (3600): a lease held longer since it was bound is taken
    /// as abandoned: ended and its session stopped.
    pub max_conversation: Duration,
    /// `LEASE_AUDIT_RETENTION_DAYS` (90): audit records expire (DynamoDB TTL) after this.
    pub audit_retention: Duration,
}

/// How long after a failed stop the sweep tries again.
pub const STOP_RETRY_AFTER: Duration = Duration::from_secs(60);

impl LeaseSettings {
    /// Until when the lease's session is safely alive: the idle timeout from its last use and
    /// its max lifetime, each less the safety margin.
    pub fn alive_until(&self, lease: &Lease) -> u64 {
        let l = self.lifecycle;
        let idle_end = lease.last_use_at + millis(l.idle_timeout.saturating_sub(l.safety_margin));
        let life_end = lease.created_at + millis(l.max_lifetime.saturating_sub(l.safety_margin));
        idle_end.min(life_end)
    }

    /// A lease is live while it has not ended and its session is alive.
    pub fn is_live(&self, lease: &Lease, now_ms: u64) -> bool {
        lease.ended.is_none() && now_ms < self.alive_until(lease)
    }

    /// When the sweep is due: when the session can no longer be alive or the conversation
    /// has run too long, whichever comes first; for an ended lease, only while a stop is owed.
    pub fn due_at(&self, lease: &Lease) -> Option<u64> {
        match lease.ended {
            None => Some(
                self.alive_until(lease)
                    .min(lease.bound_at + millis(self.max_conversation)),
            ),
            Some(ending) if lease.stop_pending => Some(ending.at + millis(STOP_RETRY_AFTER)),
            Some(_) => None,
        }
    }

    /// `lease` with its due time recomputed and a fresh write ID.
    pub fn rewritten(&self, mut lease: Lease) -> Lease {
        lease.due_at = self.due_at(&lease);
        lease.write_id = crate::batch::new_write_id();
        lease
    }
}

/// A correlation ID's handout: the answer every call under it gets within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    pub id: CorrelationId,
    pub answer: ClaimedSession,
    /// When it was written: it may replace a stored one whose window ended by then.
    pub at: u64,
    pub until: u64,
    pub write_id: String,
}

/// What an audit record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditEvent {
    Handout,
    Reuse,
    Release,
    Expire,
    Abandon,
}

impl AuditEvent {
    pub fn label(self) -> &'static str {
        match self {
            Self::Handout => "handout",
            Self::Reuse => "reuse",
            Self::Release => "release",
            Self::Expire => "expire",
            Self::Abandon => "abandon",
        }
    }
}

/// One audit record. The session appears only as its keyed hash (`SessionId::log_id`), as in
/// the logs: the trail can be read by people who must not be able to invoke the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at: u64,
    pub event: AuditEvent,
    pub source: Source,
    pub user_id: Option<UserId>,
    pub correlation_id: Option<CorrelationId>,
    /// 16 hex digits: the session's keyed hash.
    pub session: String,
    /// Unique per record (the write's ID).
    pub id: String,
    /// Epoch seconds after which DynamoDB's TTL deletes the record.
    pub expires_at: u64,
}

/// What a lease item must be for a write over it to go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No item: a session is handed out once; a user's first lease.
    Absent,
    /// The item this writer read (its `writeId`).
    Write(String),
    /// Any state of the live lease of this session: concurrent reuses of one lease all go
    /// through, while a lease that ended or moved to another session refuses them.
    LiveFor(SessionId),
}

/// One item of an all-or-nothing lease write, with the condition it is written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOp {
    /// The session's item (who it was handed to).
    Session { lease: Lease, expect: Expect },
    /// The user's current lease.
    User { lease: Lease, expect: Expect },
    /// A correlation ID's handout: only where none exists or the stored one's window ended
    /// by the new one's `at`.
    Correlate(Correlation),
    /// Never overwrites.
    Audit(AuditRecord),
}

/// What one consistent read found for the IDs a request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The user's current lease (ended or not).
    pub user: Option<Lease>,
    pub correlation: Option<Correlation>,
    pub session: Option<Lease>,
}

/// Which lease item the sweep found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseItem {
    User,
    Session,
}

pub const LEASE_TABLE_NAME: &str = "LEASE_TABLE_NAME";
pub const CORRELATION_WINDOW: &str = "LEASE_CORRELATION_WINDOW_SECS";
pub const MAX_CONVERSATION: &str = "LEASE_MAX_CONVERSATION_SECS";
pub const AUDIT_RETENTION_DAYS: &str = "LEASE_AUDIT_RETENTION_DAYS";

fn check_positive(key: &'static str, value: Duration) -> Result<(), crate::error::ConfigError> {
    if value.is_zero() {
        return Err(crate::error::ConfigError::Invalid {
            key,
            value: "0".into(),
            reason: "must be at least one second".into(),
        });
    }
    Ok(())
}

/// Where leases are kept and how long, when `LEASE_TABLE_NAME` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub table_name: String,
    pub settings: LeaseSettings,
}

impl LeaseConfig {
    /// `None` when `LEASE_TABLE_NAME` is unset or empty: leases are off.
    pub fn from_env(env: &crate::config::Env, lifecycle: Lifecycle) -> Result<Option<Self>, crate::error::ConfigError> {
        let Some(table_name) = env.optional(LEASE_TABLE_NAME).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let days = env.positive_or(AUDIT_RETENTION_DAYS, crate::config::at_least_one(90))?;
        // The correlation window is get-session's alone: it reads it with
        // [`Self::with_correlation_window_from`].
        let settings = LeaseSettings {
            lifecycle,
            correlation_window: Duration::from_secs(300),
            max_conversation: env.secs_or(MAX_CONVERSATION, 3600)?,
            audit_retention: Duration::from_secs(u64::from(days.get()) * 86_400),
        };
        check_positive(MAX_CONVERSATION, settings.max_conversation)?;
        Ok(Some(Self { table_name, settings }))
    }

    /// `LEASE_CORRELATION_WINDOW_SECS` (300), which only get-session reads.
    pub fn with_correlation_window_from(mut self, env: &crate::config::Env) -> Result<Self, crate::error::ConfigError> {
        self.settings.correlation_window = env.secs_or(CORRELATION_WINDOW, 300)?;
        check_positive(CORRELATION_WINDOW, self.settings.correlation_window)?;
        Ok(self)
    }

    /// How long lease items stay after their session was created: its max lifetime, then the
    /// audit retention.
    pub fn keep(&self) -> Duration {
        self.settings.lifecycle.max_lifetime + self.settings.audit_retention
    }
}
