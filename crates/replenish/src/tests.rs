use super::*;
use std::sync::Arc;
use warmpool_core::clock::ManualClock;
use warmpool_core::config::Env;
use warmpool_core::error::AgentErrorKind;
use warmpool_core::fakes::{MemoryPool, RecordingTrigger, ScriptedAgent, SettableVersion};
use warmpool_core::session::{AgentVersion, PooledSession, SessionId};

const NOW: u64 = 1_700_000_000_000;
const S: u64 = 1_000;
const SCHEDULE: &str = include_str!("../../../events/replenish-schedule.json");

type Function = Replenish<ScriptedAgent, MemoryPool, ManualClock, RecordingTrigger>;

fn function_with(extra: &[(&'static str, &'static str)]) -> (Function, ManualClock) {
    let mut pairs = vec![
        ("POOL_QUEUE_URL", "q"),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        (
            "AGENT_RUNTIME_ARN",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent-1",
        ),
        ("WARMUP_BACKOFF_BASE_MS", "1"),
        // One slot per millisecond: these tests are about decisions, not pacing.
        ("CREATION_BUDGET_PER_SEC", "1000"),
        ("MAX_CONCURRENT_RUNS", "1"),
    ];
    pairs.extend_from_slice(extra);
    let clock = ManualClock::at(NOW);
    let f = Replenish::new(
        Config::from_env(&Env::from_pairs(pairs)).unwrap(),
        ScriptedAgent::default(),
        MemoryPool::with_clock(Arc::new(clock.clone())),
        clock.clone(),
        RecordingTrigger::default(),
    );
    (f, clock)
}

fn function(target: &'static str) -> Function {
    function_with(&[("POOL_TARGET", target)]).0
}

fn event(raw: &str) -> LambdaEvent<Value> {
    LambdaEvent::new(serde_json::from_str(raw).unwrap(), Default::default())
}

fn session(created_ago_s: u64, pinged_ago_s: u64) -> PooledSession {
    PooledSession::new(SessionId::generate(), NOW - created_ago_s * S, NOW - pinged_ago_s * S)
}

#[tokio::test]
async fn a_count_trigger_warms_exactly_that_many_sessions() {
    let f = function("10");
    let report = f
        .handle(event(include_str!("../../../events/replenish-count.json")))
        .await
        .unwrap();
    assert_eq!((report.requested, report.enqueued), (3, 3));
    assert_eq!(f.queue.len(), 3);
    assert!(report.target.is_none() && report.sweep.is_none());
}

