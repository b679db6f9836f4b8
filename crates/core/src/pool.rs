//! The pool's rules: when a pooled session is still safe to hand out, and how one is claimed
//! exactly once (DESIGN.md invariants 1 and 2).

use crate::clock::{Clock, millis};
use crate::error::QueueError;
use crate::ports::{PoolQueue, ReplenishTrigger};
use crate::session::{LogKey, PooledSession, SessionId};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;
use tracing::{info, warn};

/// Session lifetime limits of the AgentCore runtime, and the margin kept from each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// `idleRuntimeSessionTimeout` of the runtime (AgentCore default 900 s).
    pub idle_timeout: Duration,
    /// `maxLifetime` of the runtime (AgentCore default 28800 s).
    pub max_lifetime: Duration,
    /// Kept from both limits: covers the time between the claim and the caller's first
    /// invocation, and clock skew between Lambda and AgentCore.
    pub safety_margin: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            safety_margin: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Freshness {
    Fresh,
    /// Idle timeout (less margin) reached: AgentCore may already have reclaimed the microVM.
    IdleExpired,
    /// Max lifetime (less margin) reached.
    LifetimeExpired,
}

impl Lifecycle {
    /// Invariant 2: a pooled ID is usable only if both deadlines, less the margin, lie ahead.
    /// An expired ID does not fail when invoked, it silently cold-starts, so this rule is the
    /// only protection against a hidden cold start.
    ///
    /// Saturating throughout: timestamps come from messages, and a hostile `u64::MAX` must
    /// neither panic nor wrap around into the past. (Timestamps in the future are refused
    /// before this rule, by [`PooledSession::parse_at`].)
    pub fn freshness(&self, session: &PooledSession, now_ms: u64) -> Freshness {
        let margin = millis(self.safety_margin);
        let idle_deadline = session.last_ping_at.saturating_add(millis(self.idle_timeout));
        if self.usable_until(session) <= now_ms {
            Freshness::LifetimeExpired
        } else if idle_deadline.saturating_sub(margin) <= now_ms {
            Freshness::IdleExpired
        } else {
            Freshness::Fresh
        }
    }

    /// The last moment the session may be handed out for its age: `createdAt` + max lifetime
    /// less the margin.
    pub fn usable_until(&self, session: &PooledSession) -> u64 {
        session
            .created_at
            .saturating_add(millis(self.max_lifetime))
            .saturating_sub(millis(self.safety_margin))
    }

