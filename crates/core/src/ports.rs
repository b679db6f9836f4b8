//! Capability traits the rules need; each handler asks only for what it uses.
//! AWS adapters live in [`crate::aws`], in-memory fakes in `fakes` (feature `fakes`).

use crate::error::{AgentError, QueueError, TriggerError};
use crate::session::{PooledSession, SessionId};
use std::future::Future;
use std::time::Duration;

/// One pool message as received: its body and the receipt handle that proves we hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
}

/// Approximate queue depth, as SQS reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolDepth {
    pub visible: u64,
    pub in_flight: u64,
}

impl PoolDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight
    }
}

/// The pool queue (SQS FIFO in production).
pub trait PoolQueue: Send + Sync {
    /// Receive up to `max` messages, waiting up to `wait` for the first; received messages stay
    /// hidden from other consumers for `visibility`.
    fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, QueueError>> + Send;

    /// Delete a received message. An error means the message may not be ours any more.
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send;

    fn enqueue(&self, session: &PooledSession) -> impl Future<Output = Result<(), QueueError>> + Send;

    fn depth(&self) -> impl Future<Output = Result<PoolDepth, QueueError>> + Send;
}

/// What the maintenance sweep needs of the pool queue beyond claiming: handing messages back at
/// once, and how long the oldest one has waited (for sizing from the claim rate).
pub trait PoolMaintenance: PoolQueue {
    /// Makes received messages visible again now (`ChangeMessageVisibility` 0), so that claims
    /// are not held up by a sweep. Returns how many receipts were no longer ours; those messages
    /// become visible on their own when their visibility ends.
    fn release(&self, receipts: &[String]) -> impl Future<Output = Result<u32, QueueError>> + Send;

    /// When the oldest of the first `max` visible messages was sent, without hiding any of them.
    fn oldest_sent_at(&self, max: u8) -> impl Future<Output = Result<Option<u64>, QueueError>> + Send;
}

/// The AgentCore Runtime data plane.
///
/// Stopping, the contract: [`Self::stop`] and [`Self::stop_with_token`] are ONE
/// StopRuntimeSession call each, and one call can be throttled, fail with a 5xx, or stop the
/// session and lose its answer. A caller that needs the session to end (a session nobody may
/// use again: a retired or unpooled one, or a batch attempt's that is over) calls
/// [`crate::stop::stop_until_gone`] instead: it retries with full-jitter backoff and the same
/// client token on every try (StopRuntimeSession is idempotent for one token) until the
/// session stopped or is known gone ([`AgentErrorKind::NotFound`](crate::error::AgentErrorKind)),
/// within the caller's time budget, and never retries a refusal (access denied, validation).
pub trait AgentRuntime: Send + Sync {
    fn invoke(
        &self,
        session_id: &SessionId,
        payload: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, AgentError>> + Send;

    /// Invokes a handed-out session as its holder: with `claimed.user_id`, AgentCore passes it
    /// to the agent as the runtime user ID (`X-Amzn-Bedrock-AgentCore-Runtime-User-Id`), so
    /// the agent can authorise per user. Adapters without a user channel (test doubles)
    /// invoke plainly.
    fn invoke_claimed(
        &self,
        claimed: &crate::pool::claim::ClaimedSession,
        payload: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, AgentError>> + Send {
        self.invoke(&claimed.session_id, payload)
    }

    /// One StopRuntimeSession call under a client token of its own.
    fn stop(&self, session_id: &SessionId) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// One StopRuntimeSession call under the caller's client token, so that a retry is the
    /// same request to AgentCore. Adapters that have no token to send (test doubles) fall
    /// back to [`Self::stop`].
    fn stop_with_token(
        &self,
        session_id: &SessionId,
        client_token: &str,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        let _ = client_token;
        self.stop(session_id)
    }
}

/// Asks the replenish function to warm `count` new sessions.
pub trait ReplenishTrigger: Send + Sync {
    fn request(&self, count: u32) -> impl Future<Output = Result<(), TriggerError>> + Send;
}

impl<T: ReplenishTrigger + ?Sized> ReplenishTrigger for std::sync::Arc<T> {
    fn request(&self, count: u32) -> impl Future<Output = Result<(), TriggerError>> + Send {
        (**self).request(count)
    }
}

impl<Q: PoolQueue + ?Sized> PoolQueue for std::sync::Arc<Q> {
    fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, QueueError>> + Send {
        (**self).receive(max, wait, visibility)
    }
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).delete(receipt)
    }
    fn enqueue(&self, session: &PooledSession) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).enqueue(session)
    }
    fn depth(&self) -> impl Future<Output = Result<PoolDepth, QueueError>> + Send {
        (**self).depth()
    }
}

impl<A: AgentRuntime + ?Sized> AgentRuntime for std::sync::Arc<A> {
    fn invoke(
        &self,
        session_id: &SessionId,
        payload: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, AgentError>> + Send {
        (**self).invoke(session_id, payload)
    }
    fn invoke_claimed(
        &self,
        claimed: &crate::pool::claim::ClaimedSession,
        payload: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, AgentError>> + Send {
        (**self).invoke_claimed(claimed, payload)
    }
    fn stop(&self, session_id: &SessionId) -> impl Future<Output = Result<(), AgentError>> + Send {
        (**self).stop(session_id)
    }
    fn stop_with_token(
        &self,
        session_id: &SessionId,
        client_token: &str,
    ) -> impl Future<Output = Result<(), AgentError>> + Send {
        (**self).stop_with_token(session_id, client_token)
    }
}

impl<Q: PoolMaintenance + ?Sized> PoolMaintenance for std::sync::Arc<Q> {
    fn release(&self, receipts: &[String]) -> impl Future<Output = Result<u32, QueueError>> + Send {
        (**self).release(receipts)
    }
    fn oldest_sent_at(&self, max: u8) -> impl Future<Output = Result<Option<u64>, QueueError>> + Send {
        (**self).oldest_sent_at(max)
    }
}
