//! Why a simulation run could not finish.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation settings: {0}")]
    Config(#[from] warmpool_core::error::ConfigError),
    #[error("{0} waited on something; the simulated ports never should")]
    Blocked(&'static str),
    #[error("the pool queue failed: {0}")]
    Queue(#[from] warmpool_core::error::QueueError),
    #[error("the simulation did not settle within {0} events")]
    Runaway(u64),
    #[error("profile {0}: {1}")]
    Profile(String, String),
}

impl SimError {
    /// A simulation is deterministic: running it again gives the same failure.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
