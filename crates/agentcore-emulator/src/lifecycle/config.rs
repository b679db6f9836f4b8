//! What the modelled service is told at start ([`LifecycleConfig`]) and the faults that can
//! change while it runs ([`Faults`]), with the checks that refuse nonsense.

use std::time::Duration;

use serde::Serialize;

use super::latency::LatencyProfile;
use super::platform::{self, Platform};
use crate::Error;

/// How the modelled AgentCore Runtime behaves. Defaults are the published service figures
/// for platform V1 in us-east-1.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    /// Which platform's cold start is modelled; see [`Self::cold_start`].
    pub platform: Platform,
    /// Replaces the platform's published cold-start figures (`None`: the platform's).
    pub cold_start_override: Option<LatencyProfile>,
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
    /// Probability that an admitted invocation's answer is lost after the agent answered.
    pub lost_answer_rate: f64,
    /// Probability that an admitted invocation is answered `late_answer` after the agent
    /// answered.
    pub late_answer_rate: f64,
    pub late_answer: Duration,
    /// Probability that a StopRuntimeSession call is throttled and does not take effect.
    pub stop_throttle_rate: f64,
    /// Probability that a StopRuntimeSession call fails with an internal error and does not
    /// take effect.
    pub stop_error_rate: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            platform: Platform::V1,
            cold_start_override: None,
            warm: LatencyProfile::WARM,
            latency_scale: 1.0,
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            creation_rate_per_sec: platform::DEFAULT_CREATION_RATE,
            max_active_sessions: platform::default_active_sessions(platform::DEFAULT_REGION),
            error_rate: 0.0,
            crash_rate: 0.0,
            lost_answer_rate: 0.0,
            late_answer_rate: 0.0,
            late_answer: Duration::ZERO,
            stop_throttle_rate: 0.0,
            stop_error_rate: 0.0,
        }
    }
}

impl LifecycleConfig {
    /// A new session's first invocation: the override if set, else the platform's figures.
    pub fn cold_start(&self) -> LatencyProfile {
        self.cold_start_override.unwrap_or(self.platform.cold_start())
    }

    pub fn validate(&self) -> Result<(), Error> {
        self.cold_start().validate("cold_start")?;
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
            lost_answer_rate: self.lost_answer_rate,
            late_answer_rate: self.late_answer_rate,
            late_answer_ms: u64::try_from(self.late_answer.as_millis()).unwrap_or(u64::MAX),
            stop_throttle_rate: self.stop_throttle_rate,
            stop_error_rate: self.stop_error_rate,
            ..Faults::default()
        }
    }
}

/// A late answer beyond AgentCore's 15-minute synchronous limit could not happen there.
const MAX_LATE_ANSWER: Duration = Duration::from_secs(15 * 60);

/// Fault injection that can change while the model runs.
///
/// Faults after admission (`*_answer*`) hit invocations the agent really received and
/// processed: only the answer is lost or delayed. Stop faults refuse a StopRuntimeSession call
/// before it takes effect. A `next_*` count is spent before its rate is drawn, so a test can
/// inject exactly one fault where it wants it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub error_rate: f64,
    pub crash_rate: f64,
    /// Refuse every new microVM with `Throttled` until cleared; warm sessions still serve.
    pub throttle_all: bool,
    pub lost_answer_rate: f64,
    pub late_answer_rate: f64,
    /// How long after the agent's answer a late answer is sent.
    pub late_answer_ms: u64,
    /// Admitted invocations still to lose their answer, before `lost_answer_rate` applies.
    pub next_lost_answers: u32,
    /// Admitted invocations still to be answered late, before `late_answer_rate` applies.
    pub next_late_answers: u32,
    pub stop_throttle_rate: f64,
    pub stop_error_rate: f64,
    /// Stop calls still to be throttled, before `stop_throttle_rate` applies.
    pub next_stop_throttles: u32,
    /// Stop calls still to fail with an internal error, before `stop_error_rate` applies.
    pub next_stop_errors: u32,
}

impl Faults {
    pub fn validate(&self) -> Result<(), Error> {
        check_probability("error_rate", self.error_rate)?;
        check_probability("crash_rate", self.crash_rate)?;
        check_probability("lost_answer_rate", self.lost_answer_rate)?;
        check_probability("late_answer_rate", self.late_answer_rate)?;
        check_probability("stop_throttle_rate", self.stop_throttle_rate)?;
        check_probability("stop_error_rate", self.stop_error_rate)?;
        let late_injected = self.late_answer_rate > 0.0 || self.next_late_answers > 0;
        if late_injected && self.late_answer_ms == 0 {
            return Err(Error::invalid_config(
                "late_answer_ms",
                "must be above 0 while late answers are injected",
            ));
        }
        if u128::from(self.late_answer_ms) > MAX_LATE_ANSWER.as_millis() {
            return Err(Error::invalid_config(
                "late_answer_ms",
                format!("must be at most {} ms", MAX_LATE_ANSWER.as_millis()),
            ));
        }
        Ok(())
    }
}

fn check_probability(field: &'static str, p: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::invalid_config(field, "must be a probability in 0..=1"))
    }
}
