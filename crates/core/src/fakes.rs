//! In-memory fakes of the ports that really behave (hidden messages, receipts, scripted
//! failures), for fast tests of decisions. Wire-level tests use the real adapters.

use crate::clock::{Clock, ManualClock, millis};
use crate::error::{AgentError, AgentErrorKind, QueueError, QueueErrorKind, TriggerError};
use crate::ports::{AgentRuntime, PoolDepth, PoolMaintenance, PoolQueue, Received, ReplenishTrigger};
use crate::session::{PooledSession, SessionId};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A FIFO pool queue that honours visibility timeouts on its clock: a received message is
/// hidden until it is deleted, released, or its visibility ends; a receipt is valid only while
/// its message is hidden under it. Messages come out oldest first, and a released message keeps
/// its place, as on SQS FIFO with one message group per session.
///
/// `MemoryPool::default()` has a clock that never moves, so received messages stay hidden until
/// deleted or released; [`MemoryPool::with_clock`] shares a clock the test moves.
pub struct MemoryPool {
    state: Mutex<PoolState>,
    clock: Arc<dyn Clock>,
    failing_deletes: AtomicU32,
    failing_enqueues: AtomicU32,
    refused_enqueues: AtomicU32,
    unanswered_enqueues: AtomicU32,
    /// Sends seen, landed or not: what the caller tried.
    send_attempts: AtomicU32,
    stale_receipts_accepted: AtomicBool,
}

impl std::fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryPool {
    fn default() -> Self {
        Self::with_clock(Arc::new(ManualClock::at(0)))
    }
}

#[derive(Debug)]
struct Message {
    body: String,
    sent_at: u64,
    /// Visible once the clock reaches this.
    hidden_until: u64,
    /// The issue number of the receipt it is hidden under (`r-<message>-<issue>`).
    issue: Option<u64>,
}

/// How long SQS remembers a deduplication ID.
const DEDUPLICATION_WINDOW_MS: u64 = 5 * 60 * 1_000;

#[derive(Debug, Default)]
struct PoolState {
    /// By send order.
    messages: BTreeMap<u64, Message>,
    /// The same messages split by visibility: visible by send order, hidden by the time
    /// they show again. A receive and a count then cost little even in a pool of thousands.
    visible: BTreeSet<u64>,
    hidden: BTreeSet<(u64, u64)>,
    next_id: u64,
    /// Deduplication ID -> when a send with it was first accepted; entries past the window
    /// are swept out whenever the map has doubled since the last sweep. SQS scopes the ID to
    /// its message group; a pool message's ID names its session, which is its group.
    deduplication: HashMap<String, u64, foldhash::fast::FixedState>,
    deduplication_swept_at_len: usize,
}

impl PoolState {
    fn insert(&mut self, seq: u64, message: Message) {
        self.messages.insert(seq, message);
        self.visible.insert(seq);
    }

    /// Messages whose visibility timeout has passed by `now` are visible again.
    fn restore(&mut self, now: u64) {
        while let Some(&(until, seq)) = self.hidden.first()
            && until <= now
        {
            self.hidden.pop_first();
            self.visible.insert(seq);
        }
    }

    /// The oldest `max` visible messages, now hidden until `until`.
    fn hide_oldest(&mut self, max: usize, now: u64, until: u64) -> Vec<u64> {
        self.restore(now);
        let taken: Vec<u64> = self.visible.iter().take(max).copied().collect();
        for seq in &taken {
            self.set_hidden_until(*seq, until);
        }
        taken
    }

    fn set_hidden_until(&mut self, seq: u64, until: u64) {
        let Some(message) = self.messages.get_mut(&seq) else {
            return;
        };
        self.hidden.remove(&(message.hidden_until, seq));
        self.visible.remove(&seq);
        message.hidden_until = until;
        self.hidden.insert((until, seq));
    }

    fn remove(&mut self, seq: u64) {
        if let Some(message) = self.messages.remove(&seq) {
            self.hidden.remove(&(message.hidden_until, seq));
        }
        self.visible.remove(&seq);
    }

    fn in_flight(&mut self, now: u64) -> usize {
        self.restore(now);
        self.hidden.len()
    }

    /// The message a receipt still holds, if any.
    fn held(&self, receipt: &str, now: u64) -> Option<u64> {
        let (seq, issue) = self.issued(receipt)?;
        let message = self.messages.get(&seq)?;
        (message.issue == Some(issue) && message.hidden_until > now).then_some(seq)
    }

