//! Claiming a warm session: exactly once (only a successful delete hands a session out), and
//! only while it is fresh enough for the caller (invariants 1 and 2 of docs/architecture.md).

use super::{Freshness, Lifecycle};
use crate::clock::{Clock, millis};
use crate::error::QueueError;
use crate::pool::version::VersionWatch;
use crate::ports::{PoolQueue, ReplenishTrigger};
use crate::session::{LogKey, PooledSession, SessionId};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEmpty {
    /// Answer a new session ID (a cold start for the caller), flagged `source: "fresh"`.
    Fresh,
    /// Fail the claim with [`ClaimError::PoolEmpty`].
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    pub lifecycle: Lifecycle,
    /// Long-poll wait of each receive: returns at once when a message is there, asks every
    /// SQS server, and bounds the wait on an empty pool.
    pub wait: Duration,
    /// How long a received message stays hidden while we decide and delete.
    pub visibility: Duration,
    /// Upper bound on unusable messages (stale, short-lived, malformed, lost deletes) one
    /// claim works through before it treats the pool as empty. Zero would turn the pool off.
    pub max_discards: NonZeroU32,
    /// The lifetime the claimer needs left: a pooled session whose `createdAt` + max lifetime
    /// less the margin comes before now + this is not handed out (see
    /// [`ClaimPolicy::with_min_lifetime`]).
    pub min_lifetime: Duration,
    pub on_empty: OnEmpty,
    /// A claim that falls back to a fresh session also asks for one more pooled session. A
    /// fallback is demand the pool did not meet; replacing only what was taken from the pool
    /// would leave the pool as small as it was when it ran dry, and nothing but the next
    /// scheduled run would grow it. Asking one per fallback grows it by exactly the unmet
    /// demand, within a warmup time, so it cannot overshoot what claims asked for.
    pub replace_fresh_fallbacks: bool,
    /// Session IDs appear in logs only as [`SessionId::log_id`] under this key.
    pub log_key: LogKey,
}

impl ClaimPolicy {
    /// The same policy for a claimer that needs `min_lifetime` of session left: get-session
    /// its `CLAIM_MIN_LIFETIME_SECS`, the invoker its batch deadline plus a margin.
    ///
    /// A pooled session with less left is treated as stale: its message is deleted and
    /// replaced, and the session is not stopped. The claim path has no AgentCore capability
    /// (get-session's role cannot stop sessions), and nobody can reach the session once its
    /// message is gone, so it ends within min(idle timeout, `min_lifetime`): a bounded cost,
    /// never a hand-out (docs/decisions/0205).
    pub fn with_min_lifetime(self, min_lifetime: Duration) -> Self {
        Self { min_lifetime, ..self }
    }

    /// Whether any pooled session could satisfy this policy: a minimum lifetime at or beyond
    /// max lifetime less the margin would send every claim to a fresh session.
    pub fn can_be_served(&self) -> bool {
        self.min_lifetime < self.lifecycle.max_lifetime.saturating_sub(self.lifecycle.safety_margin)
    }
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            lifecycle: Lifecycle::default(),
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
            max_discards: crate::config::at_least_one(10),
            min_lifetime: Duration::ZERO,
            on_empty: OnEmpty::Fresh,
            replace_fresh_fallbacks: false,
            log_key: LogKey::development(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Pool,
    Fresh,
    /// The caller's own leased session, handed out again (leases: `crate::lease`).
    Reused,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pool => "pool",
            Self::Fresh => "fresh",
            Self::Reused => "reused",
        }
    }
}

/// The answer of a claim: `{"sessionId","source","createdAt","lastPingAt"}` and, for a
/// session leased to a user, `"userId"`; callers of get-session read it back with the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedSession {
    pub session_id: SessionId,
    pub source: Source,
    pub created_at: u64,
    /// `None` for a fresh session: it was never pinged.
    pub last_ping_at: Option<u64>,
    /// Who holds the session, when the request named a user: the caller passes it to
    /// AgentCore as the runtime user ID on every invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<crate::lease::UserId>,
}

