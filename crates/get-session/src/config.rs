//! get-session's configuration, parsed once at init.

use std::time::Duration;
use warmpool_core::ConfigError;
use warmpool_core::config::Env;
use warmpool_core::pool::{ClaimPolicy, Lifecycle, OnEmpty};

#[derive(Debug, Clone)]
pub struct Config {
    /// `POOL_QUEUE_URL`: the pool's SQS FIFO queue.
    pub pool_queue_url: String,
    /// `REPLENISH_FUNCTION_NAME`: invoked with `{"count": n}` as an `Event`.
    pub replenish_function_name: String,
    pub claim: ClaimPolicy,
    /// `REPLACE_FRESH_FALLBACKS` (false): a claim that falls back to a fresh session also asks
    /// replenish for one pooled session, so a pool that ran dry grows by the unmet demand
    /// within a warmup time (see `Claimer::claim_replacing_fallbacks`).
    pub replace_fresh_fallbacks: bool,
}

impl Config {
    /// Also reads `CLAIM_WAIT_SECS` (1), `CLAIM_VISIBILITY_TIMEOUT_SECS` (30),
    /// `CLAIM_MAX_DISCARDS` (10), `FRESH_FALLBACK` (true) and the session lifecycle.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let wait = env.secs_or("CLAIM_WAIT_SECS", 1)?;
        if wait > Duration::from_secs(20) {
            return Err(ConfigError::Invalid {
                key: "CLAIM_WAIT_SECS",
                value: wait.as_secs().to_string(),
                reason: "SQS long polls wait at most 20 s".into(),
            });
        }
        let visibility = env.secs_or("CLAIM_VISIBILITY_TIMEOUT_SECS", 30)?;
        if visibility.is_zero() {
            return Err(ConfigError::Invalid {
                key: "CLAIM_VISIBILITY_TIMEOUT_SECS",
                value: "0".into(),
                reason: "a claim must hide the message it holds until it deleted it".into(),
            });
        }
        let on_empty = if env.parse_or("FRESH_FALLBACK", true)? {
            OnEmpty::Fresh
        } else {
            OnEmpty::Fail
        };
        Ok(Self {
            pool_queue_url: env.required("POOL_QUEUE_URL")?,
            replenish_function_name: env.required("REPLENISH_FUNCTION_NAME")?,
            replace_fresh_fallbacks: env.parse_or("REPLACE_FRESH_FALLBACKS", false)?,
            claim: ClaimPolicy {
                lifecycle: Lifecycle::from_env(env)?,
                wait,
                visibility,
                max_discards: env.parse_or("CLAIM_MAX_DISCARDS", 10)?,
                on_empty,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
