//! The agent's container contract over HTTP on 127.0.0.1, with in-memory fakes behind it.

use document_agent::processor::{Document, DocumentProcessor, DocumentRecord, ProcessError, describe};
use document_agent::{RunOutcome, RunSettings, RunningAgent, Services, serve};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use warmpool_core::batch::fakes::{MemoryStore, MemoryTable};
use warmpool_core::batch::message::ResultNotice;
use warmpool_core::batch::ports::{MessageSink, TrackingTable};
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, Change, ObjectRef, Transition};
use warmpool_core::error::QueueError;
use warmpool_core::session::SessionId;

use warmpool_core::session::SESSION_HEADER;

/// The reference processor behind a gate the test opens.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
}

impl DocumentProcessor for Gated {
    async fn process(&self, document: Document) -> Result<DocumentRecord, ProcessError> {
        let _permit = self.gate.acquire().await.map_err(|e| ProcessError {
            location: document.location.clone(),
            reason: e.to_string(),
        })?;
        Ok(describe(&document))
    }
}

/// The results queue, noting the row's status at the moment each notice is sent.
struct ObservingSink {
    table: Arc<MemoryTable>,
    seen: std::sync::Mutex<Vec<(String, Option<BatchStatus>)>>,
}

impl MessageSink for ObservingSink {
    async fn send(&self, body: &str, _delay: Duration) -> Result<(), QueueError> {
        let notice: ResultNotice = serde_json::from_str(body).unwrap();
        let status = self.table.row(&notice.batch_id).map(|r| r.status);
        self.seen.lock().unwrap().push((body.to_string(), status));
        Ok(())
    }
}

struct World {
    agent: RunningAgent,
    table: Arc<MemoryTable>,
    store: Arc<MemoryStore>,
    results: Arc<ObservingSink>,
    gate: Arc<Semaphore>,
    http: reqwest::Client,
}

