//! Wire-level tests of the pool's lifecycle: heartbeats, retirement, the sweep's bound and the
//! creation budget, with the real SDK against moto (SQS) and the AgentCore emulator on
//! 127.0.0.1. Lifetimes are scaled down to seconds, in the emulator and in the functions'
//! `SESSION_*` settings alike.

use agentcore_emulator::lifecycle::{LifecycleConfig, SessionState};
use agentcore_emulator::{FaultsUpdate, RunningEmulator};
use lambda_runtime::LambdaEvent;
use replenish::RunReport;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use warmpool_core::aws::{AgentCoreRuntime, SqsPoolQueue};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::Lifecycle;
use warmpool_core::pool::claim::{ClaimPolicy, Claimer, OnEmpty, Source};
use warmpool_core::pool::maintenance::{MaintenanceRules, SweepLimits, SweepWindow, sweep};
use warmpool_core::ports::{AgentRuntime, PoolMaintenance, PoolQueue, ReplenishTrigger};
use warmpool_core::session::{LogKey, PooledSession, SessionId, WARMUP_PAYLOAD};
use warmpool_core::stop::{STOP_BACKOFF, StopOutcome, stop_until_gone};
use warmpool_tests::faults::{self, Fault, FaultInjector};
use warmpool_tests::*;

const SCHEDULE: &str = include_str!("../../events/replenish-schedule.json");

/// replenish in-process behind the relay (its top-up events come back to it), with the
/// settings a test scales down.
async fn replenish(
    queue: &SqsPoolQueue,
    emulator: &RunningEmulator,
    settings: &[(&str, &str)],
) -> (Arc<ReplenishFunction>, warmpool_local_stack::relay::RunningRelay) {
    let (function, relay, _) = replenish_with_relay(queue.clone(), emulator, settings).await;
    (function, relay)
}

/// Until every top-up event the relay accepted has run.
async fn settled(relay: &warmpool_local_stack::relay::RunningRelay) {
    tokio::time::timeout(Duration::from_secs(30), relay.stats.idle())
        .await
        .expect("top-up runs finished");
}

async fn run<A, Q, C, T>(function: &replenish::Replenish<A, Q, C, T>, event: &str) -> RunReport
where
    A: AgentRuntime,
    Q: PoolMaintenance,
    C: Clock,
    T: ReplenishTrigger,
{
    let payload = serde_json::from_str(event).expect("event JSON");
    function
        .handle(LambdaEvent::new(payload, lambda_runtime::Context::default()))
        .await
        .expect("replenish run")
}

fn emulator_lifecycle(idle_secs: u64, lifetime_secs: u64) -> LifecycleConfig {
    LifecycleConfig {
        idle_timeout: Duration::from_secs(idle_secs),
        max_lifetime: Duration::from_secs(lifetime_secs),
        ..fast_lifecycle()
    }
}

/// Sessions idle out after 6 s; a heartbeat is due 1.5 s after a ping; the schedule runs every
/// 2 s (the tests run it more often, which the rules allow).
const SCALED: [(&str, &str); 7] = [
    ("RETIRE_SPREAD_SECS", "1"),
    ("SESSION_IDLE_TIMEOUT_SECS", "6"),
    ("SESSION_SAFETY_MARGIN_SECS", "1"),
    ("HEARTBEAT_FRACTION", "0.25"),
    ("MAINTENANCE_INTERVAL_SECS", "2"),
    ("SWEEP_TIME_BUDGET_SECS", "1"),
    ("POOL_TARGET", "1"),
];

