//! invoker's configuration, parsed once at init.

use std::time::Duration;
use warmpool_core::ConfigError;
use warmpool_core::aws::agentcore::check_runtime_arn;
use warmpool_core::aws::dynamodb::TrackingLayout;
use warmpool_core::config::Env;
use warmpool_core::manifest::BatchLimits;
use warmpool_core::pool::ClaimPolicy;

#[derive(Debug, Clone)]
pub struct Config {
    /// `BATCH_QUEUE_URL`: the standard queue this function consumes; retries go back to it.
    pub batch_queue_url: String,
    /// `FAILURE_QUEUE_URL`: batches out of attempts.
    pub failure_queue_url: String,
    /// `TRACKING_TABLE`
    pub tracking_table: String,
    /// `DOCUMENTS_BUCKET`: every document of every batch lives here, under `incoming/<batchId>/`.
    pub documents_bucket: String,
    /// `POOL_QUEUE_URL`, `REPLENISH_FUNCTION_NAME`: sessions come from the warm pool.
    pub pool_queue_url: String,
    pub replenish_function_name: String,
    /// `AGENT_RUNTIME_ARN`, `AGENT_RUNTIME_QUALIFIER` (DEFAULT)
    pub agent_runtime_arn: String,
    pub qualifier: String,
    /// `MAX_ATTEMPTS` (3): attempts of one batch, each on its own session.
    pub max_attempts: u32,
    /// `BATCH_DEADLINE_SECS` (900): how long one attempt may run before the detector fails it.
    pub batch_deadline: Duration,
    /// `INVOKE_TIMEOUT_SECS` (60): bounds the invocation that hands a batch to the agent
    /// (a cold start included); the agent answers at once and works in the background.
    pub invoke_timeout: Duration,
    /// `MAX_RECEIVE_COUNT` (5): the batch queue's redrive `maxReceiveCount`. On the last
    /// delivery a failing invocation counts as a failed attempt instead of going to the DLQ,
    /// so an accepted batch is never stranded there.
    pub max_receive_count: u32,
    /// `RECORD_CONCURRENCY` (10): records of one SQS batch handled at once.
    pub record_concurrency: usize,
    /// `RETRY_DELAY_SECS` (2): delay of a retry message (see `Retrier::retry_delay`).
    pub retry_delay: Duration,
    /// `S3_FORCE_PATH_STYLE` (false): true for S3 endpoints without virtual hosts (local stack).
    pub s3_force_path_style: bool,
    pub limits: BatchLimits,
    pub layout: TrackingLayout,
    /// The claim settings and the session lifecycle, read as for get-session
    /// ([`ClaimPolicy::from_env`]).
    pub claim: ClaimPolicy,
}

fn invalid(key: &'static str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_attempts: u32 = env.parse_or("MAX_ATTEMPTS", 3)?;
        if max_attempts == 0 {
            return Err(invalid("MAX_ATTEMPTS", 0, "a batch needs at least one attempt"));
        }
        let batch_deadline = env.secs_or("BATCH_DEADLINE_SECS", 900)?;
        let invoke_timeout = env.secs_or("INVOKE_TIMEOUT_SECS", 60)?;
        if invoke_timeout.is_zero() || batch_deadline <= invoke_timeout {
            return Err(invalid(
                "BATCH_DEADLINE_SECS",
                batch_deadline.as_secs(),
                "must exceed INVOKE_TIMEOUT_SECS (> 0): the deadline counts from before the invocation",
            ));
        }
        let max_receive_count: u32 = env.parse_or("MAX_RECEIVE_COUNT", 5)?;
        if max_receive_count == 0 {
            return Err(invalid("MAX_RECEIVE_COUNT", 0, "SQS redrive needs at least 1"));
        }
        let record_concurrency: usize = env.parse_or("RECORD_CONCURRENCY", 10)?;
        if record_concurrency == 0 {
            return Err(invalid("RECORD_CONCURRENCY", 0, "must be at least 1"));
        }
        let claim = ClaimPolicy::from_env(env)?;
        let agent_runtime_arn = env.required("AGENT_RUNTIME_ARN")?;
        if let Err(reason) = check_runtime_arn(&agent_runtime_arn) {
            return Err(invalid("AGENT_RUNTIME_ARN", &agent_runtime_arn, &reason));
        }
        Ok(Self {
            batch_queue_url: env.required("BATCH_QUEUE_URL")?,
            failure_queue_url: env.required("FAILURE_QUEUE_URL")?,
            tracking_table: env.required("TRACKING_TABLE")?,
            documents_bucket: env.required("DOCUMENTS_BUCKET")?,
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            replenish_function_name: env.required("REPLENISH_FUNCTION_NAME")?,
            agent_runtime_arn,
            qualifier: env.parse_or("AGENT_RUNTIME_QUALIFIER", "DEFAULT".to_string())?,
            max_attempts,
            batch_deadline,
            invoke_timeout,
            max_receive_count,
            record_concurrency,
            retry_delay: env.secs_or("RETRY_DELAY_SECS", 2)?,
            s3_force_path_style: env.parse_or("S3_FORCE_PATH_STYLE", false)?,
            limits: BatchLimits::from_env(env)?,
            layout: TrackingLayout::from_env(env)?,
            claim,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const REQUIRED: [(&str, &str); 8] = [
        ("BATCH_QUEUE_URL", "http://sqs/batches"),
        ("FAILURE_QUEUE_URL", "http://sqs/failed"),
        ("TRACKING_TABLE", "batches"),
        ("DOCUMENTS_BUCKET", "warmpool-documents"),
        ("POOL_QUEUE_URL", "http://sqs/pool.fifo"),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        (
            "AGENT_RUNTIME_ARN",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/document_agent-Ab12",
        ),
        ("CLAIM_WAIT_SECS", "0"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Env {
        Env::from_pairs(REQUIRED.iter().copied().chain(extra.iter().copied()))
    }

    #[test]
    fn defaults_give_three_attempts_of_fifteen_minutes() {
        let config = Config::from_env(&with(&[])).unwrap();
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.batch_deadline, Duration::from_secs(900));
        assert_eq!(config.max_receive_count, 5);
    }

    #[test]
    fn a_deadline_shorter_than_the_invocation_timeout_is_refused() {
        let error =
            Config::from_env(&with(&[("BATCH_DEADLINE_SECS", "30"), ("INVOKE_TIMEOUT_SECS", "60")])).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                key: "BATCH_DEADLINE_SECS",
                ..
            }
        ));
    }

    #[test]
    fn a_missing_bucket_fails_at_init_with_its_name() {
        let env = Env::from_pairs(REQUIRED.iter().copied().filter(|(k, _)| *k != "DOCUMENTS_BUCKET"));
        assert!(matches!(
            Config::from_env(&env),
            Err(ConfigError::Missing("DOCUMENTS_BUCKET"))
        ));
    }

    #[test]
    fn zero_attempts_are_refused() {
        assert!(Config::from_env(&with(&[("MAX_ATTEMPTS", "0")])).is_err());
    }
}
