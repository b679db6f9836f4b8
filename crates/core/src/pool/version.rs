//! Draining a pool after a deploy of a new agent version (docs/decisions/0210-0213).
//!
//! Every pooled session records the runtime version that served its warmup
//! ([`PooledSession::agent_version`]), read by replenish from the control plane once per run
//! ([`VersionSource`]). A session is *outdated* once a newer version is known and the grace
//! after that version went live has passed ([`is_outdated`]):
//! - claims learn the newest version from the pool messages they see ([`VersionWatch`], no
//!   call per claim) and discard the outdated ones they meet;
//! - maintenance knows the live version from its own read and stops outdated sessions, at
//!   most [`Drain::per_sweep`] a sweep, so the top-up replaces them inside the creation budget.

use crate::config::{Env, at_least_one};
use crate::error::{ConfigError, VersionError};
use crate::session::{AgentVersion, PooledSession};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

pub const VERSION_DRAIN_GRACE: &str = "VERSION_DRAIN_GRACE_SECS";
pub const VERSION_DRAIN_PER_SWEEP: &str = "VERSION_DRAIN_PER_SWEEP";

/// How a deploy of a new agent version drains the pool, parsed once at init (get-session
/// reads the grace, replenish both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// `VERSION_DRAIN_GRACE_SECS` (0): how long after the new version went live older
    /// sessions are still handed out (0: not at all).
    pub grace: Duration,
    /// `VERSION_DRAIN_PER_SWEEP` (25, at least 1): outdated sessions one sweep stops at most.
    pub per_sweep: NonZeroU32,
}

impl DrainSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            grace: Self::grace_from_env(env)?,
            per_sweep: env.positive_or(VERSION_DRAIN_PER_SWEEP, at_least_one(25))?,
        })
    }

    /// `VERSION_DRAIN_GRACE_SECS` alone: all a claimer needs.
    pub fn grace_from_env(env: &Env) -> Result<Duration, ConfigError> {
        env.secs_or(VERSION_DRAIN_GRACE, 0)
    }

    /// The drain of a sweep when `current` is the endpoint's live version. It starts at the
    /// switch, not after the grace: the grace is how long claims may still hand out older
    /// sessions, and the drain is what has replaced them by its end (a grace of at least
    /// `ceil(target / per_sweep)` maintenance intervals lets it finish; docs/decisions/0213).
    pub fn drain(&self, current: Option<AgentVersion>) -> Drain {
        Drain {
            current,
            grace: Duration::ZERO,
            per_sweep: self.per_sweep.get(),
        }
    }
}

/// Reads the version the endpoint serves now (the AgentCore control plane in production).
pub trait VersionSource: Send + Sync {
    fn live_version(&self) -> impl Future<Output = Result<AgentVersion, VersionError>> + Send;
}

impl<V: VersionSource + ?Sized> VersionSource for std::sync::Arc<V> {
    fn live_version(&self) -> impl Future<Output = Result<AgentVersion, VersionError>> + Send {
        (**self).live_version()
    }
}

/// No control plane: nothing is recorded and nothing is drained (the behaviour before 0210).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVersionSource;

impl VersionSource for NoVersionSource {
    async fn live_version(&self) -> Result<AgentVersion, VersionError> {
        Err(VersionError::not_configured())
    }
}

/// Whether `session` may no longer be handed out: a version is current, the session's is a
/// different one (or unknown: a message from before versions were recorded), and the grace
/// after the current version went live has passed.
pub fn is_outdated(session: &PooledSession, current: Option<&AgentVersion>, grace: Duration, now_ms: u64) -> bool {
    let Some(current) = current else {
        return false;
    };
    let grace_over = now_ms >= current.since_ms.saturating_add(crate::clock::millis(grace));
    let same = session.agent_version().is_some_and(|v| v.version == current.version);
    grace_over && !same
}

/// What a claimer knows of the current version: the newest (latest `since`) seen in any pool
/// message this execution environment received. Messages are read anyway, so learning costs
/// nothing; a new environment knows nothing until its first versioned message.
#[derive(Debug, Default)]
pub struct VersionWatch {
    grace: Duration,
    enabled: bool,
    newest: Mutex<Option<AgentVersion>>,
}

