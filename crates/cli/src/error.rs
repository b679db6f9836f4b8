//! Everything a `warmpool` command can fail with, worded for the person at the terminal.

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

    #[error(transparent)]
    LocalStack(#[from] warmpool_local_stack::Error),

    #[error("interrupted (SIGINT or SIGTERM)")]
    Interrupted,

    #[error("demo step `warmpool {step}` failed: {status}")]
    DemoStep { step: String, status: String },

    #[error("part of the local stack stopped by itself: {0} (see its log in the run folder)")]
    StackPartExited(String),

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

pub use warmpool_local_stack::error::sdk_message;

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
