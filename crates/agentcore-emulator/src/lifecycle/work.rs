//! What the model is told about the agent's work in a session, by a caller that can see it
//! (the server in per-session-process mode): invocations still in flight and the agent's
//! `/ping` status. As in AgentCore, a session whose agent is working (an invocation in flight,
//! or `/ping` answering HealthyBusy) is not ended by the idle timeout; when the work ends, the
//! idle clock starts again from then. A caller that reports nothing gets the plain rule: idle
//! time counts from the last admission.
//!
//! Every report names the microVM generation it is about, so a report that arrives after the
//! session ended or restarted is ignored rather than applied to the wrong microVM.

use super::session::Session;
use super::{Model, SessionState};

impl Model {
    /// An admitted invocation of this generation is being worked on.
    pub fn begin_work(&mut self, session_id: &str, generation: u32, now_ms: u64) {
        if let Some(session) = self.active_generation_mut(session_id, generation, now_ms) {
            session.in_flight += 1;
        }
    }

    /// The agent answered one invocation; with nothing else running, the idle clock restarts.
    pub fn end_work(&mut self, session_id: &str, generation: u32, now_ms: u64) {
        if let Some(session) = self.active_generation_mut(session_id, generation, now_ms) {
            session.in_flight = session.in_flight.saturating_sub(1);
            session.idle_since_ms = session.idle_since_ms.max(now_ms);
        }
    }

    /// The agent's `/ping` answered; `busy` is HealthyBusy. Returns whether the report applied
    /// (the same microVM is still active).
    pub fn report_ping(&mut self, session_id: &str, generation: u32, busy: bool, now_ms: u64) -> bool {
        let Some(session) = self.active_generation_mut(session_id, generation, now_ms) else {
            return false;
        };
        if session.busy && !busy {
            session.idle_since_ms = session.idle_since_ms.max(now_ms);
        }
        session.busy = busy;
        true
    }

    /// Active sessions whose idle timeout would strike within `within_ms` unless their agent
    /// is busy, and busy ones (to see their work end), soonest first: the ones worth a `/ping`.
    /// Sessions with an invocation in flight need none.
    pub fn idle_candidates(&self, now_ms: u64, within_ms: u64) -> Vec<(String, u32)> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        let horizon = now_ms.saturating_add(within_ms);
        let mut due: Vec<(u64, &String, u32)> = self
            .live
            .iter()
            .filter_map(|id| {
                let session = self.sessions.get(id)?;
                let active = session.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active;
                if !active || session.in_flight > 0 {
                    return None;
                }
                let idle_at = session.idle_since_ms.saturating_add(idle_ms);
                (session.busy || idle_at <= horizon).then_some((idle_at, id, session.generation))
            })
            .collect();
        due.sort();
        due.into_iter()
            .map(|(_, id, generation)| (id.clone(), generation))
            .collect()
    }

    /// The session's latest microVM generation and its state now; `None` for an unknown ID.
    pub fn session_state(&self, session_id: &str, now_ms: u64) -> Option<(u32, SessionState)> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        let session = self.sessions.get(session_id)?;
        Some((session.generation, session.state(now_ms, idle_ms, lifetime_ms)))
    }

    fn active_generation_mut(&mut self, session_id: &str, generation: u32, now_ms: u64) -> Option<&mut Session> {
        let (idle_ms, lifetime_ms) = self.limits_ms();
        self.sessions
            .get_mut(session_id)
            .filter(|s| s.generation == generation && s.state(now_ms, idle_ms, lifetime_ms) == SessionState::Active)
    }
}
