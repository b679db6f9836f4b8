//! replenish: warms new sessions into the pool and keeps the pooled ones usable.
//!
//! Two triggers:
//! - `{"count": n}` (async, from get-session): warm exactly n sessions, one per pool message a
//!   claim consumed, so a burst of triggers can never overshoot the target;
//! - an EventBridge scheduled event (every `MAINTENANCE_INTERVAL_SECS`): observe the pool, size
//!   the target, sweep (heartbeats, retirements, trimming; see
//!   [`warmpool_core::pool::maintenance`]), then top up to the target by sending the top-up to this
//!   same function as `{"count": n}` events ([`warmpool_core::pool::quota::spread`]).
//!
//! Every warmup is paced by this execution environment's share of the creation budget
//! ([`warmpool_core::pool::quota`]); the pacer and the warmup latencies the adaptive target uses live
//! as long as the environment. That share is small by design (budget / concurrent runs), which
//! is why the scheduled run fans its top-up out instead of warming it alone: spread over the
//! environments it is warmed at the whole budget. The events go to the function itself but
//! carry a count, and a count run never sends events, so nothing can loop.

mod config;

pub use config::Config;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};
use warmpool_core::clock::Clock;
use warmpool_core::error::QueueError;
use warmpool_core::metrics::MetricSet;
use warmpool_core::pool::maintenance::{self, Round, SweepReport};
use warmpool_core::pool::quota::{CreationPacer, spread};
use warmpool_core::pool::target::{Target, WarmupTimes};
use warmpool_core::pool::warmup::{WarmupReport, warm_new_sessions};
use warmpool_core::ports::{AgentRuntime, PoolMaintenance, ReplenishTrigger};
use warmpool_core::schedule::is_scheduled_event;

pub const FUNCTION: &str = "replenish";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Refill { count: u32 },
    Scheduled,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefillRequest {
    count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplenishError {
    #[error("invalid event: {0}")]
    Validation(String),
    #[error("pool queue unavailable: {0}")]
    PoolUnavailable(#[source] QueueError),
}

impl ReplenishError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Validation(_) => false,
            Self::PoolUnavailable(e) => e.is_retryable(),
        }
    }
}

