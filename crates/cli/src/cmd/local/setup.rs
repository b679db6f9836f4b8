//! `warmpool local setup pool` and `warmpool local setup batches`: the flags and printing of
//! the resource setup in [`warmpool_local_stack::setup`].

use crate::cmd::{BATCH_CALLS_TIMEOUT, QUEUE_CALLS_TIMEOUT};
use crate::error::{CliError, bounded};
use crate::output::OutputArgs;
use crate::ui::Ui;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::aws;
use warmpool_core::config::Env;
use warmpool_core::pool::Lifecycle;
use warmpool_local_stack::setup::batches::{self as batch_setup, BatchQueueSettings, Clients};
use warmpool_local_stack::setup::pool as queue_setup;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the pool FIFO queue; prints its URL (only the URL, for scripts).
    Pool(PoolArgs),
    /// Create the batch path's bucket, queues and tracking table; prints KEY=value lines.
    Batches(BatchesArgs),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::Pool(args) => args.run(ui).await,
            Self::Batches(args) => args.run(ui).await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    /// Queue name; `.fifo` is appended if missing.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `local setup pool --output json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolQueue<'a> {
    queue_url: &'a str,
}

impl PoolArgs {
    pub async fn run(self, _ui: Ui) -> Result<(), CliError> {
        // The queue's retention and visibility follow the session lifecycle replenish reads.
        let lifecycle = Lifecycle::from_env(&Env::from_process())?;
        let sdk = aws::load_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let url = bounded(
            "CreateQueue",
            QUEUE_CALLS_TIMEOUT,
            queue_setup::create_pool_queue(&sqs, &self.name, &lifecycle),
        )
        .await?;
        self.output.print(&PoolQueue { queue_url: &url }, || url.clone())?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct BatchesArgs {
    /// Prefix of every resource name (3..=40 of lowercase letters, digits and '-').
    #[arg(long)]
    pub name: String,
    /// The batch queue's redrive maxReceiveCount (the invoker's MAX_RECEIVE_COUNT).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receive_count: u32,
    /// The batch queue's visibility timeout in seconds (at least the invoker's timeout).
    #[arg(long, default_value_t = 180)]
    pub visibility_timeout_secs: u64,
    /// Path-style S3 addressing (the local stack).
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl BatchesArgs {
    pub async fn run(self, _ui: Ui) -> Result<(), CliError> {
        let sdk = aws::load_config().await;
        let (sqs, s3, dynamodb) = (
            aws_sdk_sqs::Client::new(&sdk),
            aws::s3_client(&sdk, self.s3_path_style),
            aws_sdk_dynamodb::Client::new(&sdk),
        );
        let settings = BatchQueueSettings {
            max_receive_count: self.max_receive_count,
            visibility_timeout: Duration::from_secs(self.visibility_timeout_secs),
        };
        let clients = Clients {
            sqs: &sqs,
            s3: &s3,
            dynamodb: &dynamodb,
        };
        let resources = bounded(
            "local setup batches",
            BATCH_CALLS_TIMEOUT,
            batch_setup::create_batch_resources(&clients, &self.name, &settings),
        )
        .await?;
        self.output.print(&resources, || resources.env_lines())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::local::Command as Local;
    use crate::cmd::{Cli, Command};
    use crate::output::Format;
    use clap::Parser;

    fn setup(line: &[&str]) -> Result<super::Command, clap::Error> {
        let cli = Cli::try_parse_from(["warmpool", "local", "setup"].iter().chain(line))?;
        match cli.command {
            Command::Local(Local::Setup(command)) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn local_setup_pool_takes_the_queue_name() {
        let super::Command::Pool(args) = setup(&["pool", "--name", "tour-pool"]).unwrap() else {
            panic!("not the pool setup")
        };
        assert_eq!((args.name.as_str(), args.output.output), ("tour-pool", Format::Text));
    }

    #[test]
    fn local_setup_batches_takes_the_resource_prefix_and_queue_settings() {
        let command = setup(&[
            "batches",
            "--name",
            "demo",
            "--max-receive-count",
            "3",
            "--output",
            "json",
        ])
        .unwrap();
        let super::Command::Batches(args) = command else {
            panic!("not the batch setup")
        };
        assert_eq!((args.name.as_str(), args.max_receive_count), ("demo", 3));
        assert_eq!((args.visibility_timeout_secs, args.output.output), (180, Format::Json));
    }

    #[test]
    fn the_old_setup_spellings_are_refused() {
        assert!(setup(&["--pool-queue", "tour-pool"]).is_err());
        assert!(Cli::try_parse_from(["warmpool", "local", "setup-batches", "--name", "demo"]).is_err());
        assert!(setup(&["batches", "--name", "demo", "--max-receive-count", "0"]).is_err());
    }
}
