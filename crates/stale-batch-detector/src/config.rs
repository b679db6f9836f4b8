//! stale-batch-detector's configuration, parsed once at init.

use std::num::NonZeroU32;
use std::time::Duration;
use warmpool_core::batch::settings::TrackingLayout;
use warmpool_core::batch::settings::{MAX_RETRY_DELAY, pending_timeout_from_env, positive};
use warmpool_core::config::Env;
use warmpool_core::error::ConfigError;
use warmpool_core::metrics::PoolName;
use warmpool_core::schedule::RunBudget;
use warmpool_core::session::LogKey;

#[derive(Debug, Clone)]
pub struct Config {
    /// `TRACKING_TABLE`
    pub tracking_table: String,
    /// `BATCH_QUEUE_URL`: retries (`attempt` n + 1) are sent here.
    pub batch_queue_url: String,
    /// `FAILURE_QUEUE_URL`: batches out of attempts.
    pub failure_queue_url: String,
    /// `AGENT_RUNTIME_ARN`, `AGENT_RUNTIME_QUALIFIER` (DEFAULT): to stop a failed attempt's session.
    pub agent_runtime_arn: String,
    pub qualifier: String,
    /// `MAX_BATCHES_PER_RUN` (200): due rows one run settles; the next run takes the rest.
    pub max_batches_per_run: NonZeroU32,
    /// `SETTLE_CONCURRENCY` (8): rows settled at once.
    pub settle_concurrency: NonZeroU32,
    /// `RETRY_DELAY_SECS` (2): delay of a retry message, so the row moves before it arrives.
    pub retry_delay: Duration,
    /// `BATCH_PENDING_TIMEOUT_SECS` (300): start-by time of a handed-over attempt; as the
    /// invoker's.
    pub pending_timeout: Duration,
    /// `DEADLINE_MARGIN_MS` (2000): no attempt is started this close to the Lambda deadline;
    /// `FALLBACK_BUDGET_SECS` (60): the run's budget when no Lambda deadline is known.
    pub run_budget: RunBudget,
    /// `TRACKING_SHARDS`, `TRACKING_RETENTION_DAYS`: as the invoker's.
    pub layout: TrackingLayout,
    /// `SESSION_LOG_KEY`: session IDs appear in logs only as keyed hashes.
    pub log_key: LogKey,
    /// `POOL_NAME` ("default"): the `Pool` dimension of this function's metrics; the batch
    /// pool's name, as the invoker's.
    pub pool_name: PoolName,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let pending_timeout = pending_timeout_from_env(env)?;
        let retry_delay = env.secs_or("RETRY_DELAY_SECS", 2)?;
        if retry_delay > MAX_RETRY_DELAY || retry_delay * 2 >= pending_timeout {
            return Err(ConfigError::Invalid {
                key: "RETRY_DELAY_SECS",
                value: retry_delay.as_secs().to_string(),
                reason: "must be at most 900 (SQS) and under half BATCH_PENDING_TIMEOUT_SECS".into(),
            });
        }
        Ok(Self {
            tracking_table: env.required("TRACKING_TABLE")?,
            batch_queue_url: env.required("BATCH_QUEUE_URL")?,
            failure_queue_url: env.required("FAILURE_QUEUE_URL")?,
            agent_runtime_arn: env.required("AGENT_RUNTIME_ARN")?,
            qualifier: env.parse_or("AGENT_RUNTIME_QUALIFIER", "DEFAULT".to_string())?,
            max_batches_per_run: positive(env, "MAX_BATCHES_PER_RUN", 200)?,
            settle_concurrency: positive(env, "SETTLE_CONCURRENCY", 8)?,
            retry_delay,
            pending_timeout,
            run_budget: RunBudget::from_env(env)?,
            layout: TrackingLayout::from_env(env)?,
            log_key: LogKey::from_env(env)?,
            pool_name: PoolName::from_env(env)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const REQUIRED: [(&str, &str); 4] = [
        ("TRACKING_TABLE", "batches"),
        ("BATCH_QUEUE_URL", "http://sqs/batches"),
        ("FAILURE_QUEUE_URL", "http://sqs/failed"),
        (
            "AGENT_RUNTIME_ARN",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/document_agent-Ab12",
        ),
    ];

    #[test]
    fn a_zero_batch_limit_is_refused_at_init() {
        let env = Env::from_pairs(REQUIRED.iter().copied().chain([("MAX_BATCHES_PER_RUN", "0")]));
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Invalid {
                key: "MAX_BATCHES_PER_RUN",
                ..
            })
        ));
    }

    #[test]
    fn when_a_retry_would_arrive_after_its_start_by_time_then_init_fails() {
        for (key, value) in [
            ("RETRY_DELAY_SECS", "901"),
            ("SETTLE_CONCURRENCY", "0"),
            ("BATCH_PENDING_TIMEOUT_SECS", "10"),
        ] {
            let env = Env::from_pairs(REQUIRED.iter().copied().chain([(key, value)]));
            assert!(
                matches!(Config::from_env(&env), Err(ConfigError::Invalid { .. })),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn a_missing_table_fails_at_init_with_its_name() {
        let env = Env::from_pairs(REQUIRED.iter().copied().filter(|(k, _)| *k != "TRACKING_TABLE"));
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Missing("TRACKING_TABLE"))
        ));
    }
}
