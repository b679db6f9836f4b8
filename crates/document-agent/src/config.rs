//! The agent's configuration, parsed once at start.

use std::net::SocketAddr;
use warmpool_core::batch::INCOMING_PREFIX;
use warmpool_core::batch::manifest::BatchLimits;
use warmpool_core::batch::settings::TrackingLayout;
use warmpool_core::config::Env;
use warmpool_core::error::ConfigError;

/// S3 keys hold 1,024 bytes; a result key adds at most 193 to its prefix (a 128-byte batch
/// ID, a 10-digit attempt, a 32-digit session tag and the separators).
const MAX_RESULTS_PREFIX_BYTES: usize = 1_024 - 193;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `AGENT_LISTEN` (0.0.0.0:8080): AgentCore reaches the container on port 8080; tests and
    /// the local stack use 127.0.0.1.
    pub listen: SocketAddr,
    /// `TRACKING_TABLE`
    pub tracking_table: String,
    /// `RESULTS_QUEUE_URL`
    pub results_queue_url: String,
    /// `RESULTS_BUCKET`, `RESULTS_PREFIX` (`results/`): results are written to
    /// `<prefix><batchId>/attempt-<n>/session-<tag>.json` ([`crate::run::session_tag`]).
    pub results_bucket: String,
    pub results_prefix: String,
    pub run: RunSettings,
    /// `AGENT_EMULATOR_HOOKS` (false): serve `POST /emulator/terminate`, through which the
    /// local AgentCore emulator ends a session's work when it crashes or stops that session.
    /// In AgentCore a session's microVM simply dies; locally every session shares this process.
    pub emulator_hooks: bool,
    /// `S3_FORCE_PATH_STYLE` (false)
    pub s3_force_path_style: bool,
    pub layout: TrackingLayout,
}

/// How one batch runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `BATCH_MAX_DOCUMENT_BYTES` (10 MiB): a larger document fails the attempt, unread.
    pub max_document_bytes: u64,
    /// `READ_CONCURRENCY` (4): documents read and processed at once.
    pub read_concurrency: usize,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_document_bytes: BatchLimits::default().max_document_bytes,
            read_concurrency: 4,
        }
    }
}

impl AgentConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let read_concurrency: usize = env.parse_or("READ_CONCURRENCY", 4)?;
        if read_concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "READ_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let results_prefix: String = env.parse_or("RESULTS_PREFIX", "results/".to_string())?;
        if results_prefix.starts_with(INCOMING_PREFIX) {
            return Err(ConfigError::Invalid {
                key: "RESULTS_PREFIX",
                value: results_prefix,
                reason: "results must not land where batches are read from".into(),
            });
        }
        if results_prefix.len() > MAX_RESULTS_PREFIX_BYTES {
            return Err(ConfigError::Invalid {
                key: "RESULTS_PREFIX",
                value: results_prefix,
                reason: format!("at most {MAX_RESULTS_PREFIX_BYTES} bytes, so that every result key fits S3's 1,024"),
            });
        }
        Ok(Self {
            listen: env.parse_or("AGENT_LISTEN", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            tracking_table: env.required("TRACKING_TABLE")?,
            results_queue_url: env.required("RESULTS_QUEUE_URL")?,
            results_bucket: env.required("RESULTS_BUCKET")?,
            results_prefix,
            run: RunSettings {
                max_document_bytes: env
                    .parse_or("BATCH_MAX_DOCUMENT_BYTES", RunSettings::default().max_document_bytes)?,
                read_concurrency,
            },
            emulator_hooks: env.parse_or("AGENT_EMULATOR_HOOKS", false)?,
            s3_force_path_style: env.parse_or("S3_FORCE_PATH_STYLE", false)?,
            layout: TrackingLayout::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [(&str, &str); 3] = [
        ("TRACKING_TABLE", "batches"),
        ("RESULTS_QUEUE_URL", "http://sqs/results"),
        ("RESULTS_BUCKET", "warmpool-documents"),
    ];

    #[test]
    fn by_default_the_agent_listens_where_agentcore_expects_it_without_emulator_hooks() {
        let config = AgentConfig::from_env(&Env::from_pairs(REQUIRED)).unwrap();
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert!(!config.emulator_hooks);
    }

    #[test]
    fn a_results_prefix_that_would_push_result_keys_past_s3s_limit_is_refused() {
        let with = |prefix: String| {
            let pairs = REQUIRED.iter().copied().chain([("RESULTS_PREFIX", prefix.as_str())]);
            AgentConfig::from_env(&Env::from_pairs(pairs))
        };
        assert!(with(format!("{}/", "r".repeat(MAX_RESULTS_PREFIX_BYTES - 1))).is_ok());
        let error = with(format!("{}/", "r".repeat(MAX_RESULTS_PREFIX_BYTES))).unwrap_err();
        assert!(error.to_string().contains("1,024"), "{error}");
    }

    #[test]
    fn a_results_prefix_inside_the_incoming_area_is_refused() {
        let env = Env::from_pairs(
            REQUIRED
                .iter()
                .copied()
                .chain([("RESULTS_PREFIX", "incoming/results/")]),
        );
        assert!(AgentConfig::from_env(&env).is_err());
    }
}
