//! The agent as a hostile caller would use it: a session claimed through get-session, invoked
//! with a payload naming someone else's batch, attempt or objects. Over HTTP on 127.0.0.1 with
//! in-memory fakes behind the agent that count every read and write.

use document_agent::processor::{Document, DocumentProcessor, DocumentRecord, ProcessError, describe};
use document_agent::{RunOutcome, RunSettings, RunningAgent, Services, serve};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use warmpool_core::batch::fakes::{MemorySink, MemoryStore, MemoryTable};
use warmpool_core::batch::ports::{
    DocumentStore, Due, MessageSink, ObjectHead, StoredObject, TrackingTable, UnreadableRow,
};
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, Change, ObjectRef, PinnedDocument, Transition};
use warmpool_core::error::{QueueError, StoreError, TableError, TableErrorKind};
use warmpool_core::session::SessionId;

use warmpool_core::session::SESSION_HEADER;

/// The tracking table, counting reads and writes, with reads that can be made to fail.
#[derive(Default)]
struct Table {
    inner: MemoryTable,
    reads: AtomicU32,
    writes: AtomicU32,
    failing_reads: AtomicU32,
}

impl TrackingTable for Table {
    async fn get(&self, batch_id: &BatchId) -> Result<Option<BatchRow>, TableError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failing_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(TableError::new("get", TableErrorKind::Throttled, "injected"));
        }
        self.inner.get(batch_id).await
    }
    async fn create(&self, row: &BatchRow) -> Result<(), TableError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create(row).await
    }
    async fn transition(&self, transition: &Transition) -> Result<(), TableError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.transition(transition).await
    }
    async fn overdue(&self, now_ms: u64, limit: usize, first_shard: u32) -> Result<Vec<Due>, TableError> {
        self.inner.overdue(now_ms, limit, first_shard).await
    }
    async fn quarantine(&self, row: &UnreadableRow, reason: &str, at: u64) -> Result<(), TableError> {
        self.inner.quarantine(row, reason, at).await
    }
}

type PutHook = Box<dyn FnOnce() + Send>;

/// The document store, noting every object read and written; `on_put` runs once, right after
/// the next write landed.
#[derive(Default)]
struct Store {
    inner: MemoryStore,
    reads: Mutex<Vec<ObjectRef>>,
    writes: Mutex<Vec<ObjectRef>>,
    on_put: Mutex<Option<PutHook>>,
}

impl DocumentStore for Store {
    async fn get(&self, object: &ObjectRef, max_bytes: u64) -> Result<StoredObject, StoreError> {
        self.reads.lock().unwrap().push(object.clone());
        self.inner.get(object, max_bytes).await
    }
    async fn head(&self, object: &ObjectRef) -> Result<ObjectHead, StoreError> {
        self.inner.head(object).await
    }
    async fn get_pinned(&self, document: &PinnedDocument, max_bytes: u64) -> Result<StoredObject, StoreError> {
        self.reads.lock().unwrap().push(document.object.clone());
        self.inner.get_pinned(document, max_bytes).await
    }
    async fn put(&self, object: &ObjectRef, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.writes.lock().unwrap().push(object.clone());
        self.inner.put(object, bytes, content_type).await?;
        let hook = self.on_put.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        Ok(())
    }
}

/// The results queue; `on_send` runs once, right before the next notice lands.
#[derive(Default)]
struct Sink {
    inner: MemorySink,
    on_send: Mutex<Option<PutHook>>,
}

impl MessageSink for Sink {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        let hook = self.on_send.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.send(body, delay).await
    }
}

/// The reference processor behind a gate, or failing every document with `error`.
#[derive(Clone)]
struct Processor {
    gate: Arc<Semaphore>,
    error: Option<String>,
}

impl DocumentProcessor for Processor {
    async fn process(&self, document: Document) -> Result<DocumentRecord, ProcessError> {
        let _permit = self.gate.acquire().await.map_err(|e| ProcessError {
            location: document.location.clone(),
            reason: e.to_string(),
        })?;
        match &self.error {
            Some(reason) => Err(ProcessError {
                location: document.location,
                reason: reason.clone(),
            }),
            None => Ok(describe(&document)),
        }
    }
}

struct World {
    agent: RunningAgent,
    table: Arc<Table>,
    store: Arc<Store>,
    results: Arc<Sink>,
    gate: Arc<Semaphore>,
    http: reqwest::Client,
}

