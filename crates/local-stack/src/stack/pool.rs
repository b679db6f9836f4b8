//! The pool side: emulator, pool queue, get-session and replenish under watch, the relay.

use super::{Agent, RUNTIME_ARN, StackOptions};
use crate::error::Error;
use crate::relay::{RelayStats, RunningRelay};
use crate::supervisor::Supervisor;
use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::pool::Lifecycle;

/// How long a stopping stack waits for `Event` invocations its relays accepted.
const RELAY_DRAIN: Duration = Duration::from_secs(5);

pub struct PoolSide {
    pub queue_url: String,
    pub runtime_arn: String,
    pub emulator_url: String,
    /// The Lambda Invoke API to use (the relay).
    pub lambda_url: String,
    /// `cargo lambda watch` behind the relay.
    pub watch_url: String,
    /// The lease table get-session and replenish use (`--with-leases`).
    pub lease_table: Option<String>,
    emulator: RunningEmulator,
    relay_stats: Arc<RelayStats>,
}

impl PoolSide {
    pub(super) async fn shutdown(self) {
        drain(&self.relay_stats).await;
        if let Err(error) = self.emulator.shutdown().await {
            tracing::warn!(%error, "the pool's emulator did not stop cleanly");
        }
    }
}

/// The env of the functions under one watch: what they read, and where the SDK goes.
pub(super) fn function_env(
    pool_queue_url: &str,
    runtime_arn: &str,
    moto_url: &str,
    emulator_url: &str,
    lambda_url: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("POOL_QUEUE_URL", pool_queue_url),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", runtime_arn),
        ("AWS_ENDPOINT_URL_SQS", moto_url),
        ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", emulator_url),
        // replenish's read of the endpoint's live version: moto's control plane, which does not
        // know the emulator's runtime, so runs count a failed read and version nothing.
        ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", moto_url),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda_url),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(crate::sdk::base_env());
    env
}

/// An emulator with published latencies (times `latency_scale`) on a free loopback port.
pub(super) async fn emulator(options: &StackOptions, agent: &Agent) -> Result<RunningEmulator, Error> {
    let (agent_url, agent_command) = match agent {
        Agent::BuiltIn => (None, None),
        Agent::Url(url) => (Some(url.clone()), None),
        Agent::Command(command) => (None, Some(command.clone())),
    };
    Ok(Emulator::spawn(EmulatorConfig {
        lifecycle: LifecycleConfig {
            latency_scale: options.latency_scale,
            ..LifecycleConfig::default()
        },
        agent_url,
        agent_command,
        ..EmulatorConfig::default()
    })
    .await?)
}

/// A relay on a free port forwarding to the watch that will listen on `watch_port`. The
/// caller hands it to the supervisor after the watch, so that it stops first.
pub(super) async fn relay(watch_port: u16) -> Result<RunningRelay, Error> {
    let forward = crate::relay::forward_to(format!("http://127.0.0.1:{watch_port}"));
    crate::relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), forward)
        .await
        .map_err(Error::Relay)
}

/// Lets the `Event` invocations a relay accepted finish (bounded) before what they call stops.
pub(super) async fn drain(stats: &RelayStats) {
    if tokio::time::timeout(RELAY_DRAIN, stats.idle()).await.is_err() {
        tracing::warn!("stopping with asynchronous invocations still running");
    }
}

pub(super) async fn start(supervisor: &Supervisor, options: &StackOptions, moto_url: &str) -> Result<PoolSide, Error> {
    let emulator = emulator(options, &options.agent).await?;
    let emulator_url = emulator.endpoint_url();
    let sqs = aws_sdk_sqs::Client::new(&crate::sdk::sdk_config(moto_url));
    let queue_url = crate::setup::pool::create_pool_queue(&sqs, &unique("pool"), &Lifecycle::default()).await?;
    // The functions need the relay's URL and the relay needs theirs: watch's port comes first.
    let watch_port = crate::free_loopback_port()?;
    let relay = relay(watch_port).await?;
    let lambda_url = relay.endpoint_url();
    let mut env = function_env(&queue_url, RUNTIME_ARN, moto_url, &emulator_url, &lambda_url);
    let lease_table = match options.with_leases {
        true => Some(lease_table(moto_url, &mut env).await?),
        false => None,
    };
    let watch_url = crate::watch::start(
        supervisor,
        &options.workspace,
        "watch",
        &env,
        options.concurrency,
        watch_port,
    )
    .await?;
    let relay_stats = relay.stats.clone();
    supervisor.hold(relay);
    Ok(PoolSide {
        queue_url,
        runtime_arn: RUNTIME_ARN.to_string(),
        emulator_url,
        lambda_url,
        watch_url,
        lease_table,
        emulator,
        relay_stats,
    })
}

/// A lease table on moto, named in the functions' env (`LEASE_TABLE_NAME`).
async fn lease_table(moto_url: &str, env: &mut Vec<(String, String)>) -> Result<String, Error> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&crate::sdk::sdk_config(moto_url));
    let table = unique("leases");
    crate::setup::leases::create_lease_table(&dynamodb, &table).await?;
    env.push(("LEASE_TABLE_NAME".into(), table.clone()));
    env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), moto_url.into()));
    Ok(table)
}

/// A resource name unique to this start: `prefix` and a short random suffix.
pub(super) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}
