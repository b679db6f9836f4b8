//! invoker's configuration, parsed once at init. Settings that can only be wrong together
//! (a deadline no session lives long enough for, a retry slower than the start-by time) are
//! refused here, so a bad deploy fails at init rather than on every batch.

use std::num::NonZeroU32;
use std::time::Duration;
use warmpool_core::batch::manifest::BatchLimits;
use warmpool_core::batch::settings::TrackingLayout;
use warmpool_core::batch::settings::{MAX_RETRY_DELAY, pending_timeout_from_env, positive};
use warmpool_core::config::check_runtime_arn;
use warmpool_core::config::{CLAIM_MAX_DISCARDS, Env, FRESH_FALLBACK};
use warmpool_core::error::ConfigError;
use warmpool_core::metrics::PoolName;
use warmpool_core::pool::claim::{ClaimPolicy, OnEmpty};
use warmpool_core::session::LogKey;

pub const BATCH_FRESH_FALLBACK: &str = "BATCH_FRESH_FALLBACK";

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
    /// `POOL_QUEUE_URL`, `REPLENISH_FUNCTION_NAME`: sessions come from the batch pool (a pool
    /// of its own, which get-session callers cannot claim from) and its replenish function.
    pub pool_queue_url: String,
    pub replenish_function_name: String,
    /// `AGENT_RUNTIME_ARN`, `AGENT_RUNTIME_QUALIFIER` (DEFAULT)
    pub agent_runtime_arn: String,
    pub qualifier: String,
    /// `MAX_ATTEMPTS` (3): hand-overs of one batch, each on its own session.
    pub max_attempts: NonZeroU32,
    /// `BATCH_DEADLINE_SECS` (900): how long one attempt may run before the detector fails it.
    pub batch_deadline: Duration,
    /// `INVOKE_TIMEOUT_SECS` (60): bounds the invocation that hands a batch to the agent
    /// (a cold start included); the agent answers at once and works in the background.
    pub invoke_timeout: Duration,
    /// `MAX_RECEIVE_COUNT` (5): the batch queue's redrive `maxReceiveCount`. On the last
    /// delivery of a batch still waiting for a session the record is acknowledged: the row is
    /// accepted and the detector hands it over at its start-by time, so it never sits in the DLQ.
    pub max_receive_count: NonZeroU32,
    /// `RECORD_CONCURRENCY` (10): records of one SQS batch handled at once.
    pub record_concurrency: NonZeroU32,
    /// `RETRY_DELAY_SECS` (2): delay of a retry message (see `Retrier::retry_delay`).
    pub retry_delay: Duration,
    /// `RECORD_RETRY_SECS` (10): a record that failed for a passing reason (no pooled session
    /// yet, a throttle) comes back after this, doubled per delivery, instead of the queue's
    /// visibility timeout.
    pub record_retry: Duration,
    /// `BATCH_PENDING_TIMEOUT_SECS` (300): see `pending_timeout_from_env`.
    pub pending_timeout: Duration,
    /// `S3_FORCE_PATH_STYLE` (false): true for S3 endpoints without virtual hosts (local stack).
    pub s3_force_path_style: bool,
    pub limits: BatchLimits,
    pub layout: TrackingLayout,
    /// The claim settings and the session lifecycle, read as for get-session
    /// ([`ClaimPolicy::from_env`]), except the fallback: `BATCH_FRESH_FALLBACK` (false). A batch
    /// waits for a pooled session rather than create one outside replenish's creation budget.
    pub claim: ClaimPolicy,
    /// `POOL_NAME` ("default"): the `Pool` dimension of this function's metrics: the batch
    /// pool's name, which its replenish and the detector are given too.
    pub pool_name: PoolName,
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
        let batch_deadline = env.secs_or("BATCH_DEADLINE_SECS", 900)?;
        let invoke_timeout = env.secs_or("INVOKE_TIMEOUT_SECS", 60)?;
        if invoke_timeout.is_zero() || batch_deadline <= invoke_timeout {
            return Err(invalid(
                "BATCH_DEADLINE_SECS",
                batch_deadline.as_secs(),
                "must exceed INVOKE_TIMEOUT_SECS (> 0): the deadline counts from before the invocation",
            ));
        }
        let claim = claim_policy(env, batch_deadline)?;
        let pending_timeout = pending_timeout_from_env(env)?;
        let retry_delay = env.secs_or("RETRY_DELAY_SECS", 2)?;
        if retry_delay > MAX_RETRY_DELAY || retry_delay * 2 >= pending_timeout {
            return Err(invalid(
                "RETRY_DELAY_SECS",
                retry_delay.as_secs(),
                "must be at most 900 (SQS) and under half BATCH_PENDING_TIMEOUT_SECS, or a retry \
                 arrives after its attempt was handed over",
            ));
        }
        let record_retry = env.secs_or("RECORD_RETRY_SECS", 10)?;
        if record_retry.is_zero() || record_retry * 2 >= pending_timeout {
            return Err(invalid(
                "RECORD_RETRY_SECS",
                record_retry.as_secs(),
                "must be at least 1 and under half BATCH_PENDING_TIMEOUT_SECS",
            ));
        }
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
            max_attempts: positive(env, "MAX_ATTEMPTS", 3)?,
            batch_deadline,
            invoke_timeout,
            max_receive_count: positive(env, "MAX_RECEIVE_COUNT", 5)?,
            record_concurrency: positive(env, "RECORD_CONCURRENCY", 10)?,
            retry_delay,
            record_retry,
            pending_timeout,
            s3_force_path_style: env.parse_or("S3_FORCE_PATH_STYLE", false)?,
            limits: BatchLimits::from_env(env)?,
            layout: TrackingLayout::from_env(env)?,
            claim,
            pool_name: PoolName::from_env(env)?,
        })
    }
}

