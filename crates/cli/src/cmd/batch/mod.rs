//! `warmpool batch ...`: document batches as a user sees them.

pub mod status;
pub mod submit;

use crate::error::CliError;
use crate::ui::Ui;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Upload a folder's files under incoming/<batchId>/, then its manifest; prints the batch ID.
    Submit(submit::Args),
    /// The batch's tracking row: status, attempt, session, timings, result; can wait for it.
    Status(status::Args),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::Submit(args) => args.run(ui).await,
            Self::Status(args) => args.run(ui).await,
        }
    }
}
