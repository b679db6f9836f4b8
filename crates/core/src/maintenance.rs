//! Scheduled maintenance of the pool: heartbeats before the idle timeout, retirement before the
//! max lifetime, trimming above the target (DESIGN.md invariants 2 and 3).
//!
//! [`MaintenanceRules::decide`] is the pure rule for one pooled session; [`sweep`] applies it to
//! the queue, a bounded batch at a time:
//! - nothing to do: the message is released at once (visibility 0), so claims keep working;
//! - heartbeat: delete, ping with the warmup sentinel, re-enqueue with the new `lastPingAt`
//!   (hence a fresh deduplication ID). Deleting first means a crash in between leaks a session
//!   (cost), never puts one in the pool twice (data). A failed ping drops the session;
//!   The re-enqueue is resent while its outcome is unknown ([`crate::enqueue`]): the session
//!   is stopped only when the pool refused it for good, never while its message may be there;
//! - retire (near max lifetime) and trim (above target): delete, then StopRuntimeSession
//!   retried until the session is gone ([`crate::stop`]), so the microVM stops billing memory
//!   now rather than at its idle timeout;
//! - stale or malformed (timestamps beyond the clock-skew allowance included): delete (a stale
//!   microVM ends by itself within the safety margin).
//!
//! Replacements are not the sweep's business: the scheduled run tops the pool up to its target
//! afterwards, through the creation budget, and a retired session counts as missing there.
//!
//! Which messages a sweep sees: SQS hands out the oldest messages first, and every warmup or
//! heartbeat sends a new message, so the head of the queue holds the sessions pinged longest
//! ago, the ones that are due. A sweep therefore works from the head until a batch brings no
//! message it has not seen (a released message comes back at its old place), the batch limit,
//! or its deadline. Should the queue ever hand out a due session later than that, claims
//! still refuse it once stale (invariant 2) and the top-up replaces it.

use crate::clock::{Clock, millis};
use crate::config::{Env, at_least_one};
use crate::enqueue::{SendRetry, Sent, send_to_pool};
use crate::error::ConfigError;
use crate::error::QueueError;
use crate::pool::{Freshness, Lifecycle};
use crate::ports::{AgentRuntime, PoolDepth, PoolMaintenance, Received};
use crate::session::{LogKey, PooledSession, SessionId, WARMUP_PAYLOAD};
use crate::stop::stop_before;
use crate::target::{Observation, Target, TargetPolicy};
use serde::Serialize;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

pub const HEARTBEAT_FRACTION: &str = "HEARTBEAT_FRACTION";
pub const INTERVAL: &str = "MAINTENANCE_INTERVAL_SECS";
pub const RETIRE_SPREAD: &str = "RETIRE_SPREAD_SECS";
pub const SWEEP_MAX_HIDDEN: &str = "SWEEP_MAX_HIDDEN";
pub const SWEEP_VISIBILITY: &str = "SWEEP_VISIBILITY_SECS";
pub const SWEEP_MAX_BATCHES: &str = "SWEEP_MAX_BATCHES";
pub const SWEEP_TIME_BUDGET: &str = "SWEEP_TIME_BUDGET_SECS";
pub const MAX_CREATIONS_PER_RUN: &str = "MAX_CREATIONS_PER_RUN";

/// When a pooled session needs a heartbeat or retirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceRules {
    pub lifecycle: Lifecycle,
    /// A session is pinged once this long has passed since its last ping.
    pub heartbeat_after: Duration,
    /// How often the schedule runs a sweep: the longest a due session waits to be seen.
    pub interval: Duration,
    /// Sessions created together retire spread over this long (by a per-session offset), so
    /// that a generation is not stopped and recreated in the same minute.
    pub retire_spread: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Keep,
    Heartbeat,
    Retire,
    /// Let go of a session while the pool is above its target (the oldest go first).
    Trim,
    Discard(Freshness),
}

