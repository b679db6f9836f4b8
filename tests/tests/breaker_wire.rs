//! The warmup circuit breaker over the wire: the emulator's error injection (`POST
//! /admin/faults`, every invocation a 500) behind the real replenish handler, the pool in
//! moto's SQS, claims through the real get-session handler.

use lambda_runtime::{Context, LambdaEvent};
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::aws::SqsPoolQueue;
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::claim::Source;
use warmpool_tests::{agent_runtime, emulator, fast_lifecycle, pool_queue, sqs_client};

const SCHEDULE: &str = include_str!("../../events/replenish-schedule.json");
const THRESHOLD: u32 = 3;
const CONCURRENCY: u32 = 4;

fn event(raw: &str) -> LambdaEvent<serde_json::Value> {
    LambdaEvent::new(serde_json::from_str(raw).expect("event json"), Context::default())
}

/// The emulator's admin API, as an operator or a chaos test would call it.
async fn set_error_rate(endpoint: &str, rate: f64) {
    let answer = reqwest::Client::new()
        .post(format!("{endpoint}/admin/faults"))
        .json(&serde_json::json!({ "errorRate": rate }))
        .send()
        .await
        .expect("admin faults");
    assert!(answer.status().is_success(), "faults refused: {}", answer.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_warmup_fails_then_replenish_stops_spending_creations_probes_and_resumes() {
    let emulator = emulator(fast_lifecycle()).await;
    let queue = pool_queue("breaker").await;
    let url = queue.queue_url().to_string();
    let threshold = THRESHOLD.to_string();
    let concurrency = CONCURRENCY.to_string();
    let config = replenish::Config::from_env(&Env::from_pairs([
        ("POOL_QUEUE_URL", url.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", warmpool_tests::RUNTIME_ARN),
        ("POOL_TARGET", "6"),
        ("WARMUP_CONCURRENCY", concurrency.as_str()),
        ("WARMUP_BACKOFF_BASE_MS", "20"),
        ("WARMUP_BACKOFF_CAP_MS", "200"),
        ("WARMUP_BREAKER_THRESHOLD", threshold.as_str()),
        ("WARMUP_BREAKER_PROBE_SECS", "3"),
        ("FALLBACK_BUDGET_SECS", "10"),
    ]))
    .expect("replenish config");
    let trigger = Arc::new(RecordingTrigger::default());
    let function = replenish::Replenish::new(config, agent_runtime(&emulator), queue, SystemClock, trigger.clone());
    let claims = get_session::GetSession::new(
        &get_session::Config::from_env(&Env::from_pairs([
            ("POOL_QUEUE_URL", url.as_str()),
            ("REPLENISH_FUNCTION_NAME", "replenish"),
            ("CLAIM_WAIT_SECS", "0"),
        ]))
        .expect("get-session config"),
        SqsPoolQueue::new(sqs_client(), url.clone()),
        RecordingTrigger::default(),
        SystemClock,
    );

    // Two warm sessions, then the agent breaks.
    let filled = function.handle(event(r#"{"count": 2}"#)).await.expect("fill");
    assert_eq!(filled.enqueued, 2);
    let healthy = emulator.stats();
    set_error_rate(&emulator.endpoint_url(), 1.0).await;

    let broken = function.handle(event(r#"{"count": 20}"#)).await.expect("count run");
    let spent = emulator.stats().errors - healthy.errors;
    assert!(broken.breaker_open, "{broken:?}");
    // At most the warmups already in flight when the threshold was reached finish failing.
    assert!(
        u64::from(THRESHOLD) <= spent && spent < u64::from(THRESHOLD + CONCURRENCY),
        "{spent} failed attempts for a threshold of {THRESHOLD}"
    );
    let closed_door = function.handle(event(r#"{"count": 20}"#)).await.expect("count run");
    assert_eq!(closed_door.enqueued + closed_door.failed, 0, "{closed_door:?}");
    assert_eq!(closed_door.breaker_skipped + closed_door.skipped, 20);
    assert_eq!(
        emulator.stats().errors - healthy.errors,
        spent,
        "no creation spent while open"
    );

    // Claims keep working: the pooled sessions first, then fresh ones (FRESH_FALLBACK).
    let sources: Vec<Source> = futures::future::join_all((0..3).map(|_| claims.handle(event("{}"))))
        .await
        .into_iter()
        .map(|claim| claim.expect("claim").source)
        .collect();
    assert_eq!(sources.iter().filter(|s| **s == Source::Pool).count(), 2, "{sources:?}");

    // The agent is fixed: the next probe succeeds and the top-up goes out again.
    set_error_rate(&emulator.endpoint_url(), 0.0).await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let recovered = function.handle(event(SCHEDULE)).await.expect("scheduled run");
    assert_eq!(
        (recovered.enqueued, recovered.breaker_open),
        (1, false),
        "{recovered:?}"
    );
    assert_eq!(recovered.dispatched, 5, "the rest of the target, after the probe");
    println!(
        "breaker: {spent} failed creations before it opened (threshold {THRESHOLD}, concurrency {CONCURRENCY}), \
         {} warmups skipped while open, the probe 3 s later closed it",
        broken.breaker_skipped + closed_door.breaker_skipped
    );
    emulator.shutdown().await.expect("stop the emulator");
}
