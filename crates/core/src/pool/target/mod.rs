//! How many warm sessions the pool should hold: a static value, a weekly schedule of windows
//! (UTC), or an adaptive size from the observed claim rate and warmup time, which a schedule
//! may raise during its windows (a pre-warm ahead of a burst the operator knows about, the way
//! scheduled scaling raises the minimum under target tracking).
//!
//! Adaptive sizing adds nothing to the claim path. The scheduled run measures the claim rate
//! from the pool queue itself, by Little's law: a queue holding `depth` messages whose oldest
//! has waited `w` seconds is drained at about `depth / w` per second (claims take the oldest
//! first, and replenish refills one for one). The warmup time is what this replenish
//! environment measured on its own warmups. Nothing new is stored anywhere.

use super::quota::CreationBudget;
use crate::config::Env;
use crate::error::ConfigError;
use serde::Serialize;

pub const MODE: &str = "POOL_TARGET_MODE";
pub const STATIC_TARGET: &str = "POOL_TARGET";
pub const SCHEDULE: &str = "POOL_TARGET_SCHEDULE";
pub const MIN: &str = "POOL_TARGET_MIN";
pub const MAX: &str = "POOL_TARGET_MAX";
pub const SAFETY_FACTOR: &str = "ADAPTIVE_SAFETY_FACTOR";
pub const FLOOR: &str = "ADAPTIVE_FLOOR";
pub const DEFAULT_WARMUP: &str = "ADAPTIVE_DEFAULT_WARMUP_MS";

mod adaptive;
mod prewarm;
mod windows;

pub use adaptive::{Adaptive, Observation, WarmupTimes};
pub use prewarm::{Burst, Prewarm};
pub use windows::{Schedule, Window};

#[derive(Debug, Clone, PartialEq)]
pub enum TargetPolicy {
    Static(u32),
    Scheduled(Schedule),
    Adaptive(Adaptive),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    Static,
    Scheduled,
    Adaptive,
}

/// The target in force and, for the adaptive mode, the claim rate it was sized from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub value: u32,
    pub mode: Mode,
    pub claim_rate: Option<f64>,
}

impl TargetPolicy {
    pub fn target(&self, now_ms: u64, observation: &Observation) -> Target {
        match self {
            Self::Static(value) => Target {
                value: *value,
                mode: Mode::Static,
                claim_rate: None,
            },
            Self::Scheduled(schedule) => Target {
                value: schedule.target_at(now_ms),
                mode: Mode::Scheduled,
                claim_rate: None,
            },
            Self::Adaptive(adaptive) => {
                let rate = Adaptive::claim_rate(observation, now_ms);
                Target {
                    value: adaptive.target(now_ms, rate, observation.warmup_p95),
                    mode: Mode::Adaptive,
                    claim_rate: rate,
                }
            }
        }
    }

    /// Whether sizing needs the claim rate, hence the pool's oldest message (one more SQS call).
    pub fn needs_claim_rate(&self) -> bool {
        matches!(self, Self::Adaptive(_))
    }

    /// `POOL_TARGET_MODE` = `static` (default: `POOL_TARGET`, 10), `scheduled`
    /// (`POOL_TARGET_SCHEDULE`, `POOL_TARGET` outside its windows) or `adaptive`
    /// (`ADAPTIVE_SAFETY_FACTOR` 1, `ADAPTIVE_FLOOR` 2, `POOL_TARGET_MIN` 0, `POOL_TARGET_MAX` 500,
    /// `ADAPTIVE_DEFAULT_WARMUP_MS` 5000, and an optional `POOL_TARGET_SCHEDULE` of pre-warm
    /// windows that raise the target while they last).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode: String = env.parse_or(MODE, "static".to_string())?;
        let static_target: u32 = env.parse_or(STATIC_TARGET, 10)?;
        let schedule = |default| -> Result<Option<Schedule>, ConfigError> {
            let Some(spec) = env.optional(SCHEDULE) else {
                return Ok(None);
            };
            Schedule::parse(&spec, default)
                .map(Some)
                .map_err(|reason| ConfigError::Invalid {
                    key: SCHEDULE,
                    value: spec,
                    reason,
                })
        };
        match mode.as_str() {
            "static" => Ok(Self::Static(static_target)),
            "scheduled" => schedule(static_target)?
                .map(Self::Scheduled)
                .ok_or(ConfigError::Missing(SCHEDULE)),
            "adaptive" => {
                let adaptive = Adaptive {
                    safety_factor: env.parse_or(SAFETY_FACTOR, 1.0)?,
                    floor: env.parse_or(FLOOR, 2)?,
                    min: env.parse_or(MIN, 0)?,
                    max: env.parse_or(MAX, 500)?,
                    default_warmup: env.millis_or(DEFAULT_WARMUP, 5_000)?,
                    empty_pool_rate: f64::from(CreationBudget::from_env(env)?.per_second.get()),
                    prewarm: schedule(0)?,
                };
                if !(adaptive.safety_factor.is_finite() && adaptive.safety_factor > 0.0) {
                    return Err(ConfigError::Invalid {
                        key: SAFETY_FACTOR,
                        value: adaptive.safety_factor.to_string(),
                        reason: "must be a positive number".into(),
                    });
                }
                if adaptive.min > adaptive.max {
                    return Err(ConfigError::Invalid {
                        key: MIN,
                        value: adaptive.min.to_string(),
                        reason: format!("must not exceed {MAX} ({})", adaptive.max),
                    });
                }
                Ok(Self::Adaptive(adaptive))
            }
            other => Err(ConfigError::Invalid {
                key: MODE,
                value: other.to_string(),
                reason: "expected static, scheduled or adaptive".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