/// FNV-1a: stable across processes and releases, unlike std's hasher.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl MaintenanceRules {
    /// `HEARTBEAT_FRACTION` (0.5 of the idle timeout), `MAINTENANCE_INTERVAL_SECS` (60, the
    /// schedule's rate) and `RETIRE_SPREAD_SECS` (1800).
    pub fn from_env(env: &Env, lifecycle: Lifecycle) -> Result<Self, ConfigError> {
        let fraction: f64 = env.parse_or(HEARTBEAT_FRACTION, 0.5)?;
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(ConfigError::Invalid {
                key: HEARTBEAT_FRACTION,
                value: fraction.to_string(),
                reason: "must be between 0 and 1 (exclusive)".into(),
            });
        }
        let rules = Self {
            lifecycle,
            heartbeat_after: lifecycle.idle_timeout.mul_f64(fraction),
            interval: env.secs_or(INTERVAL, 60)?,
            retire_spread: env.secs_or(RETIRE_SPREAD, 1_800)?,
        };
        rules.validate()?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.lifecycle;
        if self.interval.is_zero()
            || self.heartbeat_after + self.interval >= l.idle_timeout.saturating_sub(l.safety_margin)
        {
            return Err(ConfigError::Invalid {
                key: INTERVAL,
                value: self.interval.as_secs().to_string(),
                reason: format!(
                    "heartbeat after {:?} plus a sweep every {:?} must come before the idle timeout less the margin ({:?})",
                    self.heartbeat_after,
                    self.interval,
                    l.idle_timeout.saturating_sub(l.safety_margin)
                ),
            });
        }
        if l.safety_margin + self.retire_spread + self.heartbeat_after + self.interval >= l.max_lifetime {
            return Err(ConfigError::Invalid {
                key: RETIRE_SPREAD,
                value: self.retire_spread.as_secs().to_string(),
                reason: "with the margin and one heartbeat cycle it must stay below the max lifetime".into(),
            });
        }
        Ok(())
    }

    pub fn heartbeat_due(&self, session: &PooledSession, now_ms: u64) -> bool {
        now_ms.saturating_sub(session.last_ping_at) >= millis(self.heartbeat_after)
    }

    /// This session's share of the spread, derived from its ID: every sweep computes the same
    /// retirement time without storing it, and IDs are random, so a generation spreads evenly.
    pub fn stagger(&self, session_id: &SessionId) -> Duration {
        let spread = millis(self.retire_spread);
        Duration::from_millis(stable_hash(session_id.as_str().as_bytes()) % spread.saturating_add(1))
    }

    /// When the session is retired at the latest: before claims would refuse it for its age.
    pub fn retire_at(&self, session: &PooledSession) -> u64 {
        let lifetime_end = session.created_at.saturating_add(millis(self.lifecycle.max_lifetime));
        lifetime_end
            .saturating_sub(millis(self.lifecycle.safety_margin))
            .saturating_sub(millis(self.stagger(&session.session_id)))
    }

    /// The rule for one pooled session seen by a sweep at `now_ms`.
    ///
    /// A session due for a heartbeat is next seen about `heartbeat_after + interval` later, so
    /// it is retired now if its retirement time falls before that look.
    pub fn decide(&self, session: &PooledSession, now_ms: u64, over_target: bool) -> Action {
        match self.lifecycle.freshness(session, now_ms) {
            Freshness::Fresh => {}
            stale => return Action::Discard(stale),
        }
        let retire_at = self.retire_at(session);
        if now_ms >= retire_at {
            return Action::Retire;
        }
        if over_target {
            return Action::Trim;
        }
        if !self.heartbeat_due(session, now_ms) {
            return Action::Keep;
        }
        let next_look = now_ms
            .saturating_add(millis(self.heartbeat_after))
            .saturating_add(millis(self.interval));
        if retire_at <= next_look {
            Action::Retire
        } else {
            Action::Heartbeat
        }
    }
}

/// How much of the pool a sweep may hold and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepLimits {
    /// Most pool messages hidden by the sweep at once: one receive's worth (1..=10).
    pub max_hidden: u8,
    /// Visibility of what a sweep receives: long enough for one batch's deletes and pings; a
    /// crashed sweep hides nothing longer than this.
    pub visibility: Duration,
    pub max_batches: NonZeroU32,
    /// The sweep starts no batch after this much of the run.
    pub time_budget: Duration,
    /// Resends of a heartbeat's pool message whose answer was lost.
    pub send: SendRetry,
    /// Session IDs appear in logs only as [`SessionId::log_id`] under this key.
    pub log_key: LogKey,
}