async fn world_with(gate_open: bool, error: Option<String>) -> World {
    let table = Arc::new(Table::default());
    let store = Arc::new(Store::default());
    let results = Arc::new(Sink::default());
    let gate = Arc::new(Semaphore::new(if gate_open { Semaphore::MAX_PERMITS } else { 0 }));
    let services = Services {
        table: table.clone(),
        store: store.clone(),
        results: results.clone(),
        processor: Processor {
            gate: gate.clone(),
            error,
        },
        results_bucket: "docs".into(),
        results_prefix: "results/".into(),
        settings: RunSettings::default(),
    };
    let agent = serve(SocketAddr::from(([127, 0, 0, 1], 0)), services, true)
        .await
        .unwrap();
    World {
        agent,
        table,
        store,
        results,
        gate,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

async fn world(gate_open: bool) -> World {
    world_with(gate_open, None).await
}

fn location(batch: &str, name: &str) -> ObjectRef {
    ObjectRef::new("docs", format!("incoming/{batch}/{name}"))
}

fn payload(batch: &str, attempt: u32, documents: &[ObjectRef]) -> Value {
    json!({"type":"batch","v":1,"batchId":batch,"attempt":attempt,
        "documents":documents.iter().map(ToString::to_string).collect::<Vec<_>>(),"deadline":u64::MAX / 2})
}

impl World {
    /// A RUNNING row for attempt 1 of `batch` on a new session, its documents in the store.
    fn running(&self, batch: &str, documents: &[(&str, &[u8])]) -> BatchRow {
        let locations: Vec<ObjectRef> = documents
            .iter()
            .map(|(name, bytes)| {
                let object = location(batch, name);
                self.store.inner.insert(object.clone(), bytes.to_vec(), None);
                object
            })
            .collect();
        let row = BatchRow::new_running(
            BatchId::parse(batch).unwrap(),
            locations,
            3,
            SessionId::generate(),
            1,
            u64::MAX / 2,
        );
        self.table.inner.insert(row.clone());
        row
    }

    async fn invoke(&self, session: &SessionId, payload: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/invocations", self.agent.url()))
            .header(SESSION_HEADER, session.as_str())
            .json(payload)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn until_finished(&self, runs: usize) {
        for _ in 0..500 {
            if self.agent.runs().len() >= runs {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{runs} runs did not finish: {:?}", self.agent.runs());
    }

    fn reads(&self) -> Vec<ObjectRef> {
        self.store.reads.lock().unwrap().clone()
    }

    fn writes(&self) -> Vec<ObjectRef> {
        self.store.writes.lock().unwrap().clone()
    }

    /// Nothing was read or written in S3, nothing sent, nothing written to the table.
    fn assert_untouched(&self) {
        assert_eq!(self.reads(), vec![], "no S3 read");
        assert_eq!(self.writes(), vec![], "no S3 write");
        assert!(self.results.inner.bodies().is_empty(), "no notice");
        assert_eq!(self.table.writes.load(Ordering::SeqCst), 0, "no table write");
        assert!(
            self.agent.running().is_empty() && self.agent.runs().is_empty(),
            "no run"
        );
    }
}

fn assert_refused_as_not_owner(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not own"), "{body}");
}

#[tokio::test]
async fn when_a_session_names_a_batch_the_row_assigns_to_another_session_then_it_is_refused_untouched() {
    let w = world(true).await;
    let victim = w.running("victim", &[("a.txt", b"private")]);
    let hostile = SessionId::generate();

    let (status, body) = w.invoke(&hostile, &payload("victim", 1, &victim.objects())).await;

    assert_refused_as_not_owner(status, &body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.assert_untouched();
    assert_eq!(w.table.inner.row(&victim.batch_id), Some(victim));
}

#[tokio::test]
async fn when_the_owner_names_another_attempt_than_the_rows_then_it_is_refused_untouched() {
    let w = world(true).await;
    let mut row = w.running("case-1", &[("a.txt", b"x")]);
    row.attempt = 2;
    w.table.inner.insert(row.clone());
    let owner = row.session_id.clone().unwrap();

    for attempt in [1, 3] {
        let (status, body) = w.invoke(&owner, &payload("case-1", attempt, &row.objects())).await;
        assert_refused_as_not_owner(status, &body);
    }
    w.assert_untouched();
}

#[tokio::test]
async fn when_the_row_is_missing_pending_or_finished_then_every_session_is_refused_untouched() {
    let w = world(true).await;
    let session = SessionId::generate();
    let (status, body) = w
        .invoke(&session, &payload("nobody", 1, &[location("nobody", "a.txt")]))
        .await;
    assert_refused_as_not_owner(status, &body);
    for status_of_row in [BatchStatus::Pending, BatchStatus::Succeeded, BatchStatus::Failed] {
        let batch = format!("case-{}", status_of_row.as_str().to_lowercase());
        let mut row = w.running(&batch, &[("a.txt", b"x")]);
        row.status = status_of_row;
        w.table.inner.insert(row.clone());
        let owner = row.session_id.clone().unwrap();
        let (status, body) = w.invoke(&owner, &payload(&batch, 1, &row.objects())).await;
        assert_refused_as_not_owner(status, &body);
    }
    w.assert_untouched();
}

#[tokio::test]
async fn when_the_owner_is_handed_another_batchs_objects_then_only_the_rows_documents_are_read() {
    let w = world(true).await;
    w.running("neighbour", &[("secret.txt", b"not yours")]);
    let row = w.running("case-1", &[("a.txt", b"mine")]);
    let owner = row.session_id.clone().unwrap();
    let foreign = vec![location("neighbour", "secret.txt"), location("other", "x.txt")];

    let (status, body) = w.invoke(&owner, &payload("case-1", 1, &foreign)).await;
    assert_eq!(status, 200, "{body}");
    w.until_finished(1).await;

    assert_eq!(w.reads(), row.objects(), "the row's documents, never the payload's");
    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Recorded);
}

#[tokio::test]
async fn when_the_payload_names_only_the_batch_and_attempt_then_the_row_supplies_the_documents() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"one"), ("b.txt", b"two")]);
    let owner = row.session_id.clone().unwrap();

    let (status, body) = w
        .invoke(&owner, &json!({"type":"batch","v":1,"batchId":"case-1","attempt":1}))
        .await;

    assert_eq!((status, &body["status"]), (200, &json!("accepted")), "{body}");
    w.until_finished(1).await;
    assert_eq!(w.reads(), row.objects());
    assert_eq!(w.table.inner.row(&row.batch_id).unwrap().status, BatchStatus::Succeeded);
}

#[tokio::test]
async fn when_the_payload_carries_an_unknown_field_then_it_is_refused_naming_the_field() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let mut bad = payload("case-1", 1, &row.objects());
    bad["resultKey"] = json!("results/other/attempt-1.json");

    let (status, body) = w.invoke(row.session_id.as_ref().unwrap(), &bad).await;

    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("resultKey"), "{body}");
    w.assert_untouched();
}

