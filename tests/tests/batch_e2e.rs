//! Document batches end to end on the local stack: S3 upload -> notification -> batch queue
//! -> invoker -> session from the pool -> AgentCore emulator -> reference agent -> S3 result,
//! results queue, tracking row; the stale-batch detector for crashes and silence. moto serves
//! S3, SQS and DynamoDB; everything runs on 127.0.0.1 with the real SDK clients.

use agentcore_emulator::lifecycle::SessionState;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use document_agent::RunOutcome;
use futures::StreamExt;
use serde_json::Value;
use stale_batch_detector::{RunReport, Settled};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::aws::sqs_event::{SqsBatchResponse, SqsEvent, SqsRecord};
use warmpool_core::batch::message::{FailureNotice, ResultNotice};
use warmpool_core::batch::ports::DocumentStore;
use warmpool_core::batch::{BatchId, BatchStatus, ObjectRef};
use warmpool_core::session::SessionId;
use warmpool_tests::batch_stack::{BatchStack, StackOptions, scheduled};
use warmpool_tests::{drain, session_view};

fn notices(bodies: &[String]) -> Vec<ResultNotice> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("a result notice"))
        .collect()
}

/// Waits until the agent runs a batch on `session` (the attempt is really mid-batch).
async fn until_running(stack: &BatchStack, session: &SessionId) {
    let until = Instant::now() + Duration::from_secs(30);
    while !stack.agent.running().contains(session) {
        assert!(Instant::now() < until, "the agent never ran a batch on {session}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receives messages from the batch queue until `want` of them match, deleting S3's test
/// event; the matching ones stay in flight for the test to deliver.
async fn receive(stack: &BatchStack, want: usize, matching: impl Fn(&str) -> bool) -> Vec<Message> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    while found.len() < want {
        assert!(
            Instant::now() < until,
            "only {} of {want} messages arrived",
            found.len()
        );
        let messages = stack
            .sqs
            .receive_message()
            .queue_url(&stack.resources.batch_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        for message in messages {
            if matching(message.body().unwrap_or_default()) {
                found.push(message);
            } else {
                delete(stack, &message).await;
            }
        }
    }
    found
}

async fn delete(stack: &BatchStack, message: &Message) {
    stack
        .sqs
        .delete_message()
        .queue_url(&stack.resources.batch_queue_url)
        .receipt_handle(message.receipt_handle().unwrap_or_default())
        .send()
        .await
        .expect("delete");
}

/// One SQS event of these messages, as the event source builds it.
fn event(messages: &[&Message]) -> Vec<u8> {
    let records = messages
        .iter()
        .map(|m| SqsRecord {
            message_id: m.message_id().unwrap_or_default().into(),
            receipt_handle: m.receipt_handle().unwrap_or_default().into(),
            body: m.body.clone(),
            attributes: m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), v.clone())).collect())
                .unwrap_or_default(),
            event_source: "aws:sqs".into(),
            event_source_arn: String::new(),
        })
        .collect();
    serde_json::to_vec(&SqsEvent { records }).unwrap()
}

async fn deliver(stack: &BatchStack, messages: &[&Message]) -> SqsBatchResponse {
    let answer = (stack.dispatch())(event(messages)).await.expect("the invoker answers");
    serde_json::from_slice(&answer).unwrap()
}

/// What the invoker said of one message, from its log.
fn said(stack: &BatchStack, message_id: &str) -> Vec<Result<Vec<invoker::Outcome>, String>> {
    stack
        .invoker_log
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| id == message_id)
        .map(|(_, result)| result.clone())
        .collect()
}

