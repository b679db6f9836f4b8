//! A deploy of a new agent version drains the pool, over the wire: the endpoint's live version
//! from moto's AgentCore control plane (GetAgentRuntimeEndpoint), the pool in moto's SQS, the
//! sessions in the AgentCore emulator, the real replenish and get-session handlers.
//!
//! moto's UpdateAgentRuntimeEndpoint sets `targetVersion` and never moves `liveVersion` (its
//! endpoint model has no step that promotes one to the other), so the switch is made the way
//! that moto does show: the endpoint is deleted and created again on version 2.

use aws_sdk_bedrockagentcorecontrol::Client as Control;
use aws_sdk_bedrockagentcorecontrol::types::{
    AgentRuntimeArtifact, ContainerConfiguration, NetworkConfiguration, NetworkMode,
};
use lambda_runtime::{Context, LambdaEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warmpool_core::aws::{AgentCoreEndpointVersion, SqsPoolQueue};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::fakes::RecordingTrigger;
use warmpool_core::pool::claim::Source;
use warmpool_core::pool::version::VersionSource;
use warmpool_core::session::PooledSession;
use warmpool_tests::{Moto, agent_runtime, emulator, fast_lifecycle, pool_queue, sdk_config, sqs_client};

const ENDPOINT: &str = "pool";
const TARGET: usize = 8;
const SCHEDULE: &str = include_str!("../../events/replenish-schedule.json");

fn event(raw: &str) -> LambdaEvent<serde_json::Value> {
    LambdaEvent::new(serde_json::from_str(raw).expect("event json"), Context::default())
}

fn artifact() -> AgentRuntimeArtifact {
    AgentRuntimeArtifact::ContainerConfiguration(
        ContainerConfiguration::builder()
            .container_uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:latest")
            .build()
            .expect("container configuration"),
    )
}

fn network() -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .network_mode(NetworkMode::Public)
        .build()
        .expect("network configuration")
}

async fn runtime_on_version_1(control: &Control) -> String {
    let created = control
        .create_agent_runtime()
        .agent_runtime_name("drain_test")
        .agent_runtime_artifact(artifact())
        .role_arn("arn:aws:iam::123456789012:role/agent")
        .network_configuration(network())
        .send()
        .await
        .expect("create runtime");
    let id = created.agent_runtime_id().to_string();
    endpoint_on(control, &id, "1").await;
    id
}

async fn endpoint_on(control: &Control, runtime_id: &str, version: &str) {
    control
        .create_agent_runtime_endpoint()
        .agent_runtime_id(runtime_id)
        .name(ENDPOINT)
        .agent_runtime_version(version)
        .send()
        .await
        .expect("create endpoint");
}

/// Version 2 of the runtime, and the endpoint serving it.
async fn deploy_version_2(control: &Control, runtime_id: &str) {
    control
        .update_agent_runtime()
        .agent_runtime_id(runtime_id)
        .agent_runtime_artifact(artifact())
        .role_arn("arn:aws:iam::123456789012:role/agent")
        .network_configuration(network())
        .send()
        .await
        .expect("update runtime");
    control
        .delete_agent_runtime_endpoint()
        .agent_runtime_id(runtime_id)
        .endpoint_name(ENDPOINT)
        .send()
        .await
        .expect("delete endpoint");
    endpoint_on(control, runtime_id, "2").await;
}

type Function = replenish::Replenish<
    warmpool_core::aws::AgentCoreRuntime,
    SqsPoolQueue,
    SystemClock,
    Arc<RecordingTrigger>,
    AgentCoreEndpointVersion,
>;

