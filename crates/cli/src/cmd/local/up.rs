//! `warmpool local up`: the whole local stack ([`warmpool_local_stack::LocalStack`]) kept
//! running for exploration. Once everything answers it prints the endpoints and resources as
//! `export NAME=value` lines (and writes them to `--env-file`); on Ctrl-C or SIGTERM, or when a
//! part of the stack stops by itself, it stops everything it started.

use crate::error::CliError;
use crate::output::OutputArgs;
use crate::ui::Ui;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use warmpool_core::process::shutdown_signal;
use warmpool_local_stack::stack::{Agent, StackOptions};
use warmpool_local_stack::{LocalStack, Workspace};

/// How often a running stack is checked for a part that stopped by itself.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Also write the `export NAME=value` lines to this file once the stack is ready (removed
    /// again when it stops).
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The flags that choose the parts of a local stack (shared with `warmpool demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Also start the batch path: bucket, queues, tracking table, the document agent behind a
    /// second emulator, invoker and stale-batch-detector under a second watch, the pump and
    /// the detector's schedule.
    #[arg(long)]
    pub with_batches: bool,
    /// Also a lease table, so get-session takes `userId` and `release` and replenish sweeps
    /// leases (`warmpool invoke --user`, `warmpool session show`).
    #[arg(long)]
    pub with_leases: bool,
    /// One agent at this URL serves every pool session (instead of the emulator's built-in).
    #[arg(long, value_name = "URL", conflicts_with = "agent_command")]
    pub agent_url: Option<String>,
    /// One agent process per pool session, from this command (split like shell words; {port}
    /// becomes the session's loopback port, also passed as AGENT_PORT).
    #[arg(long, value_name = "CMD")]
    pub agent_command: Option<String>,
    /// Function instances `cargo lambda watch` runs at once, per function.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Multiplies the emulator's cold and warm latencies (1.0: the published ones).
    #[arg(long, default_value_t = 1.0)]
    pub latency_scale: f64,
    /// Do not build the binaries first (when they are up to date).
    #[arg(long)]
    pub no_build: bool,
}

impl StackArgs {
    /// Options for a stack whose logs go to a fresh folder under `.local/`.
    pub fn options(&self, with_batches: bool) -> Result<StackOptions, CliError> {
        let agent = match (&self.agent_url, &self.agent_command) {
            (Some(url), _) => Agent::Url(url.clone()),
            (None, Some(command)) => Agent::Command(
                agentcore_emulator::AgentCommand::parse(command)
                    .map_err(|e| CliError::invalid("--agent-command", e.to_string()))?,
            ),
            (None, None) => Agent::BuiltIn,
        };
        if !(self.latency_scale.is_finite() && self.latency_scale >= 0.0) {
            return Err(CliError::invalid("--latency-scale", "expected a number of at least 0"));
        }
        let workspace = Workspace::default();
        let run_dir = workspace
            .root
            .join(".local")
            .join(format!("stack-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        Ok(StackOptions {
            with_batches: self.with_batches || with_batches,
            with_leases: self.with_leases,
            agent,
            concurrency: self.concurrency,
            latency_scale: self.latency_scale,
            build: !self.no_build,
            ..StackOptions::new(run_dir)
        })
    }
}

/// Starts the stack with a spinner naming each step; an interrupt during the start stops
/// what was started so far.
pub async fn start(options: &StackOptions, ui: Ui) -> Result<LocalStack, CliError> {
    let progress = ui.spinner("starting the local stack");
    let step = |step: &str| progress.set_message(step);
    let started = LocalStack::start(options, &step);
    tokio::select! {
        stack = started => match stack {
            Ok(stack) => {
                progress.finish(format!("ready; logs in {}", stack.run_dir().display()));
                Ok(stack)
            }
            Err(error) => {
                progress.give_up("failed");
                ui.note(format!("logs in {}", options.run_dir.display()));
                Err(error.into())
            }
        },
        _ = shutdown_signal() => {
            progress.give_up("interrupted");
            Err(CliError::Interrupted)
        }
    }
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let options = self.stack.options(false)?;
        let stack = start(&options, ui).await?;
        let exports = stack.exports();
        if let Some(path) = &self.env_file {
            exports.write(path)?;
        }
        let json: BTreeMap<&str, &str> = exports.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.output.print(&json, || exports.render())?;
        ui.note("the local stack runs until Ctrl-C or SIGTERM");
        let outcome = keep_running(&stack).await;
        stack.stop().await;
        if let Some(path) = &self.env_file {
            let _ = std::fs::remove_file(path);
        }
        ui.note("local stack stopped");
        outcome
    }
}

/// Until a signal (`Ok`) or a part of the stack ending by itself (`Err`).
async fn keep_running(stack: &LocalStack) -> Result<(), CliError> {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return Ok(()),
            _ = tokio::time::sleep(WATCH_EVERY) => {
                let exited = stack.exited();
                if !exited.is_empty() {
                    return Err(CliError::StackPartExited(exited.join(", ")));
                }
            }
        }
    }
}
