//! `warmpool local relay`: the flags and lifetime of the asynchronous Lambda relay
//! ([`warmpool_local_stack::relay`]); it runs until Ctrl-C or SIGTERM.

use crate::error::CliError;
use crate::output::OutputArgs;
use crate::ui::Ui;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use warmpool_core::process::shutdown_signal;
use warmpool_local_stack::relay::{self, loopback_url};

/// How long the relay waits, on shutdown, for `Event` invocations it already accepted.
const RELAY_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback address to serve the Invoke API on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Base URL of the Invoke API to forward to, on loopback (e.g. http://127.0.0.1:9000).
    #[arg(long)]
    pub forward: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What the relay prints once it listens: where to point `AWS_ENDPOINT_URL_LAMBDA`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listening<'a> {
    endpoint_url: &'a str,
    forward: &'a str,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let forward = loopback_url(&self.forward).map_err(CliError::from)?;
        let running = relay::spawn(self.listen, relay::forward_to(forward.clone()))
            .await
            .map_err(warmpool_local_stack::Error::Relay)?;
        let endpoint_url = running.endpoint_url();
        let listening = Listening {
            endpoint_url: &endpoint_url,
            forward: &forward,
        };
        self.output.print(&listening, || {
            format!("lambda relay on {endpoint_url} forwarding to {forward}")
        })?;
        shutdown_signal().await;
        let pending = running.stats.started();
        if tokio::time::timeout(RELAY_DRAIN, running.stats.idle()).await.is_err() {
            ui.note("lambda relay: stopping with asynchronous invocations still running");
        }
        ui.note(format!(
            "lambda relay: {pending} asynchronous invocations accepted, {} failed",
            running.stats.failed()
        ));
        Ok(())
    }
}