#[tokio::test]
async fn when_the_ownership_read_fails_then_the_invocation_is_refused_as_retryable_untouched() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    w.table.failing_reads.store(u32::MAX, Ordering::SeqCst);

    let (status, body) = w
        .invoke(row.session_id.as_ref().unwrap(), &payload("case-1", 1, &row.objects()))
        .await;

    assert_eq!(status, 503, "{body}");
    assert!(w.table.reads.load(Ordering::SeqCst) >= 1, "it tried to read the row");
    w.assert_untouched();
}

#[tokio::test]
async fn when_a_refused_invocation_comes_first_then_the_session_can_still_run_its_own_batch() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let owner = row.session_id.clone().unwrap();

    let (status, _) = w.invoke(&owner, &payload("case-1", 2, &row.objects())).await;
    assert_eq!(status, 403);
    let (status, body) = w.invoke(&owner, &payload("case-1", 1, &row.objects())).await;

    assert_eq!(status, 200, "{body}");
    w.until_finished(1).await;
    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Recorded);
}

#[tokio::test]
async fn when_the_attempt_is_taken_away_during_the_work_then_no_result_object_and_no_notice_are_written() {
    let w = world(false).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let owner = row.session_id.clone().unwrap();
    assert_eq!(w.invoke(&owner, &payload("case-1", 1, &row.objects())).await.0, 200);
    let retry = Transition::of_running(
        &row.running_attempt().unwrap(),
        Change::Retry {
            reason: "late".into(),
            start_by: 305_000,
        },
        5,
    );
    w.table.inner.transition(&retry).await.unwrap();

    w.gate.add_permits(Semaphore::MAX_PERMITS);
    w.until_finished(1).await;

    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Superseded);
    assert_eq!(w.writes(), vec![], "no result object for an attempt it no longer owns");
    assert!(w.results.inner.bodies().is_empty(), "no notice");
}

