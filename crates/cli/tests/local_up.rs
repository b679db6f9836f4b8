//! `warmpool local up --env-file`, end to end: the real binary started as a child, its env
//! file read back and used with real SDK clients, then SIGTERM, after which nothing it started
//! may still run or listen.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{Killed, warmpool};
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;
use warmpool_local_stack::process::{alive, descendants};
use warmpool_local_stack::ready::listening_ports;
use warmpool_local_stack::stack::Exports;

/// A cold stack start: moto, the emulator, cargo lambda watch (which resolves the workspace).
const READY_WITHIN: Duration = Duration::from_secs(240);
const STOPPED_WITHIN: Duration = Duration::from_secs(60);

fn wait_for_file(path: &Path, child: &mut Killed, within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("local up ended before it was ready: {status}");
        }
        assert!(Instant::now() < until, "no env file after {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

fn sdk(exports: &Exports, endpoint: &str) -> aws_config::SdkConfig {
    assert_eq!(exports.get("AWS_ACCESS_KEY_ID"), Some("test"));
    warmpool_local_stack::sdk::sdk_config(exports.get(endpoint).expect("endpoint exported"))
}

/// `--with-leases`: the lease table the file names exists, with the sweep's index.
async fn assert_lease_table_is_served(exports: &Exports) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk(exports, "AWS_ENDPOINT_URL_DYNAMODB"));
    let table = dynamodb
        .describe_table()
        .table_name(exports.get("LEASE_TABLE_NAME").expect("LEASE_TABLE_NAME"))
        .send()
        .await
        .expect("the lease table answers");
    let indexes: Vec<&str> = table
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert!(indexes.contains(&warmpool_core::aws::LEASES_DUE_INDEX), "{indexes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_up_writes_its_endpoints_and_lease_table_serves_them_and_leaves_nothing_after_sigterm() {
    let dir = std::env::temp_dir().join(format!("local-up-{}", uuid::Uuid::new_v4().simple()));
    let env_file = dir.join("stack.env");
    let mut command = warmpool(&[]);
    command
        .args(["local", "up", "--no-build", "--with-leases", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut up = Killed(command.spawn().expect("start local up"));
    let text = wait_for_file(&env_file, &mut up, READY_WITHIN);
    let exports = Exports::parse(&text);

    // The pool queue exists where the file says, as the pool's FIFO queue.
    let sqs = aws_sdk_sqs::Client::new(&sdk(&exports, "AWS_ENDPOINT_URL_SQS"));
    let queue_url = exports.get("POOL_QUEUE_URL").expect("POOL_QUEUE_URL");
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::FifoQueue)
        .send()
        .await
        .expect("the pool queue answers");
    assert_eq!(
        attributes
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::FifoQueue))
            .map(String::as_str),
        Some("true")
    );
    assert_lease_table_is_served(&exports).await;
    // The emulator serves the runtime the file names, over the AgentCore SDK.
    let agentcore = warmpool_core::aws::agentcore_client(&sdk(&exports, "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"));
    let runtime = warmpool_core::aws::AgentCoreRuntime::new(
        agentcore,
        exports.get("AGENT_RUNTIME_ARN").expect("AGENT_RUNTIME_ARN"),
        "DEFAULT",
    );
    runtime
        .invoke(&SessionId::generate(), br#"{"prompt":"hello"}"#)
        .await
        .expect("the emulator answers an invocation");

    // What it started, and where it listens, before it is told to stop.
    let family = descendants(up.0.id());
    assert!(!family.is_empty(), "local up started no processes");
    let ports: BTreeSet<u16> = [
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_LAMBDA",
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
    ]
    .iter()
    .map(|name| port_of(exports.get(name).expect("endpoint exported")))
    .collect();

    let pid = libc::pid_t::try_from(up.0.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) with the child's own pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + STOPPED_WITHIN;
    let status = loop {
        if let Some(status) = up.0.try_wait().expect("wait for local up") {
            break status;
        }
        assert!(
            Instant::now() < until,
            "local up still running {STOPPED_WITHIN:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "local up ended with {status}");
    let running: Vec<u32> = family.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        running.is_empty(),
        "still running after SIGTERM: {running:?} of {family:?}"
    );
    let listening: BTreeSet<u16> = listening_ports().into_iter().collect();
    let left: Vec<&u16> = ports.intersection(&listening).collect();
    assert!(left.is_empty(), "still listening after SIGTERM: {left:?}");
    assert!(!env_file.exists(), "the env file of a stopped stack is removed");
    let _ = std::fs::remove_dir_all(&dir);
}
