//! The warmup circuit breaker (docs/decisions/0214): after `threshold` consecutive warmup
//! attempts (retries included) that the agent failed (424 / 500: [`AgentErrorKind::Agent`] and [`AgentErrorKind::Server`], not
//! throttles nor quota answers, which say nothing about the agent), replenish stops warming,
//! and probes with one warmup per `probe_interval` until one succeeds.
//!
//! The state lives as long as the execution environment, shared by every run in it: a broken
//! agent costs each environment `threshold` warmups, then one per probe interval.

use crate::config::Env;
use crate::error::{AgentError, AgentErrorKind, ConfigError};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// `WARMUP_BREAKER_THRESHOLD` (5): consecutive agent failures that open the breaker.
    pub threshold: NonZeroU32,
    /// `WARMUP_BREAKER_PROBE_SECS` (60): one probe warmup per this long while open.
    pub probe_interval: Duration,
}

pub const WARMUP_BREAKER_THRESHOLD: &str = "WARMUP_BREAKER_THRESHOLD";
pub const WARMUP_BREAKER_PROBE: &str = "WARMUP_BREAKER_PROBE_SECS";

impl BreakerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let probe_interval = env.secs_or(WARMUP_BREAKER_PROBE, defaults.probe_interval.as_secs())?;
        if probe_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: WARMUP_BREAKER_PROBE,
                value: "0".into(),
                reason: "an open breaker probes at most once per interval; 0 would not slow it down".into(),
            });
        }
        Ok(Self {
            threshold: env.positive_or(WARMUP_BREAKER_THRESHOLD, defaults.threshold)?,
            probe_interval,
        })
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: crate::config::at_least_one(5),
            probe_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    streak: u32,
    open_since_ms: Option<u64>,
    last_probe_ms: Option<u64>,
}

/// What a run may warm under the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: warm what was asked.
    All,
    /// Open, and a probe is due: warm one session.
    Probe,
    /// Open: warm nothing.
    None,
}

#[derive(Debug, Default)]
pub struct WarmupBreaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Whether a warmup's final error says the agent is broken.
pub fn is_agent_failure(error: &AgentError) -> bool {
    matches!(error.kind, AgentErrorKind::Agent | AgentErrorKind::Server)
}

impl WarmupBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What a run starting at `now_ms` may warm; a granted probe counts from now.
    pub fn permit(&self, now_ms: u64) -> Permit {
        let mut state = self.state();
        if state.open_since_ms.is_none() {
            return Permit::All;
        }
        let interval = crate::clock::millis(self.settings.probe_interval);
        let due = state
            .last_probe_ms
            .is_none_or(|last| now_ms >= last.saturating_add(interval));
        if due {
            state.last_probe_ms = Some(now_ms);
            Permit::Probe
        } else {
            Permit::None
        }
    }

    pub fn is_open(&self) -> bool {
        self.state().open_since_ms.is_some()
    }

    pub fn open_since_ms(&self) -> Option<u64> {
        self.state().open_since_ms
    }

    /// A warmup succeeded: the agent works, the breaker closes.
    pub fn record_success(&self) {
        let mut state = self.state();
        *state = State::default();
    }

    /// A warmup attempt failed with `error` at `now_ms`. Returns true if this opened the breaker.
    pub fn record_failure(&self, error: &AgentError, now_ms: u64) -> bool {
        if !is_agent_failure(error) {
            return false;
        }
        let mut state = self.state();
        state.streak = state.streak.saturating_add(1);
        if state.open_since_ms.is_none() && state.streak >= self.settings.threshold.get() {
            state.open_since_ms = Some(now_ms);
            state.last_probe_ms = Some(now_ms);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> WarmupBreaker {
        WarmupBreaker::new(BreakerSettings {
            threshold: NonZeroU32::new(threshold).unwrap(),
            probe_interval: Duration::from_secs(60),
        })
    }

    fn error(kind: AgentErrorKind) -> AgentError {
        AgentError::new("InvokeAgentRuntime", kind, "test")
    }

    #[test]
    fn when_n_agent_failures_in_a_row_then_the_breaker_opens_and_probes_once_per_interval() {
        let b = breaker(3);
        assert!(!b.record_failure(&error(AgentErrorKind::Agent), 0));
        assert!(!b.record_failure(&error(AgentErrorKind::Server), 0));
        assert_eq!(b.permit(0), Permit::All);
        assert!(b.record_failure(&error(AgentErrorKind::Agent), 1_000));
        assert_eq!(
            b.permit(1_000),
            Permit::None,
            "the failure that opened it was the probe"
        );
        assert_eq!(b.permit(60_999), Permit::None);
        assert_eq!(b.permit(61_000), Permit::Probe);
        assert_eq!(b.permit(61_001), Permit::None);
        b.record_success();
        assert_eq!(b.permit(61_002), Permit::All);
    }

    #[test]
    fn when_throttled_or_refused_then_the_streak_does_not_grow() {
        let b = breaker(2);
        for kind in [
            AgentErrorKind::Throttled,
            AgentErrorKind::QuotaExceeded,
            AgentErrorKind::Rejected,
        ] {
            b.record_failure(&error(kind), 0);
            b.record_failure(&error(kind), 0);
        }
        assert!(!b.is_open());
    }

    #[test]
    fn when_a_warmup_succeeds_between_failures_then_the_streak_starts_again() {
        let b = breaker(2);
        b.record_failure(&error(AgentErrorKind::Agent), 0);
        b.record_success();
        b.record_failure(&error(AgentErrorKind::Agent), 0);
        assert!(!b.is_open());
    }
}