fn claim_policy(env: &Env, batch_deadline: Duration) -> Result<ClaimPolicy, ConfigError> {
    if let Some(value) = env.optional(FRESH_FALLBACK) {
        return Err(invalid(
            FRESH_FALLBACK,
            value,
            "is get-session's setting; the invoker reads BATCH_FRESH_FALLBACK",
        ));
    }
    let mut claim = ClaimPolicy::from_env(env)?.with_min_lifetime(batch_deadline);
    claim.log_key = LogKey::from_env(env)?;
    claim.on_empty = if env.parse_or(BATCH_FRESH_FALLBACK, false)? {
        OnEmpty::Fresh
    } else {
        OnEmpty::Fail
    };
    // `u32::from`: the same code reads a `u32` today and a `NonZeroU32` once pool.rs types it so.
    #[allow(clippy::useless_conversion)]
    let max_discards = u32::from(claim.max_discards);
    if max_discards == 0 {
        return Err(invalid(
            CLAIM_MAX_DISCARDS,
            0,
            "a claim that may discard nothing never takes a session: the pool is off",
        ));
    }
    let lifecycle = claim.lifecycle;
    if batch_deadline + lifecycle.safety_margin * 2 >= lifecycle.max_lifetime {
        return Err(invalid(
            "BATCH_DEADLINE_SECS",
            batch_deadline.as_secs(),
            "plus twice SESSION_SAFETY_MARGIN_SECS must be under SESSION_MAX_LIFETIME_SECS, or no \
             session ever lives long enough for a batch",
        ));
    }
    Ok(claim)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const REQUIRED: [(&str, &str); 8] = [
        ("BATCH_QUEUE_URL", "http://sqs/batches"),
        ("FAILURE_QUEUE_URL", "http://sqs/failed"),
        ("TRACKING_TABLE", "batches"),
        ("DOCUMENTS_BUCKET", "warmpool-documents"),
        ("POOL_QUEUE_URL", "http://sqs/batch-pool.fifo"),
        ("REPLENISH_FUNCTION_NAME", "batch-replenish"),
        (
            "AGENT_RUNTIME_ARN",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/document_agent-Ab12",
        ),
        ("CLAIM_WAIT_SECS", "0"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Env {
        Env::from_pairs(REQUIRED.iter().copied().chain(extra.iter().copied()))
    }

    fn refused_key(extra: &[(&'static str, &'static str)]) -> &'static str {
        match Config::from_env(&with(extra)) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{extra:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn defaults_give_three_attempts_of_fifteen_minutes_from_the_pool_only() {
        let config = Config::from_env(&with(&[])).unwrap();
        assert_eq!(config.max_attempts.get(), 3);
        assert_eq!(config.batch_deadline, Duration::from_secs(900));
        assert_eq!(config.max_receive_count.get(), 5);
        assert_eq!(config.claim.on_empty, OnEmpty::Fail, "no fresh fallback unless asked");
        assert_eq!(
            config.claim.min_lifetime,
            Duration::from_secs(900),
            "a claimed session outlives the batch deadline, beyond the margin every claim keeps"
        );
        let fresh = Config::from_env(&with(&[(BATCH_FRESH_FALLBACK, "true")])).unwrap();
        assert_eq!(fresh.claim.on_empty, OnEmpty::Fresh);
    }

    #[test]
    fn a_deadline_shorter_than_the_invocation_timeout_is_refused() {
        let key = refused_key(&[("BATCH_DEADLINE_SECS", "30"), ("INVOKE_TIMEOUT_SECS", "60")]);
        assert_eq!(key, "BATCH_DEADLINE_SECS");
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
    fn when_claim_max_discards_is_zero_then_init_fails() {
        assert_eq!(refused_key(&[("CLAIM_MAX_DISCARDS", "0")]), CLAIM_MAX_DISCARDS);
    }

    #[test]
    fn when_no_session_can_live_as_long_as_a_batch_then_init_fails() {
        let key = refused_key(&[("BATCH_DEADLINE_SECS", "3600"), ("SESSION_MAX_LIFETIME_SECS", "1800")]);
        assert_eq!(key, "BATCH_DEADLINE_SECS");
    }

    #[test]
    fn when_get_sessions_fallback_switch_is_set_on_the_invoker_then_init_fails() {
        assert_eq!(refused_key(&[("FRESH_FALLBACK", "true")]), FRESH_FALLBACK);
    }

    #[test]
    fn when_retries_are_slower_than_the_start_by_time_then_init_fails() {
        assert_eq!(refused_key(&[("RETRY_DELAY_SECS", "901")]), "RETRY_DELAY_SECS");
        assert_eq!(
            refused_key(&[("RETRY_DELAY_SECS", "200"), ("BATCH_PENDING_TIMEOUT_SECS", "300")]),
            "RETRY_DELAY_SECS"
        );
        assert_eq!(refused_key(&[("RECORD_RETRY_SECS", "0")]), "RECORD_RETRY_SECS");
        assert_eq!(
            refused_key(&[("RECORD_RETRY_SECS", "200"), ("BATCH_PENDING_TIMEOUT_SECS", "300")]),
            "RECORD_RETRY_SECS"
        );
    }

    #[test]
    fn zero_counts_are_refused() {
        for key in ["MAX_ATTEMPTS", "MAX_RECEIVE_COUNT", "RECORD_CONCURRENCY"] {
            assert_eq!(refused_key(&[(key, "0")]), key);
        }
    }
}
