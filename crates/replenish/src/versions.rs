//! The endpoint's live version, read once per run (docs/decisions/0211).

use std::sync::Mutex;
use tracing::warn;
use warmpool_core::error::VersionErrorKind;
use warmpool_core::pool::version::VersionSource;
use warmpool_core::session::AgentVersion;

/// A [`VersionSource`] and the last version it gave in this execution environment.
pub struct LiveVersion<V> {
    source: V,
    last: Mutex<Option<AgentVersion>>,
}

impl<V: VersionSource> LiveVersion<V> {
    pub fn new(source: V) -> Self {
        Self {
            source,
            last: Mutex::new(None),
        }
    }

    /// One control-plane read. A failed read gives the last version this environment read:
    /// a throttled or unreachable control plane must neither stop the pool nor label new
    /// sessions as unknown (which a known version would drain). Without one, `None`: sessions
    /// are recorded without a version and nothing is drained.
    pub async fn read(&self) -> (Option<AgentVersion>, bool) {
        match self.source.live_version().await {
            Ok(version) => {
                *self.lock() = Some(version.clone());
                (Some(version), false)
            }
            Err(error) => {
                let last = self.lock().clone();
                if error.kind != VersionErrorKind::NotConfigured {
                    warn!(%error, last = last.as_ref().map(|v| v.version.as_str()), "could not read the endpoint's live version; going on with the last one read");
                }
                (last, error.kind != VersionErrorKind::NotConfigured)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<AgentVersion>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
