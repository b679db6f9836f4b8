//! Warming new sessions: a `{"type":"warmup"}` invocation under a fresh ID, and the pool
//! message only after it succeeded (invariant 3), with bounded, jittered retries, every attempt
//! paced by the environment's share of the creation budget (invariant 4, see [`crate::pool::quota`]).
//! The pool message is resent while its outcome is unknown ([`crate::pool::enqueue`]); a warm session
//! is stopped only when the pool refused it for good ([`crate::stop`]).

use crate::clock::Backoff;
use crate::clock::{Clock, millis};
use crate::error::AgentError;
use crate::pool::breaker::WarmupBreaker;
use crate::pool::enqueue::{SendRetry, Sent, send_to_pool};
use crate::pool::quota::CreationPacer;
use crate::ports::{AgentRuntime, PoolQueue};
use crate::session::{AgentVersion, LogId, LogKey, PooledSession, SessionId, WARMUP_PAYLOAD};
use crate::stop::stop_before;
use futures::StreamExt;
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

const DEFAULT_CONCURRENCY: NonZeroUsize = match NonZeroUsize::new(8) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmupPolicy {
    /// Warmups in flight at once within one run.
    pub concurrency: NonZeroUsize,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Resends of a warm session's pool message whose answer was lost.
    pub send: SendRetry,
    /// Session IDs appear in logs only as [`SessionId::log_id`] under this key.
    pub log_key: LogKey,
}

impl Default for WarmupPolicy {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            send: SendRetry::default(),
            log_key: LogKey::development(),
        }
    }
}

impl WarmupPolicy {
    fn retry(&self) -> Backoff {
        Backoff {
            base: self.backoff_base,
            cap: self.backoff_cap,
        }
    }

    /// Full jitter ([`Backoff::pause`]), so concurrent runs that were throttled together do
    /// not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.retry().pause(attempt)
    }

    /// min(cap, base * 2^attempt): the pure half of the backoff, for callers with their own RNG.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        self.retry().ceiling(attempt)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmupReport {
    pub requested: u32,
    pub enqueued: u32,
    pub failed: u32,
    /// Throttling / quota answers seen, including those later retried successfully.
    pub throttles: u32,
    /// Warm sessions the pool refused for good (stopped, so they cost nothing).
    pub enqueue_failures: u32,
    /// Warm sessions whose pool message may have landed but was never confirmed: left
    /// running, in the pool or idling out unseen.
    pub unconfirmed: u32,
    /// Not attempted: the creation budget had no slot left before the deadline.
    pub deferred: u32,
    /// Latency of each successful warmup invocation, in milliseconds.
    pub latencies_ms: Vec<u64>,
    /// Not attempted: the warmup breaker was open.
    pub breaker_skipped: u32,
}

/// What a replenish run adds to its warmups: the version to record in each pool message, and
/// the breaker that stops warming a broken agent ([`crate::pool::breaker`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Warming<'a> {
    pub version: Option<&'a AgentVersion>,
    pub breaker: Option<&'a WarmupBreaker>,
    /// This run is the breaker's probe: it warms even though the breaker is open.
    pub probe: bool,
}

impl Warming<'_> {
    fn stopped_by_breaker(&self) -> bool {
        !self.probe && self.breaker.is_some_and(WarmupBreaker::is_open)
    }
}

enum Outcome {
    Enqueued { latency_ms: u64, throttles: u32 },
    Unconfirmed { latency_ms: u64, throttles: u32 },
    WarmupFailed { throttles: u32 },
    EnqueueFailed { throttles: u32 },
    Deferred { throttles: u32 },
    BreakerSkipped,
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
    let ports = Ports { agent, queue, clock };
    warm_new_sessions_with(count, &ports, policy, pacer, deadline, Warming::default()).await
}

/// The ports a warmup uses.
pub struct Ports<'a, A, Q, C> {
    pub agent: &'a A,
    pub queue: &'a Q,
    pub clock: &'a C,
}

