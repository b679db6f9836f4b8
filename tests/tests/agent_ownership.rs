//! A hostile caller end to end: it claims a session through get-session (the documented flow)
//! and invokes it with another batch's attempt. moto serves S3, SQS and DynamoDB; the AgentCore
//! emulator forwards to the real document agent; the batch itself runs through the real
//! invoker. Everything on 127.0.0.1 with the real SDK clients.

use aws_sdk_s3::primitives::ByteStream;
use get_session::GetSession;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::batch::message::ResultNotice;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::claim::Source;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;
use warmpool_tests::batch_stack::{BatchStack, StackOptions};
use warmpool_tests::{
    Moto, agent_runtime, create_pool_queue, drain, fill_through_replenish, replenish_behind_relay, sdk_config,
};

/// What a get-session caller holds: a warm session from its own pool, claimed through the
/// get-session function, warmed by replenish on the same emulator and agent as the batches.
async fn claim_through_get_session(stack: &BatchStack) -> SessionId {
    let queue =
        warmpool_core::aws::SqsPoolQueue::new(stack.sqs.clone(), create_pool_queue(&stack.sqs, "user-pool").await);
    let (_relay, lambda) = replenish_behind_relay(queue.clone(), &stack.emulator).await;
    fill_through_replenish(&lambda, 1).await;
    let env = Env::from_pairs([
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("FRESH_FALLBACK", "false"),
    ]);
    let config = get_session::Config::from_env(&env).expect("get-session config");
    let function = GetSession::new(&config, queue, RecordingTrigger::default(), SystemClock);
    let claimed = function
        .handle(LambdaEvent::new(json!({}), lambda_runtime::Context::default()))
        .await
        .expect("get-session hands out a session");
    assert_eq!(claimed.source, Source::Pool, "a warm pooled session");
    claimed.session_id
}

fn s3() -> aws_sdk_s3::Client {
    warmpool_core::aws::s3_client(&sdk_config(&Moto::shared().endpoint), true)
}

/// Every result object of `batch`, with its bytes.
async fn results_of(stack: &BatchStack, batch: &BatchId) -> Vec<(String, Vec<u8>)> {
    let s3 = s3();
    let listed = s3
        .list_objects_v2()
        .bucket(&stack.resources.documents_bucket)
        .prefix(format!("results/{batch}/"))
        .send()
        .await
        .expect("list results");
    let mut objects = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap_or_default().to_string();
        let body = s3
            .get_object()
            .bucket(&stack.resources.documents_bucket)
            .key(&key)
            .send()
            .await
            .expect("get result")
            .body
            .collect()
            .await
            .expect("result body")
            .into_bytes()
            .to_vec();
        objects.push((key, body));
    }
    objects
}

async fn until_running(stack: &BatchStack, session: &SessionId) {
    let until = Instant::now() + Duration::from_secs(30);
    while !stack.agent.running().contains(session) {
        assert!(Instant::now() < until, "the agent never ran a batch on {session}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn batch_payload(row: &BatchRow, attempt: u32, documents: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({"type":"batch","v":1,"batchId":row.batch_id,"attempt":attempt,
        "documents":documents,"deadline":row.deadline}))
    .unwrap()
}

/// The payloads a hostile caller tries on its own session, all naming `row`'s batch: its
/// attempt with its documents, its attempt with other objects, and the next attempt.
fn hostile_payloads(row: &BatchRow, bucket: &str) -> Vec<Vec<u8>> {
    let own: Vec<String> = row.documents.iter().map(ToString::to_string).collect();
    let elsewhere = vec![format!("s3://{bucket}/incoming/someone-else/secret.txt")];
    vec![
        batch_payload(row, row.attempt, &own),
        batch_payload(row, row.attempt, &elsewhere),
        batch_payload(row, row.attempt + 1, &own),
    ]
}

/// Invokes `session` with each payload through AgentCore (the emulator) and expects the agent
/// to refuse each one as not this session's.
async fn assert_every_payload_refused(stack: &BatchStack, session: &SessionId, payloads: &[Vec<u8>]) {
    let runtime = agent_runtime(&stack.emulator);
    for payload in payloads {
        let answer = runtime.invoke(session, payload).await;
        let error = answer
            .map(|body| String::from_utf8_lossy(&body).into_owned())
            .expect_err("the agent must refuse another batch's attempt");
        assert!(error.to_string().contains("does not own"), "{error}");
    }
}