/// Test 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploaded_batch_runs_on_one_pooled_session_and_its_result_is_published_then_recorded() {
    let stack = BatchStack::start(StackOptions {
        pool_sessions: 1,
        ..StackOptions::default()
    })
    .await;
    let pooled = stack.emulator.sessions()[0].session_id.clone();

    let batch = stack
        .submit(
            "claim-4711",
            &[
                ("letter.txt", b"Dear insurer,\nmy car was hit.\n"),
                ("meta.json", br#"{"policy":"P-1"}"#),
            ],
        )
        .await;
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;

    assert_eq!(row.attempt, 1);
    let session = row.session_id.clone().expect("the session that ran it");
    assert_eq!(
        session.as_str(),
        pooled,
        "the invoker took the warm session from the pool"
    );
    let sessions = stack.emulator.sessions();
    let history: Vec<bool> = session_view(&sessions, &session)
        .history
        .iter()
        .map(|h| h.cold)
        .collect();
    assert_eq!(history, vec![true, false], "warmed cold, then the batch landed warm");
    let runs = stack.runs_of(&batch, Duration::from_secs(10)).await;
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    assert_eq!(
        (&runs[0].session_id, &runs[0].outcome),
        (&session, &RunOutcome::Recorded)
    );

    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].attempt, &published[0].session_id), (1, &session));
    assert_eq!(row.result_ref, Some(published[0].result_ref.to_string()));
    let result = stack
        .store
        .get(&published[0].result_ref, 1 << 20)
        .await
        .expect("result in S3");
    let result: Value = serde_json::from_slice(&result.bytes).unwrap();
    assert_eq!(result["documents"].as_array().unwrap().len(), 2);
    assert_eq!(result["documents"][0]["text"]["words"], 6);
    assert_eq!(
        result["documents"][0]["sha256"],
        "7c5c6bc643e9409e50db46fa2d6ddf38cc971b413b5d40e99e513ccc72603821"
    );
}

/// Test 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_crashing_mid_batch_is_failed_by_the_detector_and_attempt_two_succeeds_elsewhere() {
    let stack = BatchStack::start(StackOptions {
        batch_deadline_secs: 4,
        invoke_timeout_secs: 3,
        processing_delay: Duration::from_millis(1_500),
        detector_every: Some(Duration::from_millis(300)),
        ..StackOptions::default()
    })
    .await;
    let batch = stack.submit("crash-once", &[("a.txt", b"some text")]).await;
    let first = stack
        .wait_for(&batch, Duration::from_secs(30), |r| r.status == BatchStatus::Running)
        .await;
    let crashed_session = first.session_id.clone().unwrap();
    until_running(&stack, &crashed_session).await;

    assert_eq!(
        stack.crash(&[crashed_session.as_str()]).await,
        vec![crashed_session.to_string()]
    );
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;

    assert_eq!(row.attempt, 2);
    let second_session = row.session_id.clone().unwrap();
    assert_ne!(second_session, crashed_session, "a new session for the new attempt");
    let sessions = stack.emulator.sessions();
    let crashed = session_view(&sessions, &crashed_session);
    assert_eq!(
        (crashed.state, crashed.invocation_count),
        (SessionState::Crashed, 1),
        "never used again"
    );
    let runs: Vec<(u32, SessionId, RunOutcome)> = stack.runs_by_batch().await[&batch]
        .iter()
        .map(|r| (r.attempt, r.session_id.clone(), r.outcome.clone()))
        .collect();
    assert_eq!(
        runs,
        vec![
            (1, crashed_session.clone(), RunOutcome::Aborted),
            (2, second_session.clone(), RunOutcome::Recorded)
        ]
    );
    let retried: Vec<_> = stack
        .detector_reports
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.settled.clone())
        .filter(|s| s.batch_id == batch)
        .collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!((retried[0].attempt, retried[0].outcome), (1, "retried"));
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].attempt, &published[0].session_id), (2, &second_session));
}

