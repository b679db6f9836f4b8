//! Everything starting, configuring or stopping the local stack can fail with.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use std::path::PathBuf;
use std::time::Duration;
use warmpool_core::error::BoxError;
use warmpool_core::process::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {name}: {reason}")]
    Invalid { name: &'static str, reason: String },

    /// A resource could not be created (bucket, queue, table).
    #[error("setting up the local stack: {operation} failed: {message}")]
    Setup { operation: &'static str, message: String },

    #[error("SQS {operation} failed: {message}")]
    Sqs {
        operation: &'static str,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The moto in `.venv` is not the one `scripts/bootstrap.sh` pins: its wire behaviour (and
    /// the patches of `scripts/moto_server.py`) are only known for the pinned one.
    #[error(
        "moto {found} is installed but scripts/bootstrap.sh pins {pinned}: run scripts/bootstrap.sh (make bootstrap)"
    )]
    MotoVersion { found: String, pinned: String },

    /// A tool of the local stack is missing (`.venv/bin/python`, `cargo-lambda`).
    #[error("{} not found: run scripts/bootstrap.sh (make bootstrap)", path.display())]
    Missing { path: PathBuf },

    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} failed: {reason}")]
    Tool { what: String, reason: String },

    #[error("{what} was not ready within {after:?}")]
    NotReady { what: String, after: Duration },

    #[error("{what} listens on a non-loopback address: {address}")]
    NotLoopback { what: String, address: String },

    #[error("moto configuration failed: {0}")]
    MotoConfig(String),

    #[error("lambda relay: {0}")]
    Relay(#[source] std::io::Error),

    #[error(transparent)]
    Emulator(#[from] agentcore_emulator::Error),

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            reason: reason.into(),
        }
    }

    /// Worth trying again as it is: a start that was slow, or moto not yet taking its
    /// configuration. A wrong version, a missing tool or a refused resource stays wrong.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::NotReady { .. } | Self::MotoConfig(_))
    }
}

/// A one-line account of an SDK failure: the service's code and message when it answered,
/// the chain of causes (connection refused, timeout, ...) when it did not. Shorter than the
/// SDK's `DisplayErrorContext`, which appends the raw response.
pub fn sdk_message<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        ),
        None => error_chain(error),
    }
}

/// Maps an SQS SDK failure of `operation` to [`Error::Sqs`], keeping the source.
pub fn sqs_error<E>(operation: &'static str) -> impl FnOnce(SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |error| Error::Sqs {
        operation,
        message: sdk_message(&error),
        source: Some(Box::new(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |inner, text| Some(Layer(text, inner.map(Box::new))))
            .unwrap_or(Layer("", None))
    }

    #[test]
    fn a_chain_reads_outer_to_root_on_one_line() {
        let error = layers(&["CreateQueue failed", "dispatch failure", "connection refused"]);
        assert_eq!(
            error_chain(&error),
            "CreateQueue failed: dispatch failure: connection refused"
        );
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let error = layers(&["admin endpoint failed: timed out", "timed out"]);
        assert_eq!(error_chain(&error), "admin endpoint failed: timed out");
    }
}