    /// How much of its max lifetime (less the margin) the session has left at `now_ms`.
    pub fn lifetime_left(&self, session: &PooledSession, now_ms: u64) -> Duration {
        Duration::from_millis(self.usable_until(session).saturating_sub(now_ms))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEmpty {
    /// Answer a new session ID (a cold start for the caller), flagged `source: "fresh"`.
    Fresh,
    /// Fail the claim with [`ClaimError::PoolEmpty`].
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    pub lifecycle: Lifecycle,
    /// Long-poll wait of each receive: returns at once when a message is there, asks every
    /// SQS server, and bounds the wait on an empty pool.
    pub wait: Duration,
    /// How long a received message stays hidden while we decide and delete.
    pub visibility: Duration,
    /// Upper bound on unusable messages (stale, short-lived, malformed, lost deletes) one
    /// claim works through before it treats the pool as empty. Zero would turn the pool off.
    pub max_discards: NonZeroU32,
    /// The lifetime the claimer needs left: a pooled session whose `createdAt` + max lifetime
    /// less the margin comes before now + this is not handed out (see
    /// [`ClaimPolicy::with_min_lifetime`]).
    pub min_lifetime: Duration,
    pub on_empty: OnEmpty,
    /// A claim that falls back to a fresh session also asks for one more pooled session. A
    /// fallback is demand the pool did not meet; replacing only what was taken from the pool
    /// would leave the pool as small as it was when it ran dry, and nothing but the next
    /// scheduled run would grow it. Asking one per fallback grows it by exactly the unmet
    /// demand, within a warmup time, so it cannot overshoot what claims asked for.
    pub replace_fresh_fallbacks: bool,
    /// Session IDs appear in logs only as [`SessionId::log_id`] under this key.
    pub log_key: LogKey,
}

impl ClaimPolicy {
    /// The same policy for a claimer that needs `min_lifetime` of session left: get-session
    /// its `CLAIM_MIN_LIFETIME_SECS`, the invoker its batch deadline plus a margin.
    ///
    /// A pooled session with less left is treated as stale: its message is deleted and
    /// replaced, and the session is not stopped. The claim path has no AgentCore capability
    /// (get-session's role cannot stop sessions), and nobody can reach the session once its
    /// message is gone, so it ends within min(idle timeout, `min_lifetime`): a bounded cost,
    /// never a hand-out (docs/decisions/0205).
    pub fn with_min_lifetime(self, min_lifetime: Duration) -> Self {
        Self { min_lifetime, ..self }
    }

    /// Whether any pooled session could satisfy this policy: a minimum lifetime at or beyond
    /// max lifetime less the margin would send every claim to a fresh session.
    pub fn can_be_served(&self) -> bool {
        self.min_lifetime < self.lifecycle.max_lifetime.saturating_sub(self.lifecycle.safety_margin)
    }
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            lifecycle: Lifecycle::default(),
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
            max_discards: crate::config::at_least_one(10),
            min_lifetime: Duration::ZERO,
            on_empty: OnEmpty::Fresh,
            replace_fresh_fallbacks: false,
            log_key: LogKey::development(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Pool,
    Fresh,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pool => "pool",
            Self::Fresh => "fresh",
        }
    }
}

/// The answer of a claim: `{"sessionId","source","createdAt","lastPingAt"}`; callers of
/// get-session read it back with the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedSession {
    pub session_id: SessionId,
    pub source: Source,
    pub created_at: u64,
    /// `None` for a fresh session: it was never pinged.
    pub last_ping_at: Option<u64>,
}

/// What one claim did, for metrics and for the replenish trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub session: ClaimedSession,
    pub stale_discarded: u32,
    /// Fresh, but with less lifetime left than the claimer needs ([`ClaimPolicy::min_lifetime`]).
    pub short_lived_discarded: u32,
    pub malformed_discarded: u32,
    /// Messages whose delete failed: not ours any more, never handed out.
    pub lost_deletes: u32,
    /// Pool messages this claim removed (claimed or discarded): each needs a replacement.
    pub consumed: u32,
    pub trigger_failed: bool,
}

impl Claim {
    /// Unusable messages this claim worked through.
    pub fn discarded(&self) -> u32 {
        self.stale_discarded + self.short_lived_discarded + self.malformed_discarded + self.lost_deletes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no warm session in the pool")]
    PoolEmpty,
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ClaimError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::PoolEmpty => true,
            Self::Queue(e) => e.is_retryable(),
        }
    }
}

/// Claims warm sessions from the pool and asks for their replacements.
///
/// This is the whole claim logic; `get-session` only wires it to Lambda, and a trusted
/// service in the same account can embed it to claim in-process.
pub struct Claimer<Q, T, C> {
    pub queue: Q,
    pub trigger: T,
    pub clock: C,
    pub policy: ClaimPolicy,
}

impl<Q: PoolQueue, T: ReplenishTrigger, C: Clock> Claimer<Q, T, C> {
    pub async fn claim(&self) -> Result<Claim, ClaimError> {
        let mut outcome = self.take_from_pool().await;
        let consumed = match &outcome {
            Ok(claim) => claim.consumed,
            Err((_, consumed)) => *consumed,
        };
        let trigger_failed = consumed > 0 && self.request_replacements(consumed).await;
        if let Ok(claim) = &mut outcome {
            claim.trigger_failed = trigger_failed;
            // A request of its own, after the replacements: see `replace_fresh_fallbacks`.
            if self.policy.replace_fresh_fallbacks && claim.session.source == Source::Fresh {
                claim.trigger_failed |= self.request_replacements(1).await;
            }
        }
        outcome.map_err(|(e, _)| e)
    }