impl SweepLimits {
    /// `SWEEP_MAX_HIDDEN` (10), `SWEEP_VISIBILITY_SECS` (30), `SWEEP_MAX_BATCHES` (100, at least
    /// 1), `SWEEP_TIME_BUDGET_SECS` (20; below the schedule's interval, so sweeps do not
    /// overlap) and `SESSION_LOG_KEY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_hidden: u8 = env.parse_or(SWEEP_MAX_HIDDEN, 10)?;
        if !(1..=10).contains(&max_hidden) {
            return Err(ConfigError::Invalid {
                key: SWEEP_MAX_HIDDEN,
                value: max_hidden.to_string(),
                reason: "one SQS receive: 1..=10".into(),
            });
        }
        let visibility = env.secs_or(SWEEP_VISIBILITY, 30)?;
        if visibility.is_zero() {
            return Err(ConfigError::Invalid {
                key: SWEEP_VISIBILITY,
                value: "0".into(),
                reason: "a sweep must hide what it is working on".into(),
            });
        }
        Ok(Self {
            max_hidden,
            visibility,
            max_batches: env.positive_or(SWEEP_MAX_BATCHES, at_least_one(100))?,
            time_budget: env.secs_or(SWEEP_TIME_BUDGET, 20)?,
            send: SendRetry::default(),
            log_key: LogKey::from_env(env)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SweepEnd {
    /// The queue had nothing more to show.
    #[default]
    Converged,
    Deadline,
    BatchLimit,
    /// A receive failed; what was done so far stands.
    QueueFailed,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub batches: u32,
    pub seen: u32,
    pub released: u32,
    pub heartbeats: u32,
    /// Pings that failed or re-enqueues the pool refused: the session was dropped (and stopped
    /// if it may live).
    pub heartbeat_failures: u32,
    /// Re-enqueues never confirmed (answers lost): the session was left running, pooled or
    /// idling out unseen. Not counted as removed: the next round sees the real depth.
    pub unconfirmed: u32,
    pub retired: u32,
    pub trimmed: u32,
    pub stale_discarded: u32,
    pub malformed_discarded: u32,
    /// Deletes refused: the message was not ours any more, so it was left alone.
    pub lost: u32,
    pub stop_failures: u32,
    pub release_failures: u32,
    /// Most messages the sweep held hidden at once.
    pub max_hidden: u32,
    /// Oldest `createdAt` and `lastPingAt` among the sessions seen, as ages.
    pub oldest_age_ms: Option<u64>,
    pub oldest_ping_age_ms: Option<u64>,
    pub ended: SweepEnd,
}

impl SweepReport {
    /// Sessions the sweep took out of the pool.
    pub fn removed(&self) -> u32 {
        self.heartbeat_failures + self.retired + self.trimmed + self.stale_discarded + self.malformed_discarded
    }
}

/// New sessions to warm after a sweep: up to the target, counting what the sweep removed,
/// within the per-run creation cap.
pub fn top_up(target: u32, before: PoolDepth, sweep: &SweepReport, max_creations: u32) -> u32 {
    let after = before.total().saturating_sub(u64::from(sweep.removed()));
    let missing = u64::from(target).saturating_sub(after);
    u32::try_from(missing).unwrap_or(u32::MAX).min(max_creations)
}

/// Everything a scheduled run decides with, parsed once at init.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub rules: MaintenanceRules,
    pub limits: SweepLimits,
    pub target: TargetPolicy,
    /// New sessions one scheduled run may create at most; zero would stop replacing retired
    /// sessions.
    pub max_creations_per_run: NonZeroU32,
}

impl Settings {
    /// The rules, the sweep limits, the target ([`TargetPolicy::from_env`]) and
    /// `MAX_CREATIONS_PER_RUN` (50, at least 1).
    pub fn from_env(env: &Env, lifecycle: Lifecycle) -> Result<Self, ConfigError> {
        let rules = MaintenanceRules::from_env(env, lifecycle)?;
        let limits = SweepLimits::from_env(env)?;
        if limits.time_budget >= rules.interval {
            return Err(ConfigError::Invalid {
                key: SWEEP_TIME_BUDGET,
                value: limits.time_budget.as_secs().to_string(),
                reason: format!("must be below {INTERVAL}, so that sweeps do not overlap"),
            });
        }
        Ok(Self {
            rules,
            limits,
            target: TargetPolicy::from_env(env)?,
            max_creations_per_run: env.positive_or(MAX_CREATIONS_PER_RUN, at_least_one(50))?,
        })
    }
}

/// Above the target the pool is trimmed only beyond this share of it: the claim-rate estimate
/// from one look at the queue varies by 10-20% between rounds, and a band keeps a round from
/// trimming what the next one creates again.
pub const TRIM_SLACK: f64 = 0.25;

/// Sessions to let go: what is above the target and its slack.
pub fn surplus(target: u32, depth: PoolDepth) -> u32 {
    let band = (f64::from(target) * (1.0 + TRIM_SLACK)).ceil() as u64;
    u32::try_from(depth.total().saturating_sub(band)).unwrap_or(u32::MAX)
}

/// What one scheduled round found and did; `top_up` sessions are left to warm.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub sizing: Sizing,
    pub sweep: SweepReport,
    pub top_up: u32,
}

/// The pool as found, and the target sized from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    pub depth: PoolDepth,
    /// How long the oldest visible message had waited in the queue, when it was read.
    pub oldest_wait_ms: Option<u64>,
    pub target: Target,
}

