//! The path of a team with a Python agent, run for real: their handler on AWS's
//! `bedrock-agentcore` SDK (`tests/agents/warmup_agent.py`, one process per session behind the
//! emulator), the pool filled by the real replenish, and their boto3 client
//! (`tests/agents/claim_with_boto3.py`) claiming through the real get-session over the Lambda
//! Invoke API and invoking the agent on the session it got.

use agentcore_emulator::{AgentCommand, Emulator, EmulatorConfig, RunningEmulator};
use get_session::GetSession;
use lambda_runtime::LambdaEvent;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::aws::{LambdaReplenishTrigger, SqsPoolQueue};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::pool::trigger::{DeferredTrigger, TriggerWorker};
use warmpool_local_stack::relay::{self, Dispatch, RunningRelay};
use warmpool_tests::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    workspace().join(".venv/bin/python")
}

async fn python_agent_emulator() -> RunningEmulator {
    let script = workspace().join("tests/agents/warmup_agent.py");
    Emulator::spawn(EmulatorConfig {
        lifecycle: fast_lifecycle(),
        agent_command: Some(AgentCommand::new(
            python().to_string_lossy(),
            [script.to_string_lossy()],
        )),
        agent_timeout: Duration::from_secs(10),
        agent_start_timeout: Duration::from_secs(20),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the emulator")
}

/// get-session, in-process, behind the Lambda Invoke API, as boto3 reaches it on AWS; with the
/// worker that sends its replenish triggers (it lives as long as the caller keeps it).
async fn get_session_behind_relay(
    queue: &SqsPoolQueue,
    replenish: aws_sdk_lambda::Client,
) -> (RunningRelay, TriggerWorker) {
    let env = Env::from_pairs([
        ("POOL_QUEUE_URL", queue.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
    ]);
    let config = get_session::Config::from_env(&env).expect("get-session config");
    let (trigger, worker) = DeferredTrigger::spawn(LambdaReplenishTrigger::new(replenish, "replenish"));
    let function = Arc::new(GetSession::new(&config, queue.clone(), trigger, SystemClock));
    let dispatch: Dispatch = Arc::new(move |name, payload| {
        let function = function.clone();
        Box::pin(async move {
            if name != "get-session" {
                return Err(format!("Function not found: {name}"));
            }
            let payload = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
            let event = LambdaEvent::new(payload, lambda_runtime::Context::default());
            let answer = function.handle(event).await.map_err(|e| e.to_string())?;
            serde_json::to_vec(&answer).map_err(|e| e.to_string())
        })
    });
    let relay = relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), dispatch)
        .await
        .expect("start the get-session relay");
    (relay, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_boto3_client_claims_through_get_session_and_lands_on_a_warm_python_agent() {
    let queue = pool_queue("python").await;
    let emulator = python_agent_emulator().await;
    let (replenish, _replenish_relay, replenish_lambda) = replenish_with_relay(queue.clone(), &emulator, &[]).await;
    let filled = replenish
        .handle(LambdaEvent::new(
            serde_json::json!({"count": 2}),
            lambda_runtime::Context::default(),
        ))
        .await
        .expect("fill the pool");
    assert_eq!(filled.enqueued, 2, "{filled:?}");
    let (get_session, _trigger_worker) = get_session_behind_relay(&queue, replenish_lambda).await;

    let client = workspace().join("tests/agents/claim_with_boto3.py");
    let mut command = std::process::Command::new(python());
    command
        .arg(client)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_LAMBDA", get_session.endpoint_url())
        .env("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", emulator.endpoint_url())
        .env("AGENT_RUNTIME_ARN", RUNTIME_ARN);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the boto3 client"))
        .await
        .expect("client runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");

    assert_eq!(result["source"], "pool", "{result}");
    let session_id = result["sessionId"].as_str().expect("a session ID");
    let view = emulator
        .sessions()
        .into_iter()
        .find(|s| s.session_id == session_id)
        .expect("the emulator knows the session");
    let calls: Vec<bool> = view.history.iter().map(|call| call.cold).collect();
    assert_eq!(
        calls,
        [true, false],
        "the warmup was the cold start; the client's call landed warm"
    );
    assert_eq!(result["answer"]["turns"], 1, "{result}");
}
