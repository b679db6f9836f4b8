//! The local stack for wire-level tests and benchmarks: moto (SQS, Lambda) and the AgentCore
//! emulator on 127.0.0.1, and real SDK clients pointed at them. The parts come from
//! `warmpool-local-stack`; this crate adds the tests' wiring of them.
//!
//! moto runs as a child process shared by every test in a test binary; it is stopped when the
//! binary exits, however it exits (see [`Moto::shared`]).

pub mod batch_stack;
pub mod faults;
pub mod soak;

use agentcore_emulator::lifecycle::{LifecycleConfig, SessionView};
use agentcore_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use warmpool_core::aws::{AgentCoreRuntime, SqsPoolQueue};
use warmpool_core::pool::Lifecycle;
use warmpool_core::session::{PooledSession, SessionId};

pub const RUNTIME_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/test-agent-Ab12Cd34Ef";

/// moto, once per test binary (see [`warmpool_local_stack::moto`]: it stops when the binary
/// exits, however it exits).
pub struct Moto {
    pub endpoint: String,
    _moto: warmpool_local_stack::Moto,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_loopback_port() -> u16 {
    warmpool_local_stack::free_loopback_port().expect("a free loopback port")
}

impl Moto {
    /// Starts moto once per test binary, through `scripts/moto_server.py` under
    /// `.venv/bin/python`, refusing a moto other than the pinned one.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| {
            let moto = warmpool_local_stack::Moto::start_blocking(&warmpool_local_stack::Workspace::default())
                .unwrap_or_else(|e| panic!("start moto: {}", warmpool_core::process::error_chain(&e)));
            Moto {
                endpoint: moto.endpoint.clone(),
                _moto: moto,
            }
        })
    }
}

pub use warmpool_local_stack::sdk::sdk_config;

pub fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config(&Moto::shared().endpoint))
}

pub fn lambda_client(endpoint: &str) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk_config(endpoint))
}

/// A pool queue as `warmpool local setup` creates it, with a unique name per call.
pub async fn create_pool_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}.fifo", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let attributes =
        warmpool_local_stack::setup::pool::pool_queue_attributes(&Lifecycle::default()).expect("pool queue attributes");
    let mut request = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    request
        .send()
        .await
        .expect("create pool queue")
        .queue_url
        .expect("queue url")
}

/// A fresh pool queue on the shared moto.
pub async fn pool_queue(prefix: &str) -> SqsPoolQueue {
    let sqs = sqs_client();
    let url = create_pool_queue(&sqs, prefix).await;
    SqsPoolQueue::new(sqs, url)
}

/// An emulator with fast, still cold-vs-warm distinguishable latencies.
pub async fn emulator(lifecycle: LifecycleConfig) -> RunningEmulator {
    Emulator::spawn(EmulatorConfig {
        lifecycle,
        seed: Some(7),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the AgentCore emulator")
}

pub fn fast_lifecycle() -> LifecycleConfig {
    LifecycleConfig {
        latency_scale: 0.01,
        ..LifecycleConfig::default()
    }
}

pub fn agent_runtime(emulator: &RunningEmulator) -> AgentCoreRuntime {
    let sdk = sdk_config(&emulator.endpoint_url());
    AgentCoreRuntime::new(warmpool_core::aws::agentcore_client(&sdk), RUNTIME_ARN, "DEFAULT")
}

/// Puts `sessions` in the pool queue ten at a time, each in the message group `group` names.
pub async fn fill_pool(queue: &SqsPoolQueue, sessions: &[PooledSession], group: impl Fn(&PooledSession) -> String) {
    let sqs = sqs_client();
    for chunk in sessions.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, s)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(s.to_body())
                .message_group_id(group(s))
                .message_deduplication_id(s.deduplication_id())
                .build()
                .expect("batch entry")
        });
        let out = sqs
            .send_message_batch()
            .queue_url(queue.queue_url())
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .expect("fill the pool");
        assert!(out.failed.is_empty(), "fill failed: {:?}", out.failed);
    }
}

/// Fills the pool the way production does: replenish, through the Lambda Invoke API.
pub async fn fill_through_replenish(lambda: &aws_sdk_lambda::Client, count: u32) {
    let fill = lambda
        .invoke()
        .function_name("replenish")
        .payload(aws_sdk_lambda::primitives::Blob::new(format!(
            r#"{{"count": {count}}}"#
        )))
        .send()
        .await
        .expect("replenish invoke");
    assert!(fill.function_error.is_none(), "replenish failed: {:?}", fill.payload);
}

