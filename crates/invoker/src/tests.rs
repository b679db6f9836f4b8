//! The invoker over in-memory fakes: decisions, faults and hostile input.

use super::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Mutex;
use warmpool_core::batch::BatchRow;
use warmpool_core::batch::ObjectRef;
use warmpool_core::batch::fakes::RecordingRedelivery;
use warmpool_core::batch::fakes::{MemorySink, MemoryStore, MemoryTable};
use warmpool_core::batch::message::{Accepted, AgentInvocation, BatchPayload};
use warmpool_core::batch::settle::Settlement;
use warmpool_core::clock::ManualClock;
use warmpool_core::config::Env;
use warmpool_core::error::AgentErrorKind;
use warmpool_core::fakes::{MemoryPool, RecordingTrigger};
use warmpool_core::pool::claim::Claimer;
use warmpool_core::session::PooledSession;

const NOW: u64 = 1_800_000_000_000;
const BUCKET: &str = "warmpool-documents";

/// An agent that accepts batches as the reference agent does, with scripted failures.
#[derive(Default)]
struct AcceptingAgent {
    failures: Mutex<Vec<AgentErrorKind>>,
    answer_override: Mutex<Option<Vec<u8>>>,
    batches: Mutex<Vec<(SessionId, BatchPayload)>>,
    /// Every batch invocation, failed ones included: (session, attempt).
    invoked: Mutex<Vec<(SessionId, u32)>>,
    stopped: Mutex<Vec<SessionId>>,
}

impl AgentRuntime for AcceptingAgent {
    async fn invoke(&self, session_id: &SessionId, payload: &[u8]) -> Result<Vec<u8>, AgentError> {
        if let Ok(AgentInvocation::Batch(batch)) = serde_json::from_slice(payload) {
            self.invoked.lock().unwrap().push((session_id.clone(), batch.attempt));
        }
        if let Some(kind) = self.failures.lock().unwrap().pop() {
            return Err(AgentError::new("invoke", kind, "scripted failure"));
        }
        let AgentInvocation::Batch(batch) = serde_json::from_slice(payload).unwrap() else {
            return Ok(br#"{"status":"warm"}"#.to_vec());
        };
        self.batches.lock().unwrap().push((session_id.clone(), batch.clone()));
        if let Some(answer) = self.answer_override.lock().unwrap().clone() {
            return Ok(answer);
        }
        Ok(serde_json::to_vec(&Accepted {
            status: Accepted::STATUS.into(),
            batch_id: batch.batch_id,
            attempt: batch.attempt,
        })
        .unwrap())
    }

    async fn stop(&self, session_id: &SessionId) -> Result<(), AgentError> {
        self.stopped.lock().unwrap().push(session_id.clone());
        Ok(())
    }
}

type TestInvoker = Invoker<
    MemoryTable,
    MemoryStore,
    MemorySink,
    AcceptingAgent,
    MemoryPool,
    RecordingTrigger,
    ManualClock,
    RecordingRedelivery,
>;

fn invoker() -> TestInvoker {
    let config = Config::from_env(&Env::from_pairs(config::tests::REQUIRED)).unwrap();
    Invoker {
        table: MemoryTable::default(),
        store: MemoryStore::default(),
        batch_queue: MemorySink::default(),
        failure_queue: MemorySink::default(),
        agent: AcceptingAgent::default(),
        claimer: Claimer {
            queue: MemoryPool::default(),
            trigger: RecordingTrigger::default(),
            clock: ManualClock::at(NOW),
            policy: config.claim,
        },
        redelivery: RecordingRedelivery::default(),
        config,
    }
}

fn id(raw: &str) -> BatchId {
    BatchId::parse(raw).unwrap()
}

fn record(message_id: &str, body: &str, receive_count: u32) -> SqsRecord {
    SqsRecord {
        message_id: message_id.into(),
        receipt_handle: format!("receipt-of-{message_id}"),
        body: Some(body.into()),
        attributes: [("ApproximateReceiveCount".to_string(), receive_count.to_string())].into(),
        ..SqsRecord::default()
    }
}

fn notification(key: &str) -> String {
    json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":BUCKET},"object":{"key":key,"size":1}}}]})
    .to_string()
}

/// The manifest alone, every document declared 3 bytes long.
fn upload_manifest_only(f: &TestInvoker, batch: &str, keys: &[&str]) {
    let documents: Vec<_> = keys.iter().map(|k| json!({"key": k, "size": 3})).collect();
    let manifest = json!({"v":1,"batchId":batch,"documents":documents}).to_string();
    f.store
        .insert(ObjectRef::new(BUCKET, id(batch).manifest_key()), manifest, None);
}

/// The documents (3 bytes each), then the manifest, as a client uploads a batch.
fn upload_manifest(f: &TestInvoker, batch: &str, keys: &[&str]) {
    for key in keys {
        f.store.insert(ObjectRef::new(BUCKET, *key), "abc", None);
    }
    upload_manifest_only(f, batch, keys);
}

async fn run(f: &TestInvoker, records: Vec<SqsRecord>) -> Vec<RecordReport> {
    f.handle_records(SqsEvent { records }).await.unwrap()
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn the_sample_event_starts_a_new_batch_and_a_retry_and_ignores_the_test_event() {
    let f = invoker();
    let pooled = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 1_000);
    f.claimer.queue.push(&pooled);
    let second = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 1_000);
    f.claimer.queue.push(&second);
    upload_manifest(&f, "case-4711", &["incoming/case-4711/claim-form.txt"]);
    let mut waiting = BatchRow::new_running(
        id("case-4712"),
        vec![ObjectRef::new(BUCKET, "incoming/case-4712/letter.txt")],
        3,
        SessionId::generate(),
        NOW - 10_000,
        NOW - 5_000,
    );
    (waiting.status, waiting.attempt, waiting.session_id) = (BatchStatus::Pending, 2, None);
    f.table.insert(waiting);
    let event: SqsEvent = serde_json::from_str(include_str!("../../../events/invoker-sqs.json")).unwrap();

