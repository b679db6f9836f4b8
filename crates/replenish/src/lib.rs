//! replenish: warms new sessions into the pool.
//!
//! Two triggers:
//! - `{"count": n}` (async, from get-session): warm exactly n sessions, one per pool message a
//!   claim consumed, so a burst of triggers can never overshoot the target;
//! - an EventBridge scheduled event: top the pool up to its target within the per-run
//!   creation budget.

mod config;

pub use config::Config;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;
use warmpool_core::QueueError;
use warmpool_core::clock::Clock;
use warmpool_core::metrics::MetricSet;
use warmpool_core::ports::{AgentRuntime, PoolQueue};
use warmpool_core::warmup::{WarmupReport, warm_new_sessions};

pub const FUNCTION: &str = "replenish";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Refill { count: u32 },
    Scheduled,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefillRequest {
    count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplenishError {
    #[error("invalid event: {0}")]
    Validation(String),
    #[error("pool queue unavailable: {0}")]
    PoolUnavailable(#[source] QueueError),
}

impl ReplenishError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Validation(_) => false,
            Self::PoolUnavailable(e) => e.is_retryable(),
        }
    }
}

impl From<ReplenishError> for Diagnostic {
    fn from(error: ReplenishError) -> Self {
        let error_type = match error {
            ReplenishError::Validation(_) => "ValidationError",
            ReplenishError::PoolUnavailable(_) => "PoolUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What a run did: returned to synchronous callers and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub requested: u32,
    pub enqueued: u32,
    pub failed: u32,
    pub throttles: u32,
    pub enqueue_failures: u32,
}

impl From<&WarmupReport> for RunReport {
    fn from(r: &WarmupReport) -> Self {
        Self {
            requested: r.requested,
            enqueued: r.enqueued,
            failed: r.failed,
            throttles: r.throttles,
            enqueue_failures: r.enqueue_failures,
        }
    }
}

impl Config {
    pub fn parse_trigger(&self, payload: &Value) -> Result<Trigger, ReplenishError> {
        let is_schedule = payload.get("source").and_then(Value::as_str) == Some("aws.events")
            && payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
        if is_schedule {
            return Ok(Trigger::Scheduled);
        }
        let request: RefillRequest = serde_json::from_value(payload.clone())
            .map_err(|e| ReplenishError::Validation(format!("expected {{\"count\": n}} or a scheduled event: {e}")))?;
        if request.count == 0 || request.count > self.max_count_per_trigger {
            return Err(ReplenishError::Validation(format!(
                "count must be 1..={}, got {}",
                self.max_count_per_trigger, request.count
            )));
        }
        Ok(Trigger::Refill { count: request.count })
    }
}

pub struct Replenish<A, Q, C> {
    config: Config,
    agent: A,
    queue: Q,
    clock: C,
}

impl<A: AgentRuntime, Q: PoolQueue, C: Clock> Replenish<A, Q, C> {
    pub fn new(config: Config, agent: A, queue: Q, clock: C) -> Self {
        Self {
            config,
            agent,
            queue,
            clock,
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<RunReport, ReplenishError> {
        let trigger = self.config.parse_trigger(&event.payload)?;
        let deadline = self.deadline(event.context.deadline);
        let count = match trigger {
            Trigger::Refill { count } => count,
            Trigger::Scheduled => self.deficit().await?,
        };
        // Failed warmups are reported, not raised: Lambda would retry the whole event, and
        // re-warming the sessions that did succeed would overshoot the target.
        let report = warm_new_sessions(
            count,
            &self.agent,
            &self.queue,
            &self.clock,
            &self.config.warmup,
            deadline,
        )
        .await;
        MetricSet::new(FUNCTION)
            .count("WarmupsRequested", report.requested)
            .count("WarmupsEnqueued", report.enqueued)
            .count("WarmupFailures", report.failed)
            .count("WarmupThrottles", report.throttles)
            .count("EnqueueFailures", report.enqueue_failures)
            .millis_each("WarmupLatency", report.latencies_ms.iter().copied())
            .emit(self.clock.now_ms());
        let run = RunReport::from(&report);
        info!(trigger = ?trigger, requested = run.requested, enqueued = run.enqueued, failed = run.failed, throttles = run.throttles, "replenish run done");
        Ok(run)
    }

    async fn deficit(&self) -> Result<u32, ReplenishError> {
        let depth = self.queue.depth().await.map_err(ReplenishError::PoolUnavailable)?;
        let missing = u64::from(self.config.target).saturating_sub(depth.total());
        Ok(missing.min(u64::from(self.config.max_creations_per_run)) as u32)
    }

    /// Retries end this long before Lambda's deadline, so the run reports instead of timing out.
    fn deadline(&self, lambda_deadline_ms: u64) -> Instant {
        let now_ms = self.clock.now_ms();
        let remaining = if lambda_deadline_ms > now_ms {
            Duration::from_millis(lambda_deadline_ms - now_ms).saturating_sub(self.config.deadline_margin)
        } else {
            // No deadline known (local runs): the configured fallback budget.
            self.config.fallback_budget
        };
        Instant::now() + remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::clock::SystemClock;
    use warmpool_core::config::Env;
    use warmpool_core::error::AgentErrorKind;
    use warmpool_core::fakes::{MemoryPool, ScriptedAgent};
    use warmpool_core::session::{PooledSession, SessionId};

    fn function(target: &str) -> Replenish<ScriptedAgent, MemoryPool, SystemClock> {
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", "q"),
            (
                "AGENT_RUNTIME_ARN",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent-1",
            ),
            ("POOL_TARGET", target),
            ("WARMUP_BACKOFF_BASE_MS", "1"),
        ]);
        Replenish::new(
            Config::from_env(&env).unwrap(),
            ScriptedAgent::default(),
            MemoryPool::default(),
            SystemClock,
        )
    }

    fn event(raw: &str) -> LambdaEvent<Value> {
        LambdaEvent::new(serde_json::from_str(raw).unwrap(), Default::default())
    }

    #[tokio::test]
    async fn a_count_trigger_warms_exactly_that_many_sessions() {
        let f = function("10");
        let report = f
            .handle(event(include_str!("../../../events/replenish-count.json")))
            .await
            .unwrap();
        assert_eq!((report.requested, report.enqueued), (3, 3));
        assert_eq!(f.queue.len(), 3);
    }

    #[tokio::test]
    async fn the_schedule_tops_the_pool_up_to_its_target_counting_what_is_there() {
        let f = function("5");
        f.queue.push(&PooledSession::new(SessionId::generate(), 1, 1));
        f.queue.push(&PooledSession::new(SessionId::generate(), 1, 1));
        let report = f
            .handle(event(include_str!("../../../events/replenish-schedule.json")))
            .await
            .unwrap();
        assert_eq!(report.requested, 3);
        assert_eq!(f.queue.len(), 5);
    }

    #[tokio::test]
    async fn a_full_pool_warms_nothing_on_schedule() {
        let f = function("1");
        f.queue.push(&PooledSession::new(SessionId::generate(), 1, 1));
        let report = f
            .handle(event(include_str!("../../../events/replenish-schedule.json")))
            .await
            .unwrap();
        assert_eq!(report.requested, 0);
        assert!(f.agent.invocations().is_empty());
    }

    #[tokio::test]
    async fn failed_warmups_are_reported_not_raised_and_not_enqueued() {
        let f = function("10");
        f.agent.fail_with([AgentErrorKind::Rejected]);
        let report = f.handle(event(r#"{"count": 2}"#)).await.unwrap();
        assert_eq!((report.enqueued, report.failed), (1, 1));
        assert_eq!(f.queue.len(), 1);
    }

    #[tokio::test]
    async fn malformed_triggers_are_validation_errors() {
        let f = function("10");
        for raw in [
            r#"{"count": 0}"#,
            r#"{"count": 101}"#,
            r#"{"count": -1}"#,
            r#"{"count": 1, "extra": 1}"#,
            r#"{}"#,
            r#""hello""#,
        ] {
            let error = f.handle(event(raw)).await.unwrap_err();
            assert!(matches!(error, ReplenishError::Validation(_)), "{raw}");
        }
        assert!(f.agent.invocations().is_empty());
    }
}
