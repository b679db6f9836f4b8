//! Wire-level tests of the warm pool: real SDK clients against moto (SQS, Lambda) and the
//! AgentCore emulator, all on 127.0.0.1.

use agentcore_emulator::lifecycle::SessionState;
use agentcore_emulator::{Emulator, EmulatorConfig, FaultsUpdate};
use get_session::{GetSession, GetSessionError};
use lambda_runtime::LambdaEvent;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::aws::{LambdaReplenishTrigger, SqsPoolQueue};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::error::QueueError;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::claim::{ClaimError, ClaimPolicy, Claimer, OnEmpty, Source};
use warmpool_core::pool::quota::CreationPacer;
use warmpool_core::pool::trigger::DeferredTrigger;
use warmpool_core::pool::warmup::{WarmupPolicy, warm_new_sessions};
use warmpool_core::ports::{PoolDepth, PoolQueue, Received};
use warmpool_core::session::{PooledSession, SessionId};
use warmpool_tests::faults::{self, Fault, FaultInjector};
use warmpool_tests::*;

fn get_session_config(queue: &SqsPoolQueue, fallback: bool) -> get_session::Config {
    let fallback = if fallback { "true" } else { "false" };
    let env = Env::from_pairs([
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("FRESH_FALLBACK", fallback),
    ]);
    get_session::Config::from_env(&env).expect("get-session config")
}

fn no_event() -> LambdaEvent<serde_json::Value> {
    LambdaEvent::new(serde_json::json!({}), lambda_runtime::Context::default())
}

fn claim_policy(on_empty: OnEmpty) -> ClaimPolicy {
    ClaimPolicy {
        on_empty,
        ..ClaimPolicy::default()
    }
}

