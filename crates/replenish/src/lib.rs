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
mod leases;
mod versions;

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
use warmpool_core::lease::ports::{LeaseTable, LeasesOff};
use warmpool_core::lease::sweep::SweepReport as LeaseReport;
use warmpool_core::metrics::MetricSet;
use warmpool_core::pool::breaker::{Permit, WarmupBreaker};
use warmpool_core::pool::maintenance::{self, Round, SweepReport};
use warmpool_core::pool::quota::{CreationPacer, spread};
use warmpool_core::pool::target::{Target, WarmupTimes};
use warmpool_core::pool::version::{NoVersionSource, VersionSource};
use warmpool_core::pool::warmup::{Ports, Warming, WarmupReport, warm_new_sessions_with};
use warmpool_core::ports::{AgentRuntime, PoolMaintenance, ReplenishTrigger};
use warmpool_core::schedule::is_scheduled_event;
use warmpool_core::session::AgentVersion;

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
    /// Sessions not warmed (count runs) or not dispatched (scheduled runs) because the warmup
    /// breaker was open, and whether it is open at the end of the run.
    pub breaker_skipped: u32,
    pub breaker_open: bool,
    /// The endpoint's live version this run recorded in new sessions (docs/decisions/0211),
    /// and whether reading it failed (the last one read was used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    pub version_read_failed: bool,
    /// Scheduled runs only: the target in force and what the sweep did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepReport>,
    /// Scheduled runs with a lease table: what the lease sweep did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<LeaseReport>,
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
            breaker_skipped: r.breaker_skipped,
            breaker_open: false,
            agent_version: None,
            version_read_failed: false,
            target: None,
            sweep: None,
            leases: None,
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

/// The function. `V` reads the endpoint's live version once per run (the AgentCore control
/// plane in production); without one ([`NoVersionSource`]) nothing is versioned or drained.
pub struct Replenish<A, Q, C, T, V = NoVersionSource, L = LeasesOff> {
    config: Config,
    agent: A,
    queue: Q,
    clock: C,
    /// This function itself, for the scheduled run's top-up.
    trigger: T,
    pacer: CreationPacer,
    warmup_times: Mutex<WarmupTimes>,
    versions: versions::LiveVersion<V>,
    /// Lives as long as the execution environment (docs/decisions/0214).
    breaker: WarmupBreaker,
    /// The lease table, when the pool has one (`config.leases`).
    leases: Option<L>,
}

/// What one run knows of the agent: the version to record, whether reading it failed.
type RunVersion = (Option<AgentVersion>, bool);

impl<A, Q, C, T> Replenish<A, Q, C, T> {
    pub fn new(config: Config, agent: A, queue: Q, clock: C, trigger: T) -> Self {
        Self {
            trigger,
            pacer: CreationPacer::new(&config.creation_budget),
            warmup_times: Mutex::new(WarmupTimes::default()),
            versions: versions::LiveVersion::new(NoVersionSource),
            breaker: WarmupBreaker::new(config.breaker),
            config,
            agent,
            queue,
            clock,
            leases: None,
        }
    }
}

impl<A, Q, C, T, V> Replenish<A, Q, C, T, V> {
    /// The same function, sweeping the leases of `table` (if `config.leases` names one).
    pub fn with_lease_table<L: LeaseTable>(self, table: L) -> Replenish<A, Q, C, T, V, L> {
        Replenish {
            leases: self.config.leases.as_ref().map(|_| table),
            config: self.config,
            agent: self.agent,
            queue: self.queue,
            clock: self.clock,
            trigger: self.trigger,
            pacer: self.pacer,
            warmup_times: self.warmup_times,
            versions: self.versions,
            breaker: self.breaker,
        }
    }
}

impl<A, Q, C, T, V, L> Replenish<A, Q, C, T, V, L> {
    /// The same function, reading the endpoint's live version from `source` once per run.
    pub fn with_version_source<W: VersionSource>(self, source: W) -> Replenish<A, Q, C, T, W, L> {
        Replenish {
            config: self.config,
            agent: self.agent,
            queue: self.queue,
            clock: self.clock,
            trigger: self.trigger,
            pacer: self.pacer,
            warmup_times: self.warmup_times,
            versions: versions::LiveVersion::new(source),
            breaker: self.breaker,
            leases: self.leases,
        }
    }
}

