//! The simulated AgentCore service: the emulator's lifecycle model on the virtual clock, and
//! the bookkeeping of how long each pooled microVM sat idle (the pool's memory cost).

use agentcore_emulator::lifecycle::{Admission, Model, Rejection};
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use warmpool_core::clock::{Clock, ManualClock, millis};
use warmpool_core::error::{AgentError, AgentErrorKind};
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;

/// The error the real service answers for each refusal of the model.
pub(crate) fn agent_error(rejection: &Rejection) -> AgentError {
    let kind = match rejection {
        Rejection::Throttled => AgentErrorKind::Throttled,
        Rejection::QuotaExceeded { .. } => AgentErrorKind::QuotaExceeded,
        Rejection::InternalError => AgentErrorKind::Server,
        Rejection::Crashed { .. } => AgentErrorKind::Agent,
        Rejection::SessionNotFound => AgentErrorKind::Rejected,
    };
    AgentError::new("invoke", kind, rejection.to_string())
}

/// One pooled microVM from its warmup until it is handed out or stopped (then its idle time
/// is final and added up), or the run ends.
#[derive(Debug, Clone, Copy)]
struct Life {
    /// Start of the current microVM (a heartbeat that lands cold starts a new one).
    vm_start: u64,
    last_ping: u64,
    /// Idle time of earlier microVMs of this ID, already clipped to the window.
    banked_ms: u64,
}

pub(crate) struct World {
    pub model: Model,
    pub rng: StdRng,
    idle_ms: u64,
    lifetime_ms: u64,
    /// Only idle time inside this window counts.
    window: (u64, u64),
    lives: HashMap<SessionId, Life, foldhash::fast::FixedState>,
    /// Idle time of the lives that ended, inside the window.
    ended_idle_ms: u64,
    pub heartbeats_cold: u64,
    pub stops: u64,
}

impl Life {
    /// When this microVM ends by itself: its idle timeout or its max lifetime.
    fn expiry(&self, idle_ms: u64, lifetime_ms: u64) -> u64 {
        (self.last_ping + idle_ms).min(self.vm_start + lifetime_ms)
    }
}

fn overlap((a, b): (u64, u64), (w0, w1): (u64, u64)) -> u64 {
    b.min(w1).saturating_sub(a.max(w0))
}

impl World {
    pub fn new(model: Model, rng: StdRng, window: (u64, u64)) -> Self {
        let cfg = model.config();
        let (idle_ms, lifetime_ms) = (millis(cfg.idle_timeout), millis(cfg.max_lifetime));
        Self {
            model,
            rng,
            idle_ms,
            lifetime_ms,
            window,
            lives: HashMap::default(),
            ended_idle_ms: 0,
            heartbeats_cold: 0,
            stops: 0,
        }
    }

    pub fn invoke(&mut self, id: &SessionId, now: u64) -> Result<Admission, Rejection> {
        self.model.invoke(id.as_str(), now, &mut self.rng)
    }

    fn expiry(&self, life: &Life) -> u64 {
        life.expiry(self.idle_ms, self.lifetime_ms)
    }

    /// A warmup returned: the microVM (created at `created`) now idles in the pool.
    pub fn pooled(&mut self, id: SessionId, created: u64) {
        self.lives.insert(
            id,
            Life {
                vm_start: created,
                last_ping: created,
                banked_ms: 0,
            },
        );
    }

    /// A caller invoked a pooled ID at `now`: its idle time ends then, or when it expired.
    pub fn handed_out(&mut self, id: &SessionId, now: u64) {
        if let Some(life) = self.lives.get(id).copied() {
            self.end(id, &life, now.min(self.expiry(&life)));
        }
    }

    /// The idle time of `life` ending at `end`, counted once; the ID leaves the pool's books.
    fn end(&mut self, id: &SessionId, life: &Life, end: u64) {
        self.ended_idle_ms += self.idle_ms_of(life, end);
        self.lives.remove(id);
    }

    fn idle_ms_of(&self, life: &Life, end: u64) -> u64 {
        life.banked_ms + overlap((life.vm_start, end.max(life.vm_start)), self.window)
    }

    fn pinged(&mut self, id: &SessionId, now: u64, cold: bool) {
        let (idle_ms, lifetime_ms, window) = (self.idle_ms, self.lifetime_ms, self.window);
        let Some(life) = self.lives.get_mut(id) else {
            return;
        };
        if cold {
            // The old microVM idled until it expired; the ping started a new one.
            self.heartbeats_cold += 1;
            life.banked_ms += overlap((life.vm_start, life.expiry(idle_ms, lifetime_ms)), window);
            life.vm_start = now;
        }
        life.last_ping = now;
    }

    fn stopped(&mut self, id: &SessionId, now: u64) {
        self.stops += 1;
        if let Some(life) = self.lives.get(id).copied() {
            self.end(id, &life, now);
        }
    }

    /// Idle session-hours of every pooled microVM inside the window; one still pooled at the
    /// end counts until the end or its expiry.
    pub fn idle_session_hours(&self) -> f64 {
        let pooled: u64 = self
            .lives
            .values()
            .map(|life| self.idle_ms_of(life, self.expiry(life).min(self.window.1)))
            .sum();
        (self.ended_idle_ms + pooled) as f64 / 3_600_000.0
    }
}

/// The agent runtime the sweep talks to: the model, at the virtual clock's time, answering at
/// once (the sweep's calls take no virtual time).
#[derive(Clone)]
pub(crate) struct SimAgent {
    pub world: Arc<Mutex<World>>,
    pub clock: ManualClock,
}

impl SimAgent {
    pub fn world(&self) -> MutexGuard<'_, World> {
        // Single-threaded simulation: a poisoned lock can only follow a panic that already
        // ended the run.
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AgentRuntime for SimAgent {
    async fn invoke(&self, session_id: &SessionId, _payload: &[u8]) -> Result<Vec<u8>, AgentError> {
        let now = self.clock.now_ms();
        let mut world = self.world();
        match world.invoke(session_id, now) {
            Ok(admission) => {
                world.pinged(session_id, now, admission.cold);
                Ok(br#"{"status":"warm"}"#.to_vec())
            }
            Err(rejection) => Err(agent_error(&rejection)),
        }
    }

    async fn stop(&self, session_id: &SessionId) -> Result<(), AgentError> {
        let now = self.clock.now_ms();
        let mut world = self.world();
        match world.model.stop(session_id.as_str(), now) {
            Ok(()) => {
                world.stopped(session_id, now);
                Ok(())
            }
            Err(rejection) => Err(AgentError::new("stop", AgentErrorKind::Rejected, rejection.to_string())),
        }
    }
}