    async fn request_replacements(&self, count: u32) -> bool {
        match self.trigger.request(count).await {
            Ok(()) => false,
            Err(error) => {
                warn!(count, error = %error, "replenish trigger failed; the schedule will top up");
                true
            }
        }
    }

    /// The error side carries how many messages were consumed before failing, so that their
    /// replacements are still requested.
    async fn take_from_pool(&self) -> Result<Claim, (ClaimError, u32)> {
        let policy = &self.policy;
        let mut claim = Claim {
            session: self.fresh_session(),
            stale_discarded: 0,
            short_lived_discarded: 0,
            malformed_discarded: 0,
            lost_deletes: 0,
            consumed: 0,
            trigger_failed: false,
        };
        while claim.discarded() < policy.max_discards.get() {
            let received_at = self.clock.now_ms();
            let received = self
                .queue
                .receive(1, policy.wait, policy.visibility)
                .await
                .map_err(|e| (e.into(), claim.consumed))?;
            let Some(message) = received.into_iter().next() else {
                break;
            };
            let usable = self.judge(&message.body, &message.message_id, &mut claim);
            // Invariant 1: the delete is the claim. Only a successful delete proves that
            // no other caller holds (or will receive) this message.
            if let Err(error) = self.queue.delete(&message.receipt).await {
                warn!(message_id = %message.message_id, error = %error, "pool message delete failed; not handing it out");
                claim.lost_deletes += 1;
                continue;
            }
            claim.consumed += 1;
            if usable.is_some() && !self.deleted_while_hidden(received_at) {
                warn!(message_id = %message.message_id, "pool message deleted after its visibility may have ended; not handing it out");
                claim.lost_deletes += 1;
                continue;
            }
            if let Some(session) = usable {
                claim.session = ClaimedSession {
                    session_id: session.session_id,
                    source: Source::Pool,
                    created_at: session.created_at,
                    last_ping_at: Some(session.last_ping_at),
                };
                return Ok(claim);
            }
        }
        match policy.on_empty {
            OnEmpty::Fresh => Ok(claim),
            OnEmpty::Fail => Err((ClaimError::PoolEmpty, claim.consumed)),
        }
    }

    /// The session in `body` if it may be handed out; otherwise why not, counted in `claim`.
    fn judge(&self, body: &str, message_id: &str, claim: &mut Claim) -> Option<PooledSession> {
        let policy = &self.policy;
        let now = self.clock.now_ms();
        let session = match PooledSession::parse_at(body, now) {
            Ok(session) => session,
            Err(reason) => {
                warn!(message_id, %reason, "discarding malformed pool message");
                claim.malformed_discarded += 1;
                return None;
            }
        };
        let session_log = session.session_id.log_id(&policy.log_key);
        match policy.lifecycle.freshness(&session, now) {
            Freshness::Fresh => {}
            stale => {
                info!(session = %session_log, freshness = ?stale, "discarding stale pool session");
                claim.stale_discarded += 1;
                return None;
            }
        }
        let left = policy.lifecycle.lifetime_left(&session, now);
        if left < policy.min_lifetime {
            info!(
                session = %session_log,
                lifetime_left_ms = millis(left),
                needed_ms = millis(policy.min_lifetime),
                "discarding a pool session too close to its max lifetime for this claimer"
            );
            claim.short_lived_discarded += 1;
            return None;
        }
        Some(session)
    }

    /// Whether the delete that just succeeded came while the message was surely still hidden
    /// under our receipt. Real SQS FIFO refuses a receipt whose visibility ended, but moto (and
    /// any queue that accepts stale handles) lets the delete succeed even though another claimer
    /// may have received the message since: the delete alone then proves nothing. The visibility
    /// clock starts no earlier than our receive request, so a delete answered before
    /// `received_at + visibility` (less a tenth for clock drift) landed while it was ours.
    fn deleted_while_hidden(&self, received_at: u64) -> bool {
        let visibility = millis(self.policy.visibility);
        let deadline = received_at.saturating_add(visibility - visibility / 10);
        self.clock.now_ms() < deadline
    }