impl<A, Q, C, T, V, L> Replenish<A, Q, C, T, V, L>
where
    A: AgentRuntime,
    Q: PoolMaintenance,
    C: Clock,
    T: ReplenishTrigger,
    V: VersionSource,
    L: LeaseTable,
{
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunReport, ReplenishError> {
        let trigger = self.config.parse_trigger(&event.payload)?;
        let remaining = self
            .config
            .run_budget
            .remaining(event.context.deadline, self.clock.now_ms());
        let version = self.versions.read().await;
        let mut run = match trigger {
            Trigger::Refill { count } => self.refill(count, remaining, &version).await,
            Trigger::Scheduled => self.maintain(remaining, &version).await?,
        };
        run.breaker_open = self.breaker.is_open();
        run.agent_version = version.0.map(|v| v.version);
        run.version_read_failed = version.1;
        info!(
            trigger = ?trigger,
            requested = run.requested,
            enqueued = run.enqueued,
            failed = run.failed,
            throttles = run.throttles,
            deferred = run.deferred,
            dispatched = run.dispatched,
            target = run.target.map(|t| t.value),
            breaker_open = run.breaker_open,
            breaker_skipped = run.breaker_skipped,
            agent_version = run.agent_version.as_deref().unwrap_or(""),
            "replenish run done"
        );
        Ok(run)
    }

    /// Warms `count` sessions, one per pool message a claim consumed, but no more than the pool
    /// has room for ([`maintenance::Sizing::room`]). A pool that cannot be looked at is
    /// refilled in full: a replacement too many costs less than a claim sent to a cold start.
    async fn refill(&self, count: u32, remaining: Duration, version: &RunVersion) -> RunReport {
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
        let wanted = count - skipped;
        // An open breaker warms nothing here but a due probe (docs/decisions/0214).
        let (allowed, probe) = match self.breaker.permit(self.clock.now_ms()) {
            Permit::All => (wanted, false),
            Permit::Probe => (wanted.min(1), true),
            Permit::None => (0, false),
        };
        let mut warmup = self.warm(allowed, remaining, version, probe).await;
        warmup.breaker_skipped += wanted - allowed;
        self.emit(&warmup, skipped, None, version);
        RunReport {
            requested: count,
            skipped,
            ..RunReport::from(&warmup)
        }
    }

    /// A maintenance round ([`maintenance::round`]), then its top-up sent out as count events.
    async fn maintain(&self, remaining: Duration, version: &RunVersion) -> Result<RunReport, ReplenishError> {
        let started = Instant::now();
        let p95 = self.warmup_times().p95();
        let round = maintenance::round_with(
            &self.queue,
            &self.agent,
            &self.clock,
            &self.config.maintenance,
            p95,
            remaining,
            &self.config.drain.drain(version.0.clone()),
        )
        .await
        .map_err(ReplenishError::PoolUnavailable)?;
        let mut warmup = WarmupReport::default();
        let mut top_up = round.top_up;
        if self.breaker.is_open() && top_up > 0 {
            // The top-up would only meet closed doors: probe here instead, once per interval,
            // and send the rest out only if the agent answered.
            if self.breaker.permit(self.clock.now_ms()) == Permit::Probe {
                warmup = self.warm(1, remaining, version, true).await;
                top_up = top_up.saturating_sub(warmup.enqueued + warmup.unconfirmed);
            }
            if self.breaker.is_open() {
                warmup.breaker_skipped += top_up;
                top_up = 0;
            }
        }
        let (dispatched, dispatch_failed) = self.dispatch(top_up, started, remaining).await;
        let leases = self.sweep_leases(started + remaining, round.sizing.target.value).await;
        self.emit(&warmup, 0, Some((&round, dispatched, dispatch_failed)), version);
        Ok(RunReport {
            dispatched,
            dispatch_failed,
            target: Some(round.sizing.target),
            sweep: Some(round.sweep),
            leases,
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

    async fn warm(&self, count: u32, remaining: Duration, version: &RunVersion, probe: bool) -> WarmupReport {
        if count == 0 {
            return WarmupReport::default();
        }
        // Failed warmups are reported, not raised: Lambda would retry the whole event, and
        // re-warming the sessions that did succeed would overshoot the target.
        let deadline = Instant::now() + remaining;
        let ports = Ports {
            agent: &self.agent,
            queue: &self.queue,
            clock: &self.clock,
        };
        let warming = Warming {
            version: version.0.as_ref(),
            breaker: Some(&self.breaker),
            probe,
        };
        let report = warm_new_sessions_with(count, &ports, &self.config.warmup, &self.pacer, deadline, warming).await;
        self.warmup_times().record(report.latencies_ms.iter().copied());
        report
    }

    fn warmup_times(&self) -> std::sync::MutexGuard<'_, WarmupTimes> {
        // A poisoned lock only means a panic elsewhere mid-push; the samples are still usable.
        self.warmup_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, warmup: &WarmupReport, skipped: u32, round: Option<(&Round, u32, u32)>, version: &RunVersion) {
        let mut metrics = MetricSet::new(FUNCTION, &self.config.pool_name)
            // WarmupBreakerOpen carries the alarm (infra/template.yaml, WarmupBreakerAlarm).
            .count("WarmupBreakerOpen", u32::from(self.breaker.is_open()))
            .count("WarmupBreakerSkipped", warmup.breaker_skipped)
            .count("AgentVersionReadFailures", u32::from(version.1))
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
                .count("VersionDrained", sweep.drained)
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
mod tests;
