//! The command line: argument parsing and wiring each subcommand to the module that does it.
//!
//! AWS clients come from the standard SDK configuration (`AWS_REGION`, credentials, and the
//! per-service endpoints `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`), so the same commands work against AWS and the local
//! stack.

use crate::batch_setup::{BatchQueueSettings, Clients};
use crate::claim::GetSessionClient;
use crate::compare::{Comparison, ComparisonReport, Route};
use crate::emulator_admin::EmulatorAdmin;
use crate::error::{CliError, bounded};
use crate::event_source::{EventDispatch, EventSource, scheduled_event};
use crate::invoke::{Invoker, render, with_warmth};
use crate::pool_status::{StatusReport, peek, peek_stats};
use crate::{batch, batch_setup, queue_setup, relay};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::aws::dynamodb::TrackingLayout;
use warmpool_core::aws::{self, AgentCoreRuntime, DynamoTrackingTable, S3DocumentStore, SqsPoolQueue};
use warmpool_core::batch::BatchId;
use warmpool_core::batch::ports::DocumentStore;
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::maintenance::MaintenanceRules;
use warmpool_core::manifest::BatchLimits;
use warmpool_core::pool::Lifecycle;
use warmpool_core::ports::{PoolMaintenance, PoolQueue};
use warmpool_core::target::{Burst, Observation, TargetPolicy};

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
    /// Document batches: submit a folder, follow a batch.
    #[command(subcommand)]
    Batch(BatchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Upload a folder's files under incoming/<batchId>/, then its manifest; prints the batch ID.
    Submit(SubmitArgs),
    /// The batch's tracking row: status, attempt, session, timings, result.
    Status(BatchStatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Depth, session ages and stale risk, from a non-destructive peek.
    Status(StatusArgs),
    /// The pre-warm a known burst needs: the window target, its lead, and the
    /// POOL_TARGET_SCHEDULE windows for it (README, Pool lifecycle). Prints; calls nothing.
    Prewarm(PrewarmArgs),
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Create the pool FIFO queue and print its URL (only the URL, for scripts).
    Setup(SetupArgs),
    /// Serve the Lambda Invoke API on loopback with a real asynchronous `Event` path, forwarding
    /// every invocation to another Invoke API (`cargo lambda watch`).
    Relay(RelayArgs),
    /// Create the batch path's bucket, queues and tracking table; prints KEY=value lines.
    SetupBatches(SetupBatchesArgs),
    /// Feed a queue to a function as SQS events, like Lambda's event source mapping.
    Pump(PumpArgs),
    /// Invoke a function with an EventBridge scheduled event at a fixed period.
    Schedule(ScheduleArgs),
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
pub struct PrewarmArgs {
    /// Claims per second outside the burst.
    #[arg(long)]
    pub base_rate: f64,
    /// Claims per second during the burst.
    #[arg(long)]
    pub peak_rate: f64,
    /// How long the burst lasts.
    #[arg(long)]
    pub burst_secs: u64,
    /// replenish's creation budget (sessions per second).
    #[arg(long, env = "CREATION_BUDGET_PER_SEC", default_value_t = 20.0)]
    pub budget: f64,
    /// p95 warmup time (the WarmupLatency metric).
    #[arg(long, default_value_t = 5_000)]
    pub warmup_ms: u64,
    /// The scheduled run's period (MAINTENANCE_INTERVAL_SECS).
    #[arg(long, env = "MAINTENANCE_INTERVAL_SECS", default_value_t = 60)]
    pub interval_secs: u64,
    /// When each burst starts, UTC: `HH:MM` (daily) or `*:MM` (hourly); repeatable.
    #[arg(long)]
    pub starts_at: Vec<String>,
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

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Folder whose files (recursively, hidden ones skipped) form the batch.
    pub folder: PathBuf,
    #[arg(long, env = "DOCUMENTS_BUCKET")]
    pub bucket: String,
    /// Defaults to the folder's name and a random suffix.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Path-style S3 addressing (the local stack).
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Print only the batch ID (for scripts).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BatchStatusArgs {
    pub batch_id: String,
    #[arg(long, env = "TRACKING_TABLE")]
    pub table: String,
    /// Wait up to this long for the batch to finish.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub wait_secs: u64,
    /// Also print the result document from S3.
    #[arg(long)]
    pub result: bool,
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Print the row as JSON.
    #[arg(long)]
    pub json: bool,
    /// AgentCore emulator base URL, to show whether the batch landed on a warm microVM.
    #[arg(long)]
    pub emulator_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupBatchesArgs {
    /// Prefix of every resource name (3..=40 of lowercase letters, digits and '-').
    #[arg(long)]
    pub name: String,
    /// The batch queue's redrive maxReceiveCount (the invoker's MAX_RECEIVE_COUNT).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receive_count: u32,
    #[arg(long, default_value_t = 180)]
    pub visibility_timeout_secs: u64,
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
}

#[derive(Debug, Args)]
pub struct PumpArgs {
    #[arg(long)]
    pub queue_url: String,
    /// The function to feed (name on the Invoke API).
    #[arg(long, default_value = "invoker")]
    pub function: String,
    /// Base URL of the Invoke API (`cargo lambda watch`), on loopback.
    #[arg(long)]
    pub forward: String,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub batch_size: i32,
    /// Concurrent pollers, like the event source's concurrency.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub pollers: u32,
    /// A failed record is visible again after this long.
    #[arg(long, default_value_t = 2)]
    pub retry_after_secs: u64,
    #[arg(long, default_value_t = 180)]
    pub visibility_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[arg(long, default_value = "stale-batch-detector")]
    pub function: String,
    /// Base URL of the Invoke API (`cargo lambda watch`), on loopback.
    #[arg(long)]
    pub forward: String,
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub every_secs: u64,
}

/// Runs a parsed command; what it prints goes to stdout, diagnostics to stderr.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Invoke(args) => invoke(args).await,
        Command::Pool(PoolCommand::Status(args)) => pool_status(args).await,
        Command::Pool(PoolCommand::Prewarm(args)) => {
            println!("{}", prewarm_plan(&args)?);
            Ok(())
        }
        Command::Local(LocalCommand::Setup(args)) => local_setup(args).await,
        Command::Local(LocalCommand::Relay(args)) => local_relay(args).await,
        Command::Demo(DemoCommand::Compare(args)) => demo_compare(args).await,
        Command::Batch(BatchCommand::Submit(args)) => batch_submit(args).await,
        Command::Batch(BatchCommand::Status(args)) => batch_status(args).await,
        Command::Local(LocalCommand::SetupBatches(args)) => local_setup_batches(args).await,
        Command::Local(LocalCommand::Pump(args)) => local_pump(args).await,
        Command::Local(LocalCommand::Schedule(args)) => local_schedule(args).await,
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
        aws::agentcore::check_runtime_arn(&args.runtime_arn)
            .map_err(|reason| CliError::invalid("--runtime-arn", reason))?;
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
    // The same settings replenish reads, so the picture is the one maintenance acts on.
    let env = Env::from_process();
    let rules = MaintenanceRules::from_env(&env, Lifecycle::from_env(&env)?)?;
    let target_policy = TargetPolicy::from_env(&env)?;
    let sdk = aws::load_config().await;
    let queue = SqsPoolQueue::new(aws_sdk_sqs::Client::new(&sdk), &args.queue_url);
    let (depth, oldest_sent_at_ms, bodies) = bounded("pool status", QUEUE_CALLS_TIMEOUT, async {
        Ok::<_, CliError>((
            queue.depth().await?,
            queue.oldest_sent_at(10).await?,
            peek(&queue, args.sample).await?,
        ))
    })
    .await?;
    let now = SystemClock.now_ms();
    let stats = peek_stats(&bodies, now, &rules, Duration::from_secs(args.horizon_secs));
    let observation = Observation {
        depth,
        oldest_sent_at_ms,
        warmup_p95: None,
    };
    let report = StatusReport::new(args.queue_url, depth, args.sample, stats)
        .with_target(target_policy.target(now, &observation));
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn prewarm_plan(args: &PrewarmArgs) -> Result<String, CliError> {
    let invalid = |reason| CliError::InvalidArgument { name: "burst", reason };
    let length = Duration::from_secs(args.burst_secs);
    let burst = Burst {
        base_rate: args.base_rate,
        peak_rate: args.peak_rate,
        length,
    };
    let plan = burst
        .prewarm(args.budget, Duration::from_millis(args.warmup_ms))
        .map_err(invalid)?;
    let per_run = (args.budget * args.interval_secs as f64).ceil();
    let mut out = format!(
        "target {} sessions, from {} min before each burst to its end\n\
         MAX_CREATIONS_PER_RUN >= {per_run} (budget x {} s schedule), so the build runs at the budget",
        plan.target,
        plan.lead.as_secs() / 60,
        args.interval_secs
    );
    if !args.starts_at.is_empty() {
        let windows = args
            .starts_at
            .iter()
            .map(|start| plan.windows(start, length))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        out.push_str(&format!("\nPOOL_TARGET_SCHEDULE={}", windows.join("; ")));
    }
    Ok(out)
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
    let pending = running.stats.started();
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

/// Upper bound on one `batch submit` (uploads included) and one `local setup-batches`.
const BATCH_CALLS_TIMEOUT: Duration = Duration::from_secs(300);

async fn batch_submit(args: SubmitArgs) -> Result<(), CliError> {
    let batch_id = match &args.batch_id {
        Some(id) => BatchId::parse(id.clone()).map_err(|e| CliError::invalid("--batch-id", e.to_string()))?,
        None => batch::batch_id_for(&args.folder)?,
    };
    let limits = BatchLimits::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let store = S3DocumentStore::new(aws::s3::client(&sdk, args.s3_path_style));
    let submission = bounded(
        "batch submit",
        BATCH_CALLS_TIMEOUT,
        batch::submit(&store, &args.bucket, &args.folder, batch_id, &limits),
    )
    .await?;
    if args.quiet {
        println!("{}", submission.batch_id);
    } else {
        print!("{}", batch::render_submission(&submission));
    }
    Ok(())
}

async fn batch_status(args: BatchStatusArgs) -> Result<(), CliError> {
    let batch_id = BatchId::parse(args.batch_id.clone()).map_err(|e| CliError::invalid("batch id", e.to_string()))?;
    let sdk = aws::load_config().await;
    let layout = TrackingLayout::from_env(&Env::from_process())?;
    let table = DynamoTrackingTable::new(aws_sdk_dynamodb::Client::new(&sdk), &args.table, layout);
    let wait = Duration::from_secs(args.wait_secs);
    let row = bounded(
        "batch status",
        wait + QUEUE_CALLS_TIMEOUT,
        batch::status(&table, &batch_id, wait),
    )
    .await?
    .ok_or_else(|| CliError::NoSuchBatch(batch_id.to_string()))?;
    let warmth = match (&args.emulator_url, &row.session_id) {
        // The batch invocation is the last one its session ever gets.
        (Some(url), Some(session)) => Some(
            EmulatorAdmin::new(url)?
                .last_invocations()
                .await?
                .warmth(session.as_str()),
        ),
        _ => None,
    };
    if args.json {
        println!("{}", to_json(&row));
    } else {
        print!("{}", batch::render_status(&row, warmth.map(|w| w.label())));
    }
    if let (true, Some(result)) = (args.result, &row.result_ref) {
        let location = warmpool_core::batch::ObjectRef::parse(result)
            .map_err(|e| CliError::invalid("resultRef", e.to_string()))?;
        let store = S3DocumentStore::new(aws::s3::client(&sdk, args.s3_path_style));
        let object = bounded(
            "result download",
            QUEUE_CALLS_TIMEOUT,
            store.get(&location, 64 * 1024 * 1024),
        )
        .await?;
        println!("{}", String::from_utf8_lossy(&object.bytes));
    }
    Ok(())
}

async fn local_setup_batches(args: SetupBatchesArgs) -> Result<(), CliError> {
    let sdk = aws::load_config().await;
    let (sqs, s3, dynamodb) = (
        aws_sdk_sqs::Client::new(&sdk),
        aws::s3::client(&sdk, args.s3_path_style),
        aws_sdk_dynamodb::Client::new(&sdk),
    );
    let settings = BatchQueueSettings {
        max_receive_count: args.max_receive_count,
        visibility_timeout: Duration::from_secs(args.visibility_timeout_secs),
    };
    let clients = Clients {
        sqs: &sqs,
        s3: &s3,
        dynamodb: &dynamodb,
    };
    let resources = bounded(
        "local setup-batches",
        BATCH_CALLS_TIMEOUT,
        batch_setup::create_batch_resources(&clients, &args.name, &settings),
    )
    .await?;
    print!("{}", resources.env_lines());
    Ok(())
}

/// A dispatch that invokes `function` synchronously on the Invoke API at `forward`.
fn forward_events(forward: &str, function: String) -> Result<EventDispatch, CliError> {
    let forward = relay::forward_to(loopback_url(forward)?);
    Ok(Arc::new(move |payload| forward(function.clone(), payload)))
}

async fn local_pump(args: PumpArgs) -> Result<(), CliError> {
    let dispatch = forward_events(&args.forward, args.function.clone())?;
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_arn = bounded("GetQueueAttributes", QUEUE_CALLS_TIMEOUT, async {
        sqs.get_queue_attributes()
            .queue_url(&args.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(crate::error::sqs_error("GetQueueAttributes"))
    })
    .await?
    .attributes
    .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
    .unwrap_or_default();
    let source = EventSource {
        sqs,
        queue_arn,
        queue_url: args.queue_url,
        batch_size: args.batch_size,
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(args.visibility_timeout_secs.max(1)),
        retry_after: Duration::from_secs(args.retry_after_secs),
    };
    let running = source.spawn(dispatch, args.pollers as usize);
    eprintln!("pumping into {} with {} pollers", args.function, args.pollers);
    shutdown_signal().await;
    use std::sync::atomic::Ordering::SeqCst;
    eprintln!(
        "pump: {} records received, {} deleted, {} returned, {} poll errors",
        running.stats.received.load(SeqCst),
        running.stats.deleted.load(SeqCst),
        running.stats.returned.load(SeqCst),
        running.stats.errors.load(SeqCst)
    );
    Ok(())
}

async fn local_schedule(args: ScheduleArgs) -> Result<(), CliError> {
    let dispatch = forward_events(&args.forward, args.function.clone())?;
    let period = Duration::from_secs(args.every_secs);
    eprintln!("invoking {} every {period:?}", args.function);
    let run = async {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let event = scheduled_event(&args.function, SystemClock.now_ms())
                .to_string()
                .into_bytes();
            match tokio::time::timeout(relay::FORWARD_TIMEOUT, dispatch(event)).await {
                Ok(Ok(answer)) => eprintln!("{}: {}", args.function, String::from_utf8_lossy(&answer)),
                Ok(Err(error)) => eprintln!("{} failed: {error}", args.function),
                Err(_) => eprintln!("{} did not answer", args.function),
            }
        }
    };
    tokio::select! {
        _ = run => {}
        _ = shutdown_signal() => {}
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
    fn pool_prewarm_prints_the_window_a_burst_needs() {
        let cli = Cli::try_parse_from([
            "warmpool",
            "pool",
            "prewarm",
            "--base-rate",
            "10",
            "--peak-rate",
            "50",
            "--burst-secs",
            "300",
            "--budget",
            "20",
            "--starts-at",
            "*:25",
            "--starts-at",
            "*:55",
        ])
        .unwrap();
        let Command::Pool(PoolCommand::Prewarm(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let plan = prewarm_plan(&args).unwrap();
        assert!(plan.starts_with("target 9250 sessions, from 16 min before"), "{plan}");
        assert!(plan.contains("MAX_CREATIONS_PER_RUN >= 1200"), "{plan}");
        assert!(
            plan.ends_with("POOL_TARGET_SCHEDULE=* *:09-*:30=9250; * *:39-*:60=9250"),
            "{plan}"
        );
        let short_budget = PrewarmArgs { budget: 10.0, ..args };
        assert!(matches!(
            prewarm_plan(&short_budget),
            Err(CliError::InvalidArgument { name: "burst", .. })
        ));
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
    fn batch_commands_take_the_documented_arguments() {
        let cli = Cli::try_parse_from([
            "warmpool",
            "batch",
            "submit",
            "docs/claim-4711",
            "--bucket",
            "demo-documents",
            "--quiet",
        ])
        .unwrap();
        let Command::Batch(BatchCommand::Submit(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            (args.folder.to_str(), args.bucket.as_str(), args.quiet),
            (Some("docs/claim-4711"), "demo-documents", true)
        );

        let cli = Cli::try_parse_from([
            "warmpool",
            "batch",
            "status",
            "claim-4711-ab12",
            "--table",
            "t",
            "--wait-secs",
            "60",
            "--result",
        ])
        .unwrap();
        let Command::Batch(BatchCommand::Status(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            (args.batch_id.as_str(), args.wait_secs, args.result),
            ("claim-4711-ab12", 60, true)
        );
        assert!(
            Cli::try_parse_from([
                "warmpool",
                "batch",
                "status",
                "x",
                "--table",
                "t",
                "--wait-secs",
                "4000"
            ])
            .is_err()
        );
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
