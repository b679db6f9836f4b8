//! Session IDs, the pool message format (docs/architecture.md), and the keyed hash that stands
//! for a session ID in logs.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;
use std::time::Duration;

/// The HTTP header that carries the runtime session ID between AgentCore and the agent (HTTP
/// header names are case-insensitive; this is the lower-case form `http` takes).
pub const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// The payload that warms a session; agents short-circuit it before doing any work.
pub const WARMUP_PAYLOAD: &[u8] = br#"{"type":"warmup"}"#;

/// SQS's limit on `MessageGroupId` and `MessageDeduplicationId`.
const SQS_ID_LIMIT: usize = 128;
/// Decimal digits of `u64::MAX`, the longest `lastPingAt`.
const MAX_TIMESTAMP_DIGITS: usize = 20;
const MIN_LEN: usize = 33;
/// The deduplication ID is `<id>:<lastPingAt>`: 107 + 1 + 20 = 128 for any timestamp at all,
/// so no pooled session can ever be refused by SQS for its ID's length.
const MAX_LEN: usize = SQS_ID_LIMIT - 1 - MAX_TIMESTAMP_DIGITS;
const _: () = assert!(MAX_LEN + 1 + MAX_TIMESTAMP_DIGITS <= SQS_ID_LIMIT && MIN_LEN <= MAX_LEN);

/// How far ahead of our clock a pool message's timestamps may be before the message counts as
/// malformed. Lambda hosts keep time through the Amazon Time Sync Service (skew in
/// milliseconds); five minutes forgives a badly drifting host and still refuses a forged
/// `lastPingAt` that would keep a dead session looking fresh for hours.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// An AgentCore `runtimeSessionId`: 33..=107 characters of `[A-Za-z0-9_-]`.
///
/// Narrower than what AgentCore accepts (33..=256, more characters) on purpose: the ID also
/// becomes the SQS `MessageGroupId` and, with `":"` and `lastPingAt`, the deduplication ID,
/// both limited to 128 characters of a smaller alphabet.
///
/// The ID is a bearer secret (anyone allowed to invoke the runtime can attach to it): never
/// log it; log [`SessionId::log_id`] instead.
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
        let allowed = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        // Allowed bytes are ASCII, one character each; only a refused ID needs counting.
        let len = if allowed { raw.len() } else { raw.chars().count() };
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(InvalidSessionId::Length(len));
        }
        if !allowed {
            return Err(InvalidSessionId::Charset);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What logs carry instead of the ID: the same ID gives the same value under one key, so
    /// log lines still correlate, and without the key nobody can tell which ID it stands for.
    pub fn log_id(&self, key: &LogKey) -> LogId {
        key.hash(self.0.as_bytes())
    }

    /// [`Self::log_id`] as a log field that is hashed only when a line shows it: a round of
    /// thousands of heartbeats logs nothing at the default level and should hash nothing.
    pub fn shown<'a>(&'a self, key: &'a LogKey) -> Shown<'a> {
        Shown(self, key)
    }
}

/// See [`SessionId::shown`].
#[derive(Clone, Copy)]
pub struct Shown<'a>(&'a SessionId, &'a LogKey);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.log_id(self.1).fmt(f)
    }
}

/// The deployment's key for [`LogId`]s (`SESSION_LOG_KEY`, see
/// [`LogKey::from_env`](crate::config)). Kept as 64 bytes derived from the configured secret:
/// exactly one HMAC-SHA256 block, so any secret length works the same way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LogKey([u8; 64]);

/// Secrets shorter than this are refused: they could be found by trying.
pub const MIN_LOG_KEY_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session log key needs at least {MIN_LOG_KEY_LEN} characters, got {0}")]
pub struct ShortLogKey(pub usize);

impl LogKey {
    pub fn new(secret: &str) -> Result<Self, ShortLogKey> {
        let len = secret.chars().count();
        if len < MIN_LOG_KEY_LEN {
            return Err(ShortLogKey(len));
        }
        Ok(Self(Sha512::digest(secret.as_bytes()).into()))
    }

    /// The key of local runs that set none: public, so it hides nothing from a reader who
    /// knows this code; deployments set their own (see docs/decisions/0203).
    pub fn development() -> Self {
        Self(Sha512::digest(b"agentcore-warmpool local development session log key").into())
    }

    fn hash(&self, bytes: &[u8]) -> LogId {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.0.into());
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut short = [0u8; 8];
        short.copy_from_slice(&digest[..8]);
        LogId(short)
    }
}

/// Shows which key is in force (a hash of a constant under it), never the key.
impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogKey(fingerprint {})", self.hash(b"fingerprint"))
    }
}

