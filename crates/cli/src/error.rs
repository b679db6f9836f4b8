//! Everything a `warmpool` command can fail with, worded for the person at the terminal.

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;
use warmpool_core::error::BoxError;
use warmpool_core::error::{AgentError, ConfigError, QueueError};
use warmpool_core::error::{StoreError, TableError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("invalid {name}: {reason}")]
    InvalidArgument { name: &'static str, reason: String },

    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The Lambda API itself refused or could not be reached (not the function's own failure).
    #[error("lambda invoke of {function} failed: {message}")]
    LambdaInvoke {
        function: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The function ran and failed (`X-Amz-Function-Error`).
    #[error("function {function} failed with {error_type}: {message}")]
    FunctionFailed {
        function: String,
        error_type: String,
        message: String,
    },

    #[error("function {function} answered something unexpected: {reason}")]
    UnexpectedAnswer { function: String, reason: String },

    #[error(transparent)]
    Agent(#[from] AgentError),

    #[error(transparent)]
    Queue(#[from] QueueError),

    #[error("SQS {operation} failed: {message}")]
    Sqs {
        operation: &'static str,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("emulator admin endpoint {url} failed: {source}")]
    EmulatorAdmin {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{what} did not finish within {after:?}")]
    TimedOut { what: &'static str, after: Duration },

    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("lambda relay: {0}")]
    Relay(#[source] std::io::Error),

    #[error("setting up the local stack: {operation} failed: {message}")]
    Setup { operation: &'static str, message: String },

    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Table(#[from] TableError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("no batch {0} in the tracking table")]
    NoSuchBatch(String),

    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A pool's creation share would push the account past its quota.
    #[error("{0}")]
    Oversubscribed(String),
}

impl CliError {
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name,
            reason: reason.into(),
        }
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
        None => chain(error),
    }
}

/// An error and its causes on one line, `outer: cause: root cause`. A cause whose text the
/// line already holds is left out: many errors repeat their source in their own message.
/// The one printer of error chains in this crate (`main` reports failures with it).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = format!("{message}: {cause_text}");
        }
        source = cause.source();
    }
    message
}

/// Maps an SQS SDK failure of `operation` to [`CliError::Sqs`], keeping the source.
pub(crate) fn sqs_error<E>(operation: &'static str) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> CliError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |error| CliError::Sqs {
        operation,
        message: sdk_message(&error),
        source: Some(Box::new(error)),
    }
}

/// Runs `future` with an upper bound, so that no command can hang on a silent endpoint.
pub async fn bounded<T, E>(
    what: &'static str,
    after: Duration,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, CliError>
where
    CliError: From<E>,
{
    match tokio::time::timeout(after, future).await {
        Ok(result) => result.map_err(CliError::from),
        Err(_) => Err(CliError::TimedOut { what, after }),
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
            chain(&error),
            "CreateQueue failed: dispatch failure: connection refused"
        );
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let error = layers(&["admin endpoint failed: timed out", "timed out"]);
        assert_eq!(chain(&error), "admin endpoint failed: timed out");
    }
}
