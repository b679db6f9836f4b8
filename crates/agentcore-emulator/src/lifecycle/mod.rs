//! The session lifecycle model of AgentCore Runtime: which invocation lands on a warm microVM
//! and which cold-starts a new one, how long each takes, when a session expires, and when a
//! new microVM is refused (creation rate, active-session quota) or an invocation fails
//! (injected faults), and which admitted invocations lose their answer or get it late.
//!
//! Pure and deterministic: every call takes `now_ms` from the caller's clock (wall time in the
//! HTTP server, a virtual clock in a simulation) and draws randomness from the caller's RNG, so a
//! seeded RNG and the same call sequence reproduce a run exactly. The clock only needs to be
//! monotonic; its origin is the caller's choice.

mod config;
mod creation;
mod latency;
pub mod platform;
mod session;
#[cfg(test)]
mod tests;
mod work;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use foldhash::fast::FixedState;
use rand::{Rng, RngExt};
use serde::Serialize;

pub use config::{Faults, LifecycleConfig};
use creation::{CreationBucket, max_in_window};
pub use latency::LatencyProfile;
pub use platform::Platform;
pub(crate) use session::Ended;
use session::Session;
pub use session::{InvocationRecord, SessionState, SessionView};

/// An invocation the model let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// A new microVM was created for this invocation.
    pub cold: bool,
    /// Service-side latency to add before the agent is reached (already scaled).
    pub latency: Duration,
    /// Which microVM of this session ID served it (1 for the first).
    pub generation: u32,
    /// What becomes of the answer once the agent has given it.
    pub answer: Answer,
}

/// The fate of an admitted invocation's answer. The agent receives and processes the
/// invocation in every case; only what the caller gets back differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    /// The connection closes without an answer.
    Lost,
    /// The answer is held this long after the agent gave it.
    Late(Duration),
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

/// Why a StopRuntimeSession call stopped nothing. Only `SessionNotFound` is the session's own
/// state; the others are injected and leave the session running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StopRejection {
    #[error("rate exceeded for StopRuntimeSession (injected)")]
    Throttled,
    #[error("injected internal error; the session was not stopped")]
    InternalError,
    #[error("no active session with this ID")]
    SessionNotFound,
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
    /// Stops that took effect.
    pub stops: u64,
    /// Stops of an unknown or already ended session (ResourceNotFoundException).
    pub stops_not_found: u64,
    /// Stops refused by injection, which left their session running.
    pub stop_throttles: u64,
    pub stop_errors: u64,
    /// Admitted invocations whose answer was dropped or delayed by injection.
    pub lost_answers: u64,
    pub late_answers: u64,
    /// Creations per clock second (`now_ms / 1000`), for checking a creation budget.
    pub creations_per_second: BTreeMap<u64, u32>,
    /// Most creations in any sliding 1 s window, which aligned seconds can understate.
    pub max_creations_in_any_second: u32,
}
/// The model. Not thread-safe by itself; the server holds it under a mutex.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: LifecycleConfig,
    faults: Faults,
    // A fixed-seed hash: a run's order of work does not depend on the process.
    sessions: HashMap<String, Session, FixedState>,
    // IDs whose microVM may still be alive, so counting active sessions costs O(active)
    // rather than O(every ID ever seen).
    live: HashSet<String, FixedState>,
    bucket: CreationBucket,
    stats: Stats,
    creation_times_ms: Vec<u64>,
    /// Whether each session's invocations are recorded (for its view).
    keep_history: bool,
}

impl Model {
    /// The configuration is taken as given; call [`LifecycleConfig::validate`] first to reject
    /// nonsense. Out-of-range probabilities behave as clamped.
    pub fn new(cfg: LifecycleConfig) -> Self {
        Self {
            faults: cfg.faults(),
            bucket: CreationBucket::full(cfg.creation_rate_per_sec),
            sessions: HashMap::default(),
            live: HashSet::default(),
            stats: Stats::default(),
            creation_times_ms: Vec::new(),
            keep_history: true,
            cfg,
        }
    }

