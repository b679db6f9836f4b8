//! The command line: argument parsing and wiring each subcommand to the module that does it.
//!
//! AWS clients come from the standard SDK configuration (`AWS_REGION`, credentials, and the
//! per-service endpoints `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`), so the same commands work against AWS and the local
//! stack.

use crate::claim::GetSessionClient;
use crate::compare::{Comparison, ComparisonReport, Route};
use crate::emulator_admin::EmulatorAdmin;
use crate::error::{CliError, bounded};
use crate::invoke::{Invoker, render, with_warmth};
use crate::pool_status::{StatusReport, peek, peek_stats};
use crate::{queue_setup, relay};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;
use warmpool_core::aws::{self, AgentCoreRuntime, SqsPoolQueue};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::pool::Lifecycle;
use warmpool_core::ports::PoolQueue;

#[derive(Debug, Parser)]
#[command(
    name = "warmpool",
    version,
    about = "Warm pool of Amazon Bedrock AgentCore Runtime sessions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Claim a session through get-session, then invoke the agent on it.
    Invoke(InvokeArgs),
    /// Inspect the pool queue.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Local stack control.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Demonstrations against a running stack.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Depth, session ages and stale risk, from a non-destructive peek.
    Status(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create the pool FIFO queue and print its URL (only the URL, for scripts).
    Setup(SetupArgs),
    /// Serve the Lambda Invoke API on loopback with a real asynchronous `Event` path, forwarding
    /// every invocation to another Invoke API (`cargo lambda watch`).
    Relay(RelayArgs),
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Latency and warm-hit rate without the pool versus through it.
    Compare(CompareArgs),
}

/// Where the agent is and how long one call may take.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// AgentCore Runtime ARN.
    #[arg(long, env = "AGENT_RUNTIME_ARN")]
    pub runtime_arn: String,
    #[arg(long, env = "AGENT_RUNTIME_QUALIFIER", default_value = "DEFAULT")]
    pub qualifier: String,
    /// JSON payload sent to the agent.
    #[arg(long, default_value = r#"{"prompt":"Hello from warmpool"}"#)]
    pub payload: String,
    /// The get-session function (name or ARN).
    #[arg(long, default_value = "get-session")]
    pub function: String,
    /// AgentCore emulator base URL, to read whether each microVM was warm.
    #[arg(long, env = "AGENTCORE_EMULATOR_URL")]
    pub emulator_url: Option<String>,
    /// Upper bound on each claim and each agent call.
    #[arg(long, default_value_t = 120)]
    pub call_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, env = "POOL_QUEUE_URL")]
    pub queue_url: String,
    /// Messages to peek at most (zero-visibility receives, never deleted).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub sample: u32,
    /// Sessions that pass a limit within this many seconds count as near it.
    #[arg(long, default_value_t = 120)]
    pub horizon_secs: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Queue name; `.fifo` is appended if missing.
    #[arg(long)]
    pub pool_queue: String,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Loopback address to serve the Invoke API on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Base URL of the Invoke API to forward to, on loopback (e.g. http://127.0.0.1:9000).
    #[arg(long)]
    pub forward: String,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Invocations per route.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub n: u32,
    /// Invocations in flight at once, per route.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Also write the summaries and every sample as JSON here.
    #[arg(long)]
    pub json_out: Option<String>,
}

/// Runs a parsed command; what it prints goes to stdout, diagnostics to stderr.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Invoke(args) => invoke(args).await,
        Command::Pool(PoolCommand::Status(args)) => pool_status(args).await,
        Command::Local(LocalCommand::Setup(args)) => local_setup(args).await,
        Command::Local(LocalCommand::Relay(args)) => local_relay(args).await,
        Command::Demo(DemoCommand::Compare(args)) => demo_compare(args).await,
    }
}

/// The SDK clients and options the agent-facing commands share.
struct AgentSide {
    claims: GetSessionClient,
    agent: AgentCoreRuntime,
    admin: Option<EmulatorAdmin>,
    payload: Vec<u8>,
    call_timeout: Duration,
}

impl AgentSide {
    async fn connect(args: AgentArgs) -> Result<Self, CliError> {
        serde_json::from_str::<serde_json::Value>(&args.payload)
            .map_err(|e| CliError::invalid("--payload", format!("not JSON: {e}")))?;
        if !args.runtime_arn.starts_with("arn:") || !args.runtime_arn.contains(":runtime/") {
            return Err(CliError::invalid(
                "--runtime-arn",
                "expected arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>",
            ));
        }
        let call_timeout = Duration::from_secs(args.call_timeout_secs.max(1));
        let sdk = aws::load_config().await;
        Ok(Self {
            claims: GetSessionClient::new(aws_sdk_lambda::Client::new(&sdk), args.function, call_timeout),
            agent: AgentCoreRuntime::new(aws::agentcore_client(&sdk), args.runtime_arn, args.qualifier),
            admin: args.emulator_url.as_deref().map(EmulatorAdmin::new).transpose()?,
            payload: args.payload.into_bytes(),
            call_timeout,
        })
    }
}