    /// A receipt reads `r-<message>-<issue>`: the message it was issued for, if this pool
    /// issued it.
    fn issued(&self, receipt: &str) -> Option<(u64, u64)> {
        let (seq, issue) = receipt.strip_prefix("r-")?.split_once('-')?;
        let (seq, issue) = (seq.parse().ok()?, issue.parse().ok()?);
        (issue <= self.next_id).then_some((seq, issue))
    }

    /// Whether a send with `key` is a duplicate at `now`; if not, it is remembered from now.
    fn duplicate(&mut self, key: String, now: u64) -> bool {
        let live = |first: &u64| now.saturating_sub(*first) < DEDUPLICATION_WINDOW_MS;
        if self.deduplication.get(&key).is_some_and(live) {
            return true;
        }
        self.deduplication.insert(key, now);
        if self.deduplication.len() > 2 * self.deduplication_swept_at_len.max(512) {
            self.deduplication.retain(|_, first| live(first));
            self.deduplication_swept_at_len = self.deduplication.len();
        }
        false
    }
}

impl MemoryPool {
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(PoolState::default()),
            clock,
            failing_deletes: AtomicU32::new(0),
            failing_enqueues: AtomicU32::new(0),
            refused_enqueues: AtomicU32::new(0),
            unanswered_enqueues: AtomicU32::new(0),
            send_attempts: AtomicU32::new(0),
            stale_receipts_accepted: AtomicBool::new(false),
        }
    }

    pub fn push(&self, session: &PooledSession) {
        self.push_owned(session.to_body());
    }

    pub fn push_raw(&self, body: &str) {
        self.push_owned(body.to_string());
    }

    fn push_owned(&self, body: String) {
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let seq = state.next_id;
        state.insert(
            seq,
            Message {
                body,
                sent_at: now,
                hidden_until: 0,
                issue: None,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pooled session, visible or hidden, oldest first.
    pub fn sessions(&self) -> Vec<PooledSession> {
        let state = self.state.lock().unwrap();
        state
            .messages
            .values()
            .filter_map(|m| PooledSession::parse(&m.body).ok())
            .collect()
    }

    /// Messages hidden right now.
    pub fn hidden(&self) -> usize {
        let now = self.clock.now_ms();
        self.state.lock().unwrap().in_flight(now)
    }

    pub fn fail_next_deletes(&self, n: u32) {
        self.failing_deletes.store(n, Ordering::SeqCst);
    }

    /// From now on a delete with any receipt this pool ever issued succeeds, even after the
    /// message's visibility ended or it was received again under another receipt: what moto
    /// does (real SQS FIFO refuses such a handle). A claimer must not rely on the refusal.
    pub fn accept_stale_receipts(&self) {
        self.stale_receipts_accepted.store(true, Ordering::SeqCst);
    }

    /// The next `n` sends fail with a transport error before they reach the queue.
    pub fn fail_next_enqueues(&self, n: u32) {
        self.failing_enqueues.store(n, Ordering::SeqCst);
    }

    /// The next `n` sends are refused for good (a 4xx): nothing lands.
    pub fn refuse_next_enqueues(&self, n: u32) {
        self.refused_enqueues.store(n, Ordering::SeqCst);
    }

    /// The next `n` sends land (deduplication applies) and then lose their answer: the caller
    /// sees a transport error.
    pub fn lose_next_enqueue_answers(&self, n: u32) {
        self.unanswered_enqueues.store(n, Ordering::SeqCst);
    }

    /// Every send the pool saw, including failed and deduplicated ones.
    pub fn send_attempts(&self) -> u32 {
        self.send_attempts.load(Ordering::SeqCst)
    }

    /// A send as SQS FIFO takes it: a deduplication ID accepted in the last five minutes in the
    /// same group is acknowledged without delivering a second message.
    fn accept(&self, session: &PooledSession) {
        let now = self.clock.now_ms();
        let key = session.deduplication_id();
        if self.state.lock().unwrap().duplicate(key, now) {
            return;
        }
        self.push(session);
    }
}

/// `m-<message>` for a message ID, `r-<message>-<issue>` for a receipt.
fn numbered(prefix: &str, seq: u64, issue: Option<u64>) -> String {
    let mut text = String::with_capacity(prefix.len() + 41);
    text.push_str(prefix);
    crate::num::push_decimal(&mut text, seq);
    if let Some(issue) = issue {
        text.push('-');
        crate::num::push_decimal(&mut text, issue);
    }
    text
}

fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl PoolQueue for MemoryPool {
    async fn receive(&self, max: u8, _wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let now = self.clock.now_ms();
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let taken = state.hide_oldest(usize::from(max), now, now.saturating_add(millis(visibility)));
        let mut out = Vec::with_capacity(taken.len());
        for seq in taken {
            state.next_id += 1;
            let issue = state.next_id;
            let Some(message) = state.messages.get_mut(&seq) else {
                continue;
            };
            message.issue = Some(issue);
            out.push(Received {
                message_id: numbered("m-", seq, None),
                receipt: numbered("r-", seq, Some(issue)),
                body: message.body.clone(),
            });
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap();
        if take_failure(&self.failing_deletes) {
            // Our visibility ran out and another consumer received the message: it is in
            // flight under a receipt that is not ours.
            if let Some(seq) = state.held(receipt, now) {
                state.next_id += 1;
                let other = state.next_id;
                if let Some(message) = state.messages.get_mut(&seq) {
                    message.issue = Some(other);
                }
            }
            return Err(QueueError::new(
                "delete",
                QueueErrorKind::ReceiptInvalid,
                "receipt handle is invalid",
            ));
        }
        let stale_accepted = self.stale_receipts_accepted.load(Ordering::SeqCst);
        let held = state.held(receipt, now).or_else(|| {
            stale_accepted
                .then(|| state.issued(receipt).map(|(seq, _)| seq))
                .flatten()
        });
        match held {
            Some(seq) => {
                state.remove(seq);
                Ok(())
            }
            None => Err(QueueError::new(
                "delete",
                QueueErrorKind::ReceiptInvalid,
                "unknown or expired receipt handle",
            )),
        }
    }

    async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
        self.send_attempts.fetch_add(1, Ordering::SeqCst);
        if take_failure(&self.failing_enqueues) {
            return Err(QueueError::new(
                "enqueue",
                QueueErrorKind::Transport,
                "injected enqueue failure",
            ));
        }
        if take_failure(&self.refused_enqueues) {
            return Err(QueueError::new(
                "enqueue",
                QueueErrorKind::Rejected,
                "injected refusal: AccessDenied",
            ));
        }
        self.accept(session);
        if take_failure(&self.unanswered_enqueues) {
            return Err(QueueError::new(
                "enqueue",
                QueueErrorKind::Transport,
                "injected lost answer: the send landed",
            ));
        }
        Ok(())
    }

    async fn depth(&self) -> Result<PoolDepth, QueueError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap();
        let in_flight = state.in_flight(now) as u64;
        Ok(PoolDepth {
            visible: state.messages.len() as u64 - in_flight,
            in_flight,
        })
    }
}

impl PoolMaintenance for MemoryPool {
    async fn release(&self, receipts: &[String]) -> Result<u32, QueueError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap();
        let mut not_ours = 0;
        for receipt in receipts {
            match state.held(receipt, now) {
                Some(seq) => state.set_hidden_until(seq, now),
                None => not_ours += 1,
            }
        }
        Ok(not_ours)
    }

    async fn oldest_sent_at(&self, max: u8) -> Result<Option<u64>, QueueError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock().unwrap();
        state.restore(now);
        Ok(state
            .visible
            .iter()
            .take(usize::from(max))
            .filter_map(|seq| state.messages.get(seq).map(|m| m.sent_at))
            .min())
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
    stop_script: Mutex<VecDeque<AgentErrorKind>>,
    invocations: Mutex<Vec<(SessionId, Vec<u8>)>>,
    stopped: Mutex<Vec<SessionId>>,
    stop_calls: Mutex<Vec<(SessionId, String)>>,
}