/// [`warm_new_sessions`], recording `warming.version` in each pool message and obeying
/// `warming.breaker`: once it is open (by this run's failures or another's), the warmups not
/// yet started are skipped.
pub async fn warm_new_sessions_with<A, Q, C>(
    count: u32,
    ports: &Ports<'_, A, Q, C>,
    policy: &WarmupPolicy,
    pacer: &CreationPacer,
    deadline: Instant,
    warming: Warming<'_>,
) -> WarmupReport
where
    A: AgentRuntime,
    Q: PoolQueue,
    C: Clock,
{
    let Ports { agent, queue, clock } = *ports;
    let outcomes: Vec<Outcome> = futures::stream::iter(0..count)
        .map(|_| warm_one(agent, queue, clock, policy, pacer, deadline, warming))
        .buffer_unordered(policy.concurrency.get())
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
            Outcome::Unconfirmed { latency_ms, throttles } => {
                report.unconfirmed += 1;
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
            Outcome::BreakerSkipped => report.breaker_skipped += 1,
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
    warming: Warming<'_>,
) -> Outcome {
    let session_id = SessionId::generate();
    let session = session_id.log_id(&policy.log_key);
    let mut throttles = 0;
    let mut attempt = 0;
    loop {
        // Checked before every attempt: warmups queued behind the concurrency limit, and
        // retries, stop as soon as the breaker opens.
        if warming.stopped_by_breaker() {
            return Outcome::BreakerSkipped;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let latest_ms = clock.now_ms().saturating_add(millis(remaining));
        if !pacer.wait_turn(clock, latest_ms).await {
            info!(%session, attempt, "no creation slot left before the deadline; the schedule will top up");
            return Outcome::Deferred { throttles };
        }
        // The earliest moment the microVM can exist: conservative for both lifetime limits.
        let started_ms = clock.now_ms();
        let started = Instant::now();
        match agent.invoke(&session_id, WARMUP_PAYLOAD).await {
            Ok(_) => {
                let latency_ms = millis(started.elapsed());
                if let Some(breaker) = warming.breaker {
                    breaker.record_success();
                }
                let warm = PooledSession::new(session_id, started_ms, started_ms).with_version(warming.version);
                return enqueue_warm(agent, queue, policy, &warm, deadline, latency_ms, throttles).await;
            }
            Err(error) => {
                throttles += u32::from(error.is_throttle());
                // Every attempt counts, retries included: each one is a creation spent on an
                // agent that may be broken (a 500 on every attempt would otherwise retry to
                // the deadline before the breaker saw a single failure).
                if let Some(breaker) = warming.breaker
                    && breaker.record_failure(&error, clock.now_ms())
                {
                    warn!(%error, "warmup breaker opened: the agent failed warmups in a row");
                }
                let pause = policy.backoff(attempt);
                attempt += 1;
                // A probe is one attempt: it asks whether the agent works, not for a session.
                let done = warming.probe || warming.stopped_by_breaker() || !error.is_retryable();
                if done || Instant::now() + pause >= deadline {
                    give_up(agent, &session_id, session, policy, &error, attempt, deadline).await;
                    return Outcome::WarmupFailed { throttles };
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Invariant 3, under lost answers: the session goes to the pool once; it is stopped only if
/// the pool definitely refused it, never while its message may be there.
async fn enqueue_warm<A: AgentRuntime, Q: PoolQueue>(
    agent: &A,
    queue: &Q,
    policy: &WarmupPolicy,
    warm: &PooledSession,
    deadline: Instant,
    latency_ms: u64,
    throttles: u32,
) -> Outcome {
    let session = warm.session_id.log_id(&policy.log_key);
    match send_to_pool(queue, warm, &policy.send, deadline, &policy.log_key).await {
        Sent::Confirmed => {
            info!(%session, latency_ms, "warmed and enqueued");
            Outcome::Enqueued { latency_ms, throttles }
        }
        Sent::Refused(error) => {
            warn!(%session, %error, "the pool refused the warm session; stopping it");
            stop_before(agent, &warm.session_id, deadline, &policy.log_key).await;
            Outcome::EnqueueFailed { throttles }
        }
        Sent::Unconfirmed(error) => {
            warn!(
                %session,
                %error,
                "warm session's pool send never confirmed; it may be pooled, so it is left running"
            );
            Outcome::Unconfirmed { latency_ms, throttles }
        }
    }
}

async fn give_up<A: AgentRuntime>(
    agent: &A,
    session_id: &SessionId,
    session: LogId,
    policy: &WarmupPolicy,
    error: &AgentError,
    attempts: u32,
    deadline: Instant,
) {
    warn!(%session, %error, attempts, retryable = error.is_retryable(), "warmup failed; session not enqueued");
    // Never enqueued, so nobody can reach it: a microVM that may exist should stop billing.
    if error.may_have_created_session() {
        stop_before(agent, session_id, deadline, &policy.log_key).await;
    }
}

#[cfg(test)]
mod tests;
