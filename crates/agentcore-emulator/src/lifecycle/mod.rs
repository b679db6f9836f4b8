//! The session lifecycle model of AgentCore Runtime: which invocation lands on a warm microVM
//! and which cold-starts a new one, how long each takes, when a session expires, and when a
//! new microVM is refused (creation rate, active-session quota) or an invocation fails
//! (injected faults).
//!
//! Pure and deterministic: every call takes `now_ms` from the caller's clock (wall time in the
//! HTTP server, a virtual clock in a simulation) and draws randomness from the caller's RNG, so a
//! seeded RNG and the same call sequence reproduce a run exactly. The clock only needs to be
//! monotonic; its origin is the caller's choice.

mod config;
mod creation;
mod latency;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::{Rng, RngExt};
use serde::Serialize;

pub use config::{Faults, LifecycleConfig};
use creation::{CreationBucket, max_in_window};
pub use latency::LatencyProfile;

/// An invocation the model let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// A new microVM was created for this invocation.
    pub cold: bool,
    /// Service-side latency to add before the agent is reached (already scaled).
    pub latency: Duration,
    /// Which microVM of this session ID served it (1 for the first).
    pub generation: u32,
}

/// Why the model refused an operation. Each maps to one AgentCore error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the rate of new session creation was exceeded")]
    Throttled,
    #[error("the quota of {limit} active sessions is reached")]
    QuotaExceeded { limit: usize },
    #[error("injected internal error")]
    InternalError,
    #[error("the session's microVM (generation {generation}) crashed during the invocation")]
    Crashed { generation: u32 },
    #[error("no active session with this ID")]
    SessionNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionState {
    Active,
    IdleExpired,
    LifetimeExpired,
    Stopped,
    Crashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub at_ms: u64,
    pub cold: bool,
    pub generation: u32,
}

/// A session ID as seen at some instant. Times are the caller's clock; `created_at_ms` is the
/// current (latest) microVM's creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub created_at_ms: u64,
    pub last_invoked_at_ms: u64,
    /// Invocations admitted for this ID over all its microVMs.
    pub invocation_count: u64,
    /// How many microVMs this ID has had.
    pub generation: u32,
    pub state: SessionState,
    pub history: Vec<InvocationRecord>,
}

/// Counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub creations: u64,
    pub cold: u64,
    pub warm: u64,
    pub throttled: u64,
    pub quota_rejected: u64,
    pub errors: u64,
    pub crashes: u64,
    pub stops: u64,
    /// Creations per clock second (`now_ms / 1000`), for checking a creation budget.
    pub creations_per_second: BTreeMap<u64, u32>,
    /// Most creations in any sliding 1 s window, which aligned seconds can understate.
    pub max_creations_in_any_second: u32,
}

/// Why a session's microVM ended before its limits; the agent is told too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Stopped,
    Crashed,
}

impl Ended {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Crashed => "crashed",
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    created_at_ms: u64,
    last_invoked_at_ms: u64,
    invocation_count: u64,
    generation: u32,
    ended: Option<Ended>,
    history: Vec<InvocationRecord>,
}

impl Session {
    fn state(&self, now_ms: u64, idle_ms: u64, lifetime_ms: u64) -> SessionState {
        match self.ended {
            Some(Ended::Stopped) => SessionState::Stopped,
            Some(Ended::Crashed) => SessionState::Crashed,
            None => {
                let idle_at = self.last_invoked_at_ms.saturating_add(idle_ms);
                let lifetime_at = self.created_at_ms.saturating_add(lifetime_ms);
                if now_ms < idle_at && now_ms < lifetime_at {
                    SessionState::Active
                } else if lifetime_at <= idle_at {
                    // Whichever limit struck first is what ended the microVM.
                    SessionState::LifetimeExpired
                } else {
                    SessionState::IdleExpired
                }
            }
        }
    }
}

/// The model. Not thread-safe by itself; the server holds it under a mutex.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: LifecycleConfig,
    faults: Faults,
    // Ordered so that `sessions()` is deterministic.
    sessions: BTreeMap<String, Session>,
    // IDs whose microVM may still be alive, so counting active sessions costs O(active)
    // rather than O(every ID ever seen).
    live: HashSet<String>,
    bucket: CreationBucket,
    stats: Stats,
    creation_times_ms: Vec<u64>,
}