/// Test 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_always_crashes_ends_failed_after_its_last_attempt_and_on_the_failure_queue() {
    let stack = BatchStack::start(StackOptions {
        max_attempts: 2,
        batch_deadline_secs: 3,
        invoke_timeout_secs: 2,
        processing_delay: Duration::from_millis(1_000),
        detector_every: Some(Duration::from_millis(300)),
        ..StackOptions::default()
    })
    .await;
    let batch = stack.submit("always-crashes", &[("a.txt", b"doomed")]).await;

    // Every session that starts this batch crashes mid-batch.
    let mut crashed = HashSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    let row = loop {
        assert!(Instant::now() < until, "the batch never failed");
        let row = stack.row(&batch).await;
        if let Some(row) = row.as_ref().filter(|r| r.status.is_terminal()) {
            break row.clone();
        }
        if let Some(session) = row.and_then(|r| r.session_id)
            && !crashed.contains(&session)
            && stack.agent.running().contains(&session)
        {
            assert_eq!(stack.crash(&[session.as_str()]).await.len(), 1);
            crashed.insert(session);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert_eq!((row.status, row.attempt), (BatchStatus::Failed, 2));
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("passed its deadline"),
        "{row:?}"
    );
    assert_eq!(crashed.len(), 2, "one session per attempt");
    let runs = &stack.runs_by_batch().await[&batch];
    assert!(runs.iter().all(|r| r.outcome == RunOutcome::Aborted), "{runs:?}");
    assert_eq!(runs.iter().map(|r| &r.session_id).collect::<HashSet<_>>().len(), 2);
    let failures: Vec<FailureNotice> = drain(&stack.sqs, &stack.resources.failure_queue_url)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!((&failures[0].batch_id, failures[0].attempts), (&batch, 2));
    assert!(drain(&stack.sqs, &stack.resources.results_queue_url).await.is_empty());
}

/// Test 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_s3_notification_delivered_twice_starts_exactly_one_run() {
    let stack = BatchStack::start(StackOptions {
        pump: false,
        ..StackOptions::default()
    })
    .await;
    let batch = stack.submit("twice", &[("a.txt", b"once only")]).await;
    let is_ours = |body: &str| body.contains("incoming%2Ftwice%2Fmanifest.json");
    let original = receive(&stack, 1, is_ours).await;
    let body = original[0].body().unwrap().to_string();
    // S3 delivers at least once: the same notification again, as a second message.
    stack
        .sqs
        .send_message()
        .queue_url(&stack.resources.batch_queue_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let copy = receive(&stack, 1, is_ours).await;

    // Both deliveries at once, in two concurrent invocations.
    let (first, second) = ([&original[0]], [&copy[0]]);
    let (a, b) = tokio::join!(deliver(&stack, &first), deliver(&stack, &second));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    for message in [&original[0], &copy[0]] {
        delete(&stack, message).await;
    }
    let row = stack
        .wait_for_status(&batch, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;
    // And once more after it finished.
    stack
        .sqs
        .send_message()
        .queue_url(&stack.resources.batch_queue_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let late = receive(&stack, 1, is_ours).await;
    assert!(deliver(&stack, &[&late[0]]).await.batch_item_failures.is_empty());

    let outcomes: Vec<invoker::Outcome> = [&original[0], &copy[0], &late[0]]
        .iter()
        .flat_map(|m| said(&stack, m.message_id().unwrap()))
        .flat_map(|r| r.expect("no delivery failed"))
        .collect();
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, invoker::Outcome::Started { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, invoker::Outcome::Duplicate { .. }))
        .count();
    assert_eq!((started, duplicates), (1, 2), "{outcomes:?}");
    assert_eq!(stack.runs_by_batch().await[&batch].len(), 1);
    let invoked: Vec<String> = stack.emulator.sessions().into_iter().map(|s| s.session_id).collect();
    assert_eq!(
        invoked,
        vec![row.session_id.unwrap().to_string()],
        "one session ever reached the agent"
    );
    assert_eq!(drain(&stack.sqs, &stack.resources.results_queue_url).await.len(), 1);
}

/// Test 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_records_fail_alone_with_a_reason_and_reach_the_dlq_while_the_valid_one_succeeds() {
    let mut stack = BatchStack::start(StackOptions {
        pump: false,
        max_receive_count: 2,
        ..StackOptions::default()
    })
    .await;
    let good = stack.submit("good", &[("a.txt", b"fine")]).await;
    put_malformed_records(&stack).await;
    let messages = receive(&stack, 4, |body| !body.contains("s3:TestEvent")).await;
    let id_of = |needle: &str| {
        messages
            .iter()
            .find(|m| m.body().unwrap_or_default().contains(needle))
            .and_then(|m| m.message_id())
            .unwrap()
            .to_string()
    };
    let (good_id, schema_id, escape_id, text_id) = (
        id_of("incoming%2Fgood%2F"),
        id_of("incoming%2Fschema%2F"),
        id_of("incoming%2Fescape%2F"),
        id_of("not json"),
    );

    let response = deliver(&stack, &messages.iter().collect::<Vec<_>>()).await;

    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        HashSet::from([schema_id.as_str(), escape_id.as_str(), text_id.as_str()])
    );
    let reason = |id: &str| said(&stack, id)[0].clone().unwrap_err();
    assert!(
        reason(&schema_id).contains("not a v1 manifest"),
        "{}",
        reason(&schema_id)
    );
    assert!(
        reason(&escape_id).contains("outside the batch's prefix"),
        "{}",
        reason(&escape_id)
    );
    assert!(reason(&text_id).contains("not JSON"), "{}", reason(&text_id));
    assert!(matches!(
        said(&stack, &good_id)[0].as_ref().unwrap()[0],
        invoker::Outcome::Started { .. }
    ));
    stack
        .wait_for_status(&good, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;

    let dead = return_the_failed_and_collect_the_dead(&mut stack, &messages, &good_id).await;
    let expected: HashSet<String> = messages
        .iter()
        .filter(|m| m.message_id() != Some(good_id.as_str()))
        .map(|m| m.body().unwrap().to_string())
        .collect();
    assert_eq!(dead, expected, "exactly the three bad records, unchanged");
    for refused in ["schema", "escape"] {
        assert!(
            stack.row(&BatchId::parse(refused).unwrap()).await.is_none(),
            "{refused} was never accepted"
        );
    }
}