#[tokio::test]
async fn heartbeats_keep_a_pooled_session_warm_across_more_than_two_idle_timeouts() {
    let queue = pool_queue("heartbeat").await;
    let emulator = emulator(emulator_lifecycle(6, 300)).await;
    let mut settings = SCALED.to_vec();
    settings.push(("SESSION_MAX_LIFETIME_SECS", "300"));
    let (function, _relay) = replenish(&queue, &emulator, &settings).await;
    assert_eq!(run(&function, r#"{"count": 1}"#).await.enqueued, 1);
    let warmed_at = SystemClock.now_ms();

    // 14 s of schedule: more than two idle timeouts of 6 s.
    let mut heartbeats = 0;
    for _ in 0..28 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        heartbeats += run(&function, SCHEDULE).await.sweep.expect("a sweep").heartbeats;
    }
    assert!(SystemClock.now_ms() - warmed_at > 12_000);

    let claimer = Claimer {
        queue: queue.clone(),
        trigger: RecordingTrigger::default(),
        clock: SystemClock,
        policy: ClaimPolicy {
            lifecycle: Lifecycle {
                idle_timeout: Duration::from_secs(6),
                max_lifetime: Duration::from_secs(300),
                safety_margin: Duration::from_secs(1),
            },
            on_empty: OnEmpty::Fail,
            ..ClaimPolicy::default()
        },
    };
    let claim = claimer.claim().await.expect("a pooled session");
    agent_runtime(&emulator)
        .invoke(&claim.session.session_id, br#"{"question":"still warm?"}"#)
        .await
        .expect("invoke");

    assert_eq!(claim.session.source, Source::Pool);
    assert!(heartbeats >= 6, "only {heartbeats} heartbeats");
    let sessions = emulator.sessions();
    let view = session_view(&sessions, &claim.session.session_id);
    assert_eq!(view.generation, 1, "the microVM never expired: {view:?}");
    let colds: Vec<bool> = view.history.iter().map(|h| h.cold).collect();
    assert_eq!(
        colds.iter().filter(|c| **c).count(),
        1,
        "only the warmup was cold: {colds:?}"
    );
    assert_eq!(colds.last(), Some(&false), "our call landed warm");
}

#[tokio::test]
async fn a_session_near_max_lifetime_is_stopped_before_it_and_replaced() {
    let queue = pool_queue("retire").await;
    let emulator = emulator(emulator_lifecycle(6, 10)).await;
    let mut settings = SCALED.to_vec();
    settings.push(("SESSION_MAX_LIFETIME_SECS", "10"));
    let (function, relay) = replenish(&queue, &emulator, &settings).await;
    assert_eq!(run(&function, r#"{"count": 1}"#).await.enqueued, 1);
    let warmed = emulator.sessions();
    assert_eq!(warmed.len(), 1);
    let first = SessionId::parse(warmed[0].session_id.clone()).expect("session id");

    let mut retired_at_emulator_ms = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let report = run(&function, SCHEDULE).await;
        if report.sweep.expect("a sweep").retired > 0 {
            retired_at_emulator_ms = Some(emulator.now_ms());
            break;
        }
    }

    let retired_at = retired_at_emulator_ms.expect("the session was retired within 12 s");
    settled(&relay).await;
    let sessions = emulator.sessions();
    let view = session_view(&sessions, &first);
    // The emulator only stops an active microVM: "stopped" means before idle and max lifetime.
    assert_eq!(view.state, SessionState::Stopped, "{view:?}");
    let created = view.created_at_ms;
    assert!(retired_at < created + 10_000, "retired after the max lifetime");
    assert!(emulator.stats().stops >= 1);
    let pooled = drain_pooled(&queue).await;
    assert_eq!(pooled.len(), 1, "replaced one for one");
    assert_ne!(pooled[0].session_id, first);
    assert_eq!(
        session_view(&sessions, &pooled[0].session_id).state,
        SessionState::Active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_hides_more_than_its_bound_and_releases_what_it_does_not_touch() {
    const BOUND: u8 = 4;
    let queue = pool_queue("sweep-bound").await;
    let emulator = emulator(LifecycleConfig {
        creation_rate_per_sec: 1_000.0,
        ..fast_lifecycle()
    })
    .await;
    let agent = agent_runtime(&emulator);
    let now = SystemClock.now_ms();
    // Oldest first, as the queue orders them: 30 due for a heartbeat, then 20 pinged just now.
    let mut due = Vec::new();
    for _ in 0..30 {
        let s = PooledSession::new(SessionId::generate(), now - 600_000, now - 500_000);
        queue.enqueue(&s).await.expect("enqueue");
        due.push(s.session_id);
    }
    for _ in 0..20 {
        let s = PooledSession::new(SessionId::generate(), now - 600_000, now - 1_000);
        queue.enqueue(&s).await.expect("enqueue");
    }
    let rules = MaintenanceRules::from_env(&Env::default(), Lifecycle::default()).expect("rules");
    let limits = SweepLimits {
        max_hidden: BOUND,
        ..SweepLimits::from_env(&Env::default()).expect("limits")
    };

    // Watch the queue from outside while the sweep runs.
    let most_hidden = Arc::new(AtomicU64::new(0));
    let sweeping = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (queue, most_hidden, sweeping) = (queue.clone(), most_hidden.clone(), sweeping.clone());
        tokio::spawn(async move {
            for _ in 0..10_000 {
                if !sweeping.load(Ordering::SeqCst) {
                    break;
                }
                let depth = queue.depth().await.expect("depth");
                most_hidden.fetch_max(depth.in_flight, Ordering::SeqCst);
            }
        })
    };
    let deadline = SystemClock.now_ms() + 60_000;
    let window = SweepWindow::new(deadline, Duration::from_secs(60));
    let report = sweep(&queue, &agent, &SystemClock, &rules, &limits, 0, window).await;
    sweeping.store(false, Ordering::SeqCst);
    watcher.await.expect("watcher");

    assert_eq!(report.heartbeats, 30, "{report:?}");
    assert!(report.released > 0, "the untouched sessions were handed back");
    assert!(report.max_hidden <= u32::from(BOUND), "{report:?}");
    assert!(most_hidden.load(Ordering::SeqCst) <= u64::from(BOUND));
    assert_eq!(queue.depth().await.expect("depth").in_flight, 0, "nothing left hidden");
    let pooled = drain_pooled(&queue).await;
    assert_eq!(pooled.len(), 50, "every session still pooled, none twice");
    let mut ids: Vec<_> = pooled.iter().map(|s| s.session_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    for s in pooled.iter().filter(|s| due.contains(&s.session_id)) {
        assert!(s.last_ping_at >= now, "a due session was not pinged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replenish_runs_stay_inside_the_creation_budget() {
    const BUDGET: u32 = 6;
    const RUNS: u32 = 3;
    let queue = pool_queue("budget").await;
    // The emulator enforces the same quota, as a token bucket with burst = rate.
    let emulator = emulator(LifecycleConfig {
        creation_rate_per_sec: f64::from(BUDGET),
        ..fast_lifecycle()
    })
    .await;
    // Three execution environments, each with its own pacer, running at once.
    let mut functions = Vec::new();
    for _ in 0..RUNS {
        let settings = [
            ("CREATION_BUDGET_PER_SEC", "6"),
            ("MAX_CONCURRENT_RUNS", "3"),
            ("WARMUP_CONCURRENCY", "8"),
            ("POOL_TARGET", "100"),
        ];
        functions.push(replenish(&queue, &emulator, &settings).await.0);
    }

    let runs: Vec<_> = functions
        .iter()
        .map(|f| {
            let f = f.clone();
            tokio::spawn(async move { run(&f, r#"{"count": 8}"#).await })
        })
        .collect();
    let mut enqueued = 0;
    for handle in runs {
        enqueued += handle.await.expect("run").enqueued;
    }

    let stats = emulator.stats();
    assert_eq!(enqueued, 24);
    assert_eq!(stats.creations, 24);
    assert_eq!(stats.throttled, 0, "the emulator's quota never had to refuse one");
    // Exact slots give at most BUDGET in any second; network jitter can add at most one per
    // run at a window's edge (see warmpool_core::pool::quota).
    assert!(
        stats.max_creations_in_any_second <= BUDGET + RUNS,
        "{} in one second: {:?}",
        stats.max_creations_in_any_second,
        stats.creations_per_second
    );
    assert!(
        stats.creations_per_second.values().all(|n| *n <= BUDGET + RUNS),
        "{:?}",
        stats.creations_per_second
    );
    assert!(
        stats.creations_per_second.len() >= 4,
        "24 creations at 6/s span at least four seconds: {:?}",
        stats.creations_per_second
    );
}

#[tokio::test]
async fn a_prewarm_window_raises_an_adaptive_pool_above_its_maximum_while_it_lasts() {
    let (queue, other_queue) = (pool_queue("prewarm").await, pool_queue("no-prewarm").await);
    let emulator = emulator(fast_lifecycle()).await;
    let adaptive = [("POOL_TARGET_MODE", "adaptive"), ("POOL_TARGET_MAX", "2")];
    // Two empty pools, sized without a window and inside an all-day one.
    let (plain, plain_relay) = replenish(&other_queue, &emulator, &adaptive).await;
    let mut settings = adaptive.to_vec();
    settings.push(("POOL_TARGET_SCHEDULE", "* 00:00-24:00=6"));
    let (prewarmed, relay) = replenish(&queue, &emulator, &settings).await;

    let without = run(&plain, SCHEDULE).await.target.expect("a target");
    assert_eq!(without.value, 2, "an empty pool, clamped to the adaptive maximum");
    let report = run(&prewarmed, SCHEDULE).await;
    assert_eq!(report.target.expect("a target").value, 6);
    assert_eq!(report.dispatched, 6);
    settled(&relay).await;
    settled(&plain_relay).await;

    let pooled = drain_pooled(&queue).await;
    assert_eq!(pooled.len(), 6, "the top-up reached the window's target");
    let elsewhere = drain_pooled(&other_queue).await;
    assert_eq!(elsewhere.len(), 2, "the pool without the window stopped at its maximum");
}

/// Heartbeat due 15 s after a ping, idle timeout 60 s, max lifetime 300 s: long enough that a
/// test's run is never near a limit it does not aim at.
const LONG: [(&str, &str); 9] = [
    ("RETIRE_SPREAD_SECS", "1"),
    ("SESSION_IDLE_TIMEOUT_SECS", "60"),
    ("SESSION_MAX_LIFETIME_SECS", "300"),
    ("SESSION_SAFETY_MARGIN_SECS", "1"),
    ("HEARTBEAT_FRACTION", "0.25"),
    ("MAINTENANCE_INTERVAL_SECS", "2"),
    ("SWEEP_TIME_BUDGET_SECS", "1"),
    ("POOL_TARGET", "1"),
    ("FALLBACK_BUDGET_SECS", "20"),
];

type FaultyReplenish = replenish::Replenish<AgentCoreRuntime, SqsPoolQueue, SystemClock, RecordingTrigger>;

/// replenish in-process over `queue` and `agent`; its top-up events are only recorded.
fn replenish_over(queue: &SqsPoolQueue, agent: AgentCoreRuntime) -> FaultyReplenish {
    let mut pairs = vec![
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
    ];
    pairs.extend_from_slice(&LONG);
    let config = replenish::Config::from_env(&Env::from_pairs(pairs)).expect("replenish config");
    replenish::Replenish::new(config, agent, queue.clone(), SystemClock, RecordingTrigger::default())
}

/// The AgentCore client as the functions build it (no SDK retries), with `faults` attached.
fn agent_with_faults(emulator: &RunningEmulator, faults: &FaultInjector) -> AgentCoreRuntime {
    let sdk = sdk_config(&emulator.endpoint_url());
    let config = aws_sdk_bedrockagentcore::config::Builder::from(&sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .interceptor(faults.clone())
        .build();
    AgentCoreRuntime::new(
        aws_sdk_bedrockagentcore::Client::from_conf(config),
        RUNTIME_ARN,
        "DEFAULT",
    )
}

/// A session that is warm at the emulator, pooled with the given ages.
async fn warm_pooled(
    queue: &SqsPoolQueue,
    emulator: &RunningEmulator,
    created_ago_ms: u64,
    pinged_ago_ms: u64,
) -> SessionId {
    let id = SessionId::generate();
    agent_runtime(emulator)
        .invoke(&id, WARMUP_PAYLOAD)
        .await
        .expect("warm the session");
    let now = SystemClock.now_ms();
    queue
        .enqueue(&PooledSession::new(
            id.clone(),
            now - created_ago_ms,
            now - pinged_ago_ms,
        ))
        .await
        .expect("pool it");
    id
}

#[tokio::test]
async fn a_heartbeat_whose_pool_send_lost_its_answer_keeps_the_session_pooled_once_and_running() {
    let faults = FaultInjector::default();
    let sqs = faults::sqs_client(&sdk_config(&Moto::shared().endpoint), &faults);
    let queue = SqsPoolQueue::new(sqs, create_pool_queue(&sqs_client(), "lost-heartbeat").await);
    let emulator = emulator(emulator_lifecycle(60, 300)).await;
    let id = warm_pooled(&queue, &emulator, 20_000, 20_000).await;
    let function = replenish_over(&queue, agent_runtime(&emulator));
    let sent_at = SystemClock.now_ms();
    faults.next("SendMessage", Fault::DropAnswer, 1);

    let sweep = run(&function, SCHEDULE).await.sweep.expect("a sweep");

    assert_eq!(faults.injected("SendMessage", Fault::DropAnswer), 1);
    assert_eq!((sweep.heartbeats, sweep.heartbeat_failures), (1, 0), "{sweep:?}");
    let sessions = emulator.sessions();
    assert_eq!(
        session_view(&sessions, &id).state,
        SessionState::Active,
        "the heartbeat stopped a session whose message is in the pool"
    );
    let pooled = drain_pooled(&queue).await;
    assert_eq!(pooled.len(), 1, "pooled once: {pooled:?}");
    assert_eq!(pooled[0].session_id, id);
    assert!(pooled[0].last_ping_at >= sent_at, "with its new ping time");
}

#[tokio::test]
async fn a_retirement_stop_that_landed_but_lost_its_answer_is_retried_and_the_session_counts_as_stopped() {
    let queue = pool_queue("lost-stop").await;
    let emulator = emulator(emulator_lifecycle(60, 300)).await;
    // 290 s old of 300: retired now (usable 9 s more, next look in 17 s).
    let id = warm_pooled(&queue, &emulator, 290_000, 20_000).await;
    let faults = FaultInjector::default();
    faults.next("StopRuntimeSession", Fault::LoseAnswer, 1);
    let function = replenish_over(&queue, agent_with_faults(&emulator, &faults));

    let sweep = run(&function, SCHEDULE).await.sweep.expect("a sweep");

    assert_eq!(faults.injected("StopRuntimeSession", Fault::LoseAnswer), 1);
    assert_eq!((sweep.retired, sweep.stop_failures), (1, 0), "{sweep:?}");
    let sessions = emulator.sessions();
    assert_eq!(session_view(&sessions, &id).state, SessionState::Stopped);
    assert_eq!(
        emulator.stats().stops,
        1,
        "the first try stopped it; the retry found it gone"
    );
    assert!(drain_pooled(&queue).await.is_empty());
}

#[tokio::test]
async fn stopping_a_session_the_emulator_no_longer_knows_counts_as_gone_and_is_not_retried() {
    let emulator = emulator(fast_lifecycle()).await;
    let agent = agent_runtime(&emulator);
    let ended = SessionId::generate();
    agent.invoke(&ended, WARMUP_PAYLOAD).await.expect("warm");
    agent.stop(&ended).await.expect("first stop");
    let never = SessionId::generate();
    for id in [&ended, &never] {
        let outcome = stop_until_gone(
            &agent,
            id,
            Duration::from_secs(5),
            &STOP_BACKOFF,
            &LogKey::development(),
        )
        .await;
        assert!(matches!(outcome, StopOutcome::Gone { tries: 1 }), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_retirement_stop_throttled_twice_and_failed_once_is_retried_until_the_session_stops() {
    let queue = pool_queue("throttled-stop").await;
    let emulator = emulator(emulator_lifecycle(60, 300)).await;
    let id = warm_pooled(&queue, &emulator, 290_000, 20_000).await;
    emulator
        .set_faults(FaultsUpdate {
            next_stop_throttles: Some(2),
            next_stop_errors: Some(1),
            ..FaultsUpdate::default()
        })
        .expect("stop faults");
    let function = replenish_over(&queue, agent_runtime(&emulator));

    let sweep = run(&function, SCHEDULE).await.sweep.expect("a sweep");

    assert_eq!((sweep.retired, sweep.stop_failures), (1, 0), "{sweep:?}");
    let stats = emulator.stats();
    assert_eq!((stats.stop_throttles, stats.stop_errors, stats.stops), (2, 1, 1));
    let sessions = emulator.sessions();
    assert_eq!(session_view(&sessions, &id).state, SessionState::Stopped);
}
