//! get-session: claims one warm AgentCore session from the pool, exactly once.
//!
//! Request ([`request`]): `{}` or `{"correlationId": "..."}`; with a lease table also
//! `{"userId": "..."}` (affinity: the user's live session comes back as `"reused"`) and
//! `{"release": "<sessionId>", "userId": "..."}`. Response:
//! `{"sessionId","source":"pool"|"fresh"|"reused","createdAt","lastPingAt"[,"userId"]}`, or
//! for a release `{"released","userId","alreadyEnded"}`. The claim itself is
//! [`warmpool_core::pool::claim::Claimer`], leases [`warmpool_core::lease`]; this crate adds
//! the Lambda contract, request validation and metrics.

mod config;
pub mod flush;
mod leased;
pub mod request;

pub use config::Config;
pub use leased::ReleaseAnswer;

use lambda_runtime::{Diagnostic, LambdaEvent};
use request::Request;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::info;
use warmpool_core::clock::Clock;
use warmpool_core::error::QueueError;
use warmpool_core::lease::handout::{LeaseError, Leases};
use warmpool_core::lease::ports::{LeaseTable, LeasesOff};
use warmpool_core::metrics::{MetricSet, PoolName};
use warmpool_core::pool::claim::{Claim, ClaimError, ClaimedSession, Claimer, Source};
use warmpool_core::pool::version::VersionWatch;
use warmpool_core::ports::{AgentRuntime, PoolQueue, ReplenishTrigger};

pub const FUNCTION: &str = "get-session";

#[derive(Debug, thiserror::Error)]
pub enum GetSessionError {
    #[error("invalid request: {0}")]
    Validation(String),
    #[error("invalid request: userId and release need leases, and this pool has no lease table (LEASE_TABLE_NAME)")]
    LeasesOff,
    #[error("no warm session in the pool and fresh fallback is disabled")]
    PoolEmpty,
    #[error("pool queue unavailable: {0}")]
    PoolUnavailable(#[source] QueueError),
    #[error("lease: {0}")]
    Lease(#[source] LeaseError),
}

impl GetSessionError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Validation(_) | Self::LeasesOff => false,
            Self::PoolEmpty => true,
            Self::PoolUnavailable(e) => e.is_retryable(),
            Self::Lease(e) => e.is_retryable(),
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Validation(_) | Self::LeasesOff => "ValidationError",
            Self::PoolEmpty => "PoolEmpty",
            Self::PoolUnavailable(_) => "PoolUnavailable",
            Self::Lease(LeaseError::NotHolder) => "NotHolder",
            Self::Lease(LeaseError::Contention) => "LeaseContention",
            Self::Lease(LeaseError::StopFailed(_)) => "StopFailed",
            Self::Lease(_) => "LeaseTableUnavailable",
        }
    }
}

impl From<GetSessionError> for Diagnostic {
    fn from(error: GetSessionError) -> Self {
        Diagnostic {
            error_type: error.error_type().into(),
            error_message: error.to_string(),
        }
    }
}

/// What get-session answers: a session, or a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Session(ClaimedSession),
    Released(ReleaseAnswer),
}

/// The function: a claimer, leases when the pool has a lease table, and the Lambda contract.
pub struct GetSession<Q, T, C, L = LeasesOff, A = LeasesOff> {
    claimer: Claimer<Q, T, C>,
    pool_name: PoolName,
    /// The newest agent version this environment's claims have seen (docs/decisions/0212).
    versions: VersionWatch,
    leases: Option<Leases<L, A>>,
}

impl<Q: PoolQueue, T: ReplenishTrigger, C: Clock> GetSession<Q, T, C> {
    pub fn new(config: &Config, queue: Q, trigger: T, clock: C) -> Self {
        Self {
            claimer: Claimer {
                queue,
                trigger,
                clock,
                policy: config.claim,
            },
            pool_name: config.pool_name.clone(),
            versions: VersionWatch::new(config.version_grace),
            leases: None,
        }
    }

