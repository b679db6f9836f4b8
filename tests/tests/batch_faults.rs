//! The batch path under hostile input and lost answers, at the wire: the stale-batch detector
//! and the tracking table on moto (DynamoDB, SQS) with the real SDK clients, the AgentCore
//! emulator for StopRuntimeSession. Rows are written straight to the table where a test needs
//! a row no function of ours would write.

use agentcore_emulator::lifecycle::SessionState;
use aws_sdk_dynamodb::types::AttributeValue;
use document_agent::RunOutcome;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use warmpool_core::aws::running_shard;
use warmpool_core::aws::{AgentCoreRuntime, DynamoTrackingTable, SqsMessageSink};
use warmpool_core::batch::message::{BatchRequest, FailureNotice, ResultNotice};
use warmpool_core::batch::ports::{DocumentStore, TrackingTable};
use warmpool_core::batch::settings::TrackingLayout;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, ObjectRef};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::{SessionId, WARMUP_PAYLOAD};
use warmpool_local_stack::setup::batches::{BatchQueueSettings, BatchResources, Clients, create_batch_resources};
use warmpool_tests::batch_stack::{BatchStack, SkewedClock, StackOptions, scheduled};
use warmpool_tests::faults::{self, Fault, FaultInjector};
use warmpool_tests::{Moto, RUNTIME_ARN, agent_runtime, drain, emulator, fast_lifecycle, sdk_config, session_view};

type WireDetector = stale_batch_detector::Detector<DynamoTrackingTable, SqsMessageSink, AgentCoreRuntime, SkewedClock>;

/// The detector alone against moto and the emulator; its DynamoDB client carries `faults`,
/// the test's own reads and writes (`table`) do not.
struct Fixture {
    resources: BatchResources,
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: DynamoTrackingTable,
    detector: WireDetector,
    clock: SkewedClock,
    faults: FaultInjector,
    emulator: agentcore_emulator::RunningEmulator,
}

async fn fixture(extra: &[(&str, &str)]) -> Fixture {
    let moto = Moto::shared();
    let sdk = sdk_config(&moto.endpoint);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let s3 = warmpool_core::aws::s3_client(&sdk, true);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let name = format!("f{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let settings = BatchQueueSettings {
        max_receive_count: 5,
        visibility_timeout: Duration::from_secs(30),
    };
    let clients = Clients {
        sqs: &sqs,
        s3: &s3,
        dynamodb: &dynamodb,
    };
    let resources = create_batch_resources(&clients, &name, &settings)
        .await
        .expect("batch resources");
    let table = DynamoTrackingTable::new(dynamodb.clone(), &resources.tracking_table, TrackingLayout::default());
    let faults = FaultInjector::default();
    let faulty = DynamoTrackingTable::new(
        faults::dynamodb_client(&sdk, &faults),
        &resources.tracking_table,
        TrackingLayout::default(),
    );
    let emulator = emulator(fast_lifecycle()).await;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("TRACKING_TABLE", resources.tracking_table.as_str()),
        ("BATCH_QUEUE_URL", &resources.batch_queue_url),
        ("FAILURE_QUEUE_URL", &resources.failure_queue_url),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
    ];
    pairs.extend_from_slice(extra);
    let config = stale_batch_detector::Config::from_env(&Env::from_pairs(pairs)).expect("detector config");
    let clock = SkewedClock::default();
    let detector = stale_batch_detector::Detector::new(
        config,
        faulty,
        SqsMessageSink::new(sqs.clone(), &resources.batch_queue_url),
        SqsMessageSink::new(sqs.clone(), &resources.failure_queue_url),
        agent_runtime(&emulator),
        clock.clone(),
    );
    Fixture {
        resources,
        sqs,
        dynamodb,
        table,
        detector,
        clock,
        faults,
        emulator,
    }
}

impl Fixture {
    async fn row(&self, batch_id: &BatchId) -> BatchRow {
        self.table.get(batch_id).await.expect("read").expect("a row")
    }

    /// The state the emulator reports for `session`.
    fn state(&self, session: &SessionId) -> SessionState {
        session_view(&self.emulator.sessions(), session).state
    }
}

