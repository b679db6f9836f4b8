//! Affinity: a conversation's later turns reuse the session its first turn claimed while the
//! lease rule says it is alive (last use plus idle timeout, and creation plus max lifetime,
//! each less the safety margin: the same `Lifecycle::freshness` get-session applies to pooled
//! sessions), and claim again once it is not. Also the idle time of sessions after they were
//! used, which the pool's idle figure leaves out: the microVM stays billed until the idle
//! timeout ends it, or until the conversation's next turn.

use super::{Binding, Engine};
use warmpool_core::clock::millis;
use warmpool_core::pool::Freshness;
use warmpool_core::session::{PooledSession, SessionId};

impl Engine<'_> {
    /// The live session `request`'s conversation holds, when affinity is on.
    pub(super) fn reusable(&self, request: usize, now: u64) -> Option<SessionId> {
        if !self.settings.affinity {
            return None;
        }
        let conversation = self.requests[request].conversation? as usize;
        let binding = self.bindings.get(conversation)?.as_ref()?;
        let lease = PooledSession::new(binding.session.clone(), binding.created_at, binding.last_use);
        (self.deployment.lifecycle.freshness(&lease, now) == Freshness::Fresh).then(|| binding.session.clone())
    }

    /// A turn claimed `session` (created at `created_at`): with affinity its conversation holds
    /// it from now on, and the session it held before idles out.
    pub(super) fn bind(&mut self, request: usize, session: &SessionId, created_at: u64, now: u64) {
        let Some(conversation) = self.requests[request].conversation.filter(|_| self.settings.affinity) else {
            return;
        };
        let fresh = Binding {
            session: session.clone(),
            created_at,
            last_use: now,
        };
        if let Some(old) = self
            .bindings
            .get_mut(conversation as usize)
            .and_then(|b| b.replace(fresh))
        {
            self.idle_after_use(old.last_use, None);
        }
    }

    /// A caller's invocation of `session` was admitted at `now`: the gap since its
    /// conversation last used it was held idle; a session nobody holds idles out from now.
    pub(super) fn used(&mut self, request: usize, session: &SessionId, now: u64) {
        let held = self.requests[request]
            .conversation
            .filter(|_| self.settings.affinity)
            .and_then(|c| self.bindings.get_mut(c as usize))
            .and_then(Option::as_mut)
            .filter(|b| b.session == *session);
        match held {
            Some(binding) => {
                let since = std::mem::replace(&mut binding.last_use, now);
                self.idle_after_use(since, Some(now));
            }
            None => self.idle_after_use(now, None),
        }
    }

    /// Every conversation's session idles out after its last turn.
    pub(super) fn release_bindings(&mut self) {
        let last_uses: Vec<u64> = self
            .bindings
            .iter_mut()
            .filter_map(Option::take)
            .map(|b| b.last_use)
            .collect();
        for last_use in last_uses {
            self.idle_after_use(last_use, None);
        }
    }

    /// Idle from `from` until `until` or the idle timeout, whichever comes first, inside the
    /// measured window.
    fn idle_after_use(&mut self, from: u64, until: Option<u64>) {
        let timeout_end = from + millis(self.settings.service.idle_timeout);
        let end = until.map_or(timeout_end, |u| u.min(timeout_end)).min(self.window.1);
        let start = from.max(self.window.0);
        self.details.held_idle_ms += end.saturating_sub(start);
    }
}
