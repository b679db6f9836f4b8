//! `agentcore-emulator`: serve the emulator on a loopback address until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{Emulator, EmulatorConfig, Error};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Local AgentCore Runtime emulator (InvokeAgentRuntime / StopRuntimeSession).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, env = "AGENTCORE_EMULATOR_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Agent serving the AgentCore container contract; the built-in agent if absent.
    #[arg(long, env = "AGENTCORE_EMULATOR_AGENT_URL")]
    agent_url: Option<String>,
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
                ..LifecycleConfig::default()
            },
            agent_url: self.agent_url,
            agent_timeout: secs("agent-timeout-secs", self.agent_timeout_secs)?,
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
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("agentcore-emulator: {message}");
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
