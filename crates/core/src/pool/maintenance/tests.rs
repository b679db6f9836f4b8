use super::*;
use crate::clock::ManualClock;
use crate::error::AgentErrorKind;
use crate::fakes::{MemoryPool, ScriptedAgent};
use crate::pool::enqueue::SendRetry;
use crate::pool::target::Target;
use crate::pool::{Freshness, Lifecycle};
use crate::ports::PoolDepth;
use crate::session::{LogKey, PooledSession, SessionId, WARMUP_PAYLOAD};
use std::sync::Arc;
use std::time::Duration;

const NOW: u64 = 1_700_000_000_000;
const S: u64 = 1_000;

fn rules() -> MaintenanceRules {
    MaintenanceRules {
        lifecycle: Lifecycle::default(),
        heartbeat_after: Duration::from_secs(450),
        interval: Duration::from_secs(60),
        retire_spread: Duration::from_secs(1_800),
    }
}

fn session(created_ago_s: u64, pinged_ago_s: u64) -> PooledSession {
    PooledSession::new(SessionId::generate(), NOW - created_ago_s * S, NOW - pinged_ago_s * S)
}

fn limits(max_hidden: u8) -> SweepLimits {
    SweepLimits {
        max_hidden,
        visibility: Duration::from_secs(30),
        max_batches: at_least_one(100),
        time_budget: Duration::from_secs(20),
        send: SendRetry {
            max_tries: 4,
            backoff: crate::clock::Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(4),
            },
        },
        log_key: LogKey::development(),
    }
}

/// No batch after `start_by_ms`; ten seconds of real time for retries.
fn window(start_by_ms: u64) -> SweepWindow {
    SweepWindow::new(start_by_ms, Duration::from_secs(10))
}

#[test]
fn a_session_pinged_less_than_the_heartbeat_fraction_ago_is_kept() {
    assert_eq!(rules().decide(&session(600, 449), NOW, false), Action::Keep);
    assert_eq!(rules().decide(&session(600, 450), NOW, false), Action::Heartbeat);
}

#[test]
fn while_the_pool_is_over_target_sessions_are_trimmed_rather_than_kept_or_pinged() {
    assert_eq!(rules().decide(&session(600, 450), NOW, true), Action::Trim);
    assert_eq!(rules().decide(&session(600, 10), NOW, true), Action::Trim);
    assert_eq!(
        rules().decide(&session(1_000, 900), NOW, true),
        Action::Discard(Freshness::IdleExpired)
    );
}

#[test]
fn stale_sessions_are_discarded_whatever_else_is_due() {
    assert_eq!(
        rules().decide(&session(1_000, 840), NOW, false),
        Action::Discard(Freshness::IdleExpired)
    );
    assert_eq!(
        rules().decide(&session(28_790, 1), NOW, false),
        Action::Discard(Freshness::LifetimeExpired)
    );
}

#[test]
fn a_session_is_retired_before_claims_would_refuse_it_for_its_age() {
    let r = rules();
    let s = session(0, 0);
    let retire_at = r.retire_at(&s);
    let stale_at = s.created_at + 28_800 * S - 60 * S;
    assert!(retire_at <= stale_at);
    assert!(retire_at + 1_800 * S >= stale_at, "at most the spread early");
    let mut pinged = s.clone();
    pinged.last_ping_at = retire_at - 1;
    assert_eq!(r.decide(&pinged, retire_at - 1, false), Action::Keep);
    assert_eq!(r.decide(&pinged, retire_at, false), Action::Retire);
}

#[test]
fn a_due_session_that_would_pass_its_retirement_before_the_next_look_is_retired_now() {
    let r = rules();
    let s = session(0, 0);
    let retire_at = r.retire_at(&s);
    let look = |now: u64| {
        let mut due = s.clone();
        due.last_ping_at = now - 450 * S;
        r.decide(&due, now, false)
    };
    assert_eq!(look(retire_at - 510 * S), Action::Retire);
    assert_eq!(look(retire_at - 511 * S), Action::Heartbeat);
}

