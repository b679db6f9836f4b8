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

    #[error("invalid agent command {command:?}: {reason}")]
    InvalidAgentCommand { command: String, reason: String },

    #[error("failed to start the agent process {program:?}")]
    AgentSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// The container contract's health check failed: the process exited or never answered
    /// `/ping` with Healthy in time.
    #[error("the agent process (pid {pid}) did not become healthy: {reason}")]
    AgentNotHealthy { pid: u32, reason: String },

    #[error("the session's agent process ended before it could serve the invocation")]
    AgentProcessEnded,
}

impl Error {
    pub(crate) fn invalid_config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