async fn invoke(args: InvokeArgs) -> Result<(), CliError> {
    let side = AgentSide::connect(args.agent).await?;
    let invoker = Invoker {
        claims: &side.claims,
        agent: &side.agent,
        agent_timeout: side.call_timeout,
    };
    let outcome = with_warmth(invoker.run(&side.payload).await?, side.admin.as_ref()).await;
    print!("{}", render(&outcome));
    Ok(())
}

async fn pool_status(args: StatusArgs) -> Result<(), CliError> {
    let lifecycle = Lifecycle::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let queue = SqsPoolQueue::new(aws_sdk_sqs::Client::new(&sdk), &args.queue_url);
    let (depth, bodies) = bounded("pool status", QUEUE_CALLS_TIMEOUT, async {
        Ok::<_, CliError>((queue.depth().await?, peek(&queue, args.sample).await?))
    })
    .await?;
    let stats = peek_stats(
        &bodies,
        SystemClock.now_ms(),
        &lifecycle,
        Duration::from_secs(args.horizon_secs),
    );
    let report = StatusReport::new(args.queue_url, depth, args.sample, stats);
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

async fn local_setup(args: SetupArgs) -> Result<(), CliError> {
    let lifecycle = Lifecycle::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = bounded(
        "CreateQueue",
        QUEUE_CALLS_TIMEOUT,
        queue_setup::create_pool_queue(&sqs, &args.pool_queue, &lifecycle),
    )
    .await?;
    println!("{url}");
    Ok(())
}

/// Upper bound on the SQS calls of `pool status` and `local setup` together.
const QUEUE_CALLS_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the relay waits, on shutdown, for `Event` invocations it already accepted.
const RELAY_DRAIN: Duration = Duration::from_secs(5);

async fn local_relay(args: RelayArgs) -> Result<(), CliError> {
    let forward = loopback_url(&args.forward)?;
    let running = relay::spawn(args.listen, relay::forward_to(forward.clone()))
        .await
        .map_err(CliError::Relay)?;
    println!("lambda relay on {} forwarding to {forward}", running.endpoint_url());
    shutdown_signal().await;
    let pending = running.stats.accepted();
    if tokio::time::timeout(RELAY_DRAIN, running.stats.idle()).await.is_err() {
        eprintln!("lambda relay: stopping with asynchronous invocations still running");
    }
    eprintln!(
        "lambda relay: {pending} asynchronous invocations accepted, {} failed",
        running.stats.failed()
    );
    Ok(())
}

/// The relay forwards only to loopback: the local stack never leaves the machine.
fn loopback_url(raw: &str) -> Result<String, CliError> {
    let url = reqwest::Url::parse(raw).map_err(|e| CliError::invalid("--forward", e.to_string()))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() != "http" || !loopback {
        return Err(CliError::invalid(
            "--forward",
            format!("{raw}: expected http:// on a loopback address"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

async fn demo_compare(args: CompareArgs) -> Result<(), CliError> {
    let json_out = args.json_out.clone();
    let (n, concurrency) = (args.n as usize, args.concurrency as usize);
    let side = AgentSide::connect(args.agent).await?;
    let comparison = Comparison {
        claims: &side.claims,
        agent: &side.agent,
        payload: &side.payload,
        concurrency,
        call_timeout: side.call_timeout,
    };
    eprintln!("running {n} invocations without the pool (a new session each), {concurrency} at a time...");
    let without = comparison.run(Route::WithoutPool, n).await;
    eprintln!("running {n} invocations through the pool (claim, then invoke)...");
    let through = comparison.run(Route::ThroughPool, n).await;
    let mut report = ComparisonReport::new(without, through);
    match &side.admin {
        Some(admin) => report.attach_warmth(&admin.last_invocations().await?),
        None => eprintln!("no --emulator-url: warm-hit rates are unknown"),
    }
    print!("{}", report.render());
    for error in report.distinct_errors() {
        eprintln!("error: {error}");
    }
    if let Some(path) = json_out {
        std::fs::write(&path, to_json(&report)).map_err(|source| CliError::Write { path, source })?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Our report types hold only strings, numbers and options: serializing cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Ctrl-C, or SIGTERM (what a script's cleanup sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn demo_compare_takes_the_documented_flags() {
        let cli = Cli::try_parse_from([
            "warmpool",
            "demo",
            "compare",
            "--n",
            "20",
            "--concurrency",
            "4",
            "--runtime-arn",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-agent",
            "--emulator-url",
            "http://127.0.0.1:9090",
            "--json-out",
            "out.json",
        ])
        .unwrap();
        let Command::Demo(DemoCommand::Compare(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!((args.n, args.concurrency), (20, 4));
        assert_eq!(args.agent.function, "get-session");
        assert_eq!(args.json_out.as_deref(), Some("out.json"));
    }

    #[test]
    fn a_concurrency_of_zero_is_refused() {
        let parsed = Cli::try_parse_from([
            "warmpool",
            "demo",
            "compare",
            "--concurrency",
            "0",
            "--runtime-arn",
            "arn:x:runtime/y",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn the_relay_forwards_only_to_loopback_http() {
        assert_eq!(loopback_url("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        assert!(loopback_url("http://localhost:9000").is_ok());
        assert!(loopback_url("http://[::1]:9000").is_ok());
        for bad in [
            "http://10.0.0.1:9000",
            "https://127.0.0.1:9000",
            "http://example.com",
            "not a url",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }
}