    /// The same function keeping leases in `table` (settings from `config.leases`) and
    /// stopping released sessions through `agent`. Without `config.leases`, leases stay off.
    pub fn with_leases<L: LeaseTable, A: AgentRuntime>(
        self,
        config: &Config,
        table: L,
        agent: A,
    ) -> GetSession<Q, T, C, L, A> {
        GetSession {
            claimer: self.claimer,
            pool_name: self.pool_name,
            versions: self.versions,
            leases: config.leases.as_ref().map(|leases| Leases {
                table,
                agent,
                settings: leases.settings,
                log_key: config.claim.log_key,
            }),
        }
    }
}

impl<Q, T, C, L, A> GetSession<Q, T, C, L, A>
where
    Q: PoolQueue,
    T: ReplenishTrigger,
    C: Clock,
    L: LeaseTable,
    A: AgentRuntime,
{
    /// The Lambda entry point: every request shape.
    pub async fn respond(&self, event: LambdaEvent<Value>) -> Result<Answer, GetSessionError> {
        let request = request::parse(event.payload)?;
        if request.needs_leases() && self.leases.is_none() {
            return Err(GetSessionError::LeasesOff);
        }
        match request {
            Request::Release { session_id, user } => self.release(&session_id, &user).await.map(Answer::Released),
            Request::Handout(handout) if self.leases.is_some() => {
                self.leased_handout(&handout).await.map(Answer::Session)
            }
            Request::Handout(handout) => {
                let correlation = handout.correlation.as_ref().map(|c| c.as_str().to_string());
                self.claim(correlation.as_deref()).await.map(Answer::Session)
            }
        }
    }

    /// A claim: [`Self::respond`] for a request that names no release.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<ClaimedSession, GetSessionError> {
        match self.respond(event).await? {
            Answer::Session(session) => Ok(session),
            Answer::Released(_) => Err(GetSessionError::Validation("a release answers no session".into())),
        }
    }

    /// A claim without leases: one receive and one delete, as before leases existed.
    async fn claim(&self, correlation_id: Option<&str>) -> Result<ClaimedSession, GetSessionError> {
        let started = Instant::now();
        let result = self.claimer.claim_with(&self.versions).await;
        let latency_ms = warmpool_core::clock::millis(started.elapsed());
        let now = self.claimer.clock.now_ms();
        match result {
            Ok(claim) => {
                self.emit_claim(&claim, latency_ms, now, |m| m);
                info!(
                    session = %claim.session.session_id.log_id(&self.claimer.policy.log_key),
                    source = ?claim.session.source,
                    correlation_id = correlation_id.unwrap_or(""),
                    latency_ms,
                    "session claimed"
                );
                Ok(claim.session)
            }
            Err(ClaimError::PoolEmpty) => {
                MetricSet::new(FUNCTION, &self.pool_name)
                    .count("ClaimPoolEmpty", 1)
                    .emit(now);
                Err(GetSessionError::PoolEmpty)
            }
            Err(ClaimError::Queue(e)) => Err(GetSessionError::PoolUnavailable(e)),
        }
    }

    /// A claim's metrics, with what `more` adds.
    fn emit_claim(&self, claim: &Claim, latency_ms: u64, now: u64, more: impl FnOnce(MetricSet) -> MetricSet) {
        let from_pool = claim.session.source == Source::Pool;
        // How old and how long idle a handed-out session was: how close the pool runs to its
        // limits, seen from the claims.
        let (age_ms, idle_ms) = match claim.session.last_ping_at {
            Some(last_ping_at) => (
                Some(now.saturating_sub(claim.session.created_at)),
                Some(now.saturating_sub(last_ping_at)),
            ),
            None => (None, None),
        };
        let metrics = MetricSet::new(FUNCTION, &self.pool_name)
            .count("ClaimFromPool", u32::from(from_pool))
            .count("ClaimFresh", u32::from(!from_pool))
            .millis("ClaimLatency", latency_ms as f64)
            .millis_if("ClaimedSessionAge", age_ms)
            .millis_if("ClaimedSessionIdle", idle_ms)
            .count("StaleDiscarded", claim.stale_discarded)
            .count("ShortLivedDiscarded", claim.short_lived_discarded)
            .count("MalformedDiscarded", claim.malformed_discarded)
            .count("OutdatedDiscarded", claim.outdated_discarded)
            .count("LostDeletes", claim.lost_deletes)
            .count("ReplenishTriggerFailed", u32::from(claim.trigger_failed));
        more(metrics).emit(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::clock::ManualClock;
    use warmpool_core::config::Env;
    use warmpool_core::fakes::{MemoryPool, RecordingTrigger};
    use warmpool_core::pool::claim::OnEmpty;
    use warmpool_core::session::{PooledSession, SessionId};

    const NOW: u64 = 1_700_000_000_000;

    fn function(on_empty: OnEmpty) -> GetSession<MemoryPool, RecordingTrigger, ManualClock> {
        let env = Env::from_pairs([("POOL_QUEUE_URL", "q"), ("REPLENISH_FUNCTION_NAME", "replenish")]);
        let mut config = Config::from_env(&env).unwrap();
        config.claim.on_empty = on_empty;
        config.claim.wait = std::time::Duration::ZERO;
        GetSession::new(
            &config,
            MemoryPool::default(),
            RecordingTrigger::default(),
            ManualClock::at(NOW),
        )
    }

    fn event(payload: Value) -> LambdaEvent<Value> {
        LambdaEvent::new(payload, Default::default())
    }

    #[tokio::test]
    async fn when_a_newer_agent_version_was_seen_then_get_session_no_longer_hands_out_the_older_one() {
        use warmpool_core::session::AgentVersion;
        let f = function(OnEmpty::Fresh);
        let v1 = AgentVersion::new("1", NOW - 3_600_000).unwrap();
        let v2 = AgentVersion::new("2", NOW - 1_000).unwrap();
        f.claimer
            .queue
            .push(&PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 500).with_version(Some(&v2)));
        let old = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 500).with_version(Some(&v1));
        f.claimer.queue.push(&old);
        f.handle(event(Value::Null)).await.unwrap();
        let second = f.handle(event(Value::Null)).await.unwrap();
        assert_eq!(
            second.source,
            Source::Fresh,
            "the v1 session was discarded, not handed out"
        );
        assert_ne!(second.session_id, old.session_id);
    }

    #[tokio::test]
    async fn sample_event_claims_a_pooled_session_in_the_documented_shape() {
        let f = function(OnEmpty::Fresh);
        let pooled = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 500);
        f.claimer.queue.push(&pooled);
        let payload = serde_json::from_str(include_str!("../../../events/get-session.json")).unwrap();

        let answer = serde_json::to_value(f.handle(event(payload)).await.unwrap()).unwrap();

        assert_eq!(
            answer,
            serde_json::json!({
                "sessionId": pooled.session_id.as_str(),
                "source": "pool",
                "createdAt": NOW - 1_000,
                "lastPingAt": NOW - 500,
            })
        );
        assert_eq!(f.claimer.trigger.requests(), vec![1]);
    }

    #[tokio::test]
    async fn with_the_switch_on_a_fresh_fallback_asks_replenish_for_one_pooled_session() {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            ("REPLENISH_FUNCTION_NAME", "replenish"),
            ("REPLACE_FRESH_FALLBACKS", "true"),
        ]);
        let f = GetSession::new(
            &Config::from_env(&env).unwrap(),
            MemoryPool::default(),
            RecordingTrigger::default(),
            ManualClock::at(NOW),
        );
        let answer = f.handle(event(serde_json::json!({}))).await.unwrap();
        assert_eq!(answer.source, Source::Fresh);
        assert_eq!(f.claimer.trigger.requests(), vec![1]);
    }

    #[tokio::test]
    async fn an_empty_or_null_request_is_accepted() {
        let f = function(OnEmpty::Fresh);
        for payload in [serde_json::json!({}), Value::Null] {
            let answer = f.handle(event(payload)).await.unwrap();
            assert_eq!(answer.source, Source::Fresh);
        }
    }

    #[tokio::test]
    async fn unknown_fields_and_bad_correlation_ids_are_validation_errors() {
        let f = function(OnEmpty::Fresh);
        for payload in [
            serde_json::json!({"sessionId": "mine"}),
            serde_json::json!({"correlationId": 7}),
            serde_json::json!({"correlationId": ""}),
            serde_json::json!({"correlationId": "x".repeat(129)}),
            serde_json::json!({"correlationId": "has space"}),
            serde_json::json!([1, 2]),
        ] {
            let error = f.handle(event(payload.clone())).await.unwrap_err();
            assert!(
                matches!(error, GetSessionError::Validation(_)),
                "{payload} gave {error}"
            );
            assert!(!error.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_pooled_session_with_less_than_five_minutes_of_life_left_is_not_handed_out() {
        let f = function(OnEmpty::Fresh);
        // 28_800 s max lifetime, 60 s margin: 200 s left.
        let old = PooledSession::new(SessionId::generate(), NOW - 28_540_000, NOW - 1_000);
        f.claimer.queue.push(&old);

        let answer = f.handle(event(serde_json::json!({}))).await.unwrap();

        assert_eq!(answer.source, Source::Fresh);
        assert_eq!(f.claimer.queue.len(), 0);
        assert_eq!(f.claimer.trigger.requests(), vec![1], "its replacement was asked for");
    }

    #[tokio::test]
    async fn the_claim_log_carries_a_keyed_hash_never_the_session_id() {
        let (logs, _guard) = warmpool_core::fakes::CapturedLogs::start();
        let f = function(OnEmpty::Fresh);
        let pooled = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 500);
        f.claimer.queue.push(&pooled);

        let answer = f.handle(event(serde_json::json!({}))).await.unwrap();

        assert_eq!(answer.session_id, pooled.session_id, "the caller gets the full ID");
        let text = logs.text();
        assert!(text.contains("session claimed"), "{text}");
        assert!(!text.contains(pooled.session_id.as_str()), "{text}");
        let shown = pooled.session_id.log_id(&f.claimer.policy.log_key).to_string();
        assert!(text.contains(&format!("session={shown}")), "{text}");
    }

    #[tokio::test]
    async fn lease_requests_without_a_lease_table_and_malformed_lease_fields_are_refused_and_claim_nothing() {
        let f = function(OnEmpty::Fresh);
        f.claimer
            .queue
            .push(&PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 500));
        let held = SessionId::generate();
        for payload in [
            serde_json::json!({"userId": "alice"}),
            serde_json::json!({"release": held.as_str(), "userId": "alice"}),
            serde_json::json!({"release": held.as_str()}),
            serde_json::json!({"release": "not a session id", "userId": "alice"}),
            serde_json::json!({"release": held.as_str(), "userId": "alice", "correlationId": "c"}),
            serde_json::json!({"userId": ""}),
            serde_json::json!({"userId": "x".repeat(129)}),
            serde_json::json!({"userId": "two words"}),
        ] {
            let error = f.respond(event(payload.clone())).await.unwrap_err();
            assert_eq!(Diagnostic::from(error).error_type, "ValidationError", "{payload}");
        }
        assert_eq!(f.claimer.queue.len(), 1, "nothing was claimed");
        assert!(f.claimer.trigger.requests().is_empty());
    }

    #[tokio::test]
    async fn with_fallback_disabled_an_empty_pool_is_a_pool_empty_error() {
        let f = function(OnEmpty::Fail);
        let error = f.handle(event(serde_json::json!({}))).await.unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "PoolEmpty");
    }
}
