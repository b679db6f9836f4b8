//! What the modelled service is told at start ([`LifecycleConfig`]) and the faults that can
//! change while it runs ([`Faults`]), with the checks that refuse nonsense.

use std::time::Duration;

use serde::Serialize;

use super::latency::LatencyProfile;
use crate::Error;

/// How the modelled AgentCore Runtime behaves. Defaults are the published service figures.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    pub cold_start: LatencyProfile,
    pub warm: LatencyProfile,
    /// Multiplies every sampled latency (0.01 for fast tests). Nothing else is scaled: timeouts
    /// and rates stay in real units so a test states them directly.
    pub latency_scale: f64,
    /// A session whose last invocation is this old is gone (`idleRuntimeSessionTimeout`).
    pub idle_timeout: Duration,
    /// A session this old is gone whatever its activity (`maxLifetime`).
    pub max_lifetime: Duration,
    /// New microVMs per second, a token bucket whose burst equals the rate (at least 1).
    /// In any 1 s window up to burst + rate creations can therefore pass.
    pub creation_rate_per_sec: f64,
    /// Cap on sessions active at once; a creation beyond it is refused.
    pub max_active_sessions: usize,
    /// Probability that an invocation fails with an internal error before reaching a microVM.
    pub error_rate: f64,
    /// Probability that an invocation crashes its session's microVM.
    pub crash_rate: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            cold_start: LatencyProfile::COLD_START,
            warm: LatencyProfile::WARM,
            latency_scale: 1.0,
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            creation_rate_per_sec: 25.0,
            max_active_sessions: 1_000,
            error_rate: 0.0,
            crash_rate: 0.0,
        }
    }
}

impl LifecycleConfig {
    pub fn validate(&self) -> Result<(), Error> {
        self.cold_start.validate("cold_start")?;
        self.warm.validate("warm")?;
        if !(self.latency_scale.is_finite() && self.latency_scale >= 0.0) {
            return Err(Error::invalid_config("latency_scale", "must be a finite number >= 0"));
        }
        if !(self.creation_rate_per_sec.is_finite() && self.creation_rate_per_sec >= 0.0) {
            return Err(Error::invalid_config(
                "creation_rate_per_sec",
                "must be a finite number >= 0",
            ));
        }
        self.faults().validate()
    }

    pub(super) fn faults(&self) -> Faults {
        Faults {
            error_rate: self.error_rate,
            crash_rate: self.crash_rate,
            throttle_all: false,
        }
    }
}

/// Fault injection that can change while the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub error_rate: f64,
    pub crash_rate: f64,
    /// Refuse every new microVM with `Throttled` until cleared; warm sessions still serve.
    pub throttle_all: bool,
}

impl Faults {
    pub fn validate(&self) -> Result<(), Error> {
        check_probability("error_rate", self.error_rate)?;
        check_probability("crash_rate", self.crash_rate)
    }
}

fn check_probability(field: &'static str, p: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::invalid_config(field, "must be a probability in 0..=1"))
    }
}
