//! Settings of the batch path that several functions share, read from the environment with
//! the same names everywhere.

use crate::batch::manifest::BatchLimits;
use crate::config::Env;
use crate::error::ConfigError;
use std::num::NonZeroU32;
use std::time::Duration;

pub const TRACKING_SHARDS: &str = "TRACKING_SHARDS";
pub const PENDING_TIMEOUT: &str = "BATCH_PENDING_TIMEOUT_SECS";
const DAY_SECS: u64 = 24 * 3600;

/// `BATCH_PENDING_TIMEOUT_SECS` (300): how long an accepted or handed-over attempt may wait for
/// a session before it counts as a failed attempt (so an empty pool or a lost request delays a
/// batch, never strands it). At least 30 s: shorter would hand batches over while their
/// request is still on its way. The invoker and the detector must agree on it.
pub fn pending_timeout_from_env(env: &Env) -> Result<Duration, ConfigError> {
    let timeout = env.secs_or(PENDING_TIMEOUT, 300)?;
    if timeout < Duration::from_secs(30) || timeout > Duration::from_secs(DAY_SECS) {
        return Err(ConfigError::Invalid {
            key: PENDING_TIMEOUT,
            value: timeout.as_secs().to_string(),
            reason: "must be 30..=86400 seconds".into(),
        });
    }
    Ok(timeout)
}

/// A count that must be at least 1, read as `NonZeroU32`.
pub fn positive(env: &Env, key: &'static str, default: u32) -> Result<NonZeroU32, ConfigError> {
    let value: u32 = env.parse_or(key, default)?;
    NonZeroU32::new(value).ok_or_else(|| ConfigError::Invalid {
        key,
        value: "0".into(),
        reason: "must be at least 1".into(),
    })
}

/// SQS's longest message delay: a retry request cannot be delayed more.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

/// How rows are laid out: shards of the index and how long finished rows stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackingLayout {
    /// Partition keys of the index. Writers and the detector must agree on it.
    pub shards: u32,
    /// Finished rows expire (TTL) this long after their last update.
    pub retention: Duration,
}

impl Default for TrackingLayout {
    fn default() -> Self {
        Self {
            shards: 8,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl TrackingLayout {
    /// `TRACKING_SHARDS` (8) and `TRACKING_RETENTION_DAYS` (30). The invoker and the detector
    /// must be deployed with the same shard count: the detector queries exactly those shards.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let shards: u32 = env.parse_or(TRACKING_SHARDS, defaults.shards)?;
        if !(1..=256).contains(&shards) {
            return Err(ConfigError::Invalid {
                key: TRACKING_SHARDS,
                value: shards.to_string(),
                reason: "must be 1..=256: the detector queries every shard on each run".into(),
            });
        }
        let days: u64 = env.parse_or("TRACKING_RETENTION_DAYS", defaults.retention.as_secs() / DAY_SECS)?;
        Ok(Self {
            shards,
            retention: Duration::from_secs(days * DAY_SECS),
        })
    }
}

impl BatchLimits {
    /// `BATCH_MAX_DOCUMENTS` (100), `BATCH_MAX_DOCUMENT_BYTES` (10 MiB), `BATCH_MAX_BYTES`
    /// (100 MiB), `BATCH_MAX_MANIFEST_BYTES` (256 KiB).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let limits = Self {
            max_documents: env.parse_or("BATCH_MAX_DOCUMENTS", defaults.max_documents)?,
            max_document_bytes: env.parse_or("BATCH_MAX_DOCUMENT_BYTES", defaults.max_document_bytes)?,
            max_batch_bytes: env.parse_or("BATCH_MAX_BYTES", defaults.max_batch_bytes)?,
            max_manifest_bytes: env.parse_or("BATCH_MAX_MANIFEST_BYTES", defaults.max_manifest_bytes)?,
        };
        if limits.max_documents == 0 || limits.max_document_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "BATCH_MAX_DOCUMENTS",
                value: limits.max_documents.to_string(),
                reason: "batch limits must allow at least one non-empty document".into(),
            });
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        assert_eq!(
            TrackingLayout::from_env(&Env::default()).unwrap(),
            TrackingLayout::default()
        );
        assert_eq!(BatchLimits::from_env(&Env::default()).unwrap(), BatchLimits::default());
    }

    #[test]
    fn a_pending_timeout_shorter_than_a_request_takes_to_arrive_is_refused() {
        assert_eq!(
            pending_timeout_from_env(&Env::default()).unwrap(),
            Duration::from_secs(300)
        );
        let env = Env::from_pairs([(PENDING_TIMEOUT, "5")]);
        assert!(pending_timeout_from_env(&env).is_err());
    }

    #[test]
    fn zero_shards_are_refused_at_init() {
        let env = Env::from_pairs([(TRACKING_SHARDS, "0")]);
        assert!(matches!(
            TrackingLayout::from_env(&env),
            Err(ConfigError::Invalid {
                key: TRACKING_SHARDS,
                ..
            })
        ));
    }
}