/// A RUNNING first attempt of `name`, already past its deadline, written through the adapter.
async fn overdue_row(f: &Fixture, name: &str) -> BatchRow {
    overdue_attempt(f, name, 1, SessionId::generate()).await
}

/// RUNNING attempt `attempt` of 3 of `name` on `session`, past its deadline.
async fn overdue_attempt(f: &Fixture, name: &str, attempt: u32, session: SessionId) -> BatchRow {
    let now = SystemClock.now_ms();
    let mut row = BatchRow::new_running(
        BatchId::parse(name).unwrap(),
        vec![ObjectRef::new(
            &f.resources.documents_bucket,
            format!("incoming/{name}/a.txt"),
        )],
        3,
        session,
        now - 120_000,
        now - 60_000,
    );
    row.attempt = attempt;
    f.table.create(&row).await.expect("create the row");
    row
}

/// A session the emulator really runs (warmed), so stopping it can be observed.
async fn live_session(f: &Fixture) -> SessionId {
    let session = SessionId::generate();
    agent_runtime(&f.emulator)
        .invoke(&session, WARMUP_PAYLOAD)
        .await
        .expect("warm a session");
    session
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A RUNNING, overdue item that no parser of ours accepts: its only document's key is longer
/// than S3 allows, as a manifest could once write it.
async fn put_hostile_item(f: &Fixture, name: &str) {
    let now = SystemClock.now_ms();
    let key = format!("incoming/{name}/{}", "k".repeat(1_100));
    let item: HashMap<String, AttributeValue> = [
        ("batchId", s(name)),
        ("status", s("RUNNING")),
        ("attempt", n(1)),
        ("maxAttempts", n(3)),
        ("sessionId", s(SessionId::generate().as_str())),
        (
            "documents",
            AttributeValue::L(vec![s(&format!("s3://{}/{key}", f.resources.documents_bucket))]),
        ),
        ("acceptedAt", n(now - 120_000)),
        ("startedAt", n(now - 120_000)),
        ("updatedAt", n(now - 120_000)),
        ("deadline", n(now - 90_000)),
        (
            "runningShard",
            n(u64::from(running_shard(&BatchId::parse(name).unwrap(), 8))),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    f.dynamodb
        .put_item()
        .table_name(&f.resources.tracking_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put the hostile item");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_row_cannot_be_read_then_the_detector_quarantines_it_and_settles_the_others() {
    let f = fixture(&[]).await;
    put_hostile_item(&f, "hostile-1").await;
    let honest = overdue_row(&f, "honest-1").await;

    let report = f
        .detector
        .handle(scheduled())
        .await
        .expect("no input can stop the detector");

    let settled = f.table.get(&honest.batch_id).await.unwrap().unwrap();
    assert_eq!(
        (settled.status, settled.attempt),
        (BatchStatus::Pending, 2),
        "{report:?}"
    );
    let raw = f
        .dynamodb
        .get_item()
        .table_name(&f.resources.tracking_table)
        .key("batchId", s("hostile-1"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw.get("status"), Some(&s("FAILED")), "{raw:?}");
    assert!(!raw.contains_key("runningShard"), "out of the index: {raw:?}");
    let reason = raw
        .get("lastError")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    assert!(reason.contains("quarantined"), "{reason}");

    let again = f.detector.handle(scheduled()).await.expect("the next run too");
    assert_eq!(again.overdue, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_shard_zero_holds_more_than_a_run_settles_then_other_shards_still_get_their_turn() {
    let f = fixture(&[("MAX_BATCHES_PER_RUN", "1")]).await;
    let in_shard = |shard: u32| {
        (0..)
            .map(move |i| format!("s{shard}-{i}"))
            .filter(move |name| running_shard(&BatchId::parse(name.as_str()).unwrap(), 8) == shard)
    };
    for name in in_shard(0).take(8) {
        overdue_row(&f, &name).await;
    }
    let lonely = overdue_row(&f, &in_shard(5).next().unwrap()).await;

    for _ in 0..8 {
        f.detector.handle(scheduled()).await.expect("a run");
    }

    let row = f.table.get(&lonely.batch_id).await.unwrap().unwrap();
    assert_eq!(row.status, BatchStatus::Pending, "shard 5 was never reached: {row:?}");
}

// --- lost answers of the detector's own writes (scenario 3) ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_final_failure_lands_but_its_answer_is_lost_then_the_notice_is_sent_and_the_session_stopped() {
    for fault in [Fault::LoseAnswer, Fault::DropAnswer] {
        let f = fixture(&[]).await;
        let session = live_session(&f).await;
        let row = overdue_attempt(&f, "last-try", 3, session.clone()).await;
        f.faults.next("UpdateItem", fault, 1);

        let report = f.detector.handle(scheduled()).await.expect("a run");

        assert_eq!(f.faults.injected("UpdateItem", fault), 1, "{fault:?}");
        let stored = f.row(&row.batch_id).await;
        assert_eq!(stored.status, BatchStatus::Failed, "{fault:?}: {report:?}");
        let notices = drain(&f.sqs, &f.resources.failure_queue_url).await;
        assert_eq!(notices.len(), 1, "{fault:?}: the failure notice, once");
        let notice: FailureNotice = serde_json::from_str(&notices[0]).unwrap();
        assert_eq!((notice.batch_id, notice.attempts), (row.batch_id.clone(), 3));
        assert_eq!(f.state(&session), SessionState::Stopped, "{fault:?}");
        assert!(stored.notified_at.is_some() && stored.closed_at.is_some(), "{stored:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_hand_over_lands_but_its_answer_is_lost_then_the_old_session_is_still_stopped() {
    let f = fixture(&[]).await;
    let session = live_session(&f).await;
    let row = overdue_attempt(&f, "hand-over", 1, session.clone()).await;
    f.faults.next("UpdateItem", Fault::LoseAnswer, 1);

    let report = f.detector.handle(scheduled()).await.expect("a run");

    assert_eq!(report.retried, 1, "counted as its own hand-over: {report:?}");
    let stored = f.row(&row.batch_id).await;
    assert_eq!((stored.status, stored.attempt), (BatchStatus::Pending, 2));
    assert_eq!(f.state(&session), SessionState::Stopped);
}

// --- PENDING rows are never stranded (scenario 4) ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_request_of_a_batch_is_lost_then_it_still_ends_failed_within_its_attempts() {
    let f = fixture(&[("BATCH_PENDING_TIMEOUT_SECS", "60"), ("RETRY_DELAY_SECS", "0")]).await;
    let row = overdue_row(&f, "stranded").await;
    let mut runs = 0;
    loop {
        f.detector.handle(scheduled()).await.expect("a run");
        runs += 1;
        // Whatever the detector sent goes to the DLQ: nothing will ever start the attempt.
        let requests = drain(&f.sqs, &f.resources.batch_queue_url).await;
        let stored = f.row(&row.batch_id).await;
        if stored.status.is_terminal() && stored.closed_at.is_some() {
            assert_eq!(stored.attempt, 3, "{stored:?}");
            break;
        }
        assert!(runs <= 4, "still not terminal after {runs} runs: {stored:?}");
        let sent: Vec<BatchRequest> = requests
            .iter()
            .filter_map(|b| BatchRequest::parse(serde_json::from_str(b).ok()?).ok())
            .collect();
        assert_eq!(sent.iter().map(|r| r.attempt).collect::<Vec<_>>(), vec![stored.attempt]);
        f.clock.skew(Duration::from_secs(61 * runs));
    }
    assert_eq!(drain(&f.sqs, &f.resources.failure_queue_url).await.len(), 1);
}

// --- the invoker's writes and hand-overs at the wire (scenarios 3, 5, 8, 10) ------------------

fn notices(bodies: &[String]) -> Vec<ResultNotice> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("a result notice"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_invokers_writes_land_but_their_answers_are_lost_then_the_batch_runs_once() {
    for (operation, name) in [("PutItem", "lost-accept"), ("UpdateItem", "lost-start")] {
        let stack = BatchStack::start(StackOptions::default()).await;
        stack.faults.next(operation, Fault::LoseAnswer, 1);

        let batch = stack.submit(name, &[("a.txt", b"lost answers")]).await;
        let row = stack
            .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(30))
            .await;

        assert_eq!(stack.faults.injected(operation, Fault::LoseAnswer), 1, "{operation}");
        assert_eq!(row.attempt, 1, "{operation}: no attempt burned");
        let runs = &stack.runs_by_batch().await[&batch];
        assert_eq!(runs.len(), 1, "{operation}: {runs:?}");
        assert_eq!(Some(&runs[0].session_id), row.session_id.as_ref());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_agent_started_but_its_answer_was_lost_then_the_next_attempt_runs_elsewhere_under_its_own_number() {
    let stack = BatchStack::start(StackOptions {
        processing_delay: Duration::from_millis(500),
        ..StackOptions::default()
    })
    .await;
    stack.faults.next("InvokeAgentRuntime", Fault::DropAnswer, 1);

    let batch = stack.submit("lost-answer", &[("a.txt", b"started, unanswered")]).await;
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;

    assert_eq!(stack.faults.injected("InvokeAgentRuntime", Fault::DropAnswer), 1);
    assert_eq!(row.attempt, 2, "{row:?}");
    let runs = &stack.runs_by_batch().await[&batch];
    let mut sessions_of: HashMap<u32, HashSet<SessionId>> = HashMap::new();
    for run in runs {
        sessions_of
            .entry(run.attempt)
            .or_default()
            .insert(run.session_id.clone());
    }
    assert!(
        sessions_of.values().all(|s| s.len() == 1),
        "an attempt ran on two sessions: {runs:?}"
    );
    let first = runs
        .iter()
        .find(|r| r.attempt == 1)
        .expect("the agent did start attempt 1");
    assert_ne!(first.outcome, RunOutcome::Recorded, "{runs:?}");
    assert_eq!(
        session_view(&stack.emulator.sessions(), &first.session_id).state,
        SessionState::Stopped
    );
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert!(published.iter().all(|n| n.attempt == 2), "{published:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_pool_is_empty_then_a_batch_waits_for_a_pooled_session_instead_of_creating_one() {
    let stack = BatchStack::start(StackOptions {
        fresh_fallback: false,
        ..StackOptions::default()
    })
    .await;
    let batch = stack.submit("waits", &[("a.txt", b"patience")]).await;
    let waiting = stack
        .wait_for(&batch, Duration::from_secs(20), |r| r.status == BatchStatus::Pending)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.emulator.sessions().is_empty(), "no session was created for it");
    assert_eq!(stack.row(&batch).await.unwrap().status, BatchStatus::Pending);

    stack.fill_pool(1).await;
    let pooled = stack.emulator.sessions()[0].session_id.clone();
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(30))
        .await;

    assert_eq!(row.attempt, waiting.attempt);
    let session = row.session_id.clone().expect("its session");
    assert_eq!(session.to_string(), pooled);

    // The settled batch's session holds an active-session slot until the detector's follow-up.
    let report = stack.detector.handle(scheduled()).await.expect("a detector run");
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(
        session_view(&stack.emulator.sessions(), &session).state,
        SessionState::Stopped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_manifest_names_a_missing_document_then_the_batch_fails_at_once_without_a_session() {
    let stack = BatchStack::start(StackOptions::default()).await;
    let bucket = stack.resources.documents_bucket.clone();
    let present = ObjectRef::new(&bucket, "incoming/missing-doc/a.txt");
    stack.store.put(&present, b"here".to_vec(), "text/plain").await.unwrap();
    let manifest = serde_json::json!({"v":1,"batchId":"missing-doc","documents":[
        {"key":"incoming/missing-doc/a.txt","size":4},{"key":"incoming/missing-doc/gone.txt","size":4}]});
    stack
        .store
        .put(
            &ObjectRef::new(&bucket, "incoming/missing-doc/manifest.json"),
            manifest.to_string().into_bytes(),
            "application/json",
        )
        .await
        .unwrap();
    let batch = BatchId::parse("missing-doc").unwrap();

    let row = stack
        .wait_for_status(&batch, BatchStatus::Failed, Duration::from_secs(30))
        .await;

    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("gone.txt is missing"),
        "{row:?}"
    );
    assert!(stack.emulator.sessions().is_empty(), "no session was used");
    let failures: Vec<FailureNotice> = drain(&stack.sqs, &stack.resources.failure_queue_url)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].last_error.contains("gone.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_pins_each_documents_version_and_size_on_a_versioned_bucket() {
    let stack = BatchStack::start(StackOptions {
        pump: false,
        ..StackOptions::default()
    })
    .await;
    let s3 = warmpool_core::aws::s3_client(&sdk_config(&Moto::shared().endpoint), true);
    s3.put_bucket_versioning()
        .bucket(&stack.resources.documents_bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let mut stack = stack;
    stack.start_pump();

    let batch = stack.submit("pinned", &[("a.txt", b"version one")]).await;
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(30))
        .await;

    let pinned = &row.documents[0];
    let head = s3
        .head_object()
        .bucket(&pinned.object.bucket)
        .key(&pinned.object.key)
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.version_id, head.version_id, "{row:?}");
    assert!(pinned.version_id.is_some());
    assert_eq!(pinned.size, Some(11));
    let bytes = stack.store.get_pinned(pinned, 100).await.unwrap().bytes;
    assert_eq!(bytes, b"version one");
}

/// What the stack's agent ran for `batch`: every attempt on exactly one session, and which.
async fn sessions_by_attempt(stack: &BatchStack, batch: &BatchId) -> HashMap<u32, HashSet<SessionId>> {
    let mut sessions_of: HashMap<u32, HashSet<SessionId>> = HashMap::new();
    for run in &stack.runs_by_batch().await[batch] {
        sessions_of
            .entry(run.attempt)
            .or_default()
            .insert(run.session_id.clone());
    }
    sessions_of
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_emulator_loses_the_answer_after_admission_then_the_batch_is_handed_over_under_a_new_number() {
    let stack = BatchStack::start(StackOptions {
        processing_delay: Duration::from_millis(500),
        ..StackOptions::default()
    })
    .await;
    stack
        .emulator
        .set_faults(agentcore_emulator::FaultsUpdate {
            next_lost_answers: Some(1),
            ..Default::default()
        })
        .expect("faults");

    let batch = stack
        .submit("emulator-lost", &[("a.txt", b"the agent runs, the answer is lost")])
        .await;
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;

    assert_eq!(stack.emulator.stats().lost_answers, 1);
    assert_eq!(row.attempt, 2, "{row:?}");
    let sessions_of = sessions_by_attempt(&stack, &batch).await;
    assert!(sessions_of.values().all(|s| s.len() == 1), "{sessions_of:?}");
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert!(published.iter().all(|n| n.attempt == 2), "{published:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_answer_comes_after_the_invoke_timeout_and_the_stop_is_throttled_then_no_attempt_runs_on_two_sessions()
{
    let stack = BatchStack::start(StackOptions {
        invoke_timeout_secs: 1,
        processing_delay: Duration::from_millis(2_000),
        ..StackOptions::default()
    })
    .await;
    stack
        .emulator
        .set_faults(agentcore_emulator::FaultsUpdate {
            next_late_answers: Some(1),
            late_answer_ms: Some(1_500),
            next_stop_throttles: Some(1),
            ..Default::default()
        })
        .expect("faults");

    let batch = stack.submit("late-answer", &[("a.txt", b"answered too late")]).await;
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;
    // Let the first session's run end, whichever way it ends.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stats = stack.emulator.stats();
    assert_eq!((stats.late_answers, stats.stop_throttles), (1, 1), "{stats:?}");
    assert_eq!(row.attempt, 2, "{row:?}");
    let sessions_of = sessions_by_attempt(&stack, &batch).await;
    assert!(
        sessions_of.values().all(|s| s.len() == 1),
        "an attempt on two sessions: {sessions_of:?}"
    );
    let first = sessions_of[&1].iter().next().expect("attempt 1 ran on a session");
    assert_eq!(
        session_view(&stack.emulator.sessions(), first).state,
        SessionState::Stopped,
        "the first session's throttled stop was retried until it took effect"
    );
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert!(
        published
            .iter()
            .all(|n| n.attempt == 2 && Some(&n.session_id) == row.session_id.as_ref()),
        "only the owner of the attempt the row records published: {published:?}"
    );
}
