//! get-session's configuration, parsed once at init.

use std::time::Duration;
use warmpool_core::config::{CLAIM_WAIT, Env, MAX_LIFETIME, SAFETY_MARGIN, check_runtime_arn};
use warmpool_core::error::ConfigError;
use warmpool_core::lease::LeaseConfig;
use warmpool_core::metrics::PoolName;
use warmpool_core::pool::claim::ClaimPolicy;
use warmpool_core::pool::version::DrainSettings;
use warmpool_core::session::LogKey;

pub const CLAIM_MIN_LIFETIME: &str = "CLAIM_MIN_LIFETIME_SECS";
pub const TIMEOUT: &str = "GET_SESSION_TIMEOUT_SECS";

/// What a claim needs besides its long poll: a receive and a delete at ~30 ms each, with room
/// for a few discards and a slow round trip.
const CLAIM_ROUND_TRIPS: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    /// `POOL_QUEUE_URL`: the pool's SQS FIFO queue.
    pub pool_queue_url: String,
    /// `REPLENISH_FUNCTION_NAME`: invoked with `{"count": n}` as an `Event`.
    pub replenish_function_name: String,
    /// `CLAIM_WAIT_SECS`, `CLAIM_VISIBILITY_TIMEOUT_SECS`, `CLAIM_MAX_DISCARDS`,
    /// `FRESH_FALLBACK`, `REPLACE_FRESH_FALLBACKS` and the session lifecycle (see
    /// [`ClaimPolicy::from_env`]); `CLAIM_MIN_LIFETIME_SECS` (300): the lifetime a session
    /// handed to a caller has left at least; `SESSION_LOG_KEY`.
    pub claim: ClaimPolicy,
    /// `GET_SESSION_TIMEOUT_SECS` (10): this function's own timeout. Lambda does not put it in
    /// the environment, so the template sets this from the parameter that sets the timeout.
    pub timeout: Duration,
    /// `POOL_NAME` ("default"): the `Pool` dimension of this function's metrics.
    pub pool_name: PoolName,
    /// `VERSION_DRAIN_GRACE_SECS` (0): how long after a new agent version went live claims
    /// still hand out sessions of the one before (docs/decisions/0212).
    pub version_grace: Duration,
    /// `LEASE_TABLE_NAME` and the `LEASE_*` settings ([`LeaseConfig::from_env`]); `None`:
    /// leases are off and get-session claims as it always did.
    pub leases: Option<LeaseConfig>,
    /// `AGENT_RUNTIME_ARN` and `AGENT_RUNTIME_QUALIFIER` ("DEFAULT"), read only with leases:
    /// a release stops its session. Without leases get-session cannot stop sessions.
    pub agent_runtime: Option<AgentRuntimeRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRuntimeRef {
    pub arn: String,
    pub qualifier: String,
}

