//! `warmpool local ...`: the pieces of the local stack that stand in for AWS wiring (resource
//! setup, the asynchronous Lambda relay, the SQS event source, the schedule).

pub mod pump;
pub mod relay;
pub mod schedule;
pub mod setup;

use crate::error::CliError;
use crate::event_source::EventDispatch;
use crate::ui::Ui;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
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
            Self::Setup(command) => command.run(ui).await,
            Self::Relay(args) => args.run(ui).await,
            Self::Pump(args) => args.run(ui).await,
            Self::Schedule(args) => args.run(ui).await,
        }
    }
}

/// The local stack never leaves the machine: `--forward` must be http:// on loopback.
pub(crate) fn loopback_url(raw: &str) -> Result<String, CliError> {
    let url = reqwest::Url::parse(raw).map_err(|e| CliError::invalid("--forward", e.to_string()))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() != "http" || !loopback {
        return Err(CliError::invalid(
            "--forward",
            format!("{raw}: expected http:// on a loopback address"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// A dispatch that invokes `function` synchronously on the Invoke API at `forward`.
pub(crate) fn forward_events(forward: &str, function: String) -> Result<EventDispatch, CliError> {
    let forward = crate::relay::forward_to(loopback_url(forward)?);
    Ok(Arc::new(move |payload| forward(function.clone(), payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_forwards_only_to_loopback_http() {
        assert_eq!(loopback_url("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        assert!(loopback_url("http://localhost:9000").is_ok());
        assert!(loopback_url("http://[::1]:9000").is_ok());
        for bad in [
            "http://10.0.0.1:9000",
            "https://127.0.0.1:9000",
            "http://example.com",
            "not a url",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }
}