impl VersionWatch {
    /// A watch that refuses outdated sessions `grace` after the newer version went live.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            enabled: true,
            newest: Mutex::new(None),
        }
    }

    /// Learns nothing and refuses nothing: claimers that do not drain.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Learns from `session`, then tells whether it is outdated at `now_ms`.
    pub fn outdated(&self, session: &PooledSession, now_ms: u64) -> bool {
        if !self.enabled {
            return false;
        }
        let mut newest = self.newest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(seen) = session.agent_version()
            && newest.as_ref().is_none_or(|known| seen.since_ms > known.since_ms)
        {
            *newest = Some(seen);
        }
        is_outdated(session, newest.as_ref(), self.grace, now_ms)
    }

    pub fn newest(&self) -> Option<AgentVersion> {
        self.newest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// What a maintenance sweep drains: sessions outdated against `current`, at most `per_sweep`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drain {
    pub current: Option<AgentVersion>,
    pub grace: Duration,
    pub per_sweep: u32,
}

impl Drain {
    /// Drains nothing.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn outdated(&self, session: &PooledSession, now_ms: u64) -> bool {
        self.per_sweep > 0 && is_outdated(session, self.current.as_ref(), self.grace, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    const NOW: u64 = 1_700_000_000_000;

    fn on(version: Option<(&str, u64)>) -> PooledSession {
        let version = version.map(|(v, since)| AgentVersion::new(v, since).unwrap());
        PooledSession::new(SessionId::generate(), NOW - 10_000, NOW - 5_000).with_version(version.as_ref())
    }

    #[test]
    fn when_nothing_is_known_then_no_session_is_outdated() {
        let watch = VersionWatch::new(Duration::ZERO);
        assert!(!watch.outdated(&on(None), NOW));
        assert!(!is_outdated(&on(Some(("1", 0))), None, Duration::ZERO, NOW));
    }

    #[test]
    fn when_a_claimer_saw_a_newer_version_then_older_and_unversioned_sessions_are_outdated() {
        let watch = VersionWatch::new(Duration::ZERO);
        assert!(!watch.outdated(&on(Some(("1", NOW - 9_000))), NOW));
        assert!(!watch.outdated(&on(Some(("2", NOW - 1_000))), NOW));
        assert!(watch.outdated(&on(Some(("1", NOW - 9_000))), NOW));
        assert!(watch.outdated(&on(None), NOW));
        assert!(!watch.outdated(&on(Some(("2", NOW - 1_000))), NOW));
    }

    #[test]
    fn when_the_endpoint_rolls_back_then_the_later_deploy_wins_not_the_higher_number() {
        let watch = VersionWatch::new(Duration::ZERO);
        watch.outdated(&on(Some(("2", NOW - 9_000))), NOW);
        assert!(!watch.outdated(&on(Some(("1", NOW - 1_000))), NOW));
        assert!(watch.outdated(&on(Some(("2", NOW - 9_000))), NOW));
    }

    #[test]
    fn within_the_grace_an_older_session_is_still_handed_out() {
        let watch = VersionWatch::new(Duration::from_secs(30));
        watch.outdated(&on(Some(("2", NOW - 1_000))), NOW);
        assert!(!watch.outdated(&on(Some(("1", 0))), NOW));
        assert!(watch.outdated(&on(Some(("1", 0))), NOW + 29_000));
    }

    #[test]
    fn a_disabled_watch_and_an_empty_drain_refuse_nothing() {
        let watch = VersionWatch::disabled();
        watch.outdated(&on(Some(("2", NOW - 1_000))), NOW);
        assert!(!watch.outdated(&on(Some(("1", 0))), NOW));
        let drain = Drain {
            current: AgentVersion::new("2", 0).ok(),
            grace: Duration::ZERO,
            per_sweep: 0,
        };
        assert!(!drain.outdated(&on(Some(("1", 0))), NOW));
        assert!(!Drain::none().outdated(&on(Some(("1", 0))), NOW));
    }
}
