//! replenish's configuration, parsed once at init.

use std::time::Duration;
use warmpool_core::ConfigError;
use warmpool_core::config::Env;
use warmpool_core::pool::Lifecycle;
use warmpool_core::warmup::WarmupPolicy;

#[derive(Debug, Clone)]
pub struct Config {
    /// `POOL_QUEUE_URL`
    pub pool_queue_url: String,
    /// `AGENT_RUNTIME_ARN`
    pub agent_runtime_arn: String,
    /// `AGENT_RUNTIME_QUALIFIER` (DEFAULT)
    pub qualifier: String,
    /// `POOL_TARGET` (10): sessions the schedule keeps in the pool.
    pub target: u32,
    /// `MAX_CREATIONS_PER_RUN` (50): new sessions one scheduled run may create.
    pub max_creations_per_run: u32,
    /// `MAX_COUNT_PER_TRIGGER` (100): the largest `{"count": n}` accepted.
    pub max_count_per_trigger: u32,
    /// `WARMUP_CONCURRENCY` (8), `WARMUP_BACKOFF_BASE_MS` (100), `WARMUP_BACKOFF_CAP_MS` (5000).
    pub warmup: WarmupPolicy,
    /// `DEADLINE_MARGIN_MS` (2000): retries stop this long before the Lambda deadline.
    pub deadline_margin: Duration,
    /// `FALLBACK_BUDGET_SECS` (60): the retry budget when no Lambda deadline is known.
    pub fallback_budget: Duration,
    pub lifecycle: Lifecycle,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let concurrency: usize = env.parse_or("WARMUP_CONCURRENCY", 8)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "WARMUP_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let agent_runtime_arn = env.required("AGENT_RUNTIME_ARN")?;
        if !agent_runtime_arn.starts_with("arn:") || !agent_runtime_arn.contains(":runtime/") {
            return Err(ConfigError::Invalid {
                key: "AGENT_RUNTIME_ARN",
                value: agent_runtime_arn,
                reason: "expected arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>".into(),
            });
        }
        Ok(Self {
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            agent_runtime_arn,
            qualifier: env.parse_or("AGENT_RUNTIME_QUALIFIER", "DEFAULT".to_string())?,
            target: env.parse_or("POOL_TARGET", 10)?,
            max_creations_per_run: env.parse_or("MAX_CREATIONS_PER_RUN", 50)?,
            max_count_per_trigger: env.parse_or("MAX_COUNT_PER_TRIGGER", 100)?,
            warmup: WarmupPolicy {
                concurrency,
                backoff_base: env.millis_or("WARMUP_BACKOFF_BASE_MS", 100)?,
                backoff_cap: env.millis_or("WARMUP_BACKOFF_CAP_MS", 5_000)?,
            },
            deadline_margin: env.millis_or("DEADLINE_MARGIN_MS", 2_000)?,
            fallback_budget: env.secs_or("FALLBACK_BUDGET_SECS", 60)?,
            lifecycle: Lifecycle::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_that_is_not_a_runtime_is_refused_at_init() {
        let env = Env::from_pairs([("POOL_QUEUE_URL", "q"), ("AGENT_RUNTIME_ARN", "my-agent")]);
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Invalid {
                key: "AGENT_RUNTIME_ARN",
                ..
            })
        ));
    }
}
