//! Reading typed configuration from the environment, once, at init: a bad deploy fails
//! there with the variable's name, never on the first event.
//!
//! Each function owns its config struct; the settings they share (session lifecycle, the claim
//! policy) are here so that the same variable names mean the same thing everywhere.

use crate::error::ConfigError;
use crate::pool::Lifecycle;
use crate::pool::claim::{ClaimPolicy, OnEmpty};
use crate::session::LogKey;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;
use tracing::warn;

/// `n`, or 1 for 0: for defaults written as literals.
pub const fn at_least_one(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    pub fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        self.optional(key).ok_or(ConfigError::Missing(key))
    }

    /// The value, unless it is unset or blank.
    pub fn optional(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|value| !value.trim().is_empty()).cloned()
    }

    pub fn parse_or<T>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                key,
                value: value.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// A count that must be positive: zero is refused with the variable's name.
    pub fn positive_or(&self, key: &'static str, default: NonZeroU32) -> Result<NonZeroU32, ConfigError> {
        let value: u32 = self.parse_or(key, default.get())?;
        NonZeroU32::new(value).ok_or_else(|| ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: "must be at least 1".into(),
        })
    }

    pub fn secs_or(&self, key: &'static str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.parse_or(key, default_secs).map(Duration::from_secs)
    }

    pub fn millis_or(&self, key: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse_or(key, default_ms).map(Duration::from_millis)
    }
}

pub const IDLE_TIMEOUT: &str = "SESSION_IDLE_TIMEOUT_SECS";
pub const MAX_LIFETIME: &str = "SESSION_MAX_LIFETIME_SECS";
pub const SAFETY_MARGIN: &str = "SESSION_SAFETY_MARGIN_SECS";

impl Lifecycle {
    /// Must match the AgentCore runtime's `idleRuntimeSessionTimeout` and `maxLifetime`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let lifecycle = Self {
            idle_timeout: env.secs_or(IDLE_TIMEOUT, defaults.idle_timeout.as_secs())?,
            max_lifetime: env.secs_or(MAX_LIFETIME, defaults.max_lifetime.as_secs())?,
            safety_margin: env.secs_or(SAFETY_MARGIN, defaults.safety_margin.as_secs())?,
        };
        if lifecycle.safety_margin * 2 >= lifecycle.idle_timeout {
            return Err(ConfigError::Invalid {
                key: SAFETY_MARGIN,
                value: lifecycle.safety_margin.as_secs().to_string(),
                reason: "must be less than half the idle timeout, or every pooled session is stale".into(),
            });
        }
        if lifecycle.idle_timeout > lifecycle.max_lifetime {
            return Err(ConfigError::Invalid {
                key: IDLE_TIMEOUT,
                value: lifecycle.idle_timeout.as_secs().to_string(),
                reason: "must not exceed the max lifetime".into(),
            });
        }
        Ok(lifecycle)
    }
}

pub const SESSION_LOG_KEY: &str = "SESSION_LOG_KEY";

impl LogKey {
    /// `SESSION_LOG_KEY`: the secret that keys session IDs in logs, at least 16 characters.
    /// Unset (local runs), the public development key is used and a warning says so; the
    /// template always sets it (docs/decisions/0203).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some(secret) = env.optional(SESSION_LOG_KEY) else {
            warn!("{SESSION_LOG_KEY} is not set: session IDs are logged under the public development key");
            return Ok(Self::development());
        };
        Self::new(&secret).map_err(|e| ConfigError::Invalid {
            key: SESSION_LOG_KEY,
            // Never echo a secret, even a rejected one.
            value: "<redacted>".into(),
            reason: e.to_string(),
        })
    }
}

pub const CLAIM_WAIT: &str = "CLAIM_WAIT_SECS";
pub const CLAIM_VISIBILITY: &str = "CLAIM_VISIBILITY_TIMEOUT_SECS";
pub const CLAIM_MAX_DISCARDS: &str = "CLAIM_MAX_DISCARDS";
pub const FRESH_FALLBACK: &str = "FRESH_FALLBACK";
pub const REPLACE_FRESH_FALLBACKS: &str = "REPLACE_FRESH_FALLBACKS";

