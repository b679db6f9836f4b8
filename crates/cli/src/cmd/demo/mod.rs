//! `warmpool demo`: the full demo on a local stack of its own (`full`), and `warmpool demo
//! compare`, the pool-versus-no-pool comparison against a stack that already runs.

pub mod compare;
pub mod full;

use crate::error::CliError;
use crate::ui::Ui;

/// Without a subcommand, the full demo; its flags then apply.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub full: full::Args,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Latency and warm-hit rate without the pool versus through it, against a running stack.
    Compare(compare::Args),
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self.command {
            Some(Command::Compare(args)) => args.run(ui).await,
            None => self.full.run(ui).await,
        }
    }
}