/// A count run adds sessions only while the pool holds less than this multiple of its target.
/// Well above the trim band on purpose: the target a count run sizes from one look varies
/// between looks, and a replacement it wrongly skips is a cold start for a later claim.
pub const REFILL_CEILING: f64 = 2.0;

impl Sizing {
    /// Sessions a count run may still add ([`REFILL_CEILING`]), so that replacements that
    /// arrive late (queued behind a burst the quota could not serve) do not balloon a pool
    /// that has refilled since.
    pub fn room(&self) -> u32 {
        let ceiling = (f64::from(self.target.value) * REFILL_CEILING).ceil() as u64;
        u32::try_from(ceiling.saturating_sub(self.depth.total())).unwrap_or(u32::MAX)
    }
}

/// Looks at the pool without hiding anything and sizes the target. `warmup_p95` is what this
/// environment measured. The oldest message's wait is read only when the target needs it
/// ([`TargetPolicy::needs_claim_rate`]); the scheduled [`round`] always reads it, for its metric.
pub async fn size<Q, C>(
    queue: &Q,
    clock: &C,
    target: &TargetPolicy,
    max_hidden: u8,
    warmup_p95: Option<Duration>,
) -> Result<Sizing, QueueError>
where
    Q: PoolMaintenance,
    C: Clock,
{
    look(queue, clock, target, max_hidden, warmup_p95, target.needs_claim_rate()).await
}

async fn look<Q, C>(
    queue: &Q,
    clock: &C,
    target: &TargetPolicy,
    max_hidden: u8,
    warmup_p95: Option<Duration>,
    read_oldest: bool,
) -> Result<Sizing, QueueError>
where
    Q: PoolMaintenance,
    C: Clock,
{
    let now_ms = clock.now_ms();
    let depth = queue.depth().await?;
    // Without it the adaptive target sizes as for an unknown rate, which its clamp bounds.
    let oldest_sent_at_ms = if read_oldest {
        match queue.oldest_sent_at(max_hidden).await {
            Ok(sent_at) => sent_at,
            Err(error) => {
                warn!(%error, "could not read the oldest pool message; sizing without it");
                None
            }
        }
    } else {
        None
    };
    let observation = Observation {
        depth,
        oldest_sent_at_ms,
        warmup_p95,
    };
    Ok(Sizing {
        depth,
        oldest_wait_ms: oldest_sent_at_ms.map(|sent| now_ms.saturating_sub(sent)),
        target: target.target(now_ms, &observation),
    })
}