/// Test 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_completing_as_the_detector_fires_gives_exactly_one_outcome_per_attempt() {
    const BATCHES: usize = 12;
    let stack = BatchStack::start(StackOptions {
        gate_open: false,
        // Spread the agents' completions over the detector's run, so some land before its
        // writes and some after.
        processing_jitter: Duration::from_millis(400),
        batch_deadline_secs: 60,
        ..StackOptions::default()
    })
    .await;
    let mut batches = Vec::new();
    for n in 0..BATCHES {
        batches.push(stack.submit(&format!("race-{n}"), &[("a.txt", b"racing")]).await);
    }
    let until = Instant::now() + Duration::from_secs(60);
    while stack.agent.running().len() < BATCHES {
        assert!(
            Instant::now() < until,
            "only {} batches reached the agent",
            stack.agent.running().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut first_sessions = HashMap::new();
    for batch in &batches {
        let row = stack.row(batch).await.unwrap();
        first_sessions.insert(batch.clone(), row.session_id.unwrap());
    }

    // Every attempt passes its deadline for the detector at the instant the agents finish, and
    // two detector runs overlap.
    stack.detector_clock.skew(Duration::from_secs(61));
    let (a, b, ()) = tokio::join!(
        stack.detector.handle(scheduled()),
        stack.detector.handle(scheduled()),
        async { stack.processor.open_gate() }
    );
    stack.detector_clock.skew(Duration::ZERO);
    let reports = [a.unwrap(), b.unwrap()];

    let mut rows = HashMap::new();
    for batch in &batches {
        let row = stack
            .wait_for_status(batch, BatchStatus::Succeeded, Duration::from_secs(60))
            .await;
        rows.insert(batch.clone(), row);
    }
    // The agent records a run after its last write returns: wait for every record.
    assert!(stack.agent_idle(Duration::from_secs(10)).await, "runs still going");
    let all_runs = stack.runs_by_batch().await;
    let sessions = stack.emulator.sessions();
    let retried_by_detector = batches
        .iter()
        .filter(|batch| {
            let race = Race {
                row: &rows[*batch],
                runs: &all_runs[*batch],
                first: &first_sessions[*batch],
                reports: &reports,
            };
            race.detector_won(batch, &sessions)
        })
        .count();
    eprintln!(
        "race outcomes: {retried_by_detector} retried by the detector, {} finished by the agent",
        BATCHES - retried_by_detector
    );
    let attempts_run: usize = stack.runs_by_batch().await.values().map(Vec::len).sum();
    assert_eq!(stack.emulator.sessions().len(), attempts_run, "one session per attempt");
}

/// One batch of the race between its agent and the detector, after both are done.
struct Race<'a> {
    row: &'a warmpool_core::batch::BatchRow,
    runs: &'a [document_agent::RunRecord],
    first: &'a SessionId,
    reports: &'a [RunReport],
}

