//! Session IDs and the pool message format (DESIGN.md section 3).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The payload that warms a session; agents short-circuit it before doing any work.
pub const WARMUP_PAYLOAD: &[u8] = br#"{"type":"warmup"}"#;

const MIN_LEN: usize = 33;
const MAX_LEN: usize = 256;

/// An AgentCore `runtimeSessionId`: 33..=256 characters of `[A-Za-z0-9_-]`.
///
/// The character set is narrower than what AgentCore accepts on purpose: the ID also becomes
/// the SQS `MessageGroupId` and part of the deduplication ID, which allow fewer characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    #[error("session id must be {MIN_LEN}..={MAX_LEN} characters, got {0}")]
    Length(usize),
    #[error("session id may only contain ASCII letters, digits, '-' and '_'")]
    Charset,
}

impl SessionId {
    /// A fresh random ID (UUIDv4, 36 characters): unguessable, so one caller cannot
    /// address another caller's session by guessing its ID.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let raw = raw.into();
        let len = raw.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(InvalidSessionId::Length(len));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(InvalidSessionId::Charset);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidSessionId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A warm session as it sits in the pool queue:
/// `{"v":1,"sessionId":"...","createdAt":<ms>,"lastPingAt":<ms>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PooledSession {
    v: u8,
    pub session_id: SessionId,
    pub created_at: u64,
    pub last_ping_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MalformedPoolMessage {
    #[error("pool message is not a valid v1 session record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("pool message has unsupported version {0}")]
    Version(u8),
    #[error("pool message has lastPingAt before createdAt")]
    PingBeforeCreation,
}

impl PooledSession {
    pub const VERSION: u8 = 1;

    pub fn new(session_id: SessionId, created_at: u64, last_ping_at: u64) -> Self {
        Self {
            v: Self::VERSION,
            session_id,
            created_at,
            last_ping_at,
        }
    }

    pub fn parse(body: &str) -> Result<Self, MalformedPoolMessage> {
        let session: Self = serde_json::from_str(body)?;
        if session.v != Self::VERSION {
            return Err(MalformedPoolMessage::Version(session.v));
        }
        if session.last_ping_at < session.created_at {
            return Err(MalformedPoolMessage::PingBeforeCreation);
        }
        Ok(session)
    }

    pub fn to_body(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One message group per session: a group with an in-flight message withholds the rest of
    /// that group, so a single pool-wide group would serialize every claim.
    pub fn message_group_id(&self) -> &str {
        self.session_id.as_str()
    }

    /// Fresh on every (re-)enqueue: SQS silently drops a repeated deduplication ID for five
    /// minutes, even after the first message was deleted.
    pub fn deduplication_id(&self) -> String {
        format!("{}:{}", self.session_id, self.last_ping_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_agentcore_session_ids() {
        let id = SessionId::generate();
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(SessionId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn ids_outside_the_agentcore_length_range_are_rejected() {
        assert_eq!(SessionId::parse("a".repeat(32)), Err(InvalidSessionId::Length(32)));
        assert_eq!(SessionId::parse("a".repeat(257)), Err(InvalidSessionId::Length(257)));
        assert!(SessionId::parse("a".repeat(33)).is_ok());
        assert!(SessionId::parse("a".repeat(256)).is_ok());
    }

    #[test]
    fn ids_with_characters_sqs_groups_refuse_are_rejected() {
        assert_eq!(
            SessionId::parse(format!("{}/x", "a".repeat(40))),
            Err(InvalidSessionId::Charset)
        );
        assert_eq!(
            SessionId::parse(format!("{} x", "a".repeat(40))),
            Err(InvalidSessionId::Charset)
        );
    }

    #[test]
    fn pool_message_round_trips_in_the_documented_format() {
        let id = SessionId::generate();
        let session = PooledSession::new(id.clone(), 1_000, 2_000);
        let body = session.to_body();
        assert_eq!(
            body,
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1000,"lastPingAt":2000}}"#)
        );
        assert_eq!(PooledSession::parse(&body).unwrap(), session);
    }

    #[test]
    fn pool_messages_with_unknown_fields_bad_versions_or_bad_ids_are_malformed() {
        let id = SessionId::generate();
        for body in [
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"extra":true}}"#),
            format!(r#"{{"v":2,"sessionId":"{id}","createdAt":1,"lastPingAt":2}}"#),
            r#"{"v":1,"sessionId":"short","createdAt":1,"lastPingAt":2}"#.to_string(),
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":5,"lastPingAt":2}}"#),
            "not json".to_string(),
        ] {
            assert!(PooledSession::parse(&body).is_err(), "accepted {body}");
        }
    }

    #[test]
    fn each_ping_gives_a_new_deduplication_id() {
        let id = SessionId::generate();
        let first = PooledSession::new(id.clone(), 1, 1);
        let pinged = PooledSession::new(id, 1, 2);
        assert_ne!(first.deduplication_id(), pinged.deduplication_id());
        assert_eq!(first.message_group_id(), pinged.message_group_id());
    }
}