#[tokio::test]
async fn a_count_run_warms_no_more_than_the_pool_has_room_for() {
    let f = function("3");
    for _ in 0..4 {
        f.queue.push(&session(10, 10));
    }
    // Twice the target is 6: room for 2 of the 3 asked.
    let report = f.handle(event(r#"{"count": 3}"#)).await.unwrap();
    assert_eq!((report.requested, report.skipped, report.enqueued), (3, 1, 2));
    assert_eq!(f.queue.len(), 6);
}

#[tokio::test]
async fn the_schedule_tops_the_pool_up_to_its_target_counting_what_is_there() {
    let f = function("5");
    f.queue.push(&session(10, 10));
    f.queue.push(&session(10, 10));
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(report.dispatched, 3);
    assert_eq!(report.target.map(|t| t.value), Some(5));
    assert_eq!(f.trigger.requests().iter().sum::<u32>(), 3);
    assert!(
        f.agent.invocations().is_empty(),
        "the scheduled run warms nothing itself"
    );
}

#[tokio::test]
async fn a_full_pool_warms_nothing_on_schedule() {
    let f = function("1");
    f.queue.push(&session(10, 10));
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(report.dispatched, 0);
    assert!(f.trigger.requests().is_empty());
    assert!(f.agent.invocations().is_empty());
}

#[tokio::test]
async fn the_schedule_pings_due_sessions_and_replaces_the_ones_it_retired_or_found_stale() {
    let f = function("4");
    let due = session(1_000, 500);
    let fresh = session(100, 100);
    f.queue.push(&due);
    f.queue.push(&fresh);
    f.queue.push(&session(28_300, 500));
    f.queue.push(&session(2_000, 900));

    let report = f.handle(event(SCHEDULE)).await.unwrap();

    let sweep = report.sweep.clone().unwrap();
    assert_eq!(
        (sweep.heartbeats, sweep.retired, sweep.stale_discarded),
        (1, 1, 1),
        "{sweep:?}"
    );
    assert_eq!(report.dispatched, 2, "one retired and one stale replaced");
    assert_eq!(f.queue.len(), 2);
    let pooled = f.queue.sessions();
    let pinged = pooled.iter().find(|s| s.session_id == due.session_id).unwrap();
    assert_eq!(pinged.last_ping_at, NOW);
    assert!(pooled.iter().any(|s| s.session_id == fresh.session_id));
    assert_eq!(f.agent.stopped().len(), 1, "the retired session was stopped");
}

#[tokio::test]
async fn well_above_its_target_the_pool_is_trimmed_oldest_first_not_refilled() {
    let f = function("2");
    let oldest = session(1_000, 300);
    f.queue.push(&oldest);
    for _ in 0..5 {
        f.queue.push(&session(100, 10));
    }
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    let sweep = report.sweep.unwrap();
    // Target 2 plus a quarter of slack keeps 3.
    assert_eq!((sweep.trimmed, sweep.heartbeats, report.dispatched), (3, 0, 0));
    assert_eq!(f.queue.len(), 3);
    assert_eq!(f.agent.stopped().len(), 3);
    assert!(f.agent.stopped().contains(&oldest.session_id));
}

/// Fills the pool with `depth` sessions sent `waited_s` ago, as claims at
/// `depth / waited_s` per second would leave it, then runs the schedule.
async fn target_after(f: &Function, clock: &ManualClock, depth: usize, waited_s: u64) -> Target {
    empty(&f.queue).await;
    for _ in 0..depth {
        let now = clock.now_ms();
        f.queue.push(&PooledSession::new(SessionId::generate(), now, now));
    }
    clock.advance(Duration::from_secs(waited_s));
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    report.target.unwrap()
}

async fn empty(queue: &MemoryPool) {
    use warmpool_core::ports::PoolQueue;
    while !queue.is_empty() {
        for message in queue
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap()
        {
            queue.delete(&message.receipt).await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_adaptive_target_follows_the_claim_rate_the_pool_shows_up_and_down() {
    let (f, clock) = function_with(&[
        ("POOL_TARGET_MODE", "adaptive"),
        ("ADAPTIVE_SAFETY_FACTOR", "2"),
        ("ADAPTIVE_FLOOR", "2"),
        ("ADAPTIVE_DEFAULT_WARMUP_MS", "5000"),
        ("POOL_TARGET_MAX", "400"),
        ("MAX_CREATIONS_PER_RUN", "1"),
    ]);
    let low = target_after(&f, &clock, 20, 10).await;
    let high = target_after(&f, &clock, 80, 4).await;
    let low_again = target_after(&f, &clock, 20, 10).await;
    assert_eq!(low.claim_rate, Some(2.0));
    assert_eq!((low.value, high.value, low_again.value), (22, 202, 22));
}

#[tokio::test]
async fn a_large_top_up_goes_out_as_count_events_for_several_environments() {
    let (f, _) = function_with(&[("POOL_TARGET", "25"), ("MAX_CONCURRENT_RUNS", "4")]);
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(report.dispatched, 25);
    assert_eq!(f.trigger.requests(), vec![7, 6, 6, 6]);
}

#[tokio::test]
async fn a_top_up_event_that_cannot_be_sent_is_reported_for_the_next_run() {
    let f = function("3");
    f.trigger.fail_all();
    let report = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!((report.dispatched, report.dispatch_failed), (0, 3));
}

#[tokio::test]
async fn failed_warmups_are_reported_not_raised_and_not_enqueued() {
    let f = function("10");
    f.agent.fail_with([AgentErrorKind::Rejected]);
    let report = f.handle(event(r#"{"count": 2}"#)).await.unwrap();
    assert_eq!((report.enqueued, report.failed), (1, 1));
    assert_eq!(f.queue.len(), 1);
}

#[tokio::test]
async fn malformed_triggers_are_validation_errors() {
    let f = function("10");
    for raw in [
        r#"{"count": 0}"#,
        r#"{"count": 101}"#,
        r#"{"count": -1}"#,
        r#"{"count": 1, "extra": 1}"#,
        r#"{}"#,
        r#""hello""#,
    ] {
        let error = f.handle(event(raw)).await.unwrap_err();
        assert!(matches!(error, ReplenishError::Validation(_)), "{raw}");
    }
    assert!(f.agent.invocations().is_empty());
}

type Versioned = Replenish<ScriptedAgent, MemoryPool, ManualClock, RecordingTrigger, Arc<SettableVersion>>;

fn versioned(extra: &[(&'static str, &'static str)]) -> (Versioned, ManualClock, Arc<SettableVersion>) {
    let (f, clock) = function_with(extra);
    let versions = Arc::new(SettableVersion::default());
    (f.with_version_source(versions.clone()), clock, versions)
}

fn version(v: &str, since: u64) -> AgentVersion {
    AgentVersion::new(v, since).unwrap()
}

#[tokio::test]
async fn when_the_endpoint_serves_a_new_version_then_the_schedule_drains_the_old_sessions_and_tops_up() {
    let (f, _, versions) = versioned(&[("POOL_TARGET", "4"), ("VERSION_DRAIN_PER_SWEEP", "3")]);
    let v1 = version("1", NOW - 3_600 * S);
    for _ in 0..4 {
        f.queue.push(&session(100, 10).with_version(Some(&v1)));
    }
    versions.set(Some(version("2", NOW - 10 * S)));

    let report = f.handle(event(SCHEDULE)).await.unwrap();

    let sweep = report.sweep.clone().unwrap();
    assert_eq!((sweep.drained, report.dispatched), (3, 3), "{report:?}");
    assert_eq!(f.agent.stopped().len(), 3);
    assert_eq!(report.agent_version.as_deref(), Some("2"));
    let refill = f.handle(event(r#"{"count": 3}"#)).await.unwrap();
    assert_eq!(refill.enqueued, 3);
    let on_v2 = f
        .queue
        .sessions()
        .iter()
        .filter(|s| s.agent_version().is_some_and(|v| v.version == "2"))
        .count();
    assert_eq!(on_v2, 3, "the refill is recorded on the new version");
}

#[tokio::test]
async fn when_the_control_plane_cannot_be_read_then_the_last_version_read_is_recorded() {
    let (f, _, versions) = versioned(&[("POOL_TARGET", "10")]);
    versions.set(Some(version("5", NOW - 10 * S)));
    f.handle(event(r#"{"count": 1}"#)).await.unwrap();
    versions.set(None);
    let report = f.handle(event(r#"{"count": 1}"#)).await.unwrap();
    assert!(report.version_read_failed);
    assert!(
        f.queue
            .sessions()
            .iter()
            .all(|s| s.agent_version() == Some(version("5", NOW - 10 * S)))
    );
}

#[tokio::test]
async fn when_every_warmup_fails_then_replenish_stops_warming_and_probes_once_per_interval_until_one_succeeds() {
    let (f, clock) = function_with(&[
        ("POOL_TARGET", "20"),
        ("WARMUP_BREAKER_THRESHOLD", "3"),
        ("WARMUP_BREAKER_PROBE_SECS", "60"),
        ("WARMUP_CONCURRENCY", "1"),
    ]);
    f.agent.fail_with(std::iter::repeat_n(AgentErrorKind::Agent, 5));

    let first = f.handle(event(r#"{"count": 10}"#)).await.unwrap();
    assert_eq!((first.failed, first.breaker_skipped, first.breaker_open), (3, 7, true));
    let closed_door = f.handle(event(r#"{"count": 10}"#)).await.unwrap();
    assert_eq!((closed_door.failed, closed_door.breaker_skipped), (0, 10));
    let schedule = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(
        (schedule.dispatched, schedule.breaker_skipped),
        (0, 20),
        "no top-up while open"
    );
    assert_eq!(f.agent.invocations().len(), 3, "no creation spent while open");

    clock.advance(Duration::from_secs(60));
    let probe = f.handle(event(r#"{"count": 10}"#)).await.unwrap();
    assert_eq!((probe.failed, probe.breaker_skipped, probe.breaker_open), (1, 9, true));
    clock.advance(Duration::from_secs(60));
    let still_broken = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(
        (still_broken.failed, still_broken.breaker_open),
        (1, true),
        "the scheduled run probes too"
    );
    assert_eq!(still_broken.dispatched, 0);
    clock.advance(Duration::from_secs(60));
    let recovered = f.handle(event(SCHEDULE)).await.unwrap();
    assert_eq!(
        (recovered.enqueued, recovered.breaker_open),
        (1, false),
        "{recovered:?}"
    );
    assert_eq!(
        recovered.dispatched, 19,
        "the rest of the top-up goes out once the probe succeeded"
    );
    assert_eq!(f.agent.invocations().len(), 6);
}

#[tokio::test]
async fn with_a_lease_table_the_schedule_reports_sessions_in_use_against_the_target_and_sweeps_orphans() {
    use warmpool_core::lease::fakes::MemoryLeaseTable;
    use warmpool_core::lease::{Expect, Lease, LeaseOp, UserId};
    use warmpool_core::pool::claim::Source;
    let (f, clock) = function_with(&[("POOL_TARGET", "4"), ("LEASE_TABLE_NAME", "leases")]);
    let f = f.with_lease_table(MemoryLeaseTable::default());
    let settings = f.config.leases.as_ref().unwrap().settings;
    let lease = |user: &str, last_use_at: u64| {
        settings.rewritten(Lease {
            session_id: SessionId::generate(),
            user_id: Some(UserId::parse(user).unwrap()),
            source: Source::Pool,
            created_at: NOW - 60 * S,
            last_ping_at: None,
            bound_at: last_use_at,
            last_use_at,
            ended: None,
            stop_pending: false,
            due_at: None,
            write_id: String::new(),
        })
    };
    let table = f.leases.as_ref().unwrap();
    for (user, used_ago_s) in [("live", 10), ("idled-out", 900)] {
        let op = LeaseOp::User {
            lease: lease(user, NOW - used_ago_s * S),
            expect: Expect::Absent,
        };
        warmpool_core::lease::ports::LeaseTable::commit(table, &[op])
            .await
            .unwrap();
    }
    clock.set(NOW);

    let report = f.handle(event(SCHEDULE)).await.unwrap();

    let leases = report.leases.expect("the lease sweep ran");
    assert_eq!((leases.expired, leases.in_use), (1, 1), "{leases:?}");
    assert!((leases::utilisation_percent(leases.in_use, 4) - 25.0).abs() < 1e-9);
    assert!(f.agent.stopped().is_empty(), "an idled-out session is gone already");
}

#[test]
fn utilisation_is_in_use_over_target_and_full_when_sessions_are_in_use_with_no_target() {
    assert!((leases::utilisation_percent(8, 10) - 80.0).abs() < 1e-9);
    assert!((leases::utilisation_percent(0, 0)).abs() < 1e-9);
    assert!((leases::utilisation_percent(3, 0) - 100.0).abs() < 1e-9);
}
