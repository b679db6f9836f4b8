//! `warmpool local schedule`: EventBridge's schedule for the local stack, invoking a function
//! with a scheduled event at a fixed period until Ctrl-C or SIGTERM. Each answer is a line on
//! stderr (failures even under `-q`); nothing goes to stdout.

use crate::cmd::local::forward_events;
use crate::error::CliError;
use crate::event_source::scheduled_event;
use crate::relay;
use crate::shutdown::shutdown_signal;
use crate::ui::Ui;
use std::time::Duration;
use warmpool_core::clock::{Clock, SystemClock};

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
        let dispatch = forward_events(&self.forward, self.function.clone())?;
        let period = Duration::from_secs(self.every_secs);
        ui.note(format!("invoking {} every {period:?}", self.function));
        let run = async {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let event = scheduled_event(&self.function, SystemClock.now_ms())
                    .to_string()
                    .into_bytes();
                match tokio::time::timeout(relay::FORWARD_TIMEOUT, dispatch(event)).await {
                    Ok(Ok(answer)) => ui.note(format!("{}: {}", self.function, String::from_utf8_lossy(&answer))),
                    // Failures are shown under -q too: they are what a quiet run is for.
                    Ok(Err(error)) => eprintln!("{} failed: {error}", self.function),
                    Err(_) => eprintln!("{} did not answer", self.function),
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = shutdown_signal() => {}
        }
        Ok(())
    }
}