#[test]
fn retirements_of_sessions_created_together_spread_over_the_window() {
    let r = rules();
    let mut minutes: Vec<u64> = (0..300)
        .map(|_| r.retire_at(&PooledSession::new(SessionId::generate(), NOW, NOW)) / 60_000)
        .collect();
    minutes.sort_unstable();
    minutes.dedup();
    assert!(
        minutes.len() >= 25,
        "300 sessions retire in only {} minutes",
        minutes.len()
    );
    let stagger = r.stagger(&SessionId::parse("a".repeat(36)).unwrap());
    assert_eq!(stagger, r.stagger(&SessionId::parse("a".repeat(36)).unwrap()));
    assert!(stagger <= r.retire_spread);
}

#[test]
fn settings_that_would_let_sessions_go_stale_between_sweeps_are_refused() {
    let lifecycle = Lifecycle::default();
    let env = Env::from_pairs([(HEARTBEAT_FRACTION, "0.9")]);
    assert!(matches!(
        MaintenanceRules::from_env(&env, lifecycle),
        Err(ConfigError::Invalid { key: INTERVAL, .. })
    ));
    let env = Env::from_pairs([(RETIRE_SPREAD, "28300")]);
    assert!(MaintenanceRules::from_env(&env, lifecycle).is_err());
    assert_eq!(MaintenanceRules::from_env(&Env::default(), lifecycle).unwrap(), rules());
    assert!(SweepLimits::from_env(&Env::from_pairs([(SWEEP_MAX_HIDDEN, "11")])).is_err());
}

#[test]
fn only_what_is_above_the_target_and_its_slack_is_trimmed() {
    let depth = |visible| PoolDepth { visible, in_flight: 0 };
    assert_eq!(surplus(100, depth(125)), 0);
    assert_eq!(surplus(100, depth(140)), 15);
    assert_eq!(surplus(5, depth(9)), 2);
    assert_eq!(surplus(0, depth(3)), 3);
}

#[test]
fn a_count_run_has_room_up_to_twice_the_target_only() {
    let sizing = |target, visible| Sizing {
        depth: PoolDepth { visible, in_flight: 0 },
        oldest_wait_ms: None,
        target: Target {
            value: target,
            mode: crate::pool::target::Mode::Static,
            claim_rate: None,
        },
    };
    assert_eq!(sizing(100, 0).room(), 200);
    assert_eq!(sizing(100, 195).room(), 5);
    assert_eq!(sizing(100, 300).room(), 0);
}

#[test]
fn the_top_up_counts_what_the_sweep_removed_and_respects_the_cap() {
    let before = PoolDepth {
        visible: 8,
        in_flight: 1,
    };
    let sweep = SweepReport {
        retired: 2,
        heartbeat_failures: 1,
        ..SweepReport::default()
    };
    assert_eq!(top_up(10, before, &sweep, 50), 4);
    assert_eq!(top_up(10, before, &sweep, 3), 3);
    assert_eq!(top_up(5, before, &sweep, 50), 0);
}

struct Fixture {
    clock: ManualClock,
    pool: MemoryPool,
    agent: ScriptedAgent,
}

fn fixture() -> Fixture {
    let clock = ManualClock::at(NOW);
    Fixture {
        pool: MemoryPool::with_clock(Arc::new(clock.clone())),
        clock,
        agent: ScriptedAgent::default(),
    }
}

impl Fixture {
    async fn sweep(&self, max_hidden: u8, surplus: u32) -> SweepReport {
        sweep(
            &self.pool,
            &self.agent,
            &self.clock,
            &rules(),
            &limits(max_hidden),
            surplus,
            window(NOW + 20 * S),
        )
        .await
    }
}

#[tokio::test]
async fn a_heartbeat_pings_and_re_enqueues_with_the_new_ping_time_and_the_same_creation() {
    let f = fixture();
    let due = session(1_000, 500);
    f.pool.push(&due);

    let report = f.sweep(10, 0).await;

    assert_eq!(report.heartbeats, 1);
    assert_eq!(
        f.agent.invocations(),
        vec![(due.session_id.clone(), WARMUP_PAYLOAD.to_vec())]
    );
    let pooled = f.pool.sessions();
    assert_eq!(pooled.len(), 1);
    assert_eq!(pooled[0].session_id, due.session_id);
    assert_eq!((pooled[0].created_at, pooled[0].last_ping_at), (due.created_at, NOW));
    assert_ne!(pooled[0].deduplication_id(), due.deduplication_id());
}

