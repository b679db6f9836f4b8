//! Stopping a session for good: StopRuntimeSession retried until the session is gone
//! (invariants 5 and 8 of docs/architecture.md).
//!
//! One StopRuntimeSession call can be throttled, fail with a 5xx, or stop the session and lose
//! its answer. The call is idempotent for one client token, so [`stop_until_gone`] sends the
//! same token on every try and retries throttles, 5xx and lost answers with full-jitter
//! backoff until AgentCore says the session stopped, or that it does not exist (ended by
//! itself, by an earlier try whose answer was lost, or by someone else), or the caller's time
//! budget runs out. A refusal (access denied, validation) is not retried: it would be refused
//! again. A session left running costs memory until its idle timeout, never correctness: it
//! is stopped because nobody will use it again.

use crate::clock::Backoff;
use crate::clock::within;
use crate::error::{AgentError, AgentErrorKind};
use crate::ports::AgentRuntime;
use crate::session::{LogKey, SessionId};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// The budget a run gives one stop when it has time to spare: a throttled stop is retried for
/// about this long.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);

/// The backoff between tries of one stop.
pub const STOP_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(1),
};

#[derive(Debug)]
pub enum StopOutcome {
    Stopped {
        tries: u32,
    },
    /// AgentCore knows no such session (any more): it has ended, which is what was wanted.
    Gone {
        tries: u32,
    },
    /// Refused for good (access denied, validation, a failing agent): not retried.
    Refused(AgentError),
    /// Still throttled, failing or unanswered when the budget ran out.
    GaveUp {
        tries: u32,
        last: AgentError,
    },
}

impl StopOutcome {
    /// Whether the session is known to have ended.
    pub fn ended(&self) -> bool {
        matches!(self, Self::Stopped { .. } | Self::Gone { .. })
    }
}

/// Stops `session_id`, retrying within `budget`: see the module documentation. Every try is
/// bounded by what is left of the budget, so a stop that hangs cannot hold the caller.
pub async fn stop_until_gone<A: AgentRuntime>(
    agent: &A,
    session_id: &SessionId,
    budget: Duration,
    backoff: &Backoff,
    log_key: &LogKey,
) -> StopOutcome {
    // Hashed only if a line below is written: a sweep stops hundreds of sessions quietly.
    let session = session_id.shown(log_key);
    let token = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + budget;
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match within(left, agent.stop_with_token(session_id, &token)).await {
            Some(Ok(())) => return StopOutcome::Stopped { tries },
            Some(Err(error)) if error.kind == AgentErrorKind::NotFound => return StopOutcome::Gone { tries },
            Some(Err(error)) if !error.is_retryable() => {
                warn!(%session, %error, tries, "stop refused; the session will idle out");
                return StopOutcome::Refused(error);
            }
            Some(Err(error)) => error,
            None => AgentError::new("stop", AgentErrorKind::Server, "no answer within the stop's budget"),
        };
        let pause = backoff.pause(tries - 1);
        if Instant::now() + pause >= deadline {
            warn!(%session, error = %error, tries, "stop still failing at the end of its budget; the session will idle out");
            return StopOutcome::GaveUp { tries, last: error };
        }
        info!(%session, error = %error, tries, "stop failed; retrying with the same client token");
        tokio::time::sleep(pause).await;
    }
}

/// [`stop_until_gone`] with [`STOP_BUDGET`], but never past `deadline` (the run's own).
pub async fn stop_before<A: AgentRuntime>(
    agent: &A,
    session_id: &SessionId,
    deadline: Instant,
    log_key: &LogKey,
) -> StopOutcome {
    let budget = STOP_BUDGET.min(deadline.saturating_duration_since(Instant::now()));
    stop_until_gone(agent, session_id, budget, &STOP_BACKOFF, log_key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AgentErrorKind::{NotFound, QuotaExceeded, Rejected, Server, Throttled};
    use crate::fakes::ScriptedAgent;

    const FAST: Backoff = Backoff {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
    };

    async fn stop(agent: &ScriptedAgent, budget: Duration) -> (SessionId, StopOutcome) {
        let id = SessionId::generate();
        let outcome = stop_until_gone(agent, &id, budget, &FAST, &LogKey::development()).await;
        (id, outcome)
    }

    #[tokio::test]
    async fn a_throttled_stop_is_retried_with_one_client_token_until_it_succeeds() {
        let agent = ScriptedAgent::default();
        agent.fail_stops_with([Throttled, QuotaExceeded, Server, Throttled]);
        let (id, outcome) = stop(&agent, Duration::from_secs(5)).await;
        assert!(matches!(outcome, StopOutcome::Stopped { tries: 5 }), "{outcome:?}");
        assert_eq!(agent.stopped(), vec![id]);
        let calls = agent.stop_calls();
        assert!(calls.iter().all(|(_, token)| *token == calls[0].1), "{calls:?}");
    }

    #[tokio::test]
    async fn not_found_means_gone_and_ends_the_retries() {
        let agent = ScriptedAgent::default();
        // The first try stopped the session and lost its answer; the retry finds it gone.
        agent.fail_stops_with([Server, NotFound]);
        let (_, outcome) = stop(&agent, Duration::from_secs(5)).await;
        assert!(matches!(outcome, StopOutcome::Gone { tries: 2 }), "{outcome:?}");
        assert!(outcome.ended());
    }

    #[tokio::test]
    async fn a_retried_stop_logs_the_session_by_its_log_id_only() {
        let (logs, _guard) = crate::fakes::CapturedLogs::start();
        let agent = ScriptedAgent::default();
        agent.fail_stops_with([Throttled, Rejected]);
        let (id, _) = stop(&agent, Duration::from_secs(5)).await;
        let text = logs.text();
        let shown = id.log_id(&LogKey::development()).to_string();
        assert_eq!(text.matches(&shown).count(), 2, "the retry and the refusal: {text}");
        assert!(!text.contains(id.as_str()), "a full session id in the logs: {text}");
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let agent = ScriptedAgent::default();
        agent.fail_stops_with([Rejected]);
        let (_, outcome) = stop(&agent, Duration::from_secs(5)).await;
        assert!(matches!(outcome, StopOutcome::Refused(_)), "{outcome:?}");
        assert_eq!(agent.stop_calls().len(), 1);
    }

    #[tokio::test]
    async fn retries_end_with_the_budget() {
        let agent = ScriptedAgent::default();
        agent.fail_stops_with(std::iter::repeat_n(Throttled, 100_000));
        let started = Instant::now();
        let (_, outcome) = stop(&agent, Duration::from_millis(100)).await;
        assert!(matches!(outcome, StopOutcome::GaveUp { .. }), "{outcome:?}");
        assert!(!outcome.ended());
        assert!(started.elapsed() < Duration::from_millis(150));
        assert!(agent.stop_calls().len() > 3, "it did retry");
    }
}
