//! What the CLI's end-to-end tests run the `warmpool` binary against, all on 127.0.0.1: moto
//! (SQS, S3, DynamoDB) as a child process, the AgentCore emulator and a Lambda Invoke API (the
//! local stack's relay) in-process, all from `warmpool-local-stack`. Everything started here
//! stops with the test binary.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const RUNTIME_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/cli-test-agent";

/// `warmpool` with a clean AWS environment: test credentials, one region, and `endpoints`
/// (`AWS_ENDPOINT_URL_*` name, URL) as the only places it may reach.
pub fn warmpool(endpoints: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warmpool"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("AGENT") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .envs([
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ])
        .envs(endpoints.iter().copied())
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end (bounded: every command the tests run bounds its own calls) on a
/// blocking thread, so the in-process services keep serving meanwhile.
pub async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run warmpool"))
        .await
        .expect("warmpool runner")
}

/// Runs `command`, requires success, and parses its stdout as one JSON document.
pub async fn run_json(command: Command) -> (serde_json::Value, String) {
    let output = run(command).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "warmpool failed: {stderr}\nstdout: {stdout}");
    let json =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    (json, stderr)
}

/// A child process killed when dropped, whatever the test did.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto, once per test binary (see [`warmpool_local_stack::moto`]: it stops when this process
/// exits, by a panic or a signal too).
pub fn moto() -> &'static str {
    static MOTO: OnceLock<warmpool_local_stack::Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            warmpool_local_stack::Moto::start_blocking(&warmpool_local_stack::Workspace::default())
                .unwrap_or_else(|e| panic!("start moto: {}", warmpool_core::process::error_chain(&e)))
        })
        .endpoint
}

/// The AgentCore emulator in-process, with fast but still cold-versus-warm latencies.
pub async fn emulator() -> agentcore_emulator::RunningEmulator {
    agentcore_emulator::Emulator::spawn(agentcore_emulator::EmulatorConfig {
        lifecycle: agentcore_emulator::lifecycle::LifecycleConfig {
            latency_scale: 0.01,
            ..Default::default()
        },
        seed: Some(7),
        ..Default::default()
    })
    .await
    .expect("start the AgentCore emulator")
}

/// A Lambda Invoke API on loopback whose `get-session` answers each claim with the session
/// `next` names, in get-session's own answer type. The claim side of the pool has its own
/// wire tests; here it only has to answer the way get-session does.
pub async fn get_session(
    next: impl Fn() -> warmpool_core::pool::claim::ClaimedSession + Send + Sync + 'static,
) -> warmpool_local_stack::relay::RunningRelay {
    let next = Arc::new(next);
    let dispatch: warmpool_local_stack::relay::Dispatch = Arc::new(move |function, _payload| {
        let next = next.clone();
        Box::pin(async move {
            if function != "get-session" {
                return Err(format!("Function not found: {function}"));
            }
            serde_json::to_vec(&next()).map_err(|e| e.to_string())
        })
    });
    warmpool_local_stack::relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), dispatch)
        .await
        .expect("start the Invoke API")
}

/// Reads `child`'s stdout up to and including a line that is just `}`: the end of a pretty
/// JSON document from a command that keeps running afterwards. Bounded by `within`.
pub fn first_json_document(child: &mut Child, within: Duration) -> serde_json::Value {
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line == "}" {
                break;
            }
        }
        let _ = send.send(text);
    });
    let text = receive.recv_timeout(within).expect("a JSON document on stdout in time");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}