fn notices(bodies: &[String]) -> Vec<ResultNotice> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("a result notice"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_get_session_caller_names_a_running_batch_then_the_agent_refuses_and_touches_nothing() {
    let stack = BatchStack::start(StackOptions {
        gate_open: false,
        ..StackOptions::default()
    })
    .await;
    let victim = stack.submit("victim", &[("a.txt", b"private words")]).await;
    let before = stack
        .wait_for(&victim, Duration::from_secs(30), |r| r.status == BatchStatus::Running)
        .await;
    let owner = before.session_id.clone().expect("the owning session");
    until_running(&stack, &owner).await;
    let hostile = claim_through_get_session(&stack).await;
    assert_ne!(hostile, owner);

    let payloads = hostile_payloads(&before, &stack.resources.documents_bucket);
    assert_every_payload_refused(&stack, &hostile, &payloads).await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !stack.agent.running().contains(&hostile),
        "no run on the hostile session"
    );
    assert_eq!(stack.row(&victim).await, Some(before), "no table write");
    assert_eq!(results_of(&stack, &victim).await, vec![], "no result object");
    assert_eq!(
        drain(&stack.sqs, &stack.resources.results_queue_url).await,
        Vec::<String>::new(),
        "no notice"
    );

    // The owner's run is unharmed: exactly one result, one notice, from the owner.
    stack.processor.open_gate();
    let done = stack
        .wait_for_status(&victim, BatchStatus::Succeeded, Duration::from_secs(30))
        .await;
    let published = notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await);
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].session_id, owner);
    let results = results_of(&stack, &victim).await;
    assert_eq!(results.len(), 1);
    let location = format!("s3://{}/{}", stack.resources.documents_bucket, results[0].0);
    assert_eq!(done.result_ref, Some(location));
    assert!(
        stack.agent.runs().iter().all(|r| r.session_id == owner),
        "{:?}",
        stack.agent.runs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_get_session_caller_names_a_finished_batch_then_its_result_and_notices_stay_as_they_were() {
    let stack = BatchStack::start(StackOptions::default()).await;
    let finished = stack.submit("finished", &[("a.txt", b"settled words")]).await;
    let before = stack
        .wait_for_status(&finished, BatchStatus::Succeeded, Duration::from_secs(60))
        .await;
    assert_eq!(
        notices(&drain(&stack.sqs, &stack.resources.results_queue_url).await).len(),
        1
    );
    let results = results_of(&stack, &finished).await;
    assert_eq!(results.len(), 1);
    let hostile = claim_through_get_session(&stack).await;

    let payloads = hostile_payloads(&before, &stack.resources.documents_bucket);
    assert_every_payload_refused(&stack, &hostile, &payloads).await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        results_of(&stack, &finished).await,
        results,
        "the result is not overwritten"
    );
    let result: Value = serde_json::from_slice(&results[0].1).unwrap();
    assert_eq!(result["sessionId"], before.session_id.as_ref().unwrap().as_str());
    assert_eq!(
        drain(&stack.sqs, &stack.resources.results_queue_url).await,
        Vec::<String>::new(),
        "no notice for a batch the caller does not own"
    );
    assert_eq!(stack.row(&finished).await, Some(before));
}

/// The create-only write a result object needs (`If-None-Match: *`) is honoured by moto
/// 5.2.5: a second create of the same key is refused with 412 and the first object stays.
#[tokio::test]
async fn moto_refuses_a_create_only_put_over_an_existing_object() {
    let s3 = s3();
    let bucket = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let put = |body: &'static [u8]| {
        s3.put_object()
            .bucket(&bucket)
            .key("results/x/attempt-1/session-a.json")
            .if_none_match("*")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"first").await.expect("a create of a new key lands");
    let refused = put(b"second")
        .await
        .expect_err("a create over an existing key is refused");
    assert_eq!(refused.raw_response().map(|r| r.status().as_u16()), Some(412));
    let kept = s3
        .get_object()
        .bucket(&bucket)
        .key("results/x/attempt-1/session-a.json")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&kept[..], b"first");
}
