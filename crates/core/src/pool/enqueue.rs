//! Putting a session into the pool: one SendMessage, resent while its outcome is unknown
//! (invariants 3 and 8 of docs/architecture.md).
//!
//! A send that failed with a transport error or a 5xx may have landed: its answer was lost.
//! Taking that for a failure and stopping the session would leave a dead session in the pool,
//! to be handed to a caller as a hidden cold start. The send is safe to repeat: the message
//! carries the same deduplication ID (`sessionId:lastPingAt`), and SQS accepts a repeat within
//! five minutes of the first accepted send without delivering it twice. So [`send_to_pool`]
//! resends (bounded, with full-jitter backoff, within the caller's deadline and well inside
//! that window) and reports one of three outcomes:
//! - confirmed: the message is in the pool, once;
//! - refused: every try was answered with a refusal (a 4xx, throttling), so nothing landed and
//!   the caller may stop the session;
//! - unconfirmed: some try may have landed and none was confirmed. The caller leaves the
//!   session alone: if its message is in the pool it is a good pooled session, and if not it
//!   idles out unseen (cost, never a duplicate and never a dead session handed out).

use crate::clock::Backoff;
use crate::clock::{millis, within};
use crate::error::{QueueError, QueueErrorKind};
use crate::ports::PoolQueue;
use crate::session::{LogKey, PooledSession};
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// How long after the first try a resend may still go out: SQS deduplicates for five minutes,
/// and a resend close to the end could race the window's expiry.
pub const DEDUPLICATION_SAFE_WINDOW: Duration = Duration::from_secs(4 * 60);

/// Bounds on the resends of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRetry {
    pub max_tries: u32,
    pub backoff: Backoff,
}

impl Default for SendRetry {
    fn default() -> Self {
        Self {
            max_tries: 5,
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
            },
        }
    }
}

#[derive(Debug)]
pub enum Sent {
    Confirmed,
    /// Nothing landed: every try was refused. The error is the last answer.
    Refused(QueueError),
    /// A try may have landed; none was confirmed. The error is the last answer.
    Unconfirmed(QueueError),
}

/// Sends `session` to the pool, resending while the outcome is unknown: see the module
/// documentation. No try starts, or is waited for, after `deadline` or
/// [`DEDUPLICATION_SAFE_WINDOW`] past the first.
pub async fn send_to_pool<Q: PoolQueue>(
    queue: &Q,
    session: &PooledSession,
    retry: &SendRetry,
    deadline: Instant,
    log_key: &LogKey,
) -> Sent {
    let first_try = Instant::now();
    let last_start = deadline.min(first_try + DEDUPLICATION_SAFE_WINDOW);
    let mut may_have_landed = false;
    let mut tries = 0;
    loop {
        tries += 1;
        // Abandoned before the window closes, too: a resend SQS took after five minutes would
        // deliver the session again, perhaps after a claimer handed the first copy out.
        let left = last_start.saturating_duration_since(Instant::now());
        let error = match within(left, queue.enqueue(session)).await {
            Some(Ok(())) => return Sent::Confirmed,
            Some(Err(error)) => error,
            None => QueueError::new("enqueue", QueueErrorKind::Transport, "no answer before the deadline"),
        };
        may_have_landed |= error.kind == QueueErrorKind::Transport;
        let pause = retry.backoff.pause(tries - 1);
        if !error.is_retryable() || tries >= retry.max_tries || Instant::now() + pause >= last_start {
            return if may_have_landed {
                Sent::Unconfirmed(error)
            } else {
                Sent::Refused(error)
            };
        }
        info!(
            session = %session.session_id.log_id(log_key),
            error = %error,
            tries,
            pause_ms = millis(pause),
            "pool send failed; resending with the same deduplication ID"
        );
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::MemoryPool;
    use crate::session::SessionId;

    const FAST: SendRetry = SendRetry {
        max_tries: 4,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
        },
    };

    async fn send(pool: &MemoryPool, deadline: Duration) -> Sent {
        let session = PooledSession::new(SessionId::generate(), 1, 1);
        send_to_pool(pool, &session, &FAST, Instant::now() + deadline, &LogKey::development()).await
    }

    #[tokio::test]
    async fn a_lost_answer_is_resent_and_the_message_lands_once() {
        let pool = MemoryPool::default();
        pool.lose_next_enqueue_answers(2);
        assert!(matches!(send(&pool, Duration::from_secs(5)).await, Sent::Confirmed));
        assert_eq!((pool.send_attempts(), pool.len()), (3, 1));
    }

    #[tokio::test]
    async fn a_refusal_is_final_and_reported_as_nothing_landed() {
        let pool = MemoryPool::default();
        pool.refuse_next_enqueues(1);
        assert!(matches!(send(&pool, Duration::from_secs(5)).await, Sent::Refused(_)));
        assert_eq!((pool.send_attempts(), pool.len()), (1, 0));
    }

    #[tokio::test]
    async fn a_refusal_after_a_try_that_may_have_landed_is_unconfirmed_not_refused() {
        let pool = MemoryPool::default();
        // The first try fails in transport (for all the sender knows, it landed); the resend
        // is refused.
        pool.fail_next_enqueues(1);
        pool.refuse_next_enqueues(1);
        assert!(matches!(
            send(&pool, Duration::from_secs(5)).await,
            Sent::Unconfirmed(_)
        ));
        assert_eq!(pool.send_attempts(), 2);
    }

    #[tokio::test]
    async fn resends_are_bounded_in_count_and_by_the_deadline() {
        let pool = MemoryPool::default();
        pool.lose_next_enqueue_answers(1_000);
        assert!(matches!(
            send(&pool, Duration::from_secs(5)).await,
            Sent::Unconfirmed(_)
        ));
        assert_eq!((pool.send_attempts(), pool.len()), (4, 1));

        let pool = MemoryPool::default();
        pool.fail_next_enqueues(1_000);
        assert!(matches!(send(&pool, Duration::ZERO).await, Sent::Unconfirmed(_)));
        assert!(pool.send_attempts() <= 1);
    }
}