    /// The same model, recording no session's invocations: its views show an empty
    /// history. For a simulation of millions of sessions, which reads none of them.
    pub fn without_history(self) -> Self {
        Self {
            keep_history: false,
            ..self
        }
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    /// Forgets every session, counter and fault change; the creation bucket is full again.
    pub fn reset(&mut self, now_ms: u64) {
        *self = Self {
            keep_history: self.keep_history,
            ..Self::new(self.cfg.clone())
        };
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

        let profile = if cold { self.cfg.cold_start() } else { self.cfg.warm };
        let latency = profile.sample(rng).mul_f64(self.cfg.latency_scale);

        // Looked up before it is keyed by an owned copy: most invocations find their ID.
        let session = match self.sessions.get_mut(session_id) {
            Some(session) => session,
            None => self
                .sessions
                .entry(session_id.to_owned())
                .or_insert_with(|| Session::new(now_ms)),
        };
        if cold {
            session.restart(now_ms);
            self.live.insert(session_id.to_owned());
        } else {
            self.stats.warm += 1;
        }
        // Idle time counts from admission unless the caller reports the agent's work (see
        // `work`): without that, the model does not see how long the agent works.
        session.last_invoked_at_ms = now_ms;
        session.idle_since_ms = session.idle_since_ms.max(now_ms);
        session.invocation_count += 1;
        if self.keep_history {
            session.history.push(InvocationRecord {
                at_ms: now_ms,
                cold,
                generation: session.generation,
            });
        }
        let generation = session.generation;

        if chance(rng, self.faults.crash_rate) {
            self.end(session_id, Ended::Crashed);
            return Err(Rejection::Crashed { generation });
        }
        Ok(Admission {
            cold,
            latency,
            generation,
            answer: self.draw_answer(rng),
        })
    }

    /// A `next_*` count first, then the rate; a lost answer wins over a late one.
    fn draw_answer<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Answer {
        let faults = &mut self.faults;
        if spend(&mut faults.next_lost_answers) || chance(rng, faults.lost_answer_rate) {
            self.stats.lost_answers += 1;
            return Answer::Lost;
        }
        if spend(&mut faults.next_late_answers) || chance(rng, faults.late_answer_rate) {
            self.stats.late_answers += 1;
            return Answer::Late(Duration::from_millis(faults.late_answer_ms));
        }
        Answer::Delivered
    }

    /// StopRuntimeSession as the service answers it: injected stop faults first (they strike
    /// before the service looks at the session and leave it running), then [`Self::stop`].
    pub fn request_stop<R: Rng + ?Sized>(
        &mut self,
        session_id: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<(), StopRejection> {
        let faults = &mut self.faults;
        if spend(&mut faults.next_stop_throttles) || chance(rng, faults.stop_throttle_rate) {
            self.stats.stop_throttles += 1;
            return Err(StopRejection::Throttled);
        }
        if spend(&mut faults.next_stop_errors) || chance(rng, faults.stop_error_rate) {
            self.stats.stop_errors += 1;
            return Err(StopRejection::InternalError);
        }
        self.stop(session_id, now_ms).map_err(|_| {
            self.stats.stops_not_found += 1;
            StopRejection::SessionNotFound
        })
    }

    /// Ends an active session, without stop faults. An unknown or already ended one is not
    /// found, as AgentCore answers (ResourceNotFoundException).
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

    /// Every known ID, ordered by ID.
    pub fn sessions(&self, now_ms: u64) -> Vec<SessionView> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        let mut views: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|(id, s)| s.view(id, s.state(now_ms, idle_ms, lifetime_ms)))
            .collect();
        views.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        views
    }

    /// Forgets every ID whose microVM is no longer alive: its history, its view. Invoking such
    /// an ID later cold-starts it as before, only as generation 1 again. For a long simulation,
    /// whose memory would otherwise grow with every session it ever created; counters stay.
    pub fn forget_ended(&mut self, now_ms: u64) {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .retain(|_, s| s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active);
        let sessions = &self.sessions;
        self.live.retain(|id| sessions.contains_key(id));
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

/// Takes one from a "next N" fault count; false once it is spent.
fn spend(count: &mut u32) -> bool {
    let had = *count > 0;
    *count = count.saturating_sub(1);
    had
}

/// Draws only when the fault is on, so a run without faults consumes the same randomness as
/// one whose config never mentioned them.
fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}
