//! One session ID over its microVMs: what the model remembers of it and how its state follows
//! from the clock.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionState {
    Active,
    IdleExpired,
    LifetimeExpired,
    Stopped,
    Crashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub at_ms: u64,
    pub cold: bool,
    pub generation: u32,
}

/// A session ID as seen at some instant. Times are the caller's clock; `created_at_ms` is the
/// current (latest) microVM's creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The agent's last `/ping` answered HealthyBusy, which holds the idle timeout off.
    pub busy: bool,
    /// When the idle clock last started: the last admission, or when known work ended.
    pub idle_since_ms: u64,
    pub history: Vec<InvocationRecord>,
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
pub(super) struct Session {
    pub created_at_ms: u64,
    pub last_invoked_at_ms: u64,
    pub invocation_count: u64,
    pub generation: u32,
    pub ended: Option<Ended>,
    pub history: Vec<InvocationRecord>,
    /// Invocations the agent is still working on. Only a caller that sees the agent's work
    /// (the per-session-process mode) reports them; otherwise the idle clock runs from
    /// admission.
    pub in_flight: u32,
    /// The agent's last `/ping` said HealthyBusy.
    pub busy: bool,
    pub idle_since_ms: u64,
}

impl Session {
    pub fn new(now_ms: u64) -> Self {
        Self {
            created_at_ms: now_ms,
            last_invoked_at_ms: now_ms,
            invocation_count: 0,
            generation: 0,
            ended: None,
            history: Vec::new(),
            in_flight: 0,
            busy: false,
            idle_since_ms: now_ms,
        }
    }

    /// A new microVM for this ID: nothing of the old one's work carries over.
    pub fn restart(&mut self, now_ms: u64) {
        self.generation += 1;
        self.created_at_ms = now_ms;
        self.ended = None;
        self.in_flight = 0;
        self.busy = false;
    }

    /// Work the agent is known to be doing holds the idle timeout off; the max lifetime
    /// still applies.
    pub fn idle_at(&self, idle_ms: u64) -> u64 {
        if self.in_flight > 0 || self.busy {
            u64::MAX
        } else {
            self.idle_since_ms.saturating_add(idle_ms)
        }
    }

    pub fn state(&self, now_ms: u64, idle_ms: u64, lifetime_ms: u64) -> SessionState {
        match self.ended {
            Some(Ended::Stopped) => SessionState::Stopped,
            Some(Ended::Crashed) => SessionState::Crashed,
            None => {
                let idle_at = self.idle_at(idle_ms);
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

    pub fn view(&self, session_id: &str, state: SessionState) -> SessionView {
        SessionView {
            session_id: session_id.to_owned(),
            created_at_ms: self.created_at_ms,
            last_invoked_at_ms: self.last_invoked_at_ms,
            invocation_count: self.invocation_count,
            generation: self.generation,
            state,
            busy: self.busy,
            idle_since_ms: self.idle_since_ms,
            history: self.history.clone(),
        }
    }
}