#[tokio::test]
async fn a_failed_ping_drops_the_session_and_counts_it_for_replacement() {
    let f = fixture();
    f.pool.push(&session(1_000, 500));
    f.agent.fail_with([AgentErrorKind::Agent]);

    let report = f.sweep(10, 0).await;

    assert_eq!(
        (report.heartbeats, report.heartbeat_failures, report.removed()),
        (0, 1, 1)
    );
    assert!(f.pool.is_empty());
    assert_eq!(f.agent.stopped().len(), 1, "a crashed agent's microVM may still bill");
}

#[tokio::test]
async fn a_heartbeat_whose_re_enqueue_is_refused_stops_the_session_and_never_duplicates_it() {
    let f = fixture();
    f.pool.push(&session(1_000, 500));
    f.pool.refuse_next_enqueues(1);
    let report = f.sweep(10, 0).await;
    assert_eq!(report.heartbeat_failures, 1);
    assert!(f.pool.is_empty());
    assert_eq!(f.agent.stopped().len(), 1);
}

#[tokio::test]
async fn a_heartbeat_whose_re_enqueue_lost_its_answer_keeps_the_session_pooled_once() {
    let f = fixture();
    let due = session(1_000, 500);
    f.pool.push(&due);
    f.pool.lose_next_enqueue_answers(1);
    let report = f.sweep(10, 0).await;
    assert!(f.agent.stopped().is_empty(), "{report:?}");
    assert_eq!(report.heartbeats, 1);
    let pooled = f.pool.sessions();
    assert_eq!(pooled.len(), 1);
    assert_eq!(
        (pooled[0].session_id.clone(), pooled[0].last_ping_at),
        (due.session_id, NOW)
    );
}

#[tokio::test]
async fn a_retired_session_whose_stop_is_throttled_is_stopped_on_a_retry_with_the_same_token() {
    let f = fixture();
    let old = session(28_300, 500);
    f.pool.push(&old);
    f.agent
        .fail_stops_with([AgentErrorKind::Throttled, AgentErrorKind::Server]);
    let report = f.sweep(10, 0).await;
    assert_eq!((report.retired, report.stop_failures), (1, 0), "{report:?}");
    assert_eq!(f.agent.stopped(), vec![old.session_id.clone()]);
    let calls = f.agent.stop_calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(_, token)| *token == calls[0].1));
}

#[tokio::test]
async fn a_stop_answered_not_found_means_the_session_is_gone_and_a_refusal_is_not_retried() {
    let f = fixture();
    f.pool.push(&session(28_300, 500));
    f.agent.fail_stops_with([AgentErrorKind::NotFound]);
    let gone = f.sweep(10, 0).await;
    assert_eq!((gone.retired, gone.stop_failures), (1, 0), "{gone:?}");
    assert_eq!(f.agent.stop_calls().len(), 1);

    f.pool.push(&session(28_300, 500));
    f.agent.fail_stops_with([AgentErrorKind::Rejected]);
    let refused = f.sweep(10, 0).await;
    assert_eq!(refused.stop_failures, 1, "{refused:?}");
    assert_eq!(f.agent.stop_calls().len(), 2, "access denied is not retried");
}

#[tokio::test]
async fn a_pool_message_stamped_far_in_the_future_is_removed_as_malformed() {
    let f = fixture();
    f.pool
        .push(&PooledSession::new(SessionId::generate(), NOW, NOW + 3_600 * S));
    f.pool
        .push(&PooledSession::new(SessionId::generate(), u64::MAX, u64::MAX));
    let report = f.sweep(10, 0).await;
    assert_eq!(report.malformed_discarded, 2, "{report:?}");
    assert!(f.pool.is_empty());
    assert!(f.agent.invocations().is_empty());
}