impl ClaimPolicy {
    /// `CLAIM_WAIT_SECS` (1), `CLAIM_VISIBILITY_TIMEOUT_SECS` (30), `CLAIM_MAX_DISCARDS` (10, at
    /// least 1), `FRESH_FALLBACK` (true), `REPLACE_FRESH_FALLBACKS` (false) and the session
    /// lifecycle. The minimum lifetime and the log key are the claimer's own
    /// ([`ClaimPolicy::with_min_lifetime`], [`LogKey::from_env`]).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let wait = env.secs_or(CLAIM_WAIT, defaults.wait.as_secs())?;
        if wait > Duration::from_secs(20) {
            return Err(ConfigError::Invalid {
                key: CLAIM_WAIT,
                value: wait.as_secs().to_string(),
                reason: "SQS long polls wait at most 20 s".into(),
            });
        }
        let visibility = env.secs_or(CLAIM_VISIBILITY, defaults.visibility.as_secs())?;
        if visibility.is_zero() {
            return Err(ConfigError::Invalid {
                key: CLAIM_VISIBILITY,
                value: "0".into(),
                reason: "a claim must hide the message it holds until it deleted it".into(),
            });
        }
        let on_empty = if env.parse_or(FRESH_FALLBACK, defaults.on_empty == OnEmpty::Fresh)? {
            OnEmpty::Fresh
        } else {
            OnEmpty::Fail
        };
        Ok(Self {
            lifecycle: Lifecycle::from_env(env)?,
            wait,
            visibility,
            max_discards: env.positive_or(CLAIM_MAX_DISCARDS, defaults.max_discards)?,
            on_empty,
            replace_fresh_fallbacks: env.parse_or(REPLACE_FRESH_FALLBACKS, defaults.replace_fresh_fallbacks)?,
            ..defaults
        })
    }
}

/// Refuses what is not a runtime ARN at init: a typo there otherwise fails every invocation.
pub fn check_runtime_arn(arn: &str) -> Result<(), String> {
    if !arn.starts_with("arn:") || !arn.contains(":runtime/") {
        return Err("expected arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_defaults_to_agentcore_defaults() {
        assert_eq!(Lifecycle::from_env(&Env::default()).unwrap(), Lifecycle::default());
    }

    #[test]
    fn a_margin_that_makes_every_session_stale_is_refused_at_init() {
        let env = Env::from_pairs([(IDLE_TIMEOUT, "60"), (SAFETY_MARGIN, "30")]);
        assert!(matches!(
            Lifecycle::from_env(&env),
            Err(ConfigError::Invalid { key: SAFETY_MARGIN, .. })
        ));
    }

    #[test]
    fn a_malformed_number_names_its_variable() {
        let env = Env::from_pairs([(IDLE_TIMEOUT, "fifteen minutes")]);
        let error = Lifecycle::from_env(&env).unwrap_err().to_string();
        assert!(error.contains(IDLE_TIMEOUT), "{error}");
    }

    #[test]
    fn claim_policy_defaults_to_claim_policy_default() {
        assert_eq!(ClaimPolicy::from_env(&Env::default()).unwrap(), ClaimPolicy::default());
    }

    #[test]
    fn a_claim_that_would_not_hide_its_message_is_refused_at_init() {
        let env = Env::from_pairs([(CLAIM_VISIBILITY, "0")]);
        assert!(matches!(
            ClaimPolicy::from_env(&env),
            Err(ConfigError::Invalid {
                key: CLAIM_VISIBILITY,
                ..
            })
        ));
    }

    #[test]
    fn a_claim_that_may_discard_nothing_is_refused_at_init() {
        let env = Env::from_pairs([(CLAIM_MAX_DISCARDS, "0")]);
        let error = ClaimPolicy::from_env(&env).unwrap_err().to_string();
        assert!(error.contains(CLAIM_MAX_DISCARDS), "{error}");
    }

    #[test]
    fn a_log_key_from_the_environment_is_used_and_a_short_one_is_refused_without_echoing_it() {
        let key = LogKey::from_env(&Env::from_pairs([(SESSION_LOG_KEY, "0123456789abcdef0123")])).unwrap();
        assert_eq!(key, LogKey::new("0123456789abcdef0123").unwrap());
        assert_eq!(LogKey::from_env(&Env::default()).unwrap(), LogKey::development());
        let error = LogKey::from_env(&Env::from_pairs([(SESSION_LOG_KEY, "hunter2")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains(SESSION_LOG_KEY) && !error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_blank_required_variable_counts_as_missing() {
        let env = Env::from_pairs([("POOL_QUEUE_URL", " ")]);
        assert!(matches!(
            env.required("POOL_QUEUE_URL"),
            Err(ConfigError::Missing("POOL_QUEUE_URL"))
        ));
    }
}
