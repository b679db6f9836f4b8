use super::*;
use crate::clock::SystemClock;
use crate::error::AgentErrorKind::{Agent, QuotaExceeded, Rejected, Server, Throttled};
use crate::fakes::{MemoryPool, ScriptedAgent};

fn policy() -> WarmupPolicy {
    WarmupPolicy {
        concurrency: NonZeroUsize::new(4).unwrap(),
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(4),
        send: SendRetry {
            max_tries: 4,
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(4),
            },
        },
        ..WarmupPolicy::default()
    }
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// Unpaced, with time to spare: the decisions under test are retry and enqueue.
async fn warm(count: u32, agent: &ScriptedAgent, pool: &MemoryPool) -> WarmupReport {
    warm_new_sessions(
        count,
        agent,
        pool,
        &SystemClock,
        &policy(),
        &CreationPacer::unlimited(),
        far_deadline(),
    )
    .await
}

#[tokio::test]
async fn warms_exactly_the_requested_number_of_distinct_sessions() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    let report = warm(5, &agent, &pool).await;
    assert_eq!((report.requested, report.enqueued, report.failed), (5, 5, 0));
    let mut ids: Vec<_> = pool.sessions().into_iter().map(|s| s.session_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert!(agent.invocations().iter().all(|(_, payload)| payload == WARMUP_PAYLOAD));
}

#[tokio::test]
async fn throttled_warmups_are_retried_and_enqueued_once_the_throttle_lifts() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with([Throttled, QuotaExceeded, Server]);
    let report = warm(1, &agent, &pool).await;
    assert_eq!((report.enqueued, report.throttles), (1, 2));
    assert_eq!(agent.invocations().len(), 4);
    assert_eq!(pool.len(), 1);
}

#[tokio::test]
async fn non_retryable_failures_are_not_retried_and_never_enqueued() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with([Rejected]);
    let report = warm(1, &agent, &pool).await;
    assert_eq!((report.enqueued, report.failed), (0, 1));
    assert_eq!(agent.invocations().len(), 1);
    assert!(pool.is_empty());
}

#[tokio::test]
async fn a_session_whose_agent_failed_is_stopped_and_not_enqueued() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with([Agent]);
    let report = warm(1, &agent, &pool).await;
    assert_eq!(report.failed, 1);
    assert_eq!(agent.stopped().len(), 1);
    assert!(pool.is_empty());
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with(std::iter::repeat_n(Throttled, 10_000));
    let slow = WarmupPolicy {
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(40),
        ..policy()
    };
    let deadline = Instant::now() + Duration::from_millis(200);
    let report = warm_new_sessions(
        1,
        &agent,
        &pool,
        &SystemClock,
        &slow,
        &CreationPacer::unlimited(),
        deadline,
    )
    .await;
    assert_eq!(report.failed, 1);
    assert!(Instant::now() <= deadline + Duration::from_millis(100));
    assert!(pool.is_empty());
}

#[tokio::test]
async fn a_warm_session_the_pool_refused_for_good_is_stopped() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    pool.refuse_next_enqueues(1);
    let report = warm(1, &agent, &pool).await;
    assert_eq!(report.enqueue_failures, 1);
    assert_eq!(pool.send_attempts(), 1, "a refusal is not retried");
    assert_eq!(agent.stopped().len(), 1);
    assert!(pool.is_empty());
}

#[tokio::test]
async fn a_warm_session_whose_send_lost_its_answer_is_resent_with_the_same_deduplication_id_and_never_stopped() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    pool.lose_next_enqueue_answers(1);
    let report = warm(1, &agent, &pool).await;
    assert!(agent.stopped().is_empty(), "its message is in the pool");
    assert_eq!((report.enqueued, report.enqueue_failures), (1, 0));
    assert_eq!(pool.send_attempts(), 2);
    assert_eq!(pool.len(), 1, "the resend was deduplicated");
}

#[tokio::test]
async fn a_send_that_failed_before_it_landed_is_retried_into_the_pool() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    pool.fail_next_enqueues(2);
    let report = warm(1, &agent, &pool).await;
    assert_eq!(report.enqueued, 1);
    assert!(agent.stopped().is_empty());
    assert_eq!(pool.len(), 1);
}

#[tokio::test]
async fn a_send_whose_answer_stays_lost_leaves_the_session_running_never_stopped() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    pool.lose_next_enqueue_answers(1_000);
    let report = warm(1, &agent, &pool).await;
    assert!(
        agent.stopped().is_empty(),
        "it may be pooled: stopping it would hand out a dead session"
    );
    assert_eq!(
        (report.enqueued, report.unconfirmed, report.enqueue_failures),
        (0, 1, 0)
    );
    assert_eq!(pool.len(), 1, "landed once, however often it was resent");
}

#[tokio::test]
async fn a_warm_session_the_pool_refused_is_stopped_through_a_throttled_stop() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    pool.refuse_next_enqueues(1);
    agent.fail_stops_with([Throttled, Server]);
    warm(1, &agent, &pool).await;
    assert_eq!(agent.stopped().len(), 1);
    let tokens: Vec<_> = agent.stop_calls().into_iter().map(|(_, token)| token).collect();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "one client token for every try: {tokens:?}"
    );
}

#[tokio::test]
async fn warmup_logs_never_carry_a_full_session_id() {
    let (logs, _guard) = crate::fakes::CapturedLogs::start();
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with([Agent]);
    warm(2, &agent, &pool).await;
    let text = logs.text();
    assert!(
        text.contains("warmed and enqueued") && text.contains("warmup failed"),
        "{text}"
    );
    for (id, _) in agent.invocations() {
        assert!(!text.contains(id.as_str()), "a full session id in the logs: {text}");
        let shown = id.log_id(&LogKey::development()).to_string();
        assert!(text.contains(&shown), "{shown} missing: {text}");
    }
}

