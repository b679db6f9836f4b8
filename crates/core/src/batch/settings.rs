//! Settings of the batch path that several functions share, read from the environment with
//! the same names everywhere.

use crate::aws::dynamodb::TrackingLayout;
use crate::config::Env;
use crate::error::ConfigError;
use crate::manifest::BatchLimits;
use std::time::Duration;

pub const TRACKING_SHARDS: &str = "TRACKING_SHARDS";
const DAY_SECS: u64 = 24 * 3600;

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
