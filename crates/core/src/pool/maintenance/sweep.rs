//! The sweep: the rules applied to the pool queue, a bounded batch at a time.

use super::rules::{Action, MaintenanceRules};
use super::{SWEEP_MAX_BATCHES, SWEEP_MAX_HIDDEN, SWEEP_TIME_BUDGET, SWEEP_VISIBILITY};
use crate::clock::Clock;
use crate::config::{Env, at_least_one};
use crate::error::ConfigError;
use crate::num::count_u32;
use crate::pool::Freshness;
use crate::pool::enqueue::{SendRetry, Sent, send_to_pool};
use crate::pool::version::Drain;
use crate::ports::{AgentRuntime, PoolMaintenance, Received};
use crate::session::{LogKey, PooledSession, WARMUP_PAYLOAD};
use crate::stop::stop_before;
use serde::Serialize;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

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
    /// Sessions of an outdated agent version stopped ([`Action::Drain`]).
    pub drained: u32,
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
        self.heartbeat_failures
            + self.retired
            + self.trimmed
            + self.drained
            + self.stale_discarded
            + self.malformed_discarded
    }
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
    surplus: u32,
    window: SweepWindow,
) -> SweepReport
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    let plan = SweepPlan {
        rules,
        limits,
        surplus,
        drain: &Drain::none(),
    };
    sweep_with(queue, agent, clock, &plan, window).await
}

/// What one sweep applies: the rules, its limits, the surplus to trim, and the version drain.
#[derive(Debug, Clone, Copy)]
pub struct SweepPlan<'a> {
    pub rules: &'a MaintenanceRules,
    pub limits: &'a SweepLimits,
    pub surplus: u32,
    /// Sessions outdated against `drain.current` are stopped, at most `drain.per_sweep`.
    pub drain: &'a Drain,
}

/// [`sweep`] with a version drain.
pub async fn sweep_with<Q, A, C>(
    queue: &Q,
    agent: &A,
    clock: &C,
    plan: &SweepPlan<'_>,
    window: SweepWindow,
) -> SweepReport
where
    Q: PoolMaintenance,
    A: AgentRuntime,
    C: Clock,
{
    let (rules, limits) = (plan.rules, plan.limits);
    let mut budget = Budget {
        surplus: plan.surplus,
        drain: plan.drain,
        drains_left: plan.drain.per_sweep,
    };
    let mut report = SweepReport::default();
    let mut seen = HashSet::with_hasher(foldhash::fast::RandomState::default());
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
        report.max_hidden = report.max_hidden.max(count_u32(batch.len()));
        let new = batch.iter().filter(|m| seen.insert(m.message_id.clone())).count();
        report.seen += count_u32(new);
        let (keep, work) = report.classify(batch, new == 0, clock.now_ms(), rules, &mut budget);
        // Release first: those sessions are claimable again while we work on the rest.
        report.release(queue, &keep).await;
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

/// A message the sweep acts on, with its session if it parsed, and what to do.
type Work = (Received, Option<PooledSession>, Action);

/// What a sweep may still let go of: the surplus above the target, and outdated sessions.
struct Budget<'a> {
    surplus: u32,
    drain: &'a Drain,
    drains_left: u32,
}

impl Budget<'_> {
    /// The rules' action, unless the session is outdated and the drain has room: a session the
    /// rules would keep, ping or trim is drained instead (a stale or retiring one stays so).
    fn decide(&mut self, rules: &MaintenanceRules, session: &PooledSession, now: u64) -> Action {
        let action = rules.decide(session, now, self.surplus > 0);
        let replaceable = matches!(action, Action::Keep | Action::Heartbeat | Action::Trim);
        let action = if replaceable && self.drains_left > 0 && self.drain.outdated(session, now) {
            self.drains_left -= 1;
            Action::Drain
        } else {
            action
        };
        if matches!(
            action,
            Action::Retire | Action::Trim | Action::Drain | Action::Discard(_)
        ) {
            self.surplus = self.surplus.saturating_sub(1);
        }
        action
    }
}

impl SweepReport {
    /// Decides each message of a batch at `now`: the receipts to release untouched, and the
    /// work on the rest. A batch with nothing new (`seen_before`) was released already.
    fn classify(
        &mut self,
        batch: Vec<Received>,
        seen_before: bool,
        now: u64,
        rules: &MaintenanceRules,
        budget: &mut Budget<'_>,
    ) -> (Vec<String>, Vec<Work>) {
        let mut keep = Vec::new();
        let mut work = Vec::new();
        for message in batch {
            let parsed = PooledSession::parse_at(&message.body, now);
            let action = match &parsed {
                _ if seen_before => Action::Keep,
                Err(_) => Action::Discard(Freshness::Fresh),
                Ok(session) => {
                    self.oldest_age_ms = self.oldest_age_ms.max(Some(now.saturating_sub(session.created_at)));
                    self.oldest_ping_age_ms = self
                        .oldest_ping_age_ms
                        .max(Some(now.saturating_sub(session.last_ping_at)));
                    budget.decide(rules, session, now)
                }
            };
            if matches!(action, Action::Discard(_)) && parsed.is_err() {
                budget.surplus = budget.surplus.saturating_sub(1);
            }
            match action {
                Action::Keep => keep.push(message.receipt),
                _ => work.push((message, parsed.ok(), action)),
            }
        }
        (keep, work)
    }

    /// Makes the untouched messages visible again at once.
    async fn release<Q: PoolMaintenance>(&mut self, queue: &Q, keep: &[String]) {
        if keep.is_empty() {
            return;
        }
        self.released += count_u32(keep.len());
        match queue.release(keep).await {
            Ok(not_ours) => self.release_failures += not_ours,
            Err(error) => {
                warn!(%error, count = keep.len(), "release failed; the messages reappear when their visibility ends");
                self.release_failures += count_u32(keep.len());
            }
        }
    }

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
                    Action::Drain => self.drained += 1,
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
    if action == Action::Heartbeat {
        return heartbeat(queue, agent, clock, session, care).await;
    }
    let shown = session.session_id.shown(care.log_key);
    match action {
        Action::Retire | Action::Trim | Action::Drain => {
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
    let shown = session.session_id.shown(care.log_key);
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
    let pinged = session.pinged_at(ping_at);
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
