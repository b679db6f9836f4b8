//! Runs started by an EventBridge schedule (replenish's round, the stale-batch detector):
//! recognising the scheduled event, and how long a run may work before Lambda's deadline.

use crate::clock::millis;
use crate::config::Env;
use crate::error::ConfigError;
use serde_json::Value;
use std::time::Duration;

pub const DEADLINE_MARGIN: &str = "DEADLINE_MARGIN_MS";
pub const FALLBACK_BUDGET: &str = "FALLBACK_BUDGET_SECS";

/// Whether `payload` is an EventBridge scheduled event.
pub fn is_scheduled_event(payload: &Value) -> bool {
    payload.get("source").and_then(Value::as_str) == Some("aws.events")
        && payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// The time one run may use: work ends `margin` before Lambda's deadline, so the run reports
/// instead of timing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunBudget {
    pub margin: Duration,
    /// The budget when no Lambda deadline is known (local runs).
    pub fallback: Duration,
}

impl Default for RunBudget {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(2),
            fallback: Duration::from_secs(60),
        }
    }
}

impl RunBudget {
    /// `DEADLINE_MARGIN_MS` (2000) and `FALLBACK_BUDGET_SECS` (60).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            margin: env.millis_or(DEADLINE_MARGIN, millis(defaults.margin))?,
            fallback: env.secs_or(FALLBACK_BUDGET, defaults.fallback.as_secs())?,
        })
    }

    /// What is left of the run at `now_ms` with Lambda's deadline at `deadline_ms`.
    pub fn remaining(&self, deadline_ms: u64, now_ms: u64) -> Duration {
        if deadline_ms > now_ms {
            Duration::from_millis(deadline_ms - now_ms).saturating_sub(self.margin)
        } else {
            self.fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_the_margin_before_the_deadline_or_after_the_fallback_without_one() {
        let budget = RunBudget::from_env(&Env::default()).unwrap();
        assert_eq!(budget, RunBudget::default());
        assert_eq!(budget.remaining(10_000, 1_000), Duration::from_millis(7_000));
        assert_eq!(budget.remaining(2_000, 1_000), Duration::ZERO);
        assert_eq!(budget.remaining(0, 1_000), Duration::from_secs(60));
    }

    #[test]
    fn only_an_eventbridge_scheduled_event_is_one() {
        let scheduled = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"});
        assert!(is_scheduled_event(&scheduled));
        assert!(!is_scheduled_event(&serde_json::json!({"source": "aws.events"})));
        assert!(!is_scheduled_event(&serde_json::json!({"count": 1})));
    }
}