/// A scheduled run, then its top-up events run as Lambda would run them: as count runs.
async fn schedule(function: &Function, trigger: &RecordingTrigger) -> replenish::RunReport {
    let before = trigger.requests().len();
    let report = function.handle(event(SCHEDULE)).await.expect("scheduled run");
    for count in trigger.requests().into_iter().skip(before) {
        function
            .handle(event(&format!(r#"{{"count": {count}}}"#)))
            .await
            .expect("count run");
    }
    report
}

/// The pool as it stands, without taking anything out of it: one receive that leaves every
/// message visible (the pool here is below one receive's ten).
async fn peek(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<PooledSession> {
    let messages = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("peek")
        .messages
        .unwrap_or_default();
    messages
        .iter()
        .map(|m| PooledSession::parse(m.body().unwrap_or_default()).expect("pool message"))
        .collect()
}

fn versions_of(pooled: &[PooledSession]) -> Vec<String> {
    pooled
        .iter()
        .map(|s| s.agent_version().map(|v| v.version).unwrap_or_else(|| "none".into()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_new_agent_version_no_claim_lands_on_the_old_one_and_the_pool_refills_within_the_budget() {
    let moto = Moto::shared();
    let control = Control::new(&sdk_config(&moto.endpoint));
    let runtime_id = runtime_on_version_1(&control).await;
    let versions = AgentCoreEndpointVersion::new(control.clone(), &runtime_id, ENDPOINT);
    assert_eq!(versions.live_version().await.expect("live version").version, "1");

    let emulator = emulator(fast_lifecycle()).await;
    let queue = pool_queue("drain").await;
    let url = queue.queue_url().to_string();
    let budget = 4.0;
    let target = TARGET.to_string();
    let config = replenish::Config::from_env(&Env::from_pairs([
        ("POOL_QUEUE_URL", url.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", warmpool_tests::RUNTIME_ARN),
        ("POOL_TARGET", target.as_str()),
        ("CREATION_BUDGET_PER_SEC", "4"),
        ("MAX_CONCURRENT_RUNS", "1"),
        ("VERSION_DRAIN_PER_SWEEP", "4"),
        ("FALLBACK_BUDGET_SECS", "20"),
    ]))
    .expect("replenish config");
    let trigger = Arc::new(RecordingTrigger::default());
    let function: Function =
        replenish::Replenish::new(config, agent_runtime(&emulator), queue, SystemClock, trigger.clone())
            .with_version_source(versions);

    // Fill on version 1.
    schedule(&function, &trigger).await;
    let sqs = sqs_client();
    assert_eq!(versions_of(&peek(&sqs, &url).await), vec!["1"; TARGET]);

    // Deploy version 2, with a grace that lets the paced drain (4 a sweep) finish.
    deploy_version_2(&control, &runtime_id).await;
    let switched = Instant::now();
    let grace = Duration::from_secs(3);
    let get_session_config = get_session::Config::from_env(&Env::from_pairs([
        ("POOL_QUEUE_URL", url.as_str()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("VERSION_DRAIN_GRACE_SECS", "3"),
        ("CLAIM_WAIT_SECS", "0"),
    ]))
    .expect("get-session config");

    let first = schedule(&function, &trigger).await;
    let drained_first = first.sweep.as_ref().map_or(0, |s| s.drained);
    let second = schedule(&function, &trigger).await;
    let drained_second = second.sweep.as_ref().map_or(0, |s| s.drained);
    let drained_at = switched.elapsed();
    let pooled = peek(&sqs, &url).await;
    let refilled_at = switched.elapsed();
    assert_eq!((drained_first, drained_second), (4, 4), "paced: 4 a sweep");
    assert_eq!(
        versions_of(&pooled),
        vec!["2"; TARGET],
        "back at target, all on version 2"
    );

    // After the grace, claims from a new get-session environment land on version 2 only.
    tokio::time::sleep(grace.saturating_sub(switched.elapsed())).await;
    let claims = get_session::GetSession::new(
        &get_session_config,
        SqsPoolQueue::new(sqs.clone(), url.clone()),
        RecordingTrigger::default(),
        SystemClock,
    );
    let mut on_v1 = 0;
    for _ in 0..TARGET {
        let claimed = claims.handle(event("{}")).await.expect("claim");
        assert_eq!(claimed.source, Source::Pool);
        on_v1 += usize::from(pooled.iter().all(|p| p.session_id != claimed.session_id));
    }
    assert_eq!(on_v1, 0, "a claim landed on a session that was not pooled on version 2");

    // The creations of the refill, at the budget, bound how long it may take.
    let allowed = Duration::from_secs_f64(TARGET as f64 / budget) + Duration::from_secs(2);
    println!(
        "version switch: drained {TARGET} sessions in 2 sweeps by {drained_at:?}, back at target on version 2 by {refilled_at:?} (budget allows {allowed:?} at {budget}/s)"
    );
    assert!(refilled_at <= allowed, "refill took {refilled_at:?}");
    let stopped = emulator.stats();
    println!("emulator after the switch: {stopped:?}");
    emulator.shutdown().await.expect("stop the emulator");
}