/// What one claim did, for metrics and for the replenish trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub session: ClaimedSession,
    pub stale_discarded: u32,
    /// Fresh, but with less lifetime left than the claimer needs ([`ClaimPolicy::min_lifetime`]).
    pub short_lived_discarded: u32,
    pub malformed_discarded: u32,
    /// Of an agent version a newer deploy replaced ([`crate::pool::version`]): deleted and
    /// replaced like stale ones, not handed out.
    pub outdated_discarded: u32,
    /// Messages whose delete failed: not ours any more, never handed out.
    pub lost_deletes: u32,
    /// Pool messages this claim removed (claimed or discarded): each needs a replacement.
    pub consumed: u32,
    pub trigger_failed: bool,
}

/// What a claim worked through, before it knows which session it hands out.
#[derive(Debug, Default)]
struct Tally {
    stale: u32,
    short_lived: u32,
    malformed: u32,
    outdated: u32,
    lost_deletes: u32,
    consumed: u32,
}

impl Tally {
    /// Unusable messages this claim worked through.
    fn discarded(&self) -> u32 {
        self.stale + self.short_lived + self.malformed + self.outdated + self.lost_deletes
    }

    fn into_claim(self, session: ClaimedSession) -> Claim {
        Claim {
            session,
            stale_discarded: self.stale,
            short_lived_discarded: self.short_lived,
            malformed_discarded: self.malformed,
            outdated_discarded: self.outdated,
            lost_deletes: self.lost_deletes,
            consumed: self.consumed,
            trigger_failed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no warm session in the pool")]
    PoolEmpty,
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ClaimError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::PoolEmpty => true,
            Self::Queue(e) => e.is_retryable(),
        }
    }
}

/// Claims warm sessions from the pool and asks for their replacements.
///
/// This is the whole claim logic; `get-session` only wires it to Lambda, and a trusted
/// service in the same account can embed it to claim in-process.
pub struct Claimer<Q, T, C> {
    pub queue: Q,
    pub trigger: T,
    pub clock: C,
    pub policy: ClaimPolicy,
}

impl<Q: PoolQueue, T: ReplenishTrigger, C: Clock> Claimer<Q, T, C> {
    pub async fn claim(&self) -> Result<Claim, ClaimError> {
        self.claim_with(&VersionWatch::disabled()).await
    }

    /// [`Self::claim`], refusing sessions of an agent version `versions` knows to be outdated
    /// (and learning the newest version from what it receives).
    pub async fn claim_with(&self, versions: &VersionWatch) -> Result<Claim, ClaimError> {
        let mut outcome = self.take_from_pool(versions).await;
        let consumed = match &outcome {
            Ok(claim) => claim.consumed,
            Err((_, consumed)) => *consumed,
        };
        let trigger_failed = consumed > 0 && self.request_replacements(consumed).await;
        if let Ok(claim) = &mut outcome {
            claim.trigger_failed = trigger_failed;
            // A request of its own, after the replacements: see `replace_fresh_fallbacks`.
            if self.policy.replace_fresh_fallbacks && claim.session.source == Source::Fresh {
                claim.trigger_failed |= self.request_replacements(1).await;
            }
        }
        outcome.map_err(|(e, _)| e)
    }

    async fn request_replacements(&self, count: u32) -> bool {
        match self.trigger.request(count).await {
            Ok(()) => false,
            Err(error) => {
                warn!(count, error = %error, "replenish trigger failed; the schedule will top up");
                true
            }
        }
    }

