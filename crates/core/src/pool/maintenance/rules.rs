//! The rule for one pooled session: keep, heartbeat, retire, trim or discard.

use super::{HEARTBEAT_FRACTION, INTERVAL, RETIRE_SPREAD};
use crate::clock::millis;
use crate::config::Env;
use crate::error::ConfigError;
use crate::hash::stable_hash;
use crate::pool::{Freshness, Lifecycle};
use crate::session::{PooledSession, SessionId};
use serde::Serialize;
use std::time::Duration;

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
    /// Stop a session a deploy of a new agent version made outdated ([`crate::pool::version`]).
    Drain,
    Discard(Freshness),
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
