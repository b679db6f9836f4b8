//! The pool domain: when a pooled session is still safe to hand out ([`Lifecycle`]), and the
//! parts that keep the pool (invariants 1 to 4 of docs/architecture.md):
//! - [`claim`]: claiming one warm session exactly once;
//! - [`warmup`]: warming new sessions and enqueueing them only once warm;
//! - [`enqueue`]: the pool send, resent while its outcome is unknown;
//! - [`quota`]: pacing creations within the account's creation budget;
//! - [`trigger`]: the replenish trigger that never blocks nor fails a claim;
//! - [`target`]: how many sessions the pool should hold (static, scheduled windows, adaptive,
//!   pre-warm plans);
//! - [`version`]: which pooled sessions a deploy of a new agent version made outdated;
//! - [`breaker`]: stopping warmups while the agent fails every one;
//! - [`maintenance`]: heartbeats, retirement and trimming of pooled sessions (rules, sizing,
//!   the sweep).

pub mod breaker;
pub mod claim;
pub mod enqueue;
pub mod maintenance;
pub mod quota;
pub mod target;
pub mod trigger;
pub mod version;
pub mod warmup;

use crate::clock::millis;
use crate::session::PooledSession;
use serde::Serialize;
use std::time::Duration;

/// Session lifetime limits of the AgentCore runtime, and the margin kept from each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// `idleRuntimeSessionTimeout` of the runtime (AgentCore default 900 s).
    pub idle_timeout: Duration,
    /// `maxLifetime` of the runtime (AgentCore default 28800 s).
    pub max_lifetime: Duration,
    /// Kept from both limits: covers the time between the claim and the caller's first
    /// invocation, and clock skew between Lambda and AgentCore.
    pub safety_margin: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(900),
            max_lifetime: Duration::from_secs(28_800),
            safety_margin: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Freshness {
    Fresh,
    /// Idle timeout (less margin) reached: AgentCore may already have reclaimed the microVM.
    IdleExpired,
    /// Max lifetime (less margin) reached.
    LifetimeExpired,
}

impl Lifecycle {
    /// Invariant 2: a pooled ID is usable only if both deadlines, less the margin, lie ahead.
    /// An expired ID does not fail when invoked, it silently cold-starts, so this rule is the
    /// only protection against a hidden cold start.
    ///
    /// Saturating throughout: timestamps come from messages, and a hostile `u64::MAX` must
    /// neither panic nor wrap around into the past. (Timestamps in the future are refused
    /// before this rule, by [`PooledSession::parse_at`].)
    pub fn freshness(&self, session: &PooledSession, now_ms: u64) -> Freshness {
        let margin = millis(self.safety_margin);
        let idle_deadline = session.last_ping_at.saturating_add(millis(self.idle_timeout));
        if self.usable_until(session) <= now_ms {
            Freshness::LifetimeExpired
        } else if idle_deadline.saturating_sub(margin) <= now_ms {
            Freshness::IdleExpired
        } else {
            Freshness::Fresh
        }
    }

    /// The last moment the session may be handed out for its age: `createdAt` + max lifetime
    /// less the margin.
    pub fn usable_until(&self, session: &PooledSession) -> u64 {
        session
            .created_at
            .saturating_add(millis(self.max_lifetime))
            .saturating_sub(millis(self.safety_margin))
    }

    /// How much of its max lifetime (less the margin) the session has left at `now_ms`.
    pub fn lifetime_left(&self, session: &PooledSession, now_ms: u64) -> Duration {
        Duration::from_millis(self.usable_until(session).saturating_sub(now_ms))
    }
}
