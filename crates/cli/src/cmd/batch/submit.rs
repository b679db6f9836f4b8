//! `warmpool batch submit <folder>`: the flags and printing of [`crate::batch::submit`].

use crate::batch;
use crate::cmd::BATCH_CALLS_TIMEOUT;
use crate::error::{CliError, bounded};
use crate::output::OutputArgs;
use crate::ui::Ui;
use std::path::PathBuf;
use warmpool_core::aws::{self, S3DocumentStore};
use warmpool_core::batch::BatchId;
use warmpool_core::batch::manifest::BatchLimits;
use warmpool_core::config::Env;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder whose files (recursively, hidden ones skipped) form the batch.
    pub folder: PathBuf,
    /// The documents bucket.
    #[arg(long, env = "DOCUMENTS_BUCKET")]
    pub bucket: String,
    /// The batch ID; defaults to the folder's name and a random suffix.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Path-style S3 addressing (the local stack).
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let batch_id = match &self.batch_id {
            Some(id) => BatchId::parse(id.clone()).map_err(|e| CliError::invalid("--batch-id", e.to_string()))?,
            None => batch::batch_id_for(&self.folder)?,
        };
        let limits = BatchLimits::from_env(&Env::from_process())?;
        let sdk = aws::load_config().await;
        let store = S3DocumentStore::new(aws::s3_client(&sdk, self.s3_path_style));
        let submission = bounded(
            "batch submit",
            BATCH_CALLS_TIMEOUT,
            batch::submit(&store, &self.bucket, &self.folder, batch_id, &limits),
        )
        .await?;
        // `-q` keeps what scripts read: the ID alone (formerly `batch submit --quiet`).
        self.output.print(&submission, || {
            if ui.quiet() {
                submission.batch_id.to_string()
            } else {
                batch::render_submission(&submission)
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::{Cli, Command};
    use clap::Parser;

    #[test]
    fn batch_submit_takes_the_folder_and_bucket_and_a_quiet_run_is_global() {
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
        let Command::Batch(crate::cmd::batch::Command::Submit(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            (args.folder.to_str(), args.bucket.as_str(), cli.verbosity.quiet),
            (Some("docs/claim-4711"), "demo-documents", true)
        );
    }
}