fn one_per_second() -> CreationPacer {
    CreationPacer::new(&crate::pool::quota::CreationBudget {
        per_second: std::num::NonZeroU32::new(1).unwrap(),
        max_concurrent_runs: std::num::NonZeroU32::new(1).unwrap(),
    })
}

#[tokio::test]
async fn creations_beyond_the_budget_before_the_deadline_are_deferred_not_attempted() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let report = warm_new_sessions(3, &agent, &pool, &SystemClock, &policy(), &one_per_second(), deadline).await;
    assert_eq!((report.enqueued, report.deferred), (2, 1));
    assert_eq!(agent.invocations().len(), 2);
}

#[tokio::test]
async fn a_retry_waits_for_its_own_creation_slot() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with([Throttled, Throttled]);
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let report = warm_new_sessions(1, &agent, &pool, &SystemClock, &policy(), &one_per_second(), deadline).await;
    assert_eq!((report.enqueued, report.deferred, report.throttles), (0, 1, 2));
    assert_eq!(agent.invocations().len(), 2, "the third attempt had no slot");
}

#[test]
fn backoff_never_exceeds_its_cap() {
    let p = WarmupPolicy {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        ..WarmupPolicy::default()
    };
    for attempt in 0..40 {
        assert!(p.backoff(attempt) <= Duration::from_secs(1));
    }
}

async fn warm_with(count: u32, agent: &ScriptedAgent, pool: &MemoryPool, warming: Warming<'_>) -> WarmupReport {
    let ports = Ports {
        agent,
        queue: pool,
        clock: &SystemClock,
    };
    let unpaced = CreationPacer::unlimited();
    warm_new_sessions_with(count, &ports, &policy(), &unpaced, far_deadline(), warming).await
}

#[tokio::test]
async fn every_warmed_session_records_the_version_that_served_it() {
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    let version = AgentVersion::new("3", 1_000).unwrap();
    let warming = Warming {
        version: Some(&version),
        ..Warming::default()
    };
    warm_with(3, &agent, &pool, warming).await;
    assert!(
        pool.sessions()
            .iter()
            .all(|s| s.agent_version() == Some(version.clone()))
    );
}

#[tokio::test]
async fn when_the_agent_fails_every_warmup_then_the_breaker_stops_the_run_after_the_threshold() {
    use crate::pool::breaker::{BreakerSettings, WarmupBreaker};
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with(std::iter::repeat_n(Agent, 1_000));
    let breaker = WarmupBreaker::new(BreakerSettings {
        threshold: std::num::NonZeroU32::new(3).unwrap(),
        probe_interval: Duration::from_secs(60),
    });
    let warming = Warming {
        breaker: Some(&breaker),
        ..Warming::default()
    };
    let one_at_a_time = WarmupPolicy {
        concurrency: NonZeroUsize::MIN,
        ..policy()
    };
    let ports = Ports {
        agent: &agent,
        queue: &pool,
        clock: &SystemClock,
    };
    let report = warm_new_sessions_with(
        20,
        &ports,
        &one_at_a_time,
        &CreationPacer::unlimited(),
        far_deadline(),
        warming,
    )
    .await;
    assert_eq!((report.failed, report.breaker_skipped), (3, 17), "{report:?}");
    assert_eq!(
        agent.invocations().len(),
        3,
        "no creation spent after the breaker opened"
    );
    assert!(breaker.is_open());
}

#[tokio::test]
async fn a_probe_warms_while_the_breaker_is_open_and_a_success_closes_it() {
    use crate::pool::breaker::{BreakerSettings, WarmupBreaker};
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    let breaker = WarmupBreaker::new(BreakerSettings {
        threshold: std::num::NonZeroU32::MIN,
        probe_interval: Duration::from_secs(60),
    });
    breaker.record_failure(&AgentError::new("InvokeAgentRuntime", Server, "down"), 0);
    let closed_run = Warming {
        breaker: Some(&breaker),
        ..Warming::default()
    };
    assert_eq!(warm_with(2, &agent, &pool, closed_run).await.breaker_skipped, 2);
    let probe = Warming {
        probe: true,
        ..closed_run
    };
    assert_eq!(warm_with(1, &agent, &pool, probe).await.enqueued, 1);
    assert!(!breaker.is_open());
}

#[tokio::test]
async fn when_every_attempt_answers_500_then_the_breaker_stops_the_retries_too() {
    use crate::pool::breaker::{BreakerSettings, WarmupBreaker};
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with(std::iter::repeat_n(Server, 1_000));
    let breaker = WarmupBreaker::new(BreakerSettings {
        threshold: std::num::NonZeroU32::new(3).unwrap(),
        probe_interval: Duration::from_secs(60),
    });
    let warming = Warming {
        breaker: Some(&breaker),
        ..Warming::default()
    };
    let report = warm_with(1, &agent, &pool, warming).await;
    assert_eq!(report.failed, 1);
    assert_eq!(
        agent.invocations().len(),
        3,
        "three creations, not retries to the deadline"
    );
}

#[tokio::test]
async fn a_probe_is_a_single_attempt_even_when_its_error_is_retryable() {
    use crate::pool::breaker::{BreakerSettings, WarmupBreaker};
    let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
    agent.fail_with(std::iter::repeat_n(Server, 1_000));
    let breaker = WarmupBreaker::new(BreakerSettings::default());
    let probe = Warming {
        breaker: Some(&breaker),
        probe: true,
        ..Warming::default()
    };
    assert_eq!(warm_with(1, &agent, &pool, probe).await.failed, 1);
    assert_eq!(agent.invocations().len(), 1);
}
