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

fn on_version(version: &str, since: u64) -> PooledSession {
    let version = crate::session::AgentVersion::new(version, since).unwrap();
    session(600, 10).with_version(Some(&version))
}

#[tokio::test]
async fn when_a_claimer_has_seen_a_newer_agent_version_then_older_sessions_are_discarded_and_replaced() {
    let pool = MemoryPool::default();
    let newer = on_version("2", NOW - 1_000);
    pool.push(&newer);
    let older = [on_version("1", NOW - 3_600_000), session(600, 10)];
    for s in &older {
        pool.push(s);
    }
    let second_newer = on_version("2", NOW - 1_000);
    pool.push(&second_newer);
    let c = claimer(pool, OnEmpty::Fresh);
    let watch = VersionWatch::new(Duration::ZERO);

    let first = c.claim_with(&watch).await.unwrap();
    let second = c.claim_with(&watch).await.unwrap();

    assert_eq!(first.session.session_id, newer.session_id);
    assert_eq!(second.session.session_id, second_newer.session_id);
    assert_eq!((second.outdated_discarded, second.consumed), (2, 3));
    assert_eq!(c.trigger.requests(), vec![1, 3], "each discarded session is replaced");
}

#[tokio::test]
async fn a_claimer_without_a_version_watch_hands_out_any_version() {
    let pool = MemoryPool::default();
    pool.push(&on_version("2", NOW - 1_000));
    let older = on_version("1", NOW - 3_600_000);
    pool.push(&older);
    let c = claimer(pool, OnEmpty::Fresh);
    c.claim().await.unwrap();
    assert_eq!(c.claim().await.unwrap().session.session_id, older.session_id);
}