#[tokio::test]
async fn sweep_logs_never_carry_a_full_session_id() {
    let (logs, _guard) = crate::fakes::CapturedLogs::start();
    let f = fixture();
    let sessions = [session(1_000, 500), session(28_300, 500), session(2_000, 900)];
    for s in &sessions {
        f.pool.push(s);
    }
    f.agent.fail_with([AgentErrorKind::Agent]);
    f.sweep(10, 0).await;
    let text = logs.text();
    assert!(text.contains("heartbeat failed") && text.contains("let go"), "{text}");
    for s in &sessions {
        assert!(
            !text.contains(s.session_id.as_str()),
            "a full session id in the logs: {text}"
        );
    }
}

#[tokio::test]
async fn a_session_near_its_max_lifetime_is_deleted_and_stopped_not_pinged() {
    let f = fixture();
    // Due for a heartbeat, and its retirement falls before the sweep after next.
    let old = session(28_300, 500);
    f.pool.push(&old);

    let report = f.sweep(10, 0).await;

    assert_eq!((report.retired, report.heartbeats), (1, 0), "{report:?}");
    assert_eq!(f.agent.stopped(), vec![old.session_id.clone()]);
    assert!(f.agent.invocations().is_empty());
    assert!(f.pool.is_empty());
}

#[tokio::test]
async fn above_target_due_sessions_are_trimmed_down_to_it_and_stopped() {
    let f = fixture();
    for _ in 0..3 {
        f.pool.push(&session(1_000, 500));
    }
    let report = f.sweep(10, 2).await;
    assert_eq!((report.trimmed, report.heartbeats), (2, 1));
    assert_eq!(f.agent.stopped().len(), 2);
    assert_eq!(f.pool.len(), 1);
}

#[tokio::test]
async fn stale_and_malformed_messages_are_removed_without_a_ping() {
    let f = fixture();
    f.pool.push(&session(2_000, 900));
    f.pool.push_raw("{not json");
    let report = f.sweep(10, 0).await;
    assert_eq!((report.stale_discarded, report.malformed_discarded), (1, 1));
    assert!(f.pool.is_empty());
    assert!(f.agent.invocations().is_empty());
}

#[tokio::test]
async fn untouched_messages_are_released_at_once_and_the_sweep_never_holds_more_than_its_bound() {
    let f = fixture();
    for _ in 0..12 {
        f.pool.push(&session(1_000, 500));
    }
    for _ in 0..20 {
        f.pool.push(&session(100, 5));
    }

    let report = f.sweep(4, 0).await;

    assert_eq!(report.heartbeats, 12);
    assert!(report.max_hidden <= 4);
    assert!(report.released > 0);
    assert_eq!(f.pool.hidden(), 0, "everything released or deleted");
    assert_eq!(f.pool.len(), 32);
    assert_eq!(report.ended, SweepEnd::Converged);
}

#[tokio::test]
async fn repeated_sweeps_converge_the_second_finds_nothing_to_do() {
    let f = fixture();
    for i in 0..25 {
        f.pool.push(&session(1_000 + i, 300 + 20 * i));
    }
    f.pool.push(&session(28_300, 500));
    let first = f.sweep(10, 0).await;
    let second = f.sweep(10, 0).await;
    assert_eq!((first.heartbeats, first.retired), (17, 1), "{first:?}");
    assert_eq!(
        (second.heartbeats, second.removed(), second.lost),
        (0, 0, 0),
        "{second:?}"
    );
}

#[tokio::test]
async fn the_sweep_starts_no_batch_after_its_deadline_and_stops_at_the_batch_limit() {
    let f = fixture();
    for _ in 0..30 {
        f.pool.push(&session(1_000, 500));
    }
    let late = sweep(&f.pool, &f.agent, &f.clock, &rules(), &limits(10), 0, window(NOW)).await;
    assert_eq!((late.ended, late.batches), (SweepEnd::Deadline, 0));
    let one = SweepLimits {
        max_batches: at_least_one(1),
        ..limits(10)
    };
    let capped = sweep(&f.pool, &f.agent, &f.clock, &rules(), &one, 0, window(NOW + S)).await;
    assert_eq!((capped.ended, capped.heartbeats), (SweepEnd::BatchLimit, 10));
}

