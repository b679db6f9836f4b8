//! `agentcore-emulator`: serve the emulator on a loopback address until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use warmpool_core::process::{error_chain, shutdown_signal};

use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{AgentCommand, Emulator, EmulatorConfig, Error};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Local AgentCore Runtime emulator (InvokeAgentRuntime / StopRuntimeSession).
///
/// Fault rates and counts can also be changed while it runs: POST /admin/faults.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, env = "AGENTCORE_EMULATOR_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// One agent serving the AgentCore container contract for every session; the built-in
    /// agent if neither this nor --agent-command is given.
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_URL", conflicts_with = "agent_command")]
    agent_url: Option<String>,
    /// One agent process per session, started on the session's first invocation and stopped
    /// when the session ends. Split like shell words (no expansion); the session's loopback
    /// port replaces {port} in the arguments and is passed as AGENT_PORT.
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_COMMAND", value_name = "CMD")]
    agent_command: Option<String>,
    /// Bounds a per-session cold start: process start until GET /ping answers Healthy.
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_START_TIMEOUT_SECS", default_value_t = 30.0)]
    agent_start_timeout_secs: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_TIMEOUT_SECS", default_value_t = 900.0)]
    agent_timeout_secs: f64,
    /// Multiplies cold and warm latencies (0.01 for fast tests).
    #[arg(long, env = "AGENTCORE_EMULATOR_LATENCY_SCALE", default_value_t = 1.0)]
    latency_scale: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_IDLE_TIMEOUT_SECS", default_value_t = 900.0)]
    idle_timeout_secs: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_MAX_LIFETIME_SECS", default_value_t = 28_800.0)]
    max_lifetime_secs: f64,
    /// New sessions per second (token bucket, burst = rate).
    #[arg(long, env = "AGENTCORE_EMULATOR_CREATION_RATE", default_value_t = 25.0)]
    creation_rate: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_MAX_ACTIVE", default_value_t = 1_000)]
    max_active: usize,
    #[arg(long, env = "AGENTCORE_EMULATOR_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_CRASH_RATE", default_value_t = 0.0)]
    crash_rate: f64,
    /// Share of admitted invocations whose answer is lost after the agent acted.
    #[arg(long, env = "AGENTCORE_EMULATOR_LOST_ANSWER_RATE", default_value_t = 0.0)]
    lost_answer_rate: f64,
    /// Share of admitted invocations answered --late-answer-ms after the agent answered.
    #[arg(long, env = "AGENTCORE_EMULATOR_LATE_ANSWER_RATE", default_value_t = 0.0)]
    late_answer_rate: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_LATE_ANSWER_MS", default_value_t = 0)]
    late_answer_ms: u64,
    /// Share of StopRuntimeSession calls throttled (and not applied).
    #[arg(long, env = "AGENTCORE_EMULATOR_STOP_THROTTLE_RATE", default_value_t = 0.0)]
    stop_throttle_rate: f64,
    /// Share of StopRuntimeSession calls failing with InternalServerException (not applied).
    #[arg(long, env = "AGENTCORE_EMULATOR_STOP_ERROR_RATE", default_value_t = 0.0)]
    stop_error_rate: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_SEED")]
    seed: Option<u64>,
    /// Known runtime ARNs (repeatable); any well-formed ARN if none.
    #[arg(long = "runtime-arn", env = "AGENTCORE_EMULATOR_RUNTIME_ARNS", value_delimiter = ',')]
    runtime_arns: Vec<String>,
}

impl Args {
    fn into_config(self) -> Result<EmulatorConfig, Error> {
        Ok(EmulatorConfig {
            listen: self.listen,
            lifecycle: LifecycleConfig {
                latency_scale: self.latency_scale,
                idle_timeout: secs("idle-timeout-secs", self.idle_timeout_secs)?,
                max_lifetime: secs("max-lifetime-secs", self.max_lifetime_secs)?,
                creation_rate_per_sec: self.creation_rate,
                max_active_sessions: self.max_active,
                error_rate: self.error_rate,
                crash_rate: self.crash_rate,
                lost_answer_rate: self.lost_answer_rate,
                late_answer_rate: self.late_answer_rate,
                late_answer: Duration::from_millis(self.late_answer_ms),
                stop_throttle_rate: self.stop_throttle_rate,
                stop_error_rate: self.stop_error_rate,
                ..LifecycleConfig::default()
            },
            agent_url: self.agent_url,
            agent_command: self.agent_command.as_deref().map(AgentCommand::parse).transpose()?,
            agent_timeout: secs("agent-timeout-secs", self.agent_timeout_secs)?,
            agent_start_timeout: secs("agent-start-timeout-secs", self.agent_start_timeout_secs)?,
            runtime_arns: self.runtime_arns,
            seed: self.seed,
        })
    }
}

fn secs(field: &'static str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|e| Error::InvalidConfig {
        field,
        reason: e.to_string(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agentcore-emulator: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let emulator = Emulator::spawn(args.into_config()?).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await
}