/// Every message body left in `queue_url`, received and deleted (bounded).
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..10_000 {
        let messages = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            if let Some(receipt) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("delete");
            }
            bodies.push(message.body.unwrap_or_default());
        }
    }
    bodies
}

/// Every session left in the pool queue, drained (bounded).
pub async fn drain_pooled(queue: &SqsPoolQueue) -> Vec<PooledSession> {
    drain(&sqs_client(), queue.queue_url())
        .await
        .iter()
        .map(|b| PooledSession::parse(b).expect("pool message"))
        .collect()
}

/// replenish as the local stack runs it: in-process, with real SDK clients, its top-up events
/// going to itself through the relay.
pub type ReplenishFunction = replenish::Replenish<
    AgentCoreRuntime,
    SqsPoolQueue,
    warmpool_core::clock::SystemClock,
    warmpool_core::aws::LambdaReplenishTrigger,
>;

/// replenish, in-process, behind the async Lambda relay: an `Event` invoke from get-session
/// answers 202 at once and the warmups run afterwards, as on Lambda.
pub async fn replenish_behind_relay(
    queue: SqsPoolQueue,
    emulator: &RunningEmulator,
) -> (warmpool_local_stack::relay::RunningRelay, aws_sdk_lambda::Client) {
    let (_, relay, lambda) = replenish_with_relay(queue, emulator, &[]).await;
    (relay, lambda)
}

/// [`replenish_behind_relay`] with extra settings (environment variables), also handing back
/// the function so a test can run its schedule directly. The scheduled run's top-up events
/// reach the function through the relay, like on Lambda.
pub async fn replenish_with_relay(
    queue: SqsPoolQueue,
    emulator: &RunningEmulator,
    settings: &[(&str, &str)],
) -> (
    std::sync::Arc<ReplenishFunction>,
    warmpool_local_stack::relay::RunningRelay,
    aws_sdk_lambda::Client,
) {
    use std::sync::{Arc, OnceLock};
    use warmpool_core::config::Env;
    let mut pairs = vec![
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("AWS_LAMBDA_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
        ("WARMUP_BACKOFF_BASE_MS", "20"),
        ("FALLBACK_BUDGET_SECS", "20"),
    ];
    pairs.extend_from_slice(settings);
    let config = replenish::Config::from_env(&Env::from_pairs(pairs)).expect("replenish config");
    // The relay needs the function and the function needs the relay's address.
    let slot: Arc<OnceLock<Arc<ReplenishFunction>>> = Arc::new(OnceLock::new());
    let dispatch: warmpool_local_stack::relay::Dispatch = {
        let slot = slot.clone();
        Arc::new(move |name, payload| {
            let function = slot.get().cloned();
            Box::pin(async move {
                let Some(function) = function.filter(|_| name == "replenish") else {
                    return Err(format!("Function not found: {name}"));
                };
                let payload = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                let event = lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
                let report = function.handle(event).await.map_err(|e| e.to_string())?;
                serde_json::to_vec(&report).map_err(|e| e.to_string())
            })
        })
    };
    let relay = warmpool_local_stack::relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), dispatch)
        .await
        .expect("start the relay");
    let lambda = lambda_client(&relay.endpoint_url());
    let function = Arc::new(replenish::Replenish::new(
        config,
        agent_runtime(emulator),
        queue,
        warmpool_core::clock::SystemClock,
        warmpool_core::aws::LambdaReplenishTrigger::new(lambda.clone(), "replenish"),
    ));
    let _ = slot.set(function.clone());
    (function, relay, lambda)
}

/// The emulator's view of one session.
pub fn session_view<'a>(sessions: &'a [SessionView], id: &SessionId) -> &'a SessionView {
    sessions
        .iter()
        .find(|s| s.session_id == id.as_str())
        .unwrap_or_else(|| panic!("session {id} unknown to the emulator"))
}

/// Merges `figures` into `target/bench/summary.json`, keeping what other parts of the
/// benchmark wrote; returns the file's path.
pub fn merge_into_summary(figures: Map<String, Value>) -> std::io::Result<PathBuf> {
    let path = workspace_root().join("target/bench/summary.json");
    let in_path = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(in_path)?;
    }
    let mut summary: Map<String, Value> = std::fs::read(&path)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default();
    summary.extend(figures);
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?).map_err(in_path)?;
    Ok(path)
}