/// A session ID as logs show it: the first 64 bits of HMAC-SHA256(key, id), as 16 hex digits.
/// 64 bits keep accidental collisions out of reach for any pool's lifetime of IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogId([u8; 8]);

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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
/// `{"v":1,"sessionId":"...","createdAt":<ms>,"lastPingAt":<ms>}`, and, from replenish runs
/// that read the endpoint's live version, `"agentVersion":"<version>","versionSince":<ms>`
/// (the runtime version that served the warmup, and when the endpoint last changed; both or
/// neither, see docs/decisions/0210). Messages without them stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PooledSession {
    v: u8,
    pub session_id: SessionId,
    pub created_at: u64,
    pub last_ping_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_since: Option<u64>,
}

/// The runtime version an endpoint serves, and since when (the endpoint's `lastUpdatedAt`, in
/// ms): every replenish environment reads the same pair, so `since` orders versions across
/// rollbacks too, where version numbers would not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentVersion {
    pub version: String,
    pub since_ms: u64,
}

/// Longest version accepted in a pool message (AgentCore's are at most 5 digits).
pub const MAX_AGENT_VERSION_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent version must be 1..={MAX_AGENT_VERSION_LEN} characters of [A-Za-z0-9._-]")]
pub struct InvalidAgentVersion;