    /// The error side carries how many messages were consumed before failing, so that their
    /// replacements are still requested.
    async fn take_from_pool(&self, versions: &VersionWatch) -> Result<Claim, (ClaimError, u32)> {
        let policy = &self.policy;
        let mut tally = Tally::default();
        while tally.discarded() < policy.max_discards.get() {
            let received_at = self.clock.now_ms();
            let received = self
                .queue
                .receive(1, policy.wait, policy.visibility)
                .await
                .map_err(|e| (e.into(), tally.consumed))?;
            let Some(message) = received.into_iter().next() else {
                break;
            };
            let usable = self.judge(&message.body, &message.message_id, &mut tally, versions);
            // Invariant 1: the delete is the claim. Only a successful delete proves that
            // no other caller holds (or will receive) this message.
            if let Err(error) = self.queue.delete(&message.receipt).await {
                warn!(message_id = %message.message_id, error = %error, "pool message delete failed; not handing it out");
                tally.lost_deletes += 1;
                continue;
            }
            tally.consumed += 1;
            if usable.is_some() && !self.deleted_while_hidden(received_at) {
                warn!(message_id = %message.message_id, "pool message deleted after its visibility may have ended; not handing it out");
                tally.lost_deletes += 1;
                continue;
            }
            if let Some(session) = usable {
                return Ok(tally.into_claim(ClaimedSession {
                    session_id: session.session_id,
                    source: Source::Pool,
                    created_at: session.created_at,
                    last_ping_at: Some(session.last_ping_at),
                    user_id: None,
                }));
            }
        }
        match policy.on_empty {
            // Drawn only now: most claims find a pooled session and need no new ID.
            OnEmpty::Fresh => Ok(tally.into_claim(self.fresh_session())),
            OnEmpty::Fail => Err((ClaimError::PoolEmpty, tally.consumed)),
        }
    }

    /// The session in `body` if it may be handed out; otherwise why not, counted in `tally`.
    fn judge(&self, body: &str, message_id: &str, tally: &mut Tally, versions: &VersionWatch) -> Option<PooledSession> {
        let policy = &self.policy;
        let now = self.clock.now_ms();
        let session = match PooledSession::parse_at(body, now) {
            Ok(session) => session,
            Err(reason) => {
                warn!(message_id, %reason, "discarding malformed pool message");
                tally.malformed += 1;
                return None;
            }
        };
        // Hashed only for a line that is written: a claim that hands the session out logs
        // nothing here, and the HMAC is most of a claim's CPU time in the simulation.
        let shown = session.session_id.shown(&policy.log_key);
        match policy.lifecycle.freshness(&session, now) {
            Freshness::Fresh => {}
            stale => {
                info!(session = %shown, freshness = ?stale, "discarding stale pool session");
                tally.stale += 1;
                return None;
            }
        }
        let left = policy.lifecycle.lifetime_left(&session, now);
        if left < policy.min_lifetime {
            info!(
                session = %shown,
                lifetime_left_ms = millis(left),
                needed_ms = millis(policy.min_lifetime),
                "discarding a pool session too close to its max lifetime for this claimer"
            );
            tally.short_lived += 1;
            return None;
        }
        if versions.outdated(&session, now) {
            info!(
                session = %shown,
                version = session.agent_version().map(|v| v.version).unwrap_or_default(),
                newest = versions.newest().map(|v| v.version).unwrap_or_default(),
                "discarding a pool session of an outdated agent version"
            );
            tally.outdated += 1;
            return None;
        }
        Some(session)
    }

    /// Whether the delete that just succeeded came while the message was surely still hidden
    /// under our receipt. Real SQS FIFO refuses a receipt whose visibility ended, but moto (and
    /// any queue that accepts stale handles) lets the delete succeed even though another claimer
    /// may have received the message since: the delete alone then proves nothing. The visibility
    /// clock starts no earlier than our receive request, so a delete answered before
    /// `received_at + visibility` (less a tenth for clock drift) landed while it was ours.
    fn deleted_while_hidden(&self, received_at: u64) -> bool {
        let visibility = millis(self.policy.visibility);
        let deadline = received_at.saturating_add(visibility - visibility / 10);
        self.clock.now_ms() < deadline
    }

    fn fresh_session(&self) -> ClaimedSession {
        ClaimedSession {
            session_id: SessionId::generate(),
            source: Source::Fresh,
            created_at: self.clock.now_ms(),
            last_ping_at: None,
            user_id: None,
        }
    }
}

#[cfg(test)]
mod tests;