#[tokio::test]
async fn when_the_attempt_is_taken_away_after_the_result_object_landed_then_no_notice_is_sent() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let owner = row.session_id.clone().unwrap();
    let (table, attempt) = (w.table.clone(), row.running_attempt().unwrap());
    *w.store.on_put.lock().unwrap() = Some(Box::new(move || {
        let settled = Transition::of_running(
            &attempt,
            Change::Retry {
                reason: "late".into(),
                start_by: 305_000,
            },
            5,
        );
        let current = table.inner.row(&attempt.batch_id).unwrap();
        table.inner.insert(settled.apply(&current).unwrap());
    }));

    assert_eq!(w.invoke(&owner, &payload("case-1", 1, &row.objects())).await.0, 200);
    w.until_finished(1).await;

    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Superseded);
    assert_eq!(w.writes().len(), 1, "the object landed before the row moved");
    assert!(
        w.results.inner.bodies().is_empty(),
        "but no notice for an attempt it no longer owns"
    );
}

#[tokio::test]
async fn when_the_attempt_is_taken_away_as_the_notice_goes_out_then_the_row_refuses_the_result() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let owner = row.session_id.clone().unwrap();
    let (table, attempt) = (w.table.clone(), row.running_attempt().unwrap());
    *w.results.on_send.lock().unwrap() = Some(Box::new(move || {
        let settled = Transition::of_running(
            &attempt,
            Change::Retry {
                reason: "late".into(),
                start_by: 305_000,
            },
            5,
        );
        let current = table.inner.row(&attempt.batch_id).unwrap();
        table.inner.insert(settled.apply(&current).unwrap());
    }));

    assert_eq!(w.invoke(&owner, &payload("case-1", 1, &row.objects())).await.0, 200);
    w.until_finished(1).await;

    // The one window no check can close: the notice is out, and the row says it does not count.
    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Superseded);
    assert_eq!(w.results.inner.bodies().len(), 1);
    let stored = w.table.inner.row(&row.batch_id).unwrap();
    assert_eq!((stored.status, stored.attempt), (BatchStatus::Pending, 2));
}

#[tokio::test]
async fn when_two_sessions_hold_the_same_attempt_in_turn_then_their_result_objects_differ() {
    let w = world(true).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let first = row.running_attempt().unwrap();
    assert_eq!(
        w.invoke(&first.session_id, &payload("case-1", 1, &row.objects()))
            .await
            .0,
        200
    );
    w.until_finished(1).await;
    // The same attempt handed over to a second session (a release that keeps the attempt).
    let mut again = w.table.inner.row(&row.batch_id).unwrap();
    let second = SessionId::generate();
    again.status = BatchStatus::Running;
    again.session_id = Some(second.clone());
    w.table.inner.insert(again);

    assert_eq!(w.invoke(&second, &payload("case-1", 1, &row.objects())).await.0, 200);
    w.until_finished(2).await;

    let writes = w.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_ne!(writes[0], writes[1], "two sessions never write the same result object");
    for (write, session) in writes.iter().zip([&first.session_id, &second]) {
        assert!(write.key.starts_with("results/case-1/attempt-1/"), "{write}");
        assert!(
            !write.key.contains(session.as_str()),
            "the key does not reveal the session ID"
        );
    }
}

#[tokio::test]
async fn when_the_work_fails_with_a_huge_error_then_last_error_is_bounded_with_a_marker() {
    // Multi-byte characters, so a cut on a byte count would split one.
    let w = world_with(true, Some("é".repeat(100_000))).await;
    let row = w.running("case-1", &[("a.txt", b"x")]);
    let owner = row.session_id.clone().unwrap();

    assert_eq!(w.invoke(&owner, &payload("case-1", 1, &row.objects())).await.0, 200);
    w.until_finished(1).await;

    let last_error = w.table.inner.row(&row.batch_id).unwrap().last_error.unwrap();
    assert!(last_error.len() <= 1_100, "{} bytes", last_error.len());
    assert!(last_error.starts_with("agent gave up attempt 1: "), "{last_error}");
    assert!(last_error.contains("[truncated"), "{last_error}");
    assert!(matches!(&w.agent.runs()[0].outcome, RunOutcome::GaveUp(reason) if reason.len() <= 1_100));
}
