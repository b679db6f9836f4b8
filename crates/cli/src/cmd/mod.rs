//! The command line. One file per subcommand, laid out as the command line is
//! (`warmpool pool status` is `cmd/pool/status.rs`), each holding its flags (`Args`) and the
//! `run` that carries them out; the groups' `mod.rs` only route.
//!
//! AWS clients come from the standard SDK configuration (`AWS_REGION`, credentials, and the
//! per-service endpoints `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`, ...), so the same commands work against AWS and the
//! local stack.
//!
//! Habits every command keeps: a result goes to stdout, as text or, with `--output json`, as
//! one JSON document; notes, progress and logs go to stderr, more with `-v`, less with `-q`;
//! every flag has help; counts are unsigned.

pub mod agent;
pub mod batch;
pub mod demo;
pub mod invoke;
pub mod local;
pub mod plan;
pub mod pool;
pub mod pools;
pub mod session;

use crate::error::CliError;
use crate::ui::{Ui, Verbosity};
use clap::{Parser, Subcommand};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "warmpool",
    version,
    about = "Warm pool of Amazon Bedrock AgentCore Runtime sessions"
)]
pub struct Cli {
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Claim a session through get-session, then invoke the agent on it.
    Invoke(invoke::Args),
    /// Inspect the pool queue; plan a pre-warm.
    #[command(subcommand)]
    Pool(pool::Command),
    /// Local stack control.
    #[command(subcommand)]
    Local(local::Command),
    /// The full local demo (a stack of its own, pool vs no pool, one batch); `demo compare`
    /// compares against a running stack.
    Demo(demo::Args),
    /// Document batches: submit a folder, follow a batch.
    #[command(subcommand)]
    Batch(batch::Command),
    /// The pools of this account and region; the check of their shares of the creation quota.
    #[command(subcommand)]
    Pools(pools::Command),
    /// Size a pool for a traffic trace: every candidate simulated, the recommendation and its deploy line.
    Plan(plan::Args),
    /// Sessions that belong to someone (pools with leases): the audit trail.
    #[command(subcommand)]
    Session(session::Command),
}

impl Cli {
    /// Runs the parsed command; what it prints goes to stdout, diagnostics to stderr.
    pub async fn run(self) -> Result<(), CliError> {
        let ui = Ui::new(self.verbosity);
        match self.command {
            Command::Invoke(args) => args.run(ui).await,
            Command::Pool(command) => command.run(ui).await,
            Command::Local(command) => command.run(ui).await,
            Command::Demo(command) => command.run(ui).await,
            Command::Batch(command) => command.run(ui).await,
            Command::Pools(command) => command.run(ui).await,
            Command::Plan(args) => args.run(ui).await,
            Command::Session(command) => command.run().await,
        }
    }
}

/// Upper bound on a command's queue and table calls (`pool status`, `local setup pool`,
/// `batch status` beyond its wait, `local pump`'s start).
pub(crate) const QUEUE_CALLS_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound on one `batch submit` (uploads included) and one `local setup batches`.
pub(crate) const BATCH_CALLS_TIMEOUT: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every argument of every command, with the path of subcommands that leads to it.
    fn all_args(command: &clap::Command, path: &str, found: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            found.push((path.to_string(), arg.clone()));
        }
        for sub in command.get_subcommands() {
            all_args(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }

    #[test]
    fn every_flag_and_argument_of_every_command_has_help() {
        let mut command = Cli::command();
        command.build();
        let mut found = Vec::new();
        all_args(&command, "warmpool", &mut found);
        let missing: Vec<String> = found
            .iter()
            .filter(|(_, arg)| arg.get_help().is_none())
            .map(|(path, arg)| format!("{path} --{}", arg.get_id()))
            .collect();
        assert!(found.len() > 60, "only {} arguments found", found.len());
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn every_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "warmpool", &mut missing);
        assert!(missing.is_empty(), "commands without help: {missing:?}");
    }

    #[test]
    fn verbosity_flags_are_global() {
        let cli = Cli::try_parse_from(["warmpool", "pool", "prewarm", "-vv", "--base-rate", "1"]);
        assert!(cli.is_err(), "--peak-rate and --burst-secs are required");
        let cli = Cli::try_parse_from([
            "warmpool",
            "pool",
            "prewarm",
            "--base-rate",
            "1",
            "--peak-rate",
            "2",
            "--burst-secs",
            "60",
            "-vv",
        ])
        .unwrap();
        assert_eq!(cli.verbosity.verbose, 2);
        let cli = Cli::try_parse_from(["warmpool", "-q", "batch", "submit", "d", "--bucket", "b"]).unwrap();
        assert!(cli.verbosity.quiet);
        assert!(Cli::try_parse_from(["warmpool", "-q", "-v", "batch", "submit", "d", "--bucket", "b"]).is_err());
    }
}