/// A scheduled run but its warmups: size the target, sweep, count the top-up. The target is
/// sized before the sweep, from the pool as claims left it, so that the sweep knows how many
/// sessions to let go.
pub async fn round<Q, A, C>(
    queue: &Q,
    agent: &A,
    clock: &C,
    settings: &Settings,
    warmup_p95: Option<Duration>,
    remaining: Duration,
) -> Result<Round, QueueError>
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    let started_ms = clock.now_ms();
    let sizing = look(
        queue,
        clock,
        &settings.target,
        settings.limits.max_hidden,
        warmup_p95,
        true,
    )
    .await?;
    let surplus = surplus(sizing.target.value, sizing.depth);
    let deadline_ms = started_ms.saturating_add(millis(settings.limits.time_budget.min(remaining)));
    let window = SweepWindow {
        start_by_ms: deadline_ms,
        finish_by: Instant::now() + remaining,
    };
    let sweep = sweep(queue, agent, clock, &settings.rules, &settings.limits, surplus, window).await;
    let top_up = top_up(
        sizing.target.value,
        sizing.depth,
        &sweep,
        settings.max_creations_per_run.get(),
    );
    Ok(Round { sizing, sweep, top_up })
}

enum Outcome {
    Heartbeat,
    HeartbeatFailed,
    HeartbeatUnconfirmed,
    Removed { action: Action, stopped: bool },
    MalformedRemoved,
    Lost,
}

/// When a sweep must be done: it starts no batch at or after `start_by_ms` (on the sweep's
/// clock), and no resend or stop retry outlasts `finish_by` (the run's own deadline).
#[derive(Debug, Clone, Copy)]
pub struct SweepWindow {
    pub start_by_ms: u64,
    pub finish_by: Instant,
}

impl SweepWindow {
    /// No batch after `start_by_ms`; retries for at most `retries_for` of real time.
    pub fn new(start_by_ms: u64, retries_for: Duration) -> Self {
        Self {
            start_by_ms,
            finish_by: Instant::now() + retries_for,
        }
    }
}

/// Applies the rules to the pool, a batch of at most `limits.max_hidden` messages at a time,
/// until the queue shows nothing new, the batch limit, or the end of `window`.
/// `surplus` is how far the pool is above its target: that many due sessions are trimmed.
pub async fn sweep<Q, A, C>(
    queue: &Q,
    agent: &A,
    clock: &C,
    rules: &MaintenanceRules,
    limits: &SweepLimits,
    mut surplus: u32,
    window: SweepWindow,
) -> SweepReport
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    let mut report = SweepReport::default();
    let mut seen = HashSet::new();
    for _ in 0..limits.max_batches.get() {
        if clock.now_ms() >= window.start_by_ms {
            report.ended = SweepEnd::Deadline;
            return report;
        }
        let batch = match queue
            .receive(limits.max_hidden, Duration::ZERO, limits.visibility)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                warn!(%error, "sweep receive failed; ending the sweep");
                report.ended = SweepEnd::QueueFailed;
                return report;
            }
        };
        if batch.is_empty() {
            report.ended = SweepEnd::Converged;
            return report;
        }
        report.batches += 1;
        report.max_hidden = report.max_hidden.max(batch.len() as u32);
        let new = batch.iter().filter(|m| seen.insert(m.message_id.clone())).count();
        report.seen += new as u32;
        let now = clock.now_ms();
        let mut keep = Vec::new();
        let mut work = Vec::new();
        for message in batch {
            // Seen before in this sweep: released already, so nothing new to decide.
            let parsed = PooledSession::parse_at(&message.body, now);
            let action = match &parsed {
                _ if new == 0 => Action::Keep,
                Err(_) => Action::Discard(Freshness::Fresh),
                Ok(session) => {
                    report.oldest_age_ms = report.oldest_age_ms.max(Some(now.saturating_sub(session.created_at)));
                    report.oldest_ping_age_ms = report
                        .oldest_ping_age_ms
                        .max(Some(now.saturating_sub(session.last_ping_at)));
                    rules.decide(session, now, surplus > 0)
                }
            };
            if matches!(action, Action::Retire | Action::Trim | Action::Discard(_)) {
                surplus = surplus.saturating_sub(1);
            }
            match action {
                Action::Keep => keep.push(message.receipt),
                _ => work.push((message, parsed.ok(), action)),
            }
        }
        // Release first: those sessions are claimable again while we work on the rest.
        if !keep.is_empty() {
            report.released += keep.len() as u32;
            match queue.release(&keep).await {
                Ok(not_ours) => report.release_failures += not_ours,
                Err(error) => {
                    warn!(%error, count = keep.len(), "release failed; the messages reappear when their visibility ends");
                    report.release_failures += keep.len() as u32;
                }
            }
        }
        let care = Care {
            log_key: &limits.log_key,
            send: &limits.send,
            finish_by: window.finish_by,
        };
        let outcomes = futures::future::join_all(
            work.into_iter()
                .map(|(message, session, action)| act(queue, agent, clock, message, session, action, &care)),
        )
        .await;
        for outcome in outcomes {
            report.tally(outcome);
        }
        if new == 0 {
            report.ended = SweepEnd::Converged;
            return report;
        }
    }
    report.ended = SweepEnd::BatchLimit;
    report
}

