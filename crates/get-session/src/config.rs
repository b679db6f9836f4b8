//! get-session's configuration, parsed once at init.

use warmpool_core::ConfigError;
use warmpool_core::config::Env;
use warmpool_core::pool::ClaimPolicy;

#[derive(Debug, Clone)]
pub struct Config {
    /// `POOL_QUEUE_URL`: the pool's SQS FIFO queue.
    pub pool_queue_url: String,
    /// `REPLENISH_FUNCTION_NAME`: invoked with `{"count": n}` as an `Event`.
    pub replenish_function_name: String,
    /// `CLAIM_WAIT_SECS`, `CLAIM_VISIBILITY_TIMEOUT_SECS`, `CLAIM_MAX_DISCARDS`,
    /// `FRESH_FALLBACK`, `REPLACE_FRESH_FALLBACKS` and the session lifecycle (see
    /// [`ClaimPolicy::from_env`]).
    pub claim: ClaimPolicy,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let claim = ClaimPolicy::from_env(env)?;
        Ok(Self {
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            replenish_function_name: env.required("REPLENISH_FUNCTION_NAME")?,
            claim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::pool::OnEmpty;

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
