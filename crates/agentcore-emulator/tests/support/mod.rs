//! What every wire test needs: an emulator on 127.0.0.1 with the real
//! `aws-sdk-bedrockagentcore` client pointed at it, plain HTTP for the admin API, and small
//! agents behind it. Each test binary uses a different part.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockagentcore::Client;
use aws_sdk_bedrockagentcore::config::Credentials;
use aws_sdk_bedrockagentcore::error::SdkError;
use aws_sdk_bedrockagentcore::operation::invoke_agent_runtime::{InvokeAgentRuntimeError, InvokeAgentRuntimeOutput};
use aws_sdk_bedrockagentcore::operation::stop_runtime_session::{StopRuntimeSessionError, StopRuntimeSessionOutput};
use aws_sdk_bedrockagentcore::primitives::Blob;
use axum::http::HeaderMap;
use serde_json::{Value, json};

pub const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/wire_test-abc123";

pub fn session(n: u32) -> String {
    format!("wire-test-session-{n:020}")
}

/// Latency off: these tests are about the protocol, not timing.
pub fn fast(lifecycle: LifecycleConfig) -> EmulatorConfig {
    EmulatorConfig {
        lifecycle: LifecycleConfig {
            latency_scale: 0.0,
            ..lifecycle
        },
        seed: Some(1),
        ..EmulatorConfig::default()
    }
}

pub async fn start(cfg: EmulatorConfig) -> (RunningEmulator, Client) {
    let emulator = Emulator::spawn(cfg).await.expect("emulator starts");
    let client = client(&emulator, None).await;
    (emulator, client)
}

/// Retries off: a retried throttle would only slow a test down and hide the first answer.
/// `timeout` bounds each whole operation, as a caller with a deadline does.
pub async fn client(emulator: &RunningEmulator, timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder();
    if let Some(timeout) = timeout {
        timeouts = timeouts.operation_timeout(timeout);
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(emulator.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.build())
        .load()
        .await;
    Client::new(&sdk)
}

/// Plain HTTP for the admin API; a proxy from the environment must not see loopback traffic.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn admin_get(emulator: &RunningEmulator, path: &str) -> Value {
    http()
        .get(format!("{}/admin/{path}", emulator.endpoint_url()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST /admin/faults`; panics with the emulator's answer if it refuses the update.
pub async fn set_faults(emulator: &RunningEmulator, faults: Value) -> Value {
    let response = http()
        .post(format!("{}/admin/faults", emulator.endpoint_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "faults {faults} refused: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

pub async fn invoke_raw(
    client: &Client,
    session_id: &str,
    payload: &Value,
) -> Result<InvokeAgentRuntimeOutput, SdkError<InvokeAgentRuntimeError>> {
    client
        .invoke_agent_runtime()
        .agent_runtime_arn(ARN)
        .qualifier("DEFAULT")
        .runtime_session_id(session_id)
        .content_type("application/json")
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
}

pub async fn invoke(
    client: &Client,
    session_id: &str,
    payload: &Value,
) -> Result<InvokeAgentRuntimeOutput, InvokeAgentRuntimeError> {
    invoke_raw(client, session_id, payload)
        .await
        .map_err(|e| e.into_service_error())
}

/// Invokes and reads the answer as JSON; panics on any failure.
pub async fn invoke_json(client: &Client, session_id: &str, payload: &Value) -> Value {
    let output = invoke_raw(client, session_id, payload)
        .await
        .unwrap_or_else(|e| panic!("invoke {session_id} with {payload}: {e:?}"));
    body_json(output).await
}

pub async fn stop(client: &Client, session_id: &str) -> Result<StopRuntimeSessionOutput, StopRuntimeSessionError> {
    client
        .stop_runtime_session()
        .agent_runtime_arn(ARN)
        .qualifier("DEFAULT")
        .runtime_session_id(session_id)
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

pub async fn body_json(output: InvokeAgentRuntimeOutput) -> Value {
    let bytes = output.response.collect().await.unwrap().into_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// What a test agent saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub session_header: Option<String>,
    pub content_type: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An agent on the AgentCore container contract that records what reached it and answers
/// with `status`.
pub async fn recording_agent(status: u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let app = axum::Router::new()
        .route(
            "/ping",
            axum::routing::get(|| async { axum::Json(json!({"status": "Healthy"})) }),
        )
        .route(
            "/invocations",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                recorded.lock().unwrap().push(Seen {
                    session_header: header("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"),
                    content_type: header("content-type"),
                    headers: headers.clone(),
                    body: body.to_vec(),
                });
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "text/plain")],
                        "from the agent",
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}
