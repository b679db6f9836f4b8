//! `warmpool local schedule`: EventBridge's schedule for the local stack, invoking a function
//! with a scheduled event at a fixed period until Ctrl-C or SIGTERM. Each answer is a line on
//! stderr (failures even under `-q`); nothing goes to stdout.

use crate::cmd::local::forward_events;
use crate::error::CliError;
use crate::ui::Ui;
use std::time::Duration;
use warmpool_core::process::shutdown_signal;
use warmpool_local_stack::schedule::{Schedule, Tick};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function to invoke (name on the Invoke API).
    #[arg(long, default_value = "stale-batch-detector")]
    pub function: String,
    /// Base URL of the Invoke API (`cargo lambda watch`), on loopback.
    #[arg(long)]
    pub forward: String,
    /// The schedule's period in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub every_secs: u64,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let schedule = Schedule {
            dispatch: forward_events(&self.forward, self.function.clone())?,
            function: self.function,
            period: Duration::from_secs(self.every_secs),
        };
        ui.note(format!("invoking {} every {:?}", schedule.function, schedule.period));
        let run = schedule.run(|function, tick| match tick {
            Tick::Answered(answer) => ui.note(format!("{function}: {}", String::from_utf8_lossy(&answer))),
            // Failures are shown under -q too: they are what a quiet run is for.
            Tick::Failed(error) => eprintln!("{function} failed: {error}"),
            Tick::Silent => eprintln!("{function} did not answer"),
        });
        tokio::select! {
            _ = run => {}
            _ = shutdown_signal() => {}
        }
        Ok(())
    }
}
