//! Scheduled maintenance of the pool: heartbeats before the idle timeout, retirement before the
//! max lifetime, trimming above the target (invariants 2 and 3 of docs/architecture.md).
//!
//! [`MaintenanceRules::decide`] is the pure rule for one pooled session; [`sweep`] applies it to
//! the queue, a bounded batch at a time:
//! - nothing to do: the message is released at once (visibility 0), so claims keep working;
//! - heartbeat: delete, ping with the warmup sentinel, re-enqueue with the new `lastPingAt`
//!   (hence a fresh deduplication ID). Deleting first means a crash in between leaks a session
//!   (cost), never puts one in the pool twice (data). A failed ping drops the session;
//!   The re-enqueue is resent while its outcome is unknown ([`crate::pool::enqueue`]): the session
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

use super::Lifecycle;
use super::target::TargetPolicy;
use crate::config::{Env, at_least_one};
use crate::error::ConfigError;
use std::num::NonZeroU32;

mod rules;
mod sizing;
mod sweep;

pub use rules::{Action, MaintenanceRules};
pub use sizing::{REFILL_CEILING, Round, Sizing, TRIM_SLACK, round, round_with, size, surplus, top_up};
pub use sweep::{SweepEnd, SweepLimits, SweepPlan, SweepReport, SweepWindow, sweep, sweep_with};

pub const HEARTBEAT_FRACTION: &str = "HEARTBEAT_FRACTION";
pub const INTERVAL: &str = "MAINTENANCE_INTERVAL_SECS";
pub const RETIRE_SPREAD: &str = "RETIRE_SPREAD_SECS";
pub const SWEEP_MAX_HIDDEN: &str = "SWEEP_MAX_HIDDEN";
pub const SWEEP_VISIBILITY: &str = "SWEEP_VISIBILITY_SECS";
pub const SWEEP_MAX_BATCHES: &str = "SWEEP_MAX_BATCHES";
pub const SWEEP_TIME_BUDGET: &str = "SWEEP_TIME_BUDGET_SECS";
pub const MAX_CREATIONS_PER_RUN: &str = "MAX_CREATIONS_PER_RUN";

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

#[cfg(test)]
mod tests;
