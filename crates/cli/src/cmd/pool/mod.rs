//! `warmpool pool ...`: the pool queue as it stands, and the pre-warm a known burst needs.

pub mod prewarm;
pub mod status;

use crate::error::CliError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Depth, session ages and stale risk, from a non-destructive peek; can wait for a depth.
    Status(status::Args),
    /// The pre-warm a known burst needs: the window target, its lead, and the
    /// POOL_TARGET_SCHEDULE windows for it (docs/operations.md). Prints; calls nothing.
    Prewarm(prewarm::Args),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::Status(args) => args.run(ui).await,
            Self::Prewarm(args) => args.run(),
        }
    }
}
