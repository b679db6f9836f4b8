//! Warming new sessions: a `{"type":"warmup"}` invocation under a fresh ID, and the pool
//! message only after it succeeded (invariant 3), with bounded, jittered retries, every attempt
//! paced by the environment's share of the creation budget (invariant 4, see [`crate::quota`]).

use crate::clock::Clock;
use crate::error::AgentError;
use crate::ports::{AgentRuntime, PoolQueue};
use crate::quota::CreationPacer;
use crate::session::{PooledSession, SessionId, WARMUP_PAYLOAD};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmupPolicy {
    /// Warmups in flight at once within one run.
    pub concurrency: usize,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for WarmupPolicy {
    fn default() -> Self {
        Self {
            concurrency: 8,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

impl WarmupPolicy {
    /// "Full jitter": uniform in [0, [`Self::backoff_ceiling`]], so concurrent runs that were
    /// throttled together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling_ms = self.backoff_ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling_ms))
    }

    /// min(cap, base * 2^attempt): the pure half of the backoff, for callers with their own RNG.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        self.backoff_base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.backoff_cap)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmupReport {
    pub requested: u32,
    pub enqueued: u32,
    pub failed: u32,
    /// Throttling / quota answers seen, including those later retried successfully.
    pub throttles: u32,
    /// Warm sessions that could not be enqueued (stopped, so they cost nothing).
    pub enqueue_failures: u32,
    /// Not attempted: the creation budget had no slot left before the deadline.
    pub deferred: u32,
    /// Latency of each successful warmup invocation, in milliseconds.
    pub latencies_ms: Vec<u64>,
}

enum Outcome {
    Enqueued { latency_ms: u64, throttles: u32 },
    WarmupFailed { throttles: u32 },
    EnqueueFailed { throttles: u32 },
    Deferred { throttles: u32 },
}

/// Warms exactly `count` new sessions and enqueues each one whose warmup succeeded.
/// Every attempt, retries included, waits for a slot of `pacer`; retries and slots stop at
/// `deadline` (the function's remaining time less a margin).
pub async fn warm_new_sessions<A, Q, C>(
    count: u32,
    agent: &A,
    queue: &Q,
    clock: &C,
    policy: &WarmupPolicy,
    pacer: &CreationPacer,
    deadline: Instant,
) -> WarmupReport
where
    A: AgentRuntime,
    Q: PoolQueue,
    C: Clock,
{
    let outcomes: Vec<Outcome> = futures::stream::iter(0..count)
        .map(|_| warm_one(agent, queue, clock, policy, pacer, deadline))
        .buffer_unordered(policy.concurrency.max(1))
        .collect()
        .await;
    let mut report = WarmupReport {
        requested: count,
        ..WarmupReport::default()
    };
    for outcome in outcomes {
        match outcome {
            Outcome::Enqueued { latency_ms, throttles } => {
                report.enqueued += 1;
                report.throttles += throttles;
                report.latencies_ms.push(latency_ms);
            }
            Outcome::WarmupFailed { throttles } => {
                report.failed += 1;
                report.throttles += throttles;
            }
            Outcome::EnqueueFailed { throttles } => {
                report.enqueue_failures += 1;
                report.throttles += throttles;
            }
            Outcome::Deferred { throttles } => {
                report.deferred += 1;
                report.throttles += throttles;
            }
        }
    }
    report
}

async fn warm_one<A: AgentRuntime, Q: PoolQueue, C: Clock>(
    agent: &A,
    queue: &Q,
    clock: &C,
    policy: &WarmupPolicy,
    pacer: &CreationPacer,
    deadline: Instant,
) -> Outcome {
    let session_id = SessionId::generate();
    let mut throttles = 0;
    let mut attempt = 0;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let latest_ms = clock.now_ms().saturating_add(remaining.as_millis() as u64);
        if !pacer.wait_turn(clock, latest_ms).await {
            info!(%session_id, attempt, "no creation slot left before the deadline; the schedule will top up");
            return Outcome::Deferred { throttles };
        }
        // The earliest moment the microVM can exist: conservative for both lifetime limits.
        let started_ms = clock.now_ms();
        let started = Instant::now();
        match agent.invoke(&session_id, WARMUP_PAYLOAD).await {
            Ok(_) => {
                let latency_ms = started.elapsed().as_millis() as u64;
                let session = PooledSession::new(session_id, started_ms, started_ms);
                return match queue.enqueue(&session).await {
                    Ok(()) => {
                        info!(session_id = %session.session_id, latency_ms, "warmed and enqueued");
                        Outcome::Enqueued { latency_ms, throttles }
                    }
                    Err(error) => {
                        warn!(session_id = %session.session_id, %error, "warm session could not be enqueued; stopping it");
                        stop_quietly(agent, &session.session_id).await;
                        Outcome::EnqueueFailed { throttles }
                    }
                };
            }
            Err(error) => {
                throttles += u32::from(error.is_throttle());
                let pause = policy.backoff(attempt);
                attempt += 1;
                if !error.is_retryable() || Instant::now() + pause >= deadline {
                    give_up(agent, &session_id, &error, attempt).await;
                    return Outcome::WarmupFailed { throttles };
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn give_up<A: AgentRuntime>(agent: &A, session_id: &SessionId, error: &AgentError, attempts: u32) {
    warn!(%session_id, %error, attempts, retryable = error.is_retryable(), "warmup failed; session not enqueued");
    if error.may_have_created_session() {
        stop_quietly(agent, session_id).await;
    }
}

/// Best effort: a session we will not use should stop billing memory now rather than at its
/// idle timeout. A failure here costs money, never correctness. Returns whether it stopped.
pub(crate) async fn stop_quietly<A: AgentRuntime>(agent: &A, session_id: &SessionId) -> bool {
    match agent.stop(session_id).await {
        Ok(()) => true,
        Err(error) => {
            info!(%session_id, %error, "stopping an unused session failed; it will idle out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::error::AgentErrorKind::{Agent, QuotaExceeded, Rejected, Server, Throttled};
    use crate::fakes::{MemoryPool, ScriptedAgent};

    fn policy() -> WarmupPolicy {
        WarmupPolicy {
            concurrency: 4,
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(4),
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
    async fn a_warm_session_that_cannot_be_enqueued_is_stopped() {
        let (agent, pool) = (ScriptedAgent::default(), MemoryPool::default());
        pool.fail_next_enqueues(1);
        let report = warm(1, &agent, &pool).await;
        assert_eq!(report.enqueue_failures, 1);
        assert_eq!(agent.stopped().len(), 1);
    }

    fn one_per_second() -> CreationPacer {
        CreationPacer::new(&crate::quota::CreationBudget {
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
            concurrency: 1,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
        };
        for attempt in 0..40 {
            assert!(p.backoff(attempt) <= Duration::from_secs(1));
        }
    }
}
