//! `warmpool demo ...`: demonstrations against a running stack.

pub mod compare;

use crate::error::CliError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Latency and warm-hit rate without the pool versus through it.
    Compare(compare::Args),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::Compare(args) => args.run(ui).await,
        }
    }
}