impl Race<'_> {
    fn reported(&self, list: fn(&RunReport) -> &Vec<Settled>, batch: &BatchId, outcome: &str) -> usize {
        self.reports
            .iter()
            .flat_map(list)
            .filter(|s| &s.batch_id == batch && s.attempt == 1 && s.outcome == outcome)
            .count()
    }

    /// Checks that exactly one side won attempt 1 and that the loser left nothing behind;
    /// true if the detector won.
    fn detector_won(&self, batch: &BatchId, sessions: &[agentcore_emulator::lifecycle::SessionView]) -> bool {
        let (row, runs) = (self.row, self.runs);
        let detector_won = self.reported(|r| &r.settled, batch, "retried");
        // The agent won if its SUCCEEDED write for attempt 1 landed. It knows so, unless the
        // detector, seeing the settled row in the same instant, stopped the session (the
        // follow-up) before the write's answer reached the run.
        let stopped_after_its_write = row.attempt == 1 && self.reported(|r| &r.followed_up, batch, "closed") == 1;
        let agent_won = runs
            .iter()
            .filter(|r| {
                r.attempt == 1
                    && (r.outcome == RunOutcome::Recorded
                        || (r.outcome == RunOutcome::Aborted && stopped_after_its_write))
            })
            .count();
        let reports = self.reports;
        assert_eq!(
            agent_won + detector_won,
            1,
            "{batch}: runs {runs:?}, reports {reports:?}"
        );
        if detector_won == 1 {
            assert_eq!(row.attempt, 2, "{batch}");
            assert_ne!(row.session_id.as_ref(), Some(self.first));
            assert_eq!(
                session_view(sessions, self.first).state,
                SessionState::Stopped,
                "{batch}: the loser's session"
            );
            assert!(runs.iter().any(|r| r.attempt == 2 && r.outcome == RunOutcome::Recorded));
        } else {
            assert_eq!((row.attempt, row.session_id.as_ref()), (1, Some(self.first)), "{batch}");
            assert_eq!(runs.len(), 1, "{batch}: no second run: {runs:?}");
        }
        detector_won == 1
    }
}