impl AgentVersion {
    pub fn new(version: impl Into<String>, since_ms: u64) -> Result<Self, InvalidAgentVersion> {
        let version = version.into();
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if version.is_empty() || version.len() > MAX_AGENT_VERSION_LEN || !version.bytes().all(allowed) {
            return Err(InvalidAgentVersion);
        }
        Ok(Self { version, since_ms })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MalformedPoolMessage {
    #[error("pool message is not a valid v1 session record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("pool message has unsupported version {0}")]
    Version(u8),
    #[error("pool message has lastPingAt before createdAt")]
    PingBeforeCreation,
    #[error("pool message has {field} {ahead_ms} ms ahead of this clock, beyond the skew allowance")]
    FromTheFuture { field: &'static str, ahead_ms: u64 },
    #[error("pool message has agentVersion and versionSince not both or neither, or an invalid version")]
    AgentVersion,
}

impl PooledSession {
    pub const VERSION: u8 = 1;

    pub fn new(session_id: SessionId, created_at: u64, last_ping_at: u64) -> Self {
        Self {
            v: Self::VERSION,
            session_id,
            created_at,
            last_ping_at,
            agent_version: None,
            version_since: None,
        }
    }

    /// The same session recorded as warmed by `version` (`None`: unknown).
    pub fn with_version(self, version: Option<&AgentVersion>) -> Self {
        Self {
            agent_version: version.map(|v| v.version.clone()),
            version_since: version.map(|v| v.since_ms),
            ..self
        }
    }

    /// The runtime version that served this session's warmup, when the pool message says.
    pub fn agent_version(&self) -> Option<AgentVersion> {
        match (&self.agent_version, self.version_since) {
            (Some(version), Some(since_ms)) => Some(AgentVersion {
                version: version.clone(),
                since_ms,
            }),
            _ => None,
        }
    }

    /// The same session after a ping at `ping_at`: everything else, its version included, is
    /// kept.
    pub fn pinged_at(&self, ping_at: u64) -> Self {
        Self {
            last_ping_at: ping_at,
            ..self.clone()
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
        match (&session.agent_version, session.version_since) {
            (None, None) => {}
            (Some(version), Some(since)) if AgentVersion::new(version.as_str(), since).is_ok() => {}
            _ => return Err(MalformedPoolMessage::AgentVersion),
        }
        Ok(session)
    }

    /// [`Self::parse`], and timestamps no further ahead of `now_ms` than
    /// [`CLOCK_SKEW_ALLOWANCE`]. Everything that acts on a pool message reads it this way: a
    /// `lastPingAt` in the future would keep a session that died long ago looking fresh.
    pub fn parse_at(body: &str, now_ms: u64) -> Result<Self, MalformedPoolMessage> {
        let session = Self::parse(body)?;
        let latest = now_ms.saturating_add(crate::clock::millis(CLOCK_SKEW_ALLOWANCE));
        // lastPingAt >= createdAt (checked above), so lastPingAt is the one to test first.
        let since = ("versionSince", session.version_since.unwrap_or(0));
        for (field, at) in [
            ("lastPingAt", session.last_ping_at),
            ("createdAt", session.created_at),
            since,
        ] {
            if at > latest {
                return Err(MalformedPoolMessage::FromTheFuture {
                    field,
                    ahead_ms: at - now_ms,
                });
            }
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
        let id = self.session_id.as_str();
        let mut key = String::with_capacity(id.len() + 1 + MAX_TIMESTAMP_DIGITS);
        key.push_str(id);
        key.push(':');
        crate::num::push_decimal(&mut key, self.last_ping_at);
        key
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
    fn an_id_too_long_for_an_sqs_deduplication_id_with_any_ping_time_is_refused() {
        assert_eq!(SessionId::parse("a".repeat(129)), Err(InvalidSessionId::Length(129)));
        assert_eq!(SessionId::parse("a".repeat(108)), Err(InvalidSessionId::Length(108)));
        let longest = SessionId::parse("a".repeat(107)).unwrap();
        let session = PooledSession::new(longest, u64::MAX, u64::MAX);
        assert_eq!(session.deduplication_id().len(), 128);
        assert!(session.message_group_id().len() <= 128);
    }

    #[test]
    fn ids_outside_the_agentcore_length_range_are_rejected() {
        assert_eq!(SessionId::parse("a".repeat(32)), Err(InvalidSessionId::Length(32)));
        assert_eq!(SessionId::parse("a".repeat(257)), Err(InvalidSessionId::Length(257)));
        assert!(SessionId::parse("a".repeat(33)).is_ok());
        assert!(SessionId::parse("a".repeat(107)).is_ok());
    }

    #[test]
    fn timestamps_within_the_skew_allowance_pass_and_beyond_it_are_malformed() {
        let now = 1_700_000_000_000;
        let allowance = crate::clock::millis(CLOCK_SKEW_ALLOWANCE);
        let body = |created, pinged| PooledSession::new(SessionId::generate(), created, pinged).to_body();
        assert!(PooledSession::parse_at(&body(now, now + allowance), now).is_ok());
        for hostile in [
            body(now, now + allowance + 1),
            body(now + allowance + 1, now + allowance + 1),
            body(u64::MAX, u64::MAX),
        ] {
            assert!(
                matches!(
                    PooledSession::parse_at(&hostile, now),
                    Err(MalformedPoolMessage::FromTheFuture { .. })
                ),
                "accepted {hostile}"
            );
        }
        assert!(
            PooledSession::parse_at(&body(0, u64::MAX), u64::MAX).is_ok(),
            "no overflow"
        );
    }

    #[test]
    fn a_log_id_is_stable_under_one_key_and_differs_between_keys_and_ids() {
        let id = SessionId::generate();
        let key = LogKey::new("a deployment's own secret").unwrap();
        let other = LogKey::new("another deployment's secret").unwrap();
        let shown = id.log_id(&key).to_string();
        assert_eq!(shown.len(), 16);
        assert!(shown.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id.log_id(&key), id.log_id(&key));
        assert_ne!(id.log_id(&key), id.log_id(&other));
        assert_ne!(id.log_id(&key), SessionId::generate().log_id(&key));
        assert!(!format!("{key:?}").contains("secret"));
        assert_ne!(format!("{key:?}"), format!("{other:?}"));
    }

    #[test]
    fn a_short_log_key_is_refused() {
        assert_eq!(LogKey::new("too-short"), Err(ShortLogKey(9)));
        assert!(LogKey::new(&"k".repeat(MIN_LOG_KEY_LEN)).is_ok());
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
    fn a_non_ascii_id_is_measured_in_characters_before_its_charset_is_refused() {
        // 33 characters but 34 bytes: in range, so the charset is what is wrong.
        assert_eq!(
            SessionId::parse(format!("{}é", "a".repeat(32))),
            Err(InvalidSessionId::Charset)
        );
        // 20 characters but 40 bytes: too short, whatever the bytes.
        assert_eq!(SessionId::parse("é".repeat(20)), Err(InvalidSessionId::Length(20)));
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
    fn a_versioned_message_round_trips_and_an_unversioned_one_stays_readable() {
        let id = SessionId::generate();
        let v2 = AgentVersion::new("2", 1_500).unwrap();
        let session = PooledSession::new(id.clone(), 1_000, 2_000).with_version(Some(&v2));
        let body = session.to_body();
        assert_eq!(
            body,
            format!(
                r#"{{"v":1,"sessionId":"{id}","createdAt":1000,"lastPingAt":2000,"agentVersion":"2","versionSince":1500}}"#
            )
        );
        let parsed = PooledSession::parse(&body).unwrap();
        assert_eq!(parsed.agent_version(), Some(v2.clone()));
        assert_eq!(
            parsed.pinged_at(3_000).agent_version(),
            Some(v2),
            "a heartbeat keeps the version"
        );
        let old = format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2}}"#);
        assert_eq!(PooledSession::parse(&old).unwrap().agent_version(), None);
    }

    #[test]
    fn a_half_or_hostile_version_is_malformed() {
        let id = SessionId::generate();
        let now = 1_700_000_000_000_u64;
        for body in [
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"agentVersion":"2"}}"#),
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"versionSince":1}}"#),
            format!(r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"agentVersion":"","versionSince":1}}"#),
            format!(
                r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"agentVersion":"a b","versionSince":1}}"#
            ),
            format!(
                r#"{{"v":1,"sessionId":"{id}","createdAt":1,"lastPingAt":2,"agentVersion":"2","versionSince":{}}}"#,
                u64::MAX
            ),
        ] {
            assert!(PooledSession::parse_at(&body, now).is_err(), "accepted {body}");
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
