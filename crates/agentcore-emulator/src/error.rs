//! The crate's one error type: start-up and configuration failures of the emulator, and
//! failures reaching the agent behind it. Wire-level errors the emulator *answers with*
//! (ThrottlingException, ...) are not errors of the emulator; they live in `wire`.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refusing to listen on {0}: the emulator only binds loopback addresses")]
    NonLoopbackListen(SocketAddr),

    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    #[error("invalid agent url {url:?}: {reason}")]
    InvalidAgentUrl { url: String, reason: String },

    #[error("failed to build the HTTP client for the agent")]
    HttpClient(#[source] reqwest::Error),

    #[error("the agent at {url} could not be reached")]
    AgentUnreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("the agent answered {status}: {body}")]
    AgentStatus { status: u16, body: String },

    #[error("the emulator's HTTP server failed")]
    Serve(#[source] std::io::Error),
}

impl Error {
    pub(crate) fn invalid_config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