impl ScriptedAgent {
    /// The next invocations fail with these kinds, in order.
    pub fn fail_with(&self, kinds: impl IntoIterator<Item = AgentErrorKind>) {
        self.script.lock().unwrap().extend(kinds);
    }

    /// The next StopRuntimeSession calls fail with these kinds, in order (`NotFound`: the
    /// session had ended already).
    pub fn fail_stops_with(&self, kinds: impl IntoIterator<Item = AgentErrorKind>) {
        self.stop_script.lock().unwrap().extend(kinds);
    }

    pub fn invocations(&self) -> Vec<(SessionId, Vec<u8>)> {
        self.invocations.lock().unwrap().clone()
    }

    /// Sessions whose stop succeeded, in order.
    pub fn stopped(&self) -> Vec<SessionId> {
        self.stopped.lock().unwrap().clone()
    }

    /// Every stop call, failed ones included, with its client token.
    pub fn stop_calls(&self) -> Vec<(SessionId, String)> {
        self.stop_calls.lock().unwrap().clone()
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
        self.stop_with_token(session_id, &uuid::Uuid::new_v4().to_string())
            .await
    }

    async fn stop_with_token(&self, session_id: &SessionId, client_token: &str) -> Result<(), AgentError> {
        self.stop_calls
            .lock()
            .unwrap()
            .push((session_id.clone(), client_token.to_string()));
        if let Some(kind) = self.stop_script.lock().unwrap().pop_front() {
            return Err(AgentError::new("stop", kind, "scripted stop failure"));
        }
        self.stopped.lock().unwrap().push(session_id.clone());
        Ok(())
    }
}