async fn world(gate_open: bool) -> World {
    let table = Arc::new(MemoryTable::default());
    let store = Arc::new(MemoryStore::default());
    let results = Arc::new(ObservingSink {
        table: table.clone(),
        seen: Default::default(),
    });
    let gate = Arc::new(Semaphore::new(if gate_open { Semaphore::MAX_PERMITS } else { 0 }));
    let services = Services {
        table: table.clone(),
        store: store.clone(),
        results: results.clone(),
        processor: Gated { gate: gate.clone() },
        results_bucket: "results-bucket".into(),
        results_prefix: "results/".into(),
        settings: RunSettings {
            max_document_bytes: 1_000,
            read_concurrency: 2,
        },
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

impl World {
    /// A RUNNING row for `batch` on a new session, with its documents in the store.
    fn batch(&self, batch: &str, documents: &[(&str, &[u8])]) -> (BatchRow, Value) {
        let locations: Vec<ObjectRef> = documents
            .iter()
            .map(|(name, bytes)| {
                let location = ObjectRef::new("docs", format!("incoming/{batch}/{name}"));
                self.store.insert(location.clone(), bytes.to_vec(), None);
                location
            })
            .collect();
        let row = BatchRow::new_running(
            BatchId::parse(batch).unwrap(),
            locations.clone(),
            3,
            SessionId::generate(),
            1,
            u64::MAX / 2,
        );
        self.table.insert(row.clone());
        let payload = json!({"type":"batch","v":1,"batchId":batch,"attempt":1,
            "documents":locations.iter().map(|l| l.to_string()).collect::<Vec<_>>(),"deadline":row.deadline});
        (row, payload)
    }

    async fn invoke(&self, session: Option<&SessionId>, payload: &Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/invocations", self.agent.url()))
            .json(payload);
        if let Some(session) = session {
            request = request.header(SESSION_HEADER, session.as_str());
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// The platform's warmup build hook (V2), as AgentCore calls it: a POST before the snapshot.
    async fn build_hook(&self) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/warmup", self.agent.url()))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn ping(&self) -> Value {
        self.http
            .get(format!("{}/ping", self.agent.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
}

#[tokio::test]
async fn a_warmup_is_answered_at_once_even_without_a_session() {
    let w = world(false).await;
    let (status, body) = w.invoke(None, &json!({"type":"warmup"})).await;
    assert_eq!((status, body), (200, json!({"status":"warm"})));
    assert!(w.agent.running().is_empty());
}

#[tokio::test]
async fn a_batch_runs_in_the_background_publishes_first_then_records_success() {
    let w = world(false).await;
    let (row, payload) = w.batch("case-1", &[("a.txt", b"one two\nthree"), ("b.bin", &[0, 1, 2])]);
    let session = row.session_id.clone().unwrap();

    let (status, body) = w.invoke(Some(&session), &payload).await;
    assert_eq!((status, &body["status"]), (200, &json!("accepted")), "{body}");
    let busy = w.ping().await;
    assert_eq!(busy["status"], "HealthyBusy");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(w.ping().await, busy, "time_of_last_update moves only with the status");

    w.gate.add_permits(Semaphore::MAX_PERMITS);
    w.until_finished(1).await;

    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Recorded);
    assert_eq!(w.ping().await["status"], "Healthy");
    let stored = w.table.row(&row.batch_id).unwrap();
    assert_eq!(stored.status, BatchStatus::Succeeded);
    let seen = w.results.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, Some(BatchStatus::Running), "published before the row moved");
    let notice: ResultNotice = serde_json::from_str(&seen[0].0).unwrap();
    assert_eq!(stored.result_ref, Some(notice.result_ref.to_string()));
    assert_eq!(
        notice.result_ref.to_string(),
        format!(
            "s3://results-bucket/results/case-1/attempt-1/session-{}.json",
            document_agent::run::session_tag(&session)
        )
    );
    let result: Value = serde_json::from_slice(&w.store.object(&notice.result_ref).unwrap().bytes).unwrap();
    assert_eq!(result["sessionId"], session.as_str());
    assert_eq!(
        result["documents"][0]["text"],
        json!({"lines":2,"words":3,"characters":13})
    );
    assert_eq!(result["documents"][1]["text"], Value::Null);
}

#[tokio::test]
async fn a_session_never_runs_a_second_batch() {
    let w = world(true).await;
    let (row, payload) = w.batch("case-1", &[("a.txt", b"x")]);
    let session = row.session_id.clone().unwrap();
    assert_eq!(w.invoke(Some(&session), &payload).await.0, 200);
    let (_, other) = w.batch("case-2", &[("a.txt", b"y")]);
    let (status, body) = w.invoke(Some(&session), &other).await;
    assert_eq!(status, 409, "{body}");
    w.until_finished(1).await;
    assert_eq!(w.agent.runs().len(), 1);
}

#[tokio::test]
async fn an_attempt_settled_by_the_detector_first_is_superseded_and_not_recorded() {
    let w = world(false).await;
    let (row, payload) = w.batch("case-1", &[("a.txt", b"x")]);
    let session = row.session_id.clone().unwrap();
    w.invoke(Some(&session), &payload).await;
    let retry = Transition::of_running(
        &row.running_attempt().unwrap(),
        Change::Retry {
            reason: "late".into(),
            start_by: 305_000,
        },
        5,
    );
    w.table.transition(&retry).await.unwrap();

    w.gate.add_permits(Semaphore::MAX_PERMITS);
    w.until_finished(1).await;

    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Superseded);
    let stored = w.table.row(&row.batch_id).unwrap();
    assert_eq!((stored.status, stored.attempt), (BatchStatus::Pending, 2));
}

#[tokio::test]
async fn a_missing_or_oversized_document_makes_the_agent_give_the_attempt_back_at_once() {
    let w = world(true).await;
    for (name, documents) in [("gone", vec![]), ("huge", vec![("big.txt", vec![b'x'; 2_000])])] {
        let docs: Vec<(&str, &[u8])> = documents.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let (mut row, mut payload) = w.batch(name, &docs);
        if docs.is_empty() {
            payload["documents"] = json!([format!("s3://docs/incoming/{name}/missing.txt")]);
            row.documents = vec![ObjectRef::new("docs", format!("incoming/{name}/missing.txt")).into()];
            // The agent reads the row's list, never the payload's.
            w.table.insert(row.clone());
        }
        w.invoke(row.session_id.as_ref(), &payload).await;
        w.until_finished(if docs.is_empty() { 1 } else { 2 }).await;
        let stored = w.table.row(&row.batch_id).unwrap();
        assert_eq!(stored.status, BatchStatus::Running, "{name}");
        assert!(
            stored.deadline.unwrap() < row.deadline.unwrap(),
            "{name}: deadline moved to now"
        );
        assert!(
            stored.last_error.unwrap().starts_with("agent gave up attempt 1"),
            "{name}"
        );
    }
    assert!(
        w.agent
            .runs()
            .iter()
            .all(|r| matches!(r.outcome, RunOutcome::GaveUp(_)))
    );
    assert!(w.results.seen.lock().unwrap().is_empty(), "nothing published");
}

#[tokio::test]
async fn a_terminated_session_dies_without_finishing_its_batch() {
    let w = world(false).await;
    let (row, payload) = w.batch("case-1", &[("a.txt", b"x")]);
    let session = row.session_id.clone().unwrap();
    w.invoke(Some(&session), &payload).await;

    let answer: Value = w
        .http
        .post(format!("{}/emulator/terminate", w.agent.url()))
        .header(SESSION_HEADER, session.as_str())
        .json(&json!({"reason":"crashed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    w.gate.add_permits(Semaphore::MAX_PERMITS);
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(answer, json!({"aborted": true}));
    assert_eq!(w.agent.runs()[0].outcome, RunOutcome::Aborted);
    assert_eq!(w.table.row(&row.batch_id).unwrap().status, BatchStatus::Running);
    assert!(w.results.seen.lock().unwrap().is_empty());
    assert_eq!(w.ping().await["status"], "Healthy");
}

#[tokio::test]
async fn invocations_without_a_session_or_with_an_unknown_payload_are_refused() {
    let w = world(true).await;
    let (_, payload) = w.batch("case-1", &[("a.txt", b"x")]);
    assert_eq!(w.invoke(None, &payload).await.0, 400);
    let session = SessionId::generate();
    for bad in [json!({"type":"summarise"}), json!({"prompt":"hi"}), json!([1])] {
        let (status, body) = w.invoke(Some(&session), &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
    assert!(w.agent.runs().is_empty());
}

#[tokio::test]
async fn when_the_platform_calls_the_warmup_build_hook_then_it_answers_ready_and_starts_nothing() {
    let w = world(true).await;
    let (status, body) = w.build_hook().await;
    assert_eq!((status, body), (200, json!({"status":"ready"})));
    assert!(w.agent.running().is_empty() && w.agent.runs().is_empty());
    assert_eq!(w.ping().await["status"], "Healthy");
    // Called twice (a retried build), it answers the same.
    assert_eq!(w.build_hook().await.0, 200);
}

#[tokio::test]
async fn when_the_build_hook_comes_after_a_session_was_served_then_it_is_refused_and_changes_nothing() {
    let w = world(false).await;
    let (row, payload) = w.batch("case-hook", &[("a.txt", b"one")]);
    let (status, _) = w.invoke(row.session_id.as_ref(), &payload).await;
    assert_eq!(status, 200);
    let before = w.ping().await;
    let (status, body) = w.build_hook().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(w.ping().await, before, "the session's state is untouched");
    assert_eq!(w.agent.running().len(), 1);
    w.gate.add_permits(Semaphore::MAX_PERMITS);
    w.until_finished(1).await;
}
