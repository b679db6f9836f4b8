//! `agentcore-emulator`: serve the emulator on a loopback address until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use warmpool_core::process::{error_chain, shutdown_signal};

use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::lifecycle::platform::{self, Platform};
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
    /// The agent's warmup build hook (needs --platform V2 and --agent-command): POSTed on each
    /// session's process once it is healthy, before its first invocation.
    #[arg(long, env = "AGENTCORE_EMULATOR_BUILD_HOOK_PATH", value_name = "PATH")]
    build_hook_path: Option<String>,
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_TIMEOUT_SECS", default_value_t = 900.0)]
    agent_timeout_secs: f64,
    /// Multiplies cold and warm latencies (0.01 for fast tests).
    #[arg(long, env = "AGENTCORE_EMULATOR_LATENCY_SCALE", default_value_t = 1.0)]
    latency_scale: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_IDLE_TIMEOUT_SECS", default_value_t = 900.0)]
    idle_timeout_secs: f64,
    #[arg(long, env = "AGENTCORE_EMULATOR_MAX_LIFETIME_SECS", default_value_t = 28_800.0)]
    max_lifetime_secs: f64,
    /// The platform whose cold start is modelled: V1 (the container starts per session) or
    /// V2 (a snapshot is restored per session, about 2 s whatever the image).
    #[arg(long, env = "AGENTCORE_EMULATOR_PLATFORM", default_value = "V1", value_parser = parse_platform)]
    platform: Platform,
    /// The region the emulator stands for; it chooses the default of --max-active.
    #[arg(long, env = "AGENTCORE_EMULATOR_REGION", default_value = platform::DEFAULT_REGION)]
    region: String,
    /// New sessions per second (token bucket, burst = rate); the account's 2026 default.
    #[arg(long, env = "AGENTCORE_EMULATOR_CREATION_RATE", default_value_t = platform::DEFAULT_CREATION_RATE)]
    creation_rate: f64,
    /// Active sessions at once; by default the region's 2026 quota (5,000 in us-east-1 and
    /// us-west-2, 2,500 elsewhere).
    #[arg(long, env = "AGENTCORE_EMULATOR_MAX_ACTIVE")]
    max_active: Option<usize>,
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
                platform: self.platform,
                latency_scale: self.latency_scale,
                idle_timeout: secs("idle-timeout-secs", self.idle_timeout_secs)?,
                max_lifetime: secs("max-lifetime-secs", self.max_lifetime_secs)?,
                creation_rate_per_sec: self.creation_rate,
                max_active_sessions: self
                    .max_active
                    .unwrap_or_else(|| platform::default_active_sessions(&self.region)),
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
            build_hook: self.build_hook_path,
            runtime_arns: self.runtime_arns,
            seed: self.seed,
        })
    }
}

fn parse_platform(value: &str) -> Result<Platform, String> {
    value.parse()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> LifecycleConfig {
        let argv = std::iter::once("agentcore-emulator").chain(args.iter().copied());
        Args::parse_from(argv).into_config().unwrap().lifecycle
    }

    #[test]
    fn when_no_flag_is_given_then_v1_and_the_us_east_1_quotas() {
        let cfg = config(&[]);
        assert_eq!(cfg.platform, Platform::V1);
        assert_eq!((cfg.max_active_sessions, cfg.creation_rate_per_sec), (5_000, 25.0));
    }

    #[test]
    fn when_the_region_is_a_smaller_one_then_max_active_follows_it_unless_set() {
        assert_eq!(config(&["--region", "eu-central-1"]).max_active_sessions, 2_500);
        let set = config(&["--region", "eu-central-1", "--max-active", "7"]);
        assert_eq!(set.max_active_sessions, 7);
    }

    #[test]
    fn when_the_platform_flag_says_v2_then_the_v2_profile_and_nonsense_is_refused() {
        assert_eq!(config(&["--platform", "v2"]).platform, Platform::V2);
        let err = Args::try_parse_from(["agentcore-emulator", "--platform", "v3"]).unwrap_err();
        assert!(err.to_string().contains("expected V1 or V2"), "{err}");
    }
}