/// A control plane whose endpoint serves what the test set; unset, every read fails as a
/// transport error would.
#[derive(Debug, Default)]
pub struct SettableVersion(Mutex<Option<crate::session::AgentVersion>>);

impl SettableVersion {
    pub fn set(&self, version: Option<crate::session::AgentVersion>) {
        *self.0.lock().unwrap() = version;
    }
}

impl crate::pool::version::VersionSource for SettableVersion {
    async fn live_version(&self) -> Result<crate::session::AgentVersion, crate::error::VersionError> {
        self.0.lock().unwrap().clone().ok_or_else(|| {
            crate::error::VersionError::new(crate::error::VersionErrorKind::Transport, "control plane unreachable")
        })
    }
}

/// Log lines written while the guard lives on this thread (a current-thread runtime keeps a
/// test's tasks on it), for tests that check what reaches the logs.
///
/// One process-wide subscriber routes each line to the capture of the thread that wrote it. A
/// per-thread subscriber (`set_default`) is not enough: tracing caches each call site's interest
/// globally, and a test on another thread that reaches a call site first, with no subscriber,
/// can leave it switched off for everyone (seen as a flaky capture in CI).
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

/// Ends a capture on drop.
#[derive(Debug)]
pub struct CaptureGuard(());

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<CapturedLogs>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the capture of the current thread, or nowhere.
#[derive(Debug, Clone, Copy)]
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(logs) = capture.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn start() -> (Self, CaptureGuard) {
        static ROUTER: std::sync::Once = std::sync::Once::new();
        ROUTER.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadCapture)
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in tests");
        });
        let logs = Self::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| *capture.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    const VISIBILITY: Duration = Duration::from_secs(30);

    fn pool_at(clock: &ManualClock) -> MemoryPool {
        MemoryPool::with_clock(Arc::new(clock.clone()))
    }

    fn depth(pool: &MemoryPool) -> (u64, u64) {
        let depth = pool.depth().now_or_never().unwrap().unwrap();
        (depth.visible, depth.in_flight)
    }

    #[test]
    fn a_repeated_deduplication_id_is_dropped_for_five_minutes_even_among_thousands() {
        let clock = ManualClock::at(0);
        let pool = pool_at(&clock);
        let repeated = PooledSession::new(SessionId::generate(), 0, 0);
        pool.enqueue(&repeated).now_or_never().unwrap().unwrap();
        for i in 0..2_000 {
            clock.set(i * 100);
            let other = PooledSession::new(SessionId::generate(), 0, 0);
            pool.enqueue(&other).now_or_never().unwrap().unwrap();
            pool.enqueue(&repeated).now_or_never().unwrap().unwrap();
        }
        assert_eq!(pool.len(), 2_001, "within the window the repeat lands once");
        clock.set(DEDUPLICATION_WINDOW_MS);
        pool.enqueue(&repeated).now_or_never().unwrap().unwrap();
        assert_eq!(pool.len(), 2_002, "after the window it lands again");
    }

    #[test]
    fn received_messages_are_hidden_until_deleted_released_or_their_visibility_ends() {
        let clock = ManualClock::at(1_000);
        let pool = pool_at(&clock);
        for _ in 0..3 {
            pool.push(&PooledSession::new(SessionId::generate(), 0, 0));
        }
        let received = pool
            .receive(2, Duration::ZERO, VISIBILITY)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(depth(&pool), (1, 2));
        pool.delete(&received[0].receipt).now_or_never().unwrap().unwrap();
        assert_eq!(depth(&pool), (1, 1));
        pool.release(&[received[1].receipt.clone()])
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(depth(&pool), (2, 0));
        let again = pool
            .receive(10, Duration::ZERO, VISIBILITY)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].message_id, received[1].message_id, "oldest first");
        clock.set(1_000 + 30_000);
        assert_eq!(depth(&pool), (2, 0));
        assert!(
            pool.delete(&again[0].receipt).now_or_never().unwrap().is_err(),
            "an expired receipt"
        );
    }
}