    let response = f.handle(LambdaEvent::new(event, Default::default())).await.unwrap();

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let new = f.table.row(&id("case-4711")).unwrap();
    assert_eq!((new.status, new.attempt), (BatchStatus::Running, 1));
    assert_eq!(new.deadline, Some(NOW + 900_000));
    let retried = f.table.row(&id("case-4712")).unwrap();
    assert_eq!((retried.status, retried.attempt), (BatchStatus::Running, 2));
    let sessions: HashSet<SessionId> = [new.session_id.clone().unwrap(), retried.session_id.unwrap()].into();
    assert_eq!(sessions.len(), 2, "one session per batch");
    assert_eq!(
        sessions,
        [pooled.session_id.clone(), second.session_id.clone()].into(),
        "both from the pool"
    );
    let batches = f.agent.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert!(
        batches
            .iter()
            .all(|(session, batch)| { f.table.row(&batch.batch_id).unwrap().session_id.as_ref() == Some(session) })
    );
}

#[tokio::test]
async fn a_duplicate_notification_is_acknowledged_without_a_second_run() {
    let f = invoker();
    pooled(&f);
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    let body = notification("incoming/case-1/manifest.json");

    let reports = run(&f, vec![record("m-1", &body, 1), record("m-2", &body, 1)]).await;
    let later = run(&f, vec![record("m-3", &body, 1)]).await;

    let outcomes: Vec<&Outcome> = reports
        .iter()
        .chain(&later)
        .flat_map(|r| r.result.as_ref().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| matches!(o, Outcome::Started { .. })).count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Duplicate { .. }))
            .count(),
        2
    );
    assert_eq!(f.agent.batches.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_records_fail_alone_with_a_reason_and_the_valid_one_proceeds() {
    let f = invoker();
    pooled(&f);
    pooled(&f);
    upload_manifest(&f, "good", &["incoming/good/a.txt"]);
    upload_manifest(&f, "escape", &["incoming/other/secret.txt"]);
    f.store.insert(
        ObjectRef::new(BUCKET, "incoming/broken/manifest.json"),
        r#"{"v":1,"batchId":"broken","documents":"all of them"}"#,
        None,
    );
    let records = vec![
        record("bad-json", "this is not json", 1),
        record("escape", &notification("incoming/escape/manifest.json"), 1),
        record("good", &notification("incoming/good/manifest.json"), 1),
        record("broken", &notification("incoming/broken/manifest.json"), 1),
        SqsRecord {
            message_id: "no-body".into(),
            ..SqsRecord::default()
        },
    ];

    let reports = run(&f, records.clone()).await;
    let response = f
        .handle(LambdaEvent::new(SqsEvent { records }, Default::default()))
        .await
        .unwrap();

    let reason = |id: &str| {
        let report = reports.iter().find(|r| r.message_id == id).unwrap();
        let error = report.result.as_ref().unwrap_err();
        assert!(!error.is_retryable(), "{id}: {error}");
        error.to_string()
    };
    assert!(reason("bad-json").contains("not JSON"));
    assert!(reason("escape").contains("outside the batch's prefix"));
    assert!(reason("broken").contains("not a v1 manifest"));
    assert!(reason("no-body").contains("no body"));
    assert!(matches!(
        reports[2].result.as_ref().unwrap()[0],
        Outcome::Started { .. }
    ));
    assert_eq!(failed_ids(&response), vec!["bad-json", "escape", "broken", "no-body"]);
    assert!(
        f.table.row(&id("escape")).is_none(),
        "a refused batch is never accepted"
    );
}

#[tokio::test]
async fn a_retry_that_arrives_before_the_row_waits_for_it_is_kept_for_later() {
    let f = invoker();
    let running = BatchRow::new_running(
        id("case-1"),
        vec![ObjectRef::new(BUCKET, "incoming/case-1/a.txt")],
        3,
        SessionId::generate(),
        NOW,
        NOW + 1,
    );
    f.table.insert(running.clone());
    let retry = BatchRequest::new(id("case-1"), running.objects(), 2).to_body();

    let reports = run(&f, vec![record("m-1", &retry, 1)]).await;

    let error = reports[0].result.as_ref().unwrap_err();
    assert!(
        matches!(error, RecordError::Early { .. }) && error.is_retryable(),
        "{error}"
    );
    assert!(f.agent.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_retry_for_a_batch_never_accepted_is_malformed() {
    let f = invoker();
    let retry = BatchRequest::new(id("ghost"), vec![ObjectRef::new(BUCKET, "incoming/ghost/a")], 2).to_body();
    let reports = run(&f, vec![record("m-1", &retry, 1)]).await;
    assert!(matches!(reports[0].result, Err(RecordError::Malformed(_))));
}

#[tokio::test]
async fn when_an_invocation_is_throttled_then_the_batch_is_handed_over_and_the_session_stopped() {
    let f = invoker();
    let first = pooled(&f);
    let second = pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.agent.failures.lock().unwrap().push(AgentErrorKind::Throttled);
    let body = notification("incoming/case-1/manifest.json");

    let reports = run(&f, vec![record("m-1", &body, 1)]).await;

    assert!(matches!(
        reports[0].result.as_ref().unwrap()[0],
        Outcome::AttemptSettled {
            settlement: Settlement::Retried { next_attempt: 2 },
            ..
        }
    ));
    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!(
        (row.status, row.attempt, row.session_id.as_ref()),
        (BatchStatus::Pending, 2, None)
    );
    assert_eq!(row.deadline, Some(NOW + 300_000), "attempt 2 must start by then");
    assert_eq!(*f.agent.stopped.lock().unwrap(), vec![first.clone()]);

    // The request for attempt 2 starts it on another session.
    let retry = f.batch_queue.bodies()[0].clone();
    let reports = run(&f, vec![record("m-2", &retry, 1)]).await;
    assert!(matches!(
        reports[0].result.as_ref().unwrap()[0],
        Outcome::Started { attempt: 2, .. }
    ));
    assert_eq!(f.table.row(&id("case-1")).unwrap().session_id, Some(second));
}

#[tokio::test]
async fn when_the_last_attempt_cannot_be_handed_to_the_agent_then_the_batch_fails_with_its_notice() {
    let f = invoker();
    let session = pooled(&f);
    let mut waiting = BatchRow::new_pending(
        id("case-1"),
        vec![ObjectRef::new(BUCKET, "incoming/case-1/a.txt")],
        3,
        NOW - 10_000,
        NOW + 10_000,
    );
    waiting.attempt = 3;
    f.table.insert(waiting.clone());
    f.agent.failures.lock().unwrap().push(AgentErrorKind::Agent);

    let request = BatchRequest::new(id("case-1"), waiting.objects(), 3).to_body();
    let reports = run(&f, vec![record("m-1", &request, 1)]).await;

    assert!(matches!(
        reports[0].result.as_ref().unwrap()[0],
        Outcome::AttemptSettled {
            settlement: Settlement::Failed { closed: true },
            ..
        }
    ));
    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!(row.status, BatchStatus::Failed);
    assert_eq!(f.failure_queue.bodies().len(), 1);
    assert_eq!(*f.agent.stopped.lock().unwrap(), vec![session]);
}

#[tokio::test]
async fn an_agent_that_answers_without_accepting_the_batch_is_a_failed_invocation() {
    let f = invoker();
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    *f.agent.answer_override.lock().unwrap() = Some(br#"{"status":"warm"}"#.to_vec());

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(matches!(
        reports[0].result.as_ref().unwrap()[0],
        Outcome::AttemptSettled { .. }
    ));
    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!((row.status, row.attempt), (BatchStatus::Pending, 2));
    assert!(row.last_error.unwrap().contains("did not accept"));
}

#[tokio::test]
async fn a_direct_request_outside_the_documents_bucket_is_refused() {
    let f = invoker();
    let request = BatchRequest::new(id("c"), vec![ObjectRef::new("someone-elses", "incoming/c/a")], 1).to_body();
    let reports = run(&f, vec![record("m-1", &request, 1)]).await;
    assert!(matches!(reports[0].result, Err(RecordError::InvalidBatch { .. })));
}

#[tokio::test]
async fn when_the_start_write_fails_without_landing_then_nothing_runs_and_the_session_is_stopped() {
    let f = invoker();
    let session = pooled(&f);
    f.table.insert(BatchRow::new_pending(
        id("case-1"),
        vec![ObjectRef::new(BUCKET, "incoming/case-1/a.txt")],
        3,
        NOW,
        NOW + 300_000,
    ));
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.table.fail_next_writes(1);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(reports[0].result.as_ref().unwrap_err().is_retryable());
    assert_eq!(f.table.row(&id("case-1")).unwrap().status, BatchStatus::Pending);
    assert!(
        f.agent.batches.lock().unwrap().is_empty(),
        "never invoked without RUNNING recorded"
    );
    assert_eq!(*f.agent.stopped.lock().unwrap(), vec![session]);
}

#[tokio::test]
async fn when_the_accepting_write_lands_but_its_answer_is_lost_then_the_batch_still_starts() {
    let f = invoker();
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.table.lose_next_acks(1);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(started(&reports), "{:?}", reports[0].result);
}

#[tokio::test]
async fn admission_pins_each_document_to_the_version_and_size_s3_reports() {
    let f = invoker();
    pooled(&f);
    upload_manifest_only(&f, "case-1", &["incoming/case-1/a.txt"]);
    let version = f
        .store
        .insert(ObjectRef::new(BUCKET, "incoming/case-1/a.txt"), "abc", None);

    run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!(row.documents[0].version_id.as_deref(), Some(version.as_str()));
    assert_eq!(row.documents[0].size, Some(3));
}

#[tokio::test]
async fn when_a_document_is_not_the_size_the_manifest_declares_then_the_batch_fails_at_once() {
    let f = invoker();
    pooled(&f);
    upload_manifest_only(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.store
        .insert(ObjectRef::new(BUCKET, "incoming/case-1/a.txt"), "abcdef", None);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(matches!(
        reports[0].result.as_ref().unwrap()[0],
        Outcome::Refused { .. }
    ));
    let row = f.table.row(&id("case-1")).unwrap();
    assert!(row.last_error.unwrap().contains("declared 3"));
    assert!(row.notified_at.is_some() && row.closed_at.is_some());
}

#[tokio::test]
async fn when_no_session_is_available_then_the_record_comes_back_soon_and_on_its_last_delivery_is_acknowledged() {
    let f = invoker();
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    let body = notification("incoming/case-1/manifest.json");

    run(&f, vec![record("m-1", &body, 1)]).await;
    run(&f, vec![record("m-1", &body, 3)]).await;
    let last = run(&f, vec![record("m-1", &body, f.config.max_receive_count.get())]).await;

    assert_eq!(
        f.redelivery.requests(),
        vec![
            ("receipt-of-m-1".to_string(), Duration::from_secs(10)),
            ("receipt-of-m-1".to_string(), Duration::from_secs(40)),
        ]
    );
    assert!(matches!(
        last[0].result.as_ref().unwrap()[0],
        Outcome::Waiting { attempt: 1, .. }
    ));
    assert_eq!(f.table.row(&id("case-1")).unwrap().status, BatchStatus::Pending);
}

fn pooled(f: &TestInvoker) -> SessionId {
    let session = PooledSession::new(SessionId::generate(), NOW - 1_000, NOW - 1_000);
    f.claimer.queue.push(&session);
    session.session_id
}

fn started(reports: &[RecordReport]) -> bool {
    matches!(reports[0].result.as_ref().map(|o| &o[0]), Ok(Outcome::Started { .. }))
}

#[tokio::test]
async fn when_the_start_write_lands_but_its_answer_is_lost_then_the_batch_is_still_invoked() {
    let f = invoker();
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.table.lose_next_acks(1);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(started(&reports), "{:?}", reports[0].result);
    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!(
        f.agent.batches.lock().unwrap().len(),
        1,
        "the attempt was handed to the agent"
    );
    assert!(
        !f.agent
            .stopped
            .lock()
            .unwrap()
            .contains(row.session_id.as_ref().unwrap()),
        "its own session was not stopped"
    );
}

#[tokio::test]
async fn when_an_invocation_fails_ambiguously_then_the_next_session_runs_another_attempt_number() {
    let f = invoker();
    pooled(&f);
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    f.agent.failures.lock().unwrap().push(AgentErrorKind::Server);
    let body = notification("incoming/case-1/manifest.json");

    run(&f, vec![record("m-1", &body, 1)]).await;
    for request in f.batch_queue.bodies() {
        run(&f, vec![record("m-2", &request, 1)]).await;
    }
    run(&f, vec![record("m-1", &body, 2)]).await;

    let row = f.table.row(&id("case-1")).unwrap();
    let invoked = f.agent.invoked.lock().unwrap().clone();
    assert_eq!(
        invoked.len(),
        2,
        "the failed hand-over and the one after it: {invoked:?}"
    );
    assert_ne!(invoked[0].0, invoked[1].0, "two sessions");
    assert_ne!(
        invoked[0].1, invoked[1].1,
        "an attempt number per hand-over: {invoked:?}"
    );
    assert_eq!(row.status, BatchStatus::Running);
    assert!(f.agent.stopped.lock().unwrap().contains(&invoked[0].0));
}

#[tokio::test]
async fn when_a_pooled_session_has_less_lifetime_left_than_the_batch_needs_then_it_is_not_used() {
    let f = invoker();
    // 10 minutes of its 8 hours left: more than the claim margin, less than a 15-minute batch.
    let old = PooledSession::new(SessionId::generate(), NOW - (28_800 - 600) * 1_000, NOW - 1_000);
    f.claimer.queue.push(&old);
    let young = pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(started(&reports), "{:?}", reports[0].result);
    let row = f.table.row(&id("case-1")).unwrap();
    assert_eq!(row.session_id, Some(young));
}

#[tokio::test]
async fn when_the_pool_is_empty_then_the_batch_waits_instead_of_creating_a_session() {
    let f = invoker();
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    let error = reports[0].result.as_ref().unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        f.agent.batches.lock().unwrap().is_empty(),
        "no fresh session was invoked"
    );
    let row = f
        .table
        .row(&id("case-1"))
        .expect("the batch is accepted while it waits");
    assert_eq!(row.status, BatchStatus::Pending);
}

#[tokio::test]
async fn when_a_listed_document_is_missing_then_the_batch_fails_at_once_without_a_session() {
    let f = invoker();
    pooled(&f);
    upload_manifest_only(&f, "case-1", &["incoming/case-1/a.txt", "incoming/case-1/gone.txt"]);
    f.store
        .insert(ObjectRef::new(BUCKET, "incoming/case-1/a.txt"), "abc", None);

    let reports = run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    assert!(
        reports[0].result.is_ok(),
        "settled, not retried: {:?}",
        reports[0].result
    );
    let row = f.table.row(&id("case-1")).expect("a row with the reason");
    assert_eq!(row.status, BatchStatus::Failed);
    assert!(
        row.last_error.as_deref().unwrap_or_default().contains("gone.txt"),
        "{row:?}"
    );
    assert!(f.agent.batches.lock().unwrap().is_empty());
    assert_eq!(f.claimer.queue.len(), 1, "no session was claimed");
    assert_eq!(f.failure_queue.bodies().len(), 1);
}

#[tokio::test]
async fn when_the_agent_answers_with_a_huge_error_then_last_error_is_bounded() {
    let f = invoker();
    pooled(&f);
    upload_manifest(&f, "case-1", &["incoming/case-1/a.txt"]);
    *f.agent.answer_override.lock().unwrap() = Some("é".repeat(100_000).into_bytes());

    run(
        &f,
        vec![record("m-1", &notification("incoming/case-1/manifest.json"), 1)],
    )
    .await;

    let row = f.table.row(&id("case-1")).unwrap();
    let error = row.last_error.unwrap();
    assert!(error.len() <= 2_048, "{} bytes", error.len());
    assert!(error.ends_with("[truncated]"), "{}", &error[error.len() - 40..]);
}

#[tokio::test]
async fn a_record_without_a_message_id_fails_the_whole_event_so_nothing_is_dropped() {
    let f = invoker();
    let error = f
        .handle_records(SqsEvent {
            records: vec![record("m-1", "{}", 1), record("", "{}", 1)],
        })
        .await
        .unwrap_err();
    assert!(matches!(error, InvokerError::UnidentifiedRecord(1)));
}