    fn fresh_session(&self) -> ClaimedSession {
        ClaimedSession {
            session_id: SessionId::generate(),
            source: Source::Fresh,
            created_at: self.clock.now_ms(),
            last_ping_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::fakes::{MemoryPool, RecordingTrigger};
    use crate::ports::Received;

    const NOW: u64 = 1_700_000_000_000;

    fn lifecycle() -> Lifecycle {
        Lifecycle {
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            safety_margin: Duration::from_secs(60),
        }
    }

    fn session(created_ago_s: u64, pinged_ago_s: u64) -> PooledSession {
        PooledSession::new(
            SessionId::generate(),
            NOW - created_ago_s * 1000,
            NOW - pinged_ago_s * 1000,
        )
    }

    fn claimer(pool: MemoryPool, on_empty: OnEmpty) -> Claimer<MemoryPool, RecordingTrigger, ManualClock> {
        Claimer {
            queue: pool,
            trigger: RecordingTrigger::default(),
            clock: ManualClock::at(NOW),
            policy: ClaimPolicy {
                lifecycle: lifecycle(),
                on_empty,
                wait: Duration::ZERO,
                ..ClaimPolicy::default()
            },
        }
    }

    #[test]
    fn a_recently_pinged_young_session_is_fresh() {
        assert_eq!(lifecycle().freshness(&session(600, 10), NOW), Freshness::Fresh);
    }

    #[test]
    fn a_session_within_the_margin_of_its_idle_timeout_is_stale() {
        assert_eq!(lifecycle().freshness(&session(900, 840), NOW), Freshness::IdleExpired);
        assert_eq!(lifecycle().freshness(&session(900, 839), NOW), Freshness::Fresh);
    }

    #[test]
    fn a_session_within_the_margin_of_its_max_lifetime_is_stale_even_if_just_pinged() {
        assert_eq!(
            lifecycle().freshness(&session(28_740, 1), NOW),
            Freshness::LifetimeExpired
        );
        assert_eq!(lifecycle().freshness(&session(28_739, 1), NOW), Freshness::Fresh);
    }

    /// A claimer frozen between its receive and its delete for longer than the visibility.
    struct FrozenAfterReceive {
        pool: MemoryPool,
        clock: ManualClock,
    }

    impl PoolQueue for FrozenAfterReceive {
        async fn receive(&self, max: u8, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
            let received = self.pool.receive(max, wait, visibility).await;
            self.clock.advance(visibility);
            received
        }
        async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
            self.pool.delete(receipt).await
        }
        async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
            self.pool.enqueue(session).await
        }
        async fn depth(&self) -> Result<crate::ports::PoolDepth, QueueError> {
            self.pool.depth().await
        }
    }

