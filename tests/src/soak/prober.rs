//! The hostile caller of the batch soak: sessions claimed the documented way (get-session,
//! from the user pool, which batches never use), each invoked with a batch payload naming an
//! open batch's current attempt. The agent must refuse every one; whatever such a session
//! writes is foreign.

use crate::batch_stack::BatchStack;
use crate::{agent_runtime, create_pool_queue, fill_through_replenish, replenish_behind_relay};
use get_session::GetSession;
use serde_json::json;
use std::time::Duration;
use warmpool_core::aws::{AgentCoreRuntime, SqsPoolQueue};
use warmpool_core::batch::BatchRow;
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;

/// Bounds one probe: a late answer may hold it past the invoker's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    pub probes: u64,
    /// The agent (or AgentCore) refused the invocation.
    pub refused: u64,
    /// The invocation was answered with success: the agent took a batch it does not own.
    pub accepted: u64,
}

pub struct Prober {
    pub sessions: Vec<SessionId>,
    runtime: AgentCoreRuntime,
    pub counts: ProbeCounts,
    _relay: warmpool_local_stack::relay::RunningRelay,
}

impl Prober {
    /// Claims `count` sessions through get-session from a user pool of their own, filled by
    /// its own replenish on the stack's emulator.
    pub async fn claim(stack: &BatchStack, count: u32) -> Prober {
        let queue = SqsPoolQueue::new(stack.sqs.clone(), create_pool_queue(&stack.sqs, "user-pool").await);
        let (relay, lambda) = replenish_behind_relay(queue.clone(), &stack.emulator).await;
        fill_through_replenish(&lambda, count).await;
        let env = Env::from_pairs([
            ("POOL_QUEUE_URL", queue.queue_url()),
            ("REPLENISH_FUNCTION_NAME", "replenish"),
            ("FRESH_FALLBACK", "true"),
        ]);
        let config = get_session::Config::from_env(&env).expect("get-session config");
        let function = GetSession::new(&config, queue, RecordingTrigger::default(), SystemClock);
        let mut sessions = Vec::new();
        for _ in 0..count {
            let event = lambda_runtime::LambdaEvent::new(json!({}), lambda_runtime::Context::default());
            if let Ok(claimed) = function.handle(event).await {
                sessions.push(claimed.session_id);
            }
        }
        Prober {
            sessions,
            runtime: agent_runtime(&stack.emulator),
            counts: ProbeCounts::default(),
            _relay: relay,
        }
    }

    /// Invokes one of the prober's sessions with `row`'s current attempt, as the invoker would
    /// send it (`documents` and `deadline` included).
    pub async fn probe(&mut self, row: &BatchRow, pick: usize) {
        let Some(session) = self.sessions.get(pick % self.sessions.len().max(1)) else {
            return;
        };
        let payload = json!({
            "type": "batch",
            "v": 1,
            "batchId": row.batch_id,
            "attempt": row.attempt,
            "documents": row.documents.iter().map(|d| d.object.to_string()).collect::<Vec<_>>(),
            "deadline": row.deadline,
        });
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        self.counts.probes += 1;
        match tokio::time::timeout(PROBE_TIMEOUT, self.runtime.invoke(session, &bytes)).await {
            Ok(Ok(_)) => self.counts.accepted += 1,
            Ok(Err(_)) | Err(_) => self.counts.refused += 1,
        }
    }
}
