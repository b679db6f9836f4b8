//! Sizing a scheduled round: the target from one look at the pool, what to trim, what to top up.

use super::Settings;
use super::sweep::{SweepPlan, SweepReport, SweepWindow, sweep_with};
use crate::clock::{Clock, millis};
use crate::error::QueueError;
use crate::num::ceil_u64;
use crate::pool::target::{Observation, Target, TargetPolicy};
use crate::pool::version::Drain;
use crate::ports::{AgentRuntime, PoolDepth, PoolMaintenance};
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// New sessions to warm after a sweep: up to the target, counting what the sweep removed,
/// within the per-run creation cap.
pub fn top_up(target: u32, before: PoolDepth, sweep: &SweepReport, max_creations: u32) -> u32 {
    let after = before.total().saturating_sub(u64::from(sweep.removed()));
    let missing = u64::from(target).saturating_sub(after);
    u32::try_from(missing).unwrap_or(u32::MAX).min(max_creations)
}

/// Above the target the pool is trimmed only beyond this share of it: the claim-rate estimate
/// from one look at the queue varies by 10-20% between rounds, and a band keeps a round from
/// trimming what the next one creates again.
pub const TRIM_SLACK: f64 = 0.25;

/// Sessions to let go: what is above the target and its slack.
pub fn surplus(target: u32, depth: PoolDepth) -> u32 {
    let band = ceil_u64(f64::from(target) * (1.0 + TRIM_SLACK));
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
        let ceiling = ceil_u64(f64::from(self.target.value) * REFILL_CEILING);
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
    round_with(queue, agent, clock, settings, warmup_p95, remaining, &Drain::none()).await
}

/// [`round`], draining sessions of an outdated agent version: the sweep stops them
/// ([`SweepPlan::drain`]) and the top-up counts them as missing, so they are replaced within
/// the per-run creation cap and the creation budget.
pub async fn round_with<Q, A, C>(
    queue: &Q,
    agent: &A,
    clock: &C,
    settings: &Settings,
    warmup_p95: Option<Duration>,
    remaining: Duration,
    drain: &Drain,
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
    let plan = SweepPlan {
        rules: &settings.rules,
        limits: &settings.limits,
        surplus,
        drain,
    };
    let sweep = sweep_with(queue, agent, clock, &plan, window).await;
    let top_up = top_up(
        sizing.target.value,
        sizing.depth,
        &sweep,
        settings.max_creations_per_run.get(),
    );
    Ok(Round { sizing, sweep, top_up })
}