    #[tokio::test]
    async fn a_delete_that_succeeds_after_the_visibility_ended_hands_nothing_out() {
        let clock = ManualClock::at(NOW);
        let pool = MemoryPool::with_clock(std::sync::Arc::new(clock.clone()));
        pool.accept_stale_receipts();
        pool.push(&session(100, 10));
        let claimer = Claimer {
            queue: FrozenAfterReceive {
                pool,
                clock: clock.clone(),
            },
            trigger: RecordingTrigger::default(),
            clock,
            policy: ClaimPolicy {
                lifecycle: lifecycle(),
                on_empty: OnEmpty::Fresh,
                wait: Duration::ZERO,
                ..ClaimPolicy::default()
            },
        };

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.source, Source::Fresh, "another claimer may hold it");
        assert_eq!((claim.lost_deletes, claim.consumed), (1, 1));
    }

    #[tokio::test]
    async fn claim_returns_a_pooled_session_and_requests_its_replacement() {
        let pooled = session(100, 10);
        let pool = MemoryPool::default();
        pool.push(&pooled);
        let claimer = claimer(pool, OnEmpty::Fresh);

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.session_id, pooled.session_id);
        assert_eq!(claim.session.source, Source::Pool);
        assert_eq!(claim.session.last_ping_at, Some(pooled.last_ping_at));
        assert_eq!(claimer.queue.len(), 0);
        assert_eq!(claimer.trigger.requests(), vec![1]);
    }

    #[tokio::test]
    async fn when_pool_is_empty_claim_falls_back_to_a_fresh_session_without_triggering() {
        let claimer = claimer(MemoryPool::default(), OnEmpty::Fresh);
        let claim = claimer.claim().await.unwrap();
        assert_eq!(claim.session.source, Source::Fresh);
        assert_eq!(claim.session.last_ping_at, None);
        assert!(claimer.trigger.requests().is_empty());
    }

    #[tokio::test]
    async fn a_fresh_fallback_can_ask_for_one_more_pooled_session() {
        let replacing = |pool| {
            let mut claimer = claimer(pool, OnEmpty::Fresh);
            claimer.policy.replace_fresh_fallbacks = true;
            claimer
        };
        let claimer = replacing(MemoryPool::default());
        let claim = claimer.claim().await.unwrap();
        assert_eq!(claim.session.source, Source::Fresh);
        assert_eq!(claimer.trigger.requests(), vec![1]);

        let pool = MemoryPool::default();
        pool.push(&session(100, 10));
        let claimer = replacing(pool);
        claimer.claim().await.unwrap();
        assert_eq!(
            claimer.trigger.requests(),
            vec![1],
            "a pool hit is replaced once, as before"
        );
    }

    #[tokio::test]
    async fn when_pool_is_empty_and_fallback_is_off_claim_fails() {
        let claimer = claimer(MemoryPool::default(), OnEmpty::Fail);
        assert!(matches!(claimer.claim().await, Err(ClaimError::PoolEmpty)));
    }

    #[tokio::test]
    async fn stale_and_malformed_messages_are_removed_and_replaced_before_a_fresh_one_is_claimed() {
        let pool = MemoryPool::default();
        pool.push(&session(1000, 900));
        pool.push_raw("{not json");
        let fresh = session(10, 5);
        pool.push(&fresh);
        let claimer = claimer(pool, OnEmpty::Fresh);

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.session_id, fresh.session_id);
        assert_eq!(
            (claim.stale_discarded, claim.malformed_discarded, claim.consumed),
            (1, 1, 3)
        );
        assert_eq!(claimer.queue.len(), 0);
        assert_eq!(claimer.trigger.requests(), vec![3]);
    }

    #[tokio::test]
    async fn only_stale_sessions_in_the_pool_means_a_fresh_fallback_and_their_replacement() {
        let pool = MemoryPool::default();
        pool.push(&session(28_800, 1));
        let claimer = claimer(pool, OnEmpty::Fail);
        assert!(matches!(claimer.claim().await, Err(ClaimError::PoolEmpty)));
        assert_eq!(claimer.trigger.requests(), vec![1]);
    }

    #[tokio::test]
    async fn a_session_whose_delete_fails_is_never_handed_out() {
        let pool = MemoryPool::default();
        let lost = session(10, 5);
        pool.push(&lost);
        pool.fail_next_deletes(1);
        let claimer = claimer(pool, OnEmpty::Fresh);

        let claim = claimer.claim().await.unwrap();

        assert_ne!(claim.session.session_id, lost.session_id);
        assert_eq!(claim.session.source, Source::Fresh);
        assert_eq!(claim.lost_deletes, 1);
        assert_eq!(claimer.queue.len(), 1, "the other consumer still holds it");
        assert!(
            claimer.trigger.requests().is_empty(),
            "a message that is not ours is not replaced by us"
        );
    }

    #[tokio::test]
    async fn a_failing_trigger_does_not_fail_the_claim() {
        let pool = MemoryPool::default();
        pool.push(&session(10, 5));
        let claimer = claimer(pool, OnEmpty::Fresh);
        claimer.trigger.fail_all();

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.source, Source::Pool);
        assert!(claim.trigger_failed);
    }

    #[tokio::test]
    async fn a_pool_message_stamped_in_the_future_beyond_the_skew_allowance_is_malformed_not_handed_out() {
        let pool = MemoryPool::default();
        let forged = PooledSession::new(SessionId::generate(), NOW, NOW + 3_600_000);
        pool.push(&forged);
        let created_ahead = PooledSession::new(SessionId::generate(), NOW + 3_600_000, NOW + 3_600_000);
        pool.push(&created_ahead);
        // A clock a minute ahead of ours is skew, not forgery.
        let skewed = PooledSession::new(SessionId::generate(), NOW + 60_000, NOW + 60_000);
        pool.push(&skewed);
        let claimer = claimer(pool, OnEmpty::Fresh);

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.session_id, skewed.session_id);
        assert_eq!(claim.malformed_discarded, 2);
        assert_eq!(claimer.trigger.requests(), vec![3]);
    }

    #[tokio::test]
    async fn hostile_timestamps_at_the_end_of_u64_neither_panic_nor_reach_a_caller() {
        let pool = MemoryPool::default();
        pool.push(&PooledSession::new(SessionId::generate(), u64::MAX, u64::MAX));
        pool.push(&PooledSession::new(SessionId::generate(), 0, u64::MAX));
        let claimer = claimer(pool, OnEmpty::Fresh);

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.source, Source::Fresh);
        assert_eq!(claim.malformed_discarded + claim.stale_discarded, 2);
        let extreme = Lifecycle {
            idle_timeout: Duration::MAX,
            max_lifetime: Duration::MAX,
            safety_margin: Duration::MAX,
        };
        let hostile = PooledSession::new(SessionId::generate(), u64::MAX, u64::MAX);
        assert_ne!(extreme.freshness(&hostile, u64::MAX), Freshness::Fresh);
        assert_eq!(lifecycle().freshness(&hostile, 0), Freshness::Fresh, "no wrap-around");
    }

    #[tokio::test]
    async fn a_claimer_needing_more_lifetime_than_a_session_has_left_gets_another_and_the_short_one_is_replaced() {
        let pool = MemoryPool::default();
        // 28_800 s of lifetime less the 60 s margin less 28_300 s of age: 440 s left.
        let short = session(28_300, 10);
        let long = session(100, 10);
        pool.push(&short);
        pool.push(&long);
        let mut claimer = claimer(pool, OnEmpty::Fresh);
        claimer.policy = claimer.policy.with_min_lifetime(Duration::from_secs(441));

        let claim = claimer.claim().await.unwrap();

        assert_eq!(claim.session.session_id, long.session_id);
        assert_eq!((claim.short_lived_discarded, claim.consumed), (1, 2));
        assert_eq!(claimer.queue.len(), 0, "the short-lived session left the pool");
        assert_eq!(claimer.trigger.requests(), vec![2], "and is replaced");
    }

    #[tokio::test]
    async fn a_session_with_exactly_the_needed_lifetime_left_is_handed_out() {
        let pool = MemoryPool::default();
        let exact = session(28_300, 10);
        pool.push(&exact);
        let mut claimer = claimer(pool, OnEmpty::Fail);
        claimer.policy = claimer.policy.with_min_lifetime(Duration::from_secs(440));
        assert_eq!(claimer.claim().await.unwrap().session.session_id, exact.session_id);
    }

    #[tokio::test]
    async fn claim_logs_never_carry_a_full_session_id() {
        let (logs, _guard) = crate::fakes::CapturedLogs::start();
        let pool = MemoryPool::default();
        let stale = session(1000, 900);
        let fresh = session(10, 5);
        pool.push(&stale);
        pool.push(&fresh);
        let claimer = claimer(pool, OnEmpty::Fresh);

        claimer.claim().await.unwrap();

        let text = logs.text();
        assert!(text.contains("stale"), "the discard is logged: {text}");
        let shown = stale.session_id.log_id(&claimer.policy.log_key).to_string();
        assert!(text.contains(&shown), "by its log id {shown}: {text}");
        for id in [&stale.session_id, &fresh.session_id] {
            assert!(!text.contains(id.as_str()), "a full session id in the logs: {text}");
        }
    }

    #[tokio::test]
    async fn a_claim_works_through_at_most_max_discards_unusable_messages() {
        let pool = MemoryPool::default();
        for _ in 0..15 {
            pool.push_raw("garbage");
        }
        let claimer = claimer(pool, OnEmpty::Fresh);
        let claim = claimer.claim().await.unwrap();
        assert_eq!(claim.malformed_discarded, 10);
        assert_eq!(claimer.queue.len(), 5);
    }
}