impl SweepReport {
    fn tally(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Heartbeat => self.heartbeats += 1,
            Outcome::HeartbeatFailed => self.heartbeat_failures += 1,
            Outcome::HeartbeatUnconfirmed => {
                self.heartbeats += 1;
                self.unconfirmed += 1;
            }
            Outcome::MalformedRemoved => self.malformed_discarded += 1,
            Outcome::Lost => self.lost += 1,
            Outcome::Removed { action, stopped } => {
                match action {
                    Action::Retire => self.retired += 1,
                    Action::Trim => self.trimmed += 1,
                    _ => self.stale_discarded += 1,
                }
                if !stopped {
                    self.stop_failures += 1;
                }
            }
        }
    }
}

/// What the work on one message needs besides the ports.
struct Care<'a> {
    log_key: &'a LogKey,
    send: &'a SendRetry,
    finish_by: Instant,
}

async fn act<Q, A, C>(
    queue: &Q,
    agent: &A,
    clock: &C,
    message: Received,
    session: Option<PooledSession>,
    action: Action,
    care: &Care<'_>,
) -> Outcome
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    if let Err(error) = queue.delete(&message.receipt).await {
        warn!(message_id = %message.message_id, %error, "sweep delete failed; leaving the message alone");
        return Outcome::Lost;
    }
    let Some(session) = session else {
        warn!(message_id = %message.message_id, "removed a malformed pool message");
        return Outcome::MalformedRemoved;
    };
    let shown = session.session_id.log_id(care.log_key);
    match action {
        Action::Heartbeat => heartbeat(queue, agent, clock, session, care).await,
        Action::Retire | Action::Trim => {
            let stopped = stop_before(agent, &session.session_id, care.finish_by, care.log_key)
                .await
                .ended();
            info!(session = %shown, ?action, stopped, "session let go");
            Outcome::Removed { action, stopped }
        }
        _ => {
            info!(session = %shown, ?action, "stale session removed");
            Outcome::Removed { action, stopped: true }
        }
    }
}

async fn heartbeat<Q, A, C>(queue: &Q, agent: &A, clock: &C, session: PooledSession, care: &Care<'_>) -> Outcome
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    let shown = session.session_id.log_id(care.log_key);
    // Taken before the ping: AgentCore's idle timer restarts no earlier than this. Strictly
    // later than the last ping, so the deduplication ID is new even on a coarse clock.
    let ping_at = clock.now_ms().max(session.last_ping_at.saturating_add(1));
    if let Err(error) = agent.invoke(&session.session_id, WARMUP_PAYLOAD).await {
        warn!(session = %shown, %error, "heartbeat failed; dropping the session");
        if error.may_have_created_session() {
            stop_before(agent, &session.session_id, care.finish_by, care.log_key).await;
        }
        return Outcome::HeartbeatFailed;
    }
    let pinged = PooledSession::new(session.session_id, session.created_at, ping_at);
    match send_to_pool(queue, &pinged, care.send, care.finish_by, care.log_key).await {
        Sent::Confirmed => Outcome::Heartbeat,
        Sent::Unconfirmed(error) => {
            warn!(
                session = %shown,
                %error,
                "heartbeat re-enqueue never confirmed; it may be pooled, so the session is left running"
            );
            Outcome::HeartbeatUnconfirmed
        }
        Sent::Refused(error) => {
            warn!(session = %shown, %error, "the pool refused the heartbeat's re-enqueue; stopping the session");
            stop_before(agent, &pinged.session_id, care.finish_by, care.log_key).await;
            Outcome::HeartbeatFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::error::AgentErrorKind;
    use crate::fakes::{MemoryPool, ScriptedAgent};
    use std::sync::Arc;

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
                backoff: crate::quota::Backoff {
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
                mode: crate::target::Mode::Static,
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
}