#[tokio::test]
async fn only_a_target_that_needs_the_claim_rate_reads_the_oldest_message_when_sizing() {
    let f = fixture();
    f.pool.push(&session(10, 10));
    f.clock.advance(Duration::from_secs(1));
    let sizing = size(&f.pool, &f.clock, &TargetPolicy::Static(5), 10, None)
        .await
        .unwrap();
    assert_eq!(sizing.oldest_wait_ms, None);
    let settings = Settings {
        rules: rules(),
        limits: limits(10),
        target: TargetPolicy::Static(5),
        max_creations_per_run: at_least_one(50),
    };
    let round = round(&f.pool, &f.agent, &f.clock, &settings, None, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(round.sizing.oldest_wait_ms.is_some(), "the round reports it");
}

#[tokio::test]
async fn a_message_another_consumer_took_over_is_left_alone() {
    let f = fixture();
    f.pool.push(&session(1_000, 500));
    f.pool.fail_next_deletes(1);
    let report = f.sweep(10, 0).await;
    assert_eq!((report.lost, report.heartbeats), (1, 0));
    assert!(f.agent.invocations().is_empty(), "not ours: no ping");
}

fn on_version(version: &str, since: u64, created_ago_s: u64, pinged_ago_s: u64) -> PooledSession {
    let version = crate::session::AgentVersion::new(version, since).unwrap();
    session(created_ago_s, pinged_ago_s).with_version(Some(&version))
}

#[tokio::test]
async fn when_the_agent_version_changed_then_a_sweep_stops_outdated_sessions_up_to_its_drain_cap() {
    use crate::pool::version::Drain;
    let f = fixture();
    for _ in 0..5 {
        f.pool.push(&on_version("1", NOW - 3_600 * S, 100, 10));
    }
    f.pool.push(&session(100, 10));
    let current = on_version("2", NOW - 60 * S, 50, 10);
    f.pool.push(&current);
    let drain = Drain {
        current: current.agent_version(),
        grace: Duration::ZERO,
        per_sweep: 4,
    };
    let plan = SweepPlan {
        rules: &rules(),
        limits: &limits(10),
        surplus: 0,
        drain: &drain,
    };

    let report = sweep_with(&f.pool, &f.agent, &f.clock, &plan, window(NOW + 20 * S)).await;

    assert_eq!((report.drained, report.removed()), (4, 4), "{report:?}");
    assert_eq!(
        f.agent.stopped().len(),
        4,
        "drained sessions are stopped, not left to idle"
    );
    let left = f.pool.sessions();
    assert_eq!(
        left.len(),
        3,
        "the cap paces the drain: the rest waits for the next sweep"
    );
    assert!(left.iter().any(|s| s.session_id == current.session_id));
}

#[tokio::test]
async fn within_the_grace_a_sweep_drains_nothing() {
    use crate::pool::version::Drain;
    let f = fixture();
    f.pool.push(&on_version("1", NOW - 3_600 * S, 100, 10));
    let drain = Drain {
        current: crate::session::AgentVersion::new("2", NOW - 10 * S).ok(),
        grace: Duration::from_secs(60),
        per_sweep: 10,
    };
    let plan = SweepPlan {
        rules: &rules(),
        limits: &limits(10),
        surplus: 0,
        drain: &drain,
    };
    let report = sweep_with(&f.pool, &f.agent, &f.clock, &plan, window(NOW + 20 * S)).await;
    assert_eq!((report.drained, f.pool.len()), (0, 1));
}

#[tokio::test]
async fn a_heartbeat_keeps_the_version_the_session_was_warmed_on() {
    let f = fixture();
    let due = on_version("7", NOW - 3_600 * S, 1_000, 500);
    f.pool.push(&due);
    let report = f.sweep(10, 0).await;
    assert_eq!(report.heartbeats, 1);
    assert_eq!(f.pool.sessions()[0].agent_version(), due.agent_version());
}
