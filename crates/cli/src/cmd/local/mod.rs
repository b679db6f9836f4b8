//! `warmpool local ...`: the whole local stack (`up`), and its pieces that stand in for AWS
//! wiring one at a time (resource setup, the asynchronous Lambda relay, the SQS event source,
//! the schedule), all from `warmpool-local-stack`.

pub mod pump;
pub mod relay;
pub mod schedule;
pub mod setup;
pub mod up;

use crate::error::CliError;
use crate::ui::Ui;
use warmpool_local_stack::event_source::EventDispatch;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start the whole local stack and keep it running until Ctrl-C or SIGTERM; writes the
    /// endpoints and resources as `export` lines (--env-file).
    Up(up::Args),
    /// Create resources on the local stack (or wherever the SDK configuration points).
    #[command(subcommand)]
    Setup(setup::Command),
    /// Serve the Lambda Invoke API on loopback with a real asynchronous `Event` path, forwarding
    /// every invocation to another Invoke API (`cargo lambda watch`).
    Relay(relay::Args),
    /// Feed a queue to a function as SQS events, like Lambda's event source mapping.
    Pump(pump::Args),
    /// Invoke a function with an EventBridge scheduled event at a fixed period.
    Schedule(schedule::Args),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::Up(args) => args.run(ui).await,
            Self::Setup(command) => command.run(ui).await,
            Self::Relay(args) => args.run(ui).await,
            Self::Pump(args) => args.run(ui).await,
            Self::Schedule(args) => args.run(ui).await,
        }
    }
}

/// A dispatch that invokes `function` synchronously on the Invoke API at `forward`.
pub(crate) fn forward_events(forward: &str, function: String) -> Result<EventDispatch, CliError> {
    Ok(warmpool_local_stack::relay::forward_events(forward, function)?)
}