impl Model {
    /// The configuration is taken as given; call [`LifecycleConfig::validate`] first to reject
    /// nonsense. Out-of-range probabilities behave as clamped.
    pub fn new(cfg: LifecycleConfig) -> Self {
        Self {
            faults: cfg.faults(),
            bucket: CreationBucket::full(cfg.creation_rate_per_sec),
            sessions: BTreeMap::new(),
            live: HashSet::new(),
            stats: Stats::default(),
            creation_times_ms: Vec::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    /// Forgets every session, counter and fault change; the creation bucket is full again.
    pub fn reset(&mut self, now_ms: u64) {
        *self = Self::new(self.cfg.clone());
        self.bucket.refilled_at_ms = now_ms;
    }

    pub fn faults(&self) -> Faults {
        self.faults
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Admits or refuses one invocation of `session_id`. An unknown, expired, stopped or
    /// crashed ID silently gets a new microVM (a cold start), as AgentCore does, so that path
    /// is subject to the creation rate and the active-session quota.
    pub fn invoke<R: Rng + ?Sized>(
        &mut self,
        session_id: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<Admission, Rejection> {
        if chance(rng, self.faults.error_rate) {
            self.stats.errors += 1;
            return Err(Rejection::InternalError);
        }

        let cold = !self.is_active(session_id, now_ms);
        if cold {
            self.admit_creation(now_ms)?;
        }

        let profile = if cold { self.cfg.cold_start } else { self.cfg.warm };
        let latency = profile.sample(rng).mul_f64(self.cfg.latency_scale);

        let session = self.sessions.entry(session_id.to_owned()).or_insert_with(|| Session {
            created_at_ms: now_ms,
            last_invoked_at_ms: now_ms,
            invocation_count: 0,
            generation: 0,
            ended: None,
            history: Vec::new(),
        });
        if cold {
            session.generation += 1;
            session.created_at_ms = now_ms;
            session.ended = None;
            self.live.insert(session_id.to_owned());
        } else {
            self.stats.warm += 1;
        }
        // Idle time counts from admission, not completion: the model does not see how long
        // the agent works.
        session.last_invoked_at_ms = now_ms;
        session.invocation_count += 1;
        session.history.push(InvocationRecord {
            at_ms: now_ms,
            cold,
            generation: session.generation,
        });
        let generation = session.generation;

        if chance(rng, self.faults.crash_rate) {
            self.end(session_id, Ended::Crashed);
            return Err(Rejection::Crashed { generation });
        }
        Ok(Admission {
            cold,
            latency,
            generation,
        })
    }

    /// StopRuntimeSession: ends an active session. An unknown or already ended one is not found.
    pub fn stop(&mut self, session_id: &str, now_ms: u64) -> Result<(), Rejection> {
        if !self.is_active(session_id, now_ms) {
            return Err(Rejection::SessionNotFound);
        }
        self.end(session_id, Ended::Stopped);
        Ok(())
    }

    /// Targeted fault: the session's microVM dies now. Returns whether an active one did.
    pub fn crash(&mut self, session_id: &str, now_ms: u64) -> bool {
        if !self.is_active(session_id, now_ms) {
            return false;
        }
        self.end(session_id, Ended::Crashed);
        true
    }

    fn end(&mut self, session_id: &str, how: Ended) {
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.ended = Some(how);
            match how {
                Ended::Stopped => self.stats.stops += 1,
                Ended::Crashed => self.stats.crashes += 1,
            }
        }
        self.live.remove(session_id);
    }

    pub fn sessions(&self, now_ms: u64) -> Vec<SessionView> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .iter()
            .map(|(id, s)| SessionView {
                session_id: id.clone(),
                created_at_ms: s.created_at_ms,
                last_invoked_at_ms: s.last_invoked_at_ms,
                invocation_count: s.invocation_count,
                generation: s.generation,
                state: s.state(now_ms, idle_ms, lifetime_ms),
                history: s.history.clone(),
            })
            .collect()
    }

    pub fn active_sessions(&self, now_ms: u64) -> usize {
        self.live.iter().filter(|id| self.is_active(id, now_ms)).count()
    }

    /// Drops expired IDs from `live`; sound because the clock is monotonic, so an expired
    /// microVM stays expired.
    fn prune_live(&mut self, now_ms: u64) {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        let sessions = &self.sessions;
        self.live.retain(|id| {
            sessions
                .get(id)
                .is_some_and(|s| s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active)
        });
    }

    pub fn stats(&self) -> Stats {
        Stats {
            // Every creation is a cold start and every cold start a creation.
            cold: self.stats.creations,
            max_creations_in_any_second: max_in_window(&self.creation_times_ms, 1_000),
            ..self.stats.clone()
        }
    }

    fn is_active(&self, session_id: &str, now_ms: u64) -> bool {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active)
    }

    /// Checks both limits before taking a token, so a refused creation costs nothing.
    fn admit_creation(&mut self, now_ms: u64) -> Result<(), Rejection> {
        let rate = self.cfg.creation_rate_per_sec;
        self.bucket.refill(now_ms, rate);
        if self.faults.throttle_all || !self.bucket.has_token() {
            self.stats.throttled += 1;
            return Err(Rejection::Throttled);
        }
        let limit = self.cfg.max_active_sessions;
        // Pruning can only shrink `live`, so it is needed only when the cap looks reached.
        if self.live.len() >= limit {
            self.prune_live(now_ms);
        }
        if self.live.len() >= limit {
            self.stats.quota_rejected += 1;
            return Err(Rejection::QuotaExceeded { limit });
        }
        self.bucket.take();
        self.stats.creations += 1;
        *self.stats.creations_per_second.entry(now_ms / 1_000).or_default() += 1;
        self.creation_times_ms.push(now_ms);
        Ok(())
    }

    fn limits_ms(&self) -> (u64, u64) {
        (duration_ms(self.cfg.idle_timeout), duration_ms(self.cfg.max_lifetime))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Draws only when the fault is on, so a run without faults consumes the same randomness as
/// one whose config never mentioned them.
fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}
