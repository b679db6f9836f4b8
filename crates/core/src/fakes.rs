//! In-memory fakes of the ports that really behave (hidden messages, receipts, scripted
//! failures), for fast tests of decisions. Wire-level tests use the real adapters.

use crate::error::{AgentError, AgentErrorKind, QueueError, QueueErrorKind, TriggerError};
use crate::ports::{AgentRuntime, PoolDepth, PoolQueue, Received, ReplenishTrigger};
use crate::session::{PooledSession, SessionId};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// A queue whose received messages stay hidden until deleted; receipts are single-use.
#[derive(Debug, Default)]
pub struct MemoryPool {
    state: Mutex<PoolState>,
    failing_deletes: AtomicU32,
    failing_enqueues: AtomicU32,
}

#[derive(Debug, Default)]
struct PoolState {
    visible: VecDeque<(String, String)>,
    in_flight: HashMap<String, (String, String)>,
    next_id: u64,
}

impl MemoryPool {
    pub fn push(&self, session: &PooledSession) {
        self.push_raw(&session.to_body());
    }

    pub fn push_raw(&self, body: &str) {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let id = format!("m-{}", state.next_id);
        state.visible.push_back((id, body.to_string()));
    }

    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.visible.len() + state.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sessions(&self) -> Vec<PooledSession> {
        let state = self.state.lock().unwrap();
        state
            .visible
            .iter()
            .chain(state.in_flight.values())
            .filter_map(|(_, body)| PooledSession::parse(body).ok())
            .collect()
    }

    pub fn fail_next_deletes(&self, n: u32) {
        self.failing_deletes.store(n, Ordering::SeqCst);
    }

    pub fn fail_next_enqueues(&self, n: u32) {
        self.failing_enqueues.store(n, Ordering::SeqCst);
    }
}

fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl PoolQueue for MemoryPool {
    async fn receive(&self, max: u8, _wait: Duration, _visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let mut state = self.state.lock().unwrap();
        let mut out = Vec::new();
        while out.len() < usize::from(max) {
            let Some((id, body)) = state.visible.pop_front() else {
                break;
            };
            state.next_id += 1;
            let receipt = format!("r-{}", state.next_id);
            state.in_flight.insert(receipt.clone(), (id.clone(), body.clone()));
            out.push(Received {
                message_id: id,
                receipt,
                body,
            });
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        if take_failure(&self.failing_deletes) {
            // Our visibility ran out and another consumer received the message: it is in
            // flight under a receipt that is not ours.
            let mut state = self.state.lock().unwrap();
            if let Some(message) = state.in_flight.remove(receipt) {
                state.in_flight.insert(format!("{receipt}-other-consumer"), message);
            }
            return Err(QueueError::new(
                "delete",
                QueueErrorKind::ReceiptInvalid,
                "receipt handle is invalid",
            ));
        }
        let mut state = self.state.lock().unwrap();
        match state.in_flight.remove(receipt) {
            Some(_) => Ok(()),
            None => Err(QueueError::new(
                "delete",
                QueueErrorKind::ReceiptInvalid,
                "unknown receipt handle",
            )),
        }
    }

    async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
        if take_failure(&self.failing_enqueues) {
            return Err(QueueError::new(
                "enqueue",
                QueueErrorKind::Transport,
                "injected enqueue failure",
            ));
        }
        self.push(session);
        Ok(())
    }

    async fn depth(&self) -> Result<PoolDepth, QueueError> {
        let state = self.state.lock().unwrap();
        Ok(PoolDepth {
            visible: state.visible.len() as u64,
            in_flight: state.in_flight.len() as u64,
        })
    }
}

/// Records every replenish request; can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingTrigger {
    requests: Mutex<Vec<u32>>,
    failing: AtomicBool,
}

impl RecordingTrigger {
    pub fn requests(&self) -> Vec<u32> {
        self.requests.lock().unwrap().clone()
    }

    pub fn fail_all(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }
}

impl ReplenishTrigger for RecordingTrigger {
    async fn request(&self, count: u32) -> Result<(), TriggerError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(TriggerError {
                message: "injected trigger failure".into(),
                source: None,
            });
        }
        self.requests.lock().unwrap().push(count);
        Ok(())
    }
}

/// An agent runtime that answers from a script of failures, then succeeds.
#[derive(Debug, Default)]
pub struct ScriptedAgent {
    script: Mutex<VecDeque<AgentErrorKind>>,
    invocations: Mutex<Vec<(SessionId, Vec<u8>)>>,
    stopped: Mutex<Vec<SessionId>>,
}

impl ScriptedAgent {
    /// The next invocations fail with these kinds, in order.
    pub fn fail_with(&self, kinds: impl IntoIterator<Item = AgentErrorKind>) {
        self.script.lock().unwrap().extend(kinds);
    }

    pub fn invocations(&self) -> Vec<(SessionId, Vec<u8>)> {
        self.invocations.lock().unwrap().clone()
    }

    pub fn stopped(&self) -> Vec<SessionId> {
        self.stopped.lock().unwrap().clone()
    }
}

impl AgentRuntime for ScriptedAgent {
    async fn invoke(&self, session_id: &SessionId, payload: &[u8]) -> Result<Vec<u8>, AgentError> {
        self.invocations
            .lock()
            .unwrap()
            .push((session_id.clone(), payload.to_vec()));
        match self.script.lock().unwrap().pop_front() {
            Some(kind) => Err(AgentError::new("invoke", kind, "scripted failure")),
            None => Ok(br#"{"status":"warm"}"#.to_vec()),
        }
    }

    async fn stop(&self, session_id: &SessionId) -> Result<(), AgentError> {
        self.stopped.lock().unwrap().push(session_id.clone());
        Ok(())
    }
}