impl From<ReplenishError> for Diagnostic {
    fn from(error: ReplenishError) -> Self {
        let error_type = match error {
            ReplenishError::Validation(_) => "ValidationError",
            ReplenishError::PoolUnavailable(_) => "PoolUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What a run did: returned to synchronous callers and logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub requested: u32,
    /// Count runs: sessions not warmed because the pool was already at its trim band.
    pub skipped: u32,
    pub enqueued: u32,
    pub failed: u32,
    pub throttles: u32,
    pub enqueue_failures: u32,
    /// Warm sessions whose pool send was never confirmed: left running (see
    /// [`WarmupReport::unconfirmed`]).
    pub enqueue_unconfirmed: u32,
    /// Warmups left for a later run: no creation slot before the deadline.
    pub deferred: u32,
    /// Scheduled runs: sessions sent to other runs as `{"count": n}` events, and those whose
    /// event could not be sent (the next scheduled run counts them as missing again).
    pub dispatched: u32,
    pub dispatch_failed: u32,
    /// Scheduled runs only: the target in force and what the sweep did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepReport>,
}

impl From<&WarmupReport> for RunReport {
    fn from(r: &WarmupReport) -> Self {
        Self {
            requested: r.requested,
            skipped: 0,
            enqueued: r.enqueued,
            failed: r.failed,
            throttles: r.throttles,
            enqueue_failures: r.enqueue_failures,
            enqueue_unconfirmed: r.unconfirmed,
            deferred: r.deferred,
            dispatched: 0,
            dispatch_failed: 0,
            target: None,
            sweep: None,
        }
    }
}

impl Config {
    pub fn parse_trigger(&self, payload: &Value) -> Result<Trigger, ReplenishError> {
        if is_scheduled_event(payload) {
            return Ok(Trigger::Scheduled);
        }
        let request: RefillRequest = serde_json::from_value(payload.clone())
            .map_err(|e| ReplenishError::Validation(format!("expected {{\"count\": n}} or a scheduled event: {e}")))?;
        if request.count == 0 || request.count > self.max_count_per_trigger {
            return Err(ReplenishError::Validation(format!(
                "count must be 1..={}, got {}",
                self.max_count_per_trigger, request.count
            )));
        }
        Ok(Trigger::Refill { count: request.count })
    }
}

pub struct Replenish<A, Q, C, T> {
    config: Config,
    agent: A,
    queue: Q,
    clock: C,
    /// This function itself, for the scheduled run's top-up.
    trigger: T,
    pacer: CreationPacer,
    warmup_times: Mutex<WarmupTimes>,
}

impl<A: AgentRuntime, Q: PoolMaintenance, C: Clock, T: ReplenishTrigger> Replenish<A, Q, C, T> {
    pub fn new(config: Config, agent: A, queue: Q, clock: C, trigger: T) -> Self {
        Self {
            trigger,
            pacer: CreationPacer::new(&config.creation_budget),
            warmup_times: Mutex::new(WarmupTimes::default()),
            config,
            agent,
            queue,
            clock,
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunReport, ReplenishError> {
        let trigger = self.config.parse_trigger(&event.payload)?;
        let remaining = self
            .config
            .run_budget
            .remaining(event.context.deadline, self.clock.now_ms());
        let run = match trigger {
            Trigger::Refill { count } => self.refill(count, remaining).await,
            Trigger::Scheduled => self.maintain(remaining).await?,
        };
        info!(
            trigger = ?trigger,
            requested = run.requested,
            enqueued = run.enqueued,
            failed = run.failed,
            throttles = run.throttles,
            deferred = run.deferred,
            dispatched = run.dispatched,
            target = run.target.map(|t| t.value),
            "replenish run done"
        );
        Ok(run)
    }

    /// Warms `count` sessions, one per pool message a claim consumed, but no more than the pool
    /// has room for ([`maintenance::Sizing::room`]). A pool that cannot be looked at is
    /// refilled in full: a replacement too many costs less than a claim sent to a cold start.
    async fn refill(&self, count: u32, remaining: Duration) -> RunReport {
        let settings = &self.config.maintenance;
        let p95 = self.warmup_times().p95();
        let room = match maintenance::size(
            &self.queue,
            &self.clock,
            &settings.target,
            settings.limits.max_hidden,
            p95,
        )
        .await
        {
            Ok(sizing) => sizing.room(),
            Err(error) => {
                warn!(%error, "could not size the pool; warming the whole count");
                count
            }
        };
        let skipped = count - count.min(room);
        let warmup = self.warm(count - skipped, remaining).await;
        self.emit(&warmup, skipped, None);
        RunReport {
            requested: count,
            skipped,
            ..RunReport::from(&warmup)
        }
    }

    /// A maintenance round ([`maintenance::round`]), then its top-up sent out as count events.
    async fn maintain(&self, remaining: Duration) -> Result<RunReport, ReplenishError> {
        let started = Instant::now();
        let p95 = self.warmup_times().p95();
        let round = maintenance::round(
            &self.queue,
            &self.agent,
            &self.clock,
            &self.config.maintenance,
            p95,
            remaining,
        )
        .await
        .map_err(ReplenishError::PoolUnavailable)?;
        let (dispatched, dispatch_failed) = self.dispatch(round.top_up, started, remaining).await;
        let warmup = WarmupReport::default();
        self.emit(&warmup, 0, Some((&round, dispatched, dispatch_failed)));
        Ok(RunReport {
            dispatched,
            dispatch_failed,
            target: Some(round.sizing.target),
            sweep: Some(round.sweep),
            ..RunReport::from(&warmup)
        })
    }

    /// Sends the top-up to other runs of this function, spaced at the whole budget's rate
    /// (see [`warmpool_core::pool::quota::CreationBudget::dispatch_spacing`]). Returns the sessions
    /// sent and those not sent, by failure or for lack of time.
    async fn dispatch(&self, top_up: u32, started: Instant, remaining: Duration) -> (u32, u32) {
        let budget = &self.config.creation_budget;
        let counts = spread(top_up, budget, self.config.max_count_per_trigger);
        let (mut dispatched, mut not_sent) = (0, 0);
        for (i, count) in counts.iter().copied().enumerate() {
            if i > 0 {
                tokio::time::sleep(budget.dispatch_spacing()).await;
            }
            if started.elapsed() >= remaining {
                not_sent += counts[i..].iter().sum::<u32>();
                break;
            }
            match self.trigger.request(count).await {
                Ok(()) => dispatched += count,
                Err(error) => {
                    warn!(count, %error, "top-up event not sent; the next scheduled run counts it again");
                    not_sent += count;
                }
            }
        }
        (dispatched, not_sent)
    }

    async fn warm(&self, count: u32, remaining: Duration) -> WarmupReport {
        // Failed warmups are reported, not raised: Lambda would retry the whole event, and
        // re-warming the sessions that did succeed would overshoot the target.
        let deadline = Instant::now() + remaining;
        let report = warm_new_sessions(
            count,
            &self.agent,
            &self.queue,
            &self.clock,
            &self.config.warmup,
            &self.pacer,
            deadline,
        )
        .await;
        self.warmup_times().record(report.latencies_ms.iter().copied());
        report
    }

    fn warmup_times(&self) -> std::sync::MutexGuard<'_, WarmupTimes> {
        // A poisoned lock only means a panic elsewhere mid-push; the samples are still usable.
        self.warmup_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, warmup: &WarmupReport, skipped: u32, round: Option<(&Round, u32, u32)>) {
        let mut metrics = MetricSet::new(FUNCTION, &self.config.pool_name)
            .count("RefillSkipped", skipped)
            .count("WarmupsRequested", warmup.requested)
            .count("WarmupsEnqueued", warmup.enqueued)
            .count("WarmupFailures", warmup.failed)
            .count("WarmupThrottles", warmup.throttles)
            .count("WarmupsDeferred", warmup.deferred)
            .count("EnqueueFailures", warmup.enqueue_failures)
            .count("EnqueueUnconfirmed", warmup.unconfirmed)
            .millis_each("WarmupLatency", warmup.latencies_ms.iter().copied());
        if let Some((round, dispatched, dispatch_failed)) = round {
            let sweep = &round.sweep;
            metrics = metrics
                .count("TopUpDispatched", dispatched)
                .count("TopUpDispatchFailed", dispatch_failed)
                .count("PoolVisible", round.sizing.depth.visible as f64)
                .count("PoolInFlight", round.sizing.depth.in_flight as f64)
                .count("PoolTarget", round.sizing.target.value)
                .millis_if("PoolOldestWait", round.sizing.oldest_wait_ms)
                .count("Heartbeats", sweep.heartbeats)
                .count("HeartbeatFailures", sweep.heartbeat_failures)
                .count("HeartbeatUnconfirmed", sweep.unconfirmed)
                .count("Retirements", sweep.retired)
                .count("Trimmed", sweep.trimmed)
                .count("SweepStaleDiscarded", sweep.stale_discarded)
                .count("SweepMalformedDiscarded", sweep.malformed_discarded)
                .count("SweepReleased", sweep.released)
                .count("SweepMaxHidden", sweep.max_hidden)
                .count("SweepLost", sweep.lost)
                .count("StopFailures", sweep.stop_failures)
                .millis_if("PoolOldestSessionAge", sweep.oldest_age_ms)
                .millis_if("PoolOldestPingAge", sweep.oldest_ping_age_ms);
            if let Some(rate) = round.sizing.target.claim_rate {
                metrics = metrics.per_second("ClaimRateEstimate", rate);
            }
        }
        metrics.emit(self.clock.now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use warmpool_core::clock::ManualClock;
    use warmpool_core::config::Env;
    use warmpool_core::error::AgentErrorKind;
    use warmpool_core::fakes::{MemoryPool, RecordingTrigger, ScriptedAgent};
    use warmpool_core::session::{PooledSession, SessionId};

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
}