async fn depth(queue: &SqsPoolQueue) -> PoolDepth {
    queue.depth().await.expect("depth")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_claimers_get_each_of_two_thousand_sessions_exactly_once() {
    const POOL: usize = 2_000;
    const CLAIMERS: usize = 32;
    let queue = pool_queue("drain").await;
    let now = SystemClock.now_ms();
    let enqueued: Vec<PooledSession> = (0..POOL)
        .map(|_| PooledSession::new(SessionId::generate(), now, now))
        .collect();
    fill_pool(&queue, &enqueued, |s| s.message_group_id().to_string()).await;

    let claimer = Arc::new(Claimer {
        queue: queue.clone(),
        trigger: RecordingTrigger::default(),
        clock: SystemClock,
        policy: claim_policy(OnEmpty::Fail),
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let claimer = claimer.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < deadline && mine.len() <= POOL {
                    match claimer.claim().await {
                        Ok(claim) => mine.push(claim.session.session_id),
                        Err(ClaimError::PoolEmpty) => break,
                        Err(e) => panic!("claim failed: {e}"),
                    }
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("claimer task"));
    }

    let unique: HashSet<&SessionId> = claimed.iter().collect();
    assert_eq!(unique.len(), claimed.len(), "a session id was handed out twice");
    let left = drain_pooled(&queue).await.len();
    assert_eq!(
        claimed.len() + left,
        POOL,
        "claimed {} + left {left} != enqueued",
        claimed.len()
    );
    let known: HashSet<&SessionId> = enqueued.iter().map(|s| &s.session_id).collect();
    assert!(
        claimed.iter().all(|id| known.contains(id)),
        "a claimed id was never enqueued"
    );
    assert_eq!(
        claimer.trigger.requests().iter().sum::<u32>() as usize,
        claimed.len(),
        "one replacement per claim"
    );
}

/// The pool queue, except that just before each delete another actor removes every message
/// (a purge, over the wire): our receipt handle is then no longer valid at the server.
struct LosesMessagesBeforeDelete {
    inner: SqsPoolQueue,
    sqs: aws_sdk_sqs::Client,
}

impl PoolQueue for LosesMessagesBeforeDelete {
    async fn receive(&self, max: u8, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        self.inner.receive(max, wait, visibility).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.sqs
            .purge_queue()
            .queue_url(self.inner.queue_url())
            .send()
            .await
            .expect("purge");
        self.inner.delete(receipt).await
    }
    async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
        self.inner.enqueue(session).await
    }
    async fn depth(&self) -> Result<PoolDepth, QueueError> {
        self.inner.depth().await
    }
}

#[tokio::test]
async fn a_session_whose_delete_fails_at_sqs_is_not_handed_out() {
    let queue = pool_queue("lost-delete").await;
    let now = SystemClock.now_ms();
    let pooled = PooledSession::new(SessionId::generate(), now, now);
    queue.enqueue(&pooled).await.unwrap();
    let claimer = Claimer {
        queue: LosesMessagesBeforeDelete {
            inner: queue.clone(),
            sqs: sqs_client(),
        },
        trigger: RecordingTrigger::default(),
        clock: SystemClock,
        policy: claim_policy(OnEmpty::Fresh),
    };

    let claim = claimer.claim().await.unwrap();

    assert_eq!(claim.lost_deletes, 1);
    assert_ne!(claim.session.session_id, pooled.session_id);
    assert_eq!(claim.session.source, Source::Fresh);
}

#[tokio::test]
async fn a_throttled_warmup_is_not_enqueued_until_the_throttle_lifts() {
    let queue = pool_queue("throttle").await;
    let emulator = emulator(fast_lifecycle()).await;
    emulator
        .set_faults(FaultsUpdate {
            throttle_all: Some(true),
            ..Default::default()
        })
        .unwrap();
    let agent = agent_runtime(&emulator);
    let policy = WarmupPolicy {
        concurrency: std::num::NonZeroUsize::MIN,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        ..WarmupPolicy::default()
    };

    let warming = {
        let (queue, agent) = (queue.clone(), agent.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            warm_new_sessions(
                1,
                &agent,
                &queue,
                &SystemClock,
                &policy,
                &CreationPacer::unlimited(),
                deadline,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(depth(&queue).await.total(), 0, "enqueued while throttled");
    assert!(emulator.stats().throttled > 0, "the emulator saw no throttled creation");

    emulator
        .set_faults(FaultsUpdate {
            throttle_all: Some(false),
            ..Default::default()
        })
        .unwrap();
    let report = warming.await.unwrap();

    assert_eq!((report.enqueued, report.failed), (1, 0));
    assert!(report.throttles > 0);
    let pooled = drain_pooled(&queue).await;
    assert_eq!(pooled.len(), 1);
    let sessions = emulator.sessions();
    let warmed = session_view(&sessions, &pooled[0].session_id);
    assert_eq!(warmed.state, SessionState::Active);
}

#[tokio::test]
async fn a_warmup_refused_for_good_is_not_retried_and_never_enqueued() {
    let queue = pool_queue("refused").await;
    let emulator = Emulator::spawn(EmulatorConfig {
        lifecycle: fast_lifecycle(),
        runtime_arns: vec!["arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/some-other-agent".into()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let agent = agent_runtime(&emulator);
    let deadline = Instant::now() + Duration::from_secs(20);

    let report = warm_new_sessions(
        2,
        &agent,
        &queue,
        &SystemClock,
        &WarmupPolicy::default(),
        &CreationPacer::unlimited(),
        deadline,
    )
    .await;

    assert_eq!((report.enqueued, report.failed), (0, 2));
    assert!(
        Instant::now() < deadline - Duration::from_secs(15),
        "a non-retryable error was retried"
    );
    assert_eq!(depth(&queue).await.total(), 0);
}

#[tokio::test]
async fn stale_pooled_sessions_are_never_handed_out_and_are_replaced() {
    let queue = pool_queue("stale").await;
    let emulator = emulator(fast_lifecycle()).await;
    let (relay, lambda) = replenish_behind_relay(queue.clone(), &emulator).await;
    let config = get_session_config(&queue, true);
    let now = SystemClock.now_ms();
    let idle = PooledSession::new(SessionId::generate(), now - 1_000_000, now - 900_000);
    let old = PooledSession::new(SessionId::generate(), now - 28_800_000, now - 1_000);
    queue.enqueue(&idle).await.unwrap();
    queue.enqueue(&old).await.unwrap();
    let (trigger, _worker) = DeferredTrigger::spawn(LambdaReplenishTrigger::new(lambda, "replenish"));
    let function = GetSession::new(&config, queue.clone(), trigger, SystemClock);

    let answer = function.handle(no_event()).await.unwrap();

    assert_eq!(answer.source, Source::Fresh);
    assert!(answer.session_id != idle.session_id && answer.session_id != old.session_id);
    wait_for_relay(&relay).await;
    let replacements = drain_pooled(&queue).await;
    assert_eq!(replacements.len(), 2, "each discarded stale session is replaced");
    assert!(
        replacements
            .iter()
            .all(|s| s.session_id != idle.session_id && s.session_id != old.session_id)
    );
}

async fn wait_for_relay(relay: &warmpool_local_stack::relay::RunningRelay) {
    // The trigger is deferred: wait until the relay saw it, then until its run finished.
    let until = Instant::now() + Duration::from_secs(30);
    while relay.stats.started() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), relay.stats.idle())
        .await
        .expect("replenish finished");
}

#[tokio::test]
async fn an_empty_pool_answers_a_fresh_session_or_with_the_switch_a_clear_error() {
    let queue = pool_queue("empty").await;
    let with_fallback = GetSession::new(
        &get_session_config(&queue, true),
        queue.clone(),
        RecordingTrigger::default(),
        SystemClock,
    );
    let answer = serde_json::to_value(with_fallback.handle(no_event()).await.unwrap()).unwrap();
    assert_eq!(answer["source"], "fresh");
    assert!(answer["lastPingAt"].is_null());
    assert!(SessionId::parse(answer["sessionId"].as_str().unwrap()).is_ok());

    let strict = GetSession::new(
        &get_session_config(&queue, false),
        queue.clone(),
        RecordingTrigger::default(),
        SystemClock,
    );
    let error = strict.handle(no_event()).await.unwrap_err();
    assert!(matches!(error, GetSessionError::PoolEmpty));
    assert_eq!(lambda_runtime::Diagnostic::from(error).error_type, "PoolEmpty");
}

#[tokio::test]
async fn a_malformed_pool_message_is_removed_and_counted_and_the_claim_succeeds() {
    let queue = pool_queue("malformed").await;
    let sqs = sqs_client();
    sqs.send_message()
        .queue_url(queue.queue_url())
        .message_body(r#"{"v":1,"sessionId":"too-short"}"#)
        .message_group_id("garbage")
        .message_deduplication_id("garbage-1")
        .send()
        .await
        .unwrap();
    let now = SystemClock.now_ms();
    let good = PooledSession::new(SessionId::generate(), now, now);
    queue.enqueue(&good).await.unwrap();
    let claimer = Claimer {
        queue: queue.clone(),
        trigger: RecordingTrigger::default(),
        clock: SystemClock,
        policy: claim_policy(OnEmpty::Fail),
    };

    let claim = claimer.claim().await.unwrap();

    assert_eq!(claim.session.session_id, good.session_id);
    assert_eq!(claim.malformed_discarded, 1);
    assert_eq!(depth(&queue).await.total(), 0, "the malformed message was removed");
    assert_eq!(claimer.trigger.requests(), vec![2], "and replaced");
}

#[tokio::test]
async fn a_failing_replenish_trigger_does_not_fail_the_claim() {
    let queue = pool_queue("trigger").await;
    let now = SystemClock.now_ms();
    let pooled = PooledSession::new(SessionId::generate(), now, now);
    queue.enqueue(&pooled).await.unwrap();
    // moto accepts an Event invoke of any name with 202, so the failure is the Lambda
    // endpoint refusing connections.
    let lambda = lambda_client(&format!("http://127.0.0.1:{}", free_loopback_port()));
    let (trigger, worker) = DeferredTrigger::spawn(LambdaReplenishTrigger::new(lambda.clone(), "replenish"));
    let function = GetSession::new(&get_session_config(&queue, true), queue.clone(), trigger, SystemClock);

    let answer = function.handle(no_event()).await.unwrap();

    assert_eq!(answer.session_id, pooled.session_id);
    tokio::time::timeout(Duration::from_secs(30), worker.idle())
        .await
        .unwrap();
    assert_eq!(worker.failed(), 1, "the trigger really failed at the Lambda API");

    // The same holds when the trigger is awaited in-line rather than deferred.
    queue
        .enqueue(&PooledSession::new(SessionId::generate(), now, now + 1))
        .await
        .unwrap();
    let inline = Claimer {
        queue: queue.clone(),
        trigger: LambdaReplenishTrigger::new(lambda, "replenish"),
        clock: SystemClock,
        policy: claim_policy(OnEmpty::Fail),
    };
    let claim = inline.claim().await.unwrap();
    assert!(claim.trigger_failed);
    assert_eq!(claim.session.source, Source::Pool);
}

#[tokio::test]
async fn invoking_through_the_pool_lands_on_a_warm_microvm_and_a_fresh_id_lands_cold() {
    let queue = pool_queue("warm-hit").await;
    let emulator = emulator(fast_lifecycle()).await;
    let (relay, lambda) = replenish_behind_relay(queue.clone(), &emulator).await;
    fill_through_replenish(&lambda, 2).await;
    assert_eq!(depth(&queue).await.visible, 2);
    let (trigger, _worker) = DeferredTrigger::spawn(LambdaReplenishTrigger::new(lambda, "replenish"));
    let function = GetSession::new(&get_session_config(&queue, true), queue.clone(), trigger, SystemClock);
    let agent = agent_runtime(&emulator);
    use warmpool_core::ports::AgentRuntime;

    let pooled = function.handle(no_event()).await.unwrap();
    agent
        .invoke(&pooled.session_id, br#"{"question":"warm?"}"#)
        .await
        .unwrap();
    let fresh = SessionId::generate();
    agent.invoke(&fresh, br#"{"question":"cold?"}"#).await.unwrap();

    assert_eq!(pooled.source, Source::Pool);
    let sessions = emulator.sessions();
    let history =
        |id: &SessionId| -> Vec<bool> { session_view(&sessions, id).history.iter().map(|h| h.cold).collect() };
    assert_eq!(
        history(&pooled.session_id),
        vec![true, false],
        "warmup cold, then our call warm"
    );
    assert_eq!(history(&fresh), vec![true]);
    wait_for_relay(&relay).await;
    assert_eq!(depth(&queue).await.total(), 2, "the claimed session was replaced");
}

/// A pool queue whose SQS client carries `faults` (see `warmpool_tests::faults`).
async fn faulty_pool_queue(prefix: &str) -> (SqsPoolQueue, FaultInjector) {
    let faults = FaultInjector::default();
    let sqs = faults::sqs_client(&sdk_config(&Moto::shared().endpoint), &faults);
    let url = create_pool_queue(&sqs_client(), prefix).await;
    (SqsPoolQueue::new(sqs, url), faults)
}

#[tokio::test]
async fn a_warm_session_whose_pool_send_lost_its_answer_at_sqs_is_pooled_once_and_left_running() {
    // Dropped: the send landed and the connection closed. Lost: it landed and every one of the
    // SDK's three attempts was answered with a 500.
    for (fault, attempts) in [(Fault::DropAnswer, 1), (Fault::LoseAnswer, 3)] {
        let (queue, faults) = faulty_pool_queue("lost-send").await;
        let emulator = emulator(fast_lifecycle()).await;
        faults.next("SendMessage", fault, attempts);

        let report = warm_new_sessions(
            1,
            &agent_runtime(&emulator),
            &queue,
            &SystemClock,
            &WarmupPolicy::default(),
            &CreationPacer::unlimited(),
            Instant::now() + Duration::from_secs(30),
        )
        .await;

        assert_eq!(faults.injected("SendMessage", fault), attempts, "{fault:?}");
        let pooled = drain_pooled(&queue).await;
        assert_eq!(pooled.len(), 1, "{fault:?}: the session is in the pool once");
        let sessions = emulator.sessions();
        assert_eq!(
            session_view(&sessions, &pooled[0].session_id).state,
            SessionState::Active,
            "{fault:?}: the pooled session was stopped: a caller would get a cold start"
        );
        assert_eq!(emulator.stats().stops, 0, "{fault:?}");
        assert_eq!(
            (report.enqueued, report.enqueue_failures),
            (1, 0),
            "{fault:?}: {report:?}"
        );
    }
}

fn raw_pool_message(
    sqs: &aws_sdk_sqs::Client,
    queue: &SqsPoolQueue,
    body: String,
    group: &str,
) -> impl Future<Output = ()> {
    let request = sqs
        .send_message()
        .queue_url(queue.queue_url())
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(format!("{group}-1"));
    async move {
        request.send().await.expect("send a raw pool message");
    }
}

#[tokio::test]
async fn forged_pool_messages_are_never_handed_out_by_get_session() {
    let queue = pool_queue("forged").await;
    let sqs = sqs_client();
    let now = SystemClock.now_ms();
    // A dead session made to look pinged an hour from now, and an ID too long for SQS's
    // deduplication ID once a ping time is appended.
    let ahead = PooledSession::new(SessionId::generate(), now, now + 3_600_000);
    queue.enqueue(&ahead).await.unwrap();
    let long_id = "a".repeat(108);
    let long = format!(r#"{{"v":1,"sessionId":"{long_id}","createdAt":{now},"lastPingAt":{now}}}"#);
    raw_pool_message(&sqs, &queue, long, "long-id").await;
    let function = GetSession::new(
        &get_session_config(&queue, true),
        queue.clone(),
        RecordingTrigger::default(),
        SystemClock,
    );

    let answer = function.handle(no_event()).await.unwrap();

    assert_eq!(answer.source, Source::Fresh);
    assert_ne!(answer.session_id, ahead.session_id);
    assert_ne!(answer.session_id.as_str(), long_id);
    assert_eq!(depth(&queue).await.total(), 0, "both removed as malformed");
}

#[tokio::test]
async fn get_session_hands_out_no_pooled_session_with_less_than_its_minimum_lifetime_left() {
    let queue = pool_queue("min-lifetime").await;
    let now = SystemClock.now_ms();
    // Max lifetime 28 800 s less the 60 s margin: 200 s left, below the default 300 s.
    let ending = PooledSession::new(SessionId::generate(), now - 28_540_000, now - 1_000);
    queue.enqueue(&ending).await.unwrap();
    let roomy = PooledSession::new(SessionId::generate(), now - 1_000, now - 1_000);
    queue.enqueue(&roomy).await.unwrap();
    let function = GetSession::new(
        &get_session_config(&queue, false),
        queue.clone(),
        RecordingTrigger::default(),
        SystemClock,
    );

    let answer = function.handle(no_event()).await.unwrap();

    assert_eq!(answer.session_id, roomy.session_id);
    assert_eq!(
        depth(&queue).await.total(),
        0,
        "the short-lived session left the pool too"
    );
}