/// Test 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_batches_submitted_at_once_all_succeed_none_lost_none_run_twice() {
    const BATCHES: usize = 200;
    let started = Instant::now();
    let stack = BatchStack::start(StackOptions {
        batch_deadline_secs: 600,
        invoke_timeout_secs: 60,
        pollers: 4,
        creation_rate_per_sec: 1_000.0,
        detector_every: Some(Duration::from_secs(2)),
        ..StackOptions::default()
    })
    .await;
    let names: Vec<String> = (0..BATCHES).map(|n| format!("bulk-{n:03}")).collect();
    let batches: Vec<BatchId> = futures::stream::iter(&names)
        .map(|name| stack.submit(name, &[("a.txt", b"first document"), ("b.txt", b"second document")]))
        .buffer_unordered(16)
        .collect()
        .await;
    let submitted = started.elapsed();

    let until = Instant::now() + Duration::from_secs(400);
    loop {
        let runs = stack.agent.runs();
        assert!(
            runs.iter().all(|r| r.outcome == RunOutcome::Recorded),
            "a run did not succeed: {runs:?}"
        );
        if runs.len() >= BATCHES {
            break;
        }
        assert!(Instant::now() < until, "{} of {BATCHES} batches finished", runs.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let finished = started.elapsed();

    let rows: Vec<_> = futures::stream::iter(&batches)
        .map(|b| stack.row(b))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut row_sessions = HashSet::new();
    for row in rows {
        let row = row.expect("every batch has a row");
        assert_eq!((row.status, row.attempt), (BatchStatus::Succeeded, 1), "{row:?}");
        assert!(
            row_sessions.insert(row.session_id.unwrap().to_string()),
            "a session ran two batches"
        );
    }
    let sessions = stack.emulator.sessions();
    assert_eq!(sessions.len(), BATCHES, "one session per batch at the emulator");
    assert!(
        sessions.iter().all(|s| s.invocation_count == 1),
        "a session was invoked twice"
    );
    let emulator_sessions: HashSet<String> = sessions.into_iter().map(|s| s.session_id).collect();
    assert_eq!(emulator_sessions, row_sessions);
    let runs = stack.runs_by_batch().await;
    assert_eq!(runs.len(), BATCHES);
    assert!(runs.values().all(|r| r.len() == 1), "a batch ran twice");
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    let published_batches: HashSet<&BatchId> = published.iter().map(|n| &n.batch_id).collect();
    assert_eq!((published.len(), published_batches.len()), (BATCHES, BATCHES));
    assert!(
        drain(&stack.sqs, &stack.resources.batch_dlq_url).await.is_empty(),
        "nothing in the DLQ"
    );
    assert!(
        drain(&stack.sqs, &stack.resources.failure_queue_url).await.is_empty(),
        "nothing failed"
    );
    eprintln!("{BATCHES} batches: submitted in {submitted:?}, all succeeded after {finished:?}");
}

/// Two manifests the invoker must refuse (a schema error, another batch's document) and a
/// message that is not JSON, beside whatever the test submitted properly.
async fn put_malformed_records(stack: &BatchStack) {
    let bucket = stack.resources.documents_bucket.clone();
    for (key, body) in [
        (
            "incoming/schema/manifest.json",
            r#"{"v":1,"batchId":"schema","documents":"all of them"}"#,
        ),
        (
            // Another batch's document: a manifest may only name its own.
            "incoming/escape/manifest.json",
            r#"{"v":1,"batchId":"escape","documents":[{"key":"incoming/good/a.txt","size":4}]}"#,
        ),
    ] {
        let location = ObjectRef::new(&bucket, key);
        stack
            .store
            .put(&location, body.as_bytes().to_vec(), "application/json")
            .await
            .unwrap();
    }
    stack
        .sqs
        .send_message()
        .queue_url(&stack.resources.batch_queue_url)
        .message_body("this is not json")
        .send()
        .await
        .unwrap();
}

/// As Lambda's event source does: the good record is deleted, the failed ones return, until
/// the three bad records reach the DLQ (bounded); their bodies.
async fn return_the_failed_and_collect_the_dead(
    stack: &mut BatchStack,
    messages: &[Message],
    good_id: &str,
) -> HashSet<String> {
    for message in messages {
        let id = message.message_id().unwrap();
        if id == good_id {
            delete(stack, message).await;
        } else {
            stack
                .sqs
                .change_message_visibility()
                .queue_url(&stack.resources.batch_queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }
    stack.start_pump();
    let mut dead: Vec<String> = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while dead.len() < 3 {
        assert!(Instant::now() < until, "only {} records reached the DLQ", dead.len());
        dead.extend(drain(&stack.sqs, &stack.resources.batch_dlq_url).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dead.into_iter().collect()
}