impl AgentRuntimeRef {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let arn = env.required("AGENT_RUNTIME_ARN")?;
        if let Err(reason) = check_runtime_arn(&arn) {
            return Err(ConfigError::Invalid {
                key: "AGENT_RUNTIME_ARN",
                value: arn,
                reason,
            });
        }
        Ok(Self {
            arn,
            qualifier: env.parse_or("AGENT_RUNTIME_QUALIFIER", "DEFAULT".to_string())?,
        })
    }
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let claim = ClaimPolicy {
            log_key: LogKey::from_env(env)?,
            ..ClaimPolicy::from_env(env)?
        }
        .with_min_lifetime(env.secs_or(CLAIM_MIN_LIFETIME, 300)?);
        if !claim.can_be_served() {
            return Err(ConfigError::Invalid {
                key: CLAIM_MIN_LIFETIME,
                value: claim.min_lifetime.as_secs().to_string(),
                reason: format!(
                    "must be below {MAX_LIFETIME} less {SAFETY_MARGIN} ({} s), or no pooled session is ever handed out",
                    claim
                        .lifecycle
                        .max_lifetime
                        .saturating_sub(claim.lifecycle.safety_margin)
                        .as_secs()
                ),
            });
        }
        let timeout = env.secs_or(TIMEOUT, 10)?;
        if claim.wait + CLAIM_ROUND_TRIPS >= timeout {
            return Err(ConfigError::Invalid {
                key: CLAIM_WAIT,
                value: claim.wait.as_secs().to_string(),
                reason: format!(
                    "the long poll plus {} s for the receive and delete must end before {TIMEOUT} ({} s)",
                    CLAIM_ROUND_TRIPS.as_secs(),
                    timeout.as_secs()
                ),
            });
        }
        let leases = match LeaseConfig::from_env(env, claim.lifecycle)? {
            Some(leases) => Some(leases.with_correlation_window_from(env)?),
            None => None,
        };
        let agent_runtime = match leases {
            Some(_) => Some(AgentRuntimeRef::from_env(env)?),
            None => None,
        };
        Ok(Self {
            leases,
            agent_runtime,
            version_grace: DrainSettings::grace_from_env(env)?,
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            replenish_function_name: env.required("REPLENISH_FUNCTION_NAME")?,
            claim,
            timeout,
            pool_name: PoolName::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::pool::claim::OnEmpty;

    #[test]
    fn missing_queue_url_fails_at_init_with_its_name() {
        let error = Config::from_env(&Env::from_pairs([("REPLENISH_FUNCTION_NAME", "r")])).unwrap_err();
        assert!(matches!(error, ConfigError::Missing("POOL_QUEUE_URL")));
    }

    #[test]
    fn fresh_fallback_can_be_switched_off() {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            ("REPLENISH_FUNCTION_NAME", "r"),
            ("FRESH_FALLBACK", "false"),
        ]);
        assert_eq!(Config::from_env(&env).unwrap().claim.on_empty, OnEmpty::Fail);
    }

    fn env_with(extra: &[(&'static str, &'static str)]) -> Env {
        let mut pairs = vec![("POOL_QUEUE_URL", "q"), ("REPLENISH_FUNCTION_NAME", "r")];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn a_claim_wait_that_does_not_fit_in_the_function_timeout_is_refused_with_both_names() {
        for (wait, timeout) in [("10", "10"), ("12", "10"), ("9", "10")] {
            let env = env_with(&[("CLAIM_WAIT_SECS", wait), ("GET_SESSION_TIMEOUT_SECS", timeout)]);
            let error = Config::from_env(&env).unwrap_err().to_string();
            assert!(
                error.contains("CLAIM_WAIT_SECS") && error.contains("GET_SESSION_TIMEOUT_SECS"),
                "{wait} s in {timeout} s: {error}"
            );
        }
        let fits = env_with(&[("CLAIM_WAIT_SECS", "5"), ("GET_SESSION_TIMEOUT_SECS", "10")]);
        assert!(Config::from_env(&fits).is_ok());
    }

    #[test]
    fn a_minimum_lifetime_no_pooled_session_can_have_is_refused() {
        let env = env_with(&[("CLAIM_MIN_LIFETIME_SECS", "28740")]);
        let error = Config::from_env(&env).unwrap_err().to_string();
        assert!(error.contains("CLAIM_MIN_LIFETIME_SECS"), "{error}");
        assert!(Config::from_env(&env_with(&[("CLAIM_MIN_LIFETIME_SECS", "28739")])).is_ok());
    }

    #[test]
    fn with_a_lease_table_the_runtime_to_stop_released_sessions_on_is_required() {
        let error = Config::from_env(&env_with(&[("LEASE_TABLE_NAME", "leases")])).unwrap_err();
        assert!(matches!(error, ConfigError::Missing("AGENT_RUNTIME_ARN")), "{error}");
        let env = env_with(&[
            ("LEASE_TABLE_NAME", "leases"),
            (
                "AGENT_RUNTIME_ARN",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-1",
            ),
            ("LEASE_CORRELATION_WINDOW_SECS", "60"),
        ]);
        let config = Config::from_env(&env).unwrap();
        let leases = config.leases.unwrap();
        assert_eq!(leases.settings.correlation_window, Duration::from_secs(60));
        assert_eq!(config.agent_runtime.unwrap().qualifier, "DEFAULT");
        assert!(Config::from_env(&env_with(&[])).unwrap().leases.is_none());
    }

    #[test]
    fn a_long_poll_beyond_the_sqs_limit_is_refused() {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            ("REPLENISH_FUNCTION_NAME", "r"),
            ("CLAIM_WAIT_SECS", "21"),
        ]);
        assert!(Config::from_env(&env).is_err());
    }
}
