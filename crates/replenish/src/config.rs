//! replenish's configuration, parsed once at init.

use std::num::NonZeroUsize;
use warmpool_core::clock::millis;
use warmpool_core::config::check_runtime_arn;
use warmpool_core::config::{Env, at_least_one};
use warmpool_core::error::ConfigError;
use warmpool_core::lease::LeaseConfig;
use warmpool_core::metrics::PoolName;
use warmpool_core::pool::Lifecycle;
use warmpool_core::pool::breaker::BreakerSettings;
use warmpool_core::pool::maintenance;
use warmpool_core::pool::quota::CreationBudget;
use warmpool_core::pool::version::DrainSettings;
use warmpool_core::pool::warmup::WarmupPolicy;
use warmpool_core::schedule::RunBudget;
use warmpool_core::session::LogKey;

#[derive(Debug, Clone)]
pub struct Config {
    /// `POOL_QUEUE_URL`
    pub pool_queue_url: String,
    /// `AGENT_RUNTIME_ARN`
    pub agent_runtime_arn: String,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): the scheduled run sends its top-up to this
    /// function as `{"count": n}` events, so that several environments warm it at once.
    pub function_name: String,
    /// `AGENT_RUNTIME_QUALIFIER` (DEFAULT)
    pub qualifier: String,
    /// `CREATION_BUDGET_PER_SEC`, `MAX_CONCURRENT_RUNS`: every warmup is paced at this
    /// environment's share of the budget.
    pub creation_budget: CreationBudget,
    /// The scheduled run: `POOL_TARGET_MODE`, `POOL_TARGET`, ... (the target),
    /// `HEARTBEAT_FRACTION`, `MAINTENANCE_INTERVAL_SECS`, `RETIRE_SPREAD_SECS`, `SWEEP_*`,
    /// `MAX_CREATIONS_PER_RUN` (see [`maintenance::Settings::from_env`]).
    pub maintenance: maintenance::Settings,
    /// `MAX_COUNT_PER_TRIGGER` (100, at least 1): the largest `{"count": n}` accepted.
    pub max_count_per_trigger: u32,
    /// `WARMUP_CONCURRENCY` (8, at least 1), `WARMUP_BACKOFF_BASE_MS` (100),
    /// `WARMUP_BACKOFF_CAP_MS` (5000), `SESSION_LOG_KEY`.
    pub warmup: WarmupPolicy,
    /// `DEADLINE_MARGIN_MS` (2000): retries stop this long before the Lambda deadline;
    /// `FALLBACK_BUDGET_SECS` (60): the retry budget when no Lambda deadline is known.
    pub run_budget: RunBudget,
    /// `POOL_NAME` ("default"): the `Pool` dimension of this function's metrics.
    pub pool_name: PoolName,
    /// `VERSION_DRAIN_GRACE_SECS`, `VERSION_DRAIN_PER_SWEEP`: draining after a new agent version.
    pub drain: DrainSettings,
    /// `WARMUP_BREAKER_THRESHOLD`, `WARMUP_BREAKER_PROBE_SECS`: the warmup circuit breaker.
    pub breaker: BreakerSettings,
    /// `LEASE_TABLE_NAME`, `LEASE_MAX_CONVERSATION_SECS`, `LEASE_AUDIT_RETENTION_DAYS`: with
    /// a lease table, each scheduled run sweeps orphaned leases and reports the sessions in use.
    pub leases: Option<LeaseConfig>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let warmup_defaults = WarmupPolicy::default();
        let concurrency = env.positive_or("WARMUP_CONCURRENCY", at_least_one(8))?;
        // A u32 always fits a usize on the targets Lambda runs.
        let concurrency = NonZeroUsize::try_from(concurrency).unwrap_or(warmup_defaults.concurrency);
        let agent_runtime_arn = env.required("AGENT_RUNTIME_ARN")?;
        if let Err(reason) = check_runtime_arn(&agent_runtime_arn) {
            return Err(ConfigError::Invalid {
                key: "AGENT_RUNTIME_ARN",
                value: agent_runtime_arn,
                reason,
            });
        }
        let lifecycle = Lifecycle::from_env(env)?;
        Ok(Self {
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            function_name: env.required("AWS_LAMBDA_FUNCTION_NAME")?,
            agent_runtime_arn,
            qualifier: env.parse_or("AGENT_RUNTIME_QUALIFIER", "DEFAULT".to_string())?,
            creation_budget: CreationBudget::from_env(env)?,
            maintenance: maintenance::Settings::from_env(env, lifecycle)?,
            max_count_per_trigger: env.positive_or("MAX_COUNT_PER_TRIGGER", at_least_one(100))?.get(),
            warmup: WarmupPolicy {
                concurrency,
                backoff_base: env.millis_or("WARMUP_BACKOFF_BASE_MS", millis(warmup_defaults.backoff_base))?,
                backoff_cap: env.millis_or("WARMUP_BACKOFF_CAP_MS", millis(warmup_defaults.backoff_cap))?,
                log_key: LogKey::from_env(env)?,
                ..warmup_defaults
            },
            run_budget: RunBudget::from_env(env)?,
            pool_name: PoolName::from_env(env)?,
            drain: DrainSettings::from_env(env)?,
            breaker: BreakerSettings::from_env(env)?,
            leases: LeaseConfig::from_env(env, lifecycle)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_budget_as_long_as_the_schedule_interval_is_refused() {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
            (
                "AGENT_RUNTIME_ARN",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a",
            ),
            ("SWEEP_TIME_BUDGET_SECS", "60"),
        ]);
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Invalid {
                key: "SWEEP_TIME_BUDGET_SECS",
                ..
            })
        ));
    }

    #[test]
    fn counts_that_must_be_positive_are_refused_at_zero_with_their_name() {
        for key in [
            "MAX_COUNT_PER_TRIGGER",
            "MAX_CREATIONS_PER_RUN",
            "SWEEP_MAX_BATCHES",
            "WARMUP_CONCURRENCY",
            "VERSION_DRAIN_PER_SWEEP",
            "WARMUP_BREAKER_THRESHOLD",
            "WARMUP_BREAKER_PROBE_SECS",
        ] {
            let env = Env::from_pairs([
                ("POOL_QUEUE_URL", "q"),
                ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
                (
                    "AGENT_RUNTIME_ARN",
                    "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a",
                ),
                (key, "0"),
            ]);
            match Config::from_env(&env) {
                Err(error) => assert!(error.to_string().contains(key), "{key}: {error}"),
                Ok(_) => panic!("{key}=0 was accepted"),
            }
        }
    }

    #[test]
    fn an_arn_that_is_not_a_runtime_is_refused_at_init() {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
            ("AGENT_RUNTIME_ARN", "my-agent"),
        ]);
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Invalid {
                key: "AGENT_RUNTIME_ARN",
                ..
            })
        ));
    }
}
