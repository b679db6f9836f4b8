//! The local stack, defined once: moto (with a guard on its version), the AgentCore emulator,
//! the functions under `cargo lambda watch`, the asynchronous Lambda relay, the SQS event
//! source, the schedule, resource setup, and a [`Supervisor`] that owns every process and
//! task it started and stops them all, on drop, on error and on SIGINT/SIGTERM. Everything
//! binds 127.0.0.1.
//!
//! Used by the CLI (`warmpool local ...`, `warmpool demo`), the tests crate's harness and the
//! CLI's end-to-end tests.

pub mod error;
pub mod event_source;
pub mod moto;
pub mod process;
pub mod ready;
pub mod relay;
pub mod schedule;
pub mod sdk;
pub mod setup;
pub mod stack;
pub mod supervisor;
pub mod watch;
pub mod workspace;

pub use error::Error;
pub use moto::Moto;
pub use stack::{LocalStack, StackOptions};
pub use supervisor::Supervisor;
pub use workspace::Workspace;

/// A free loopback port, chosen by the kernel.
pub fn free_loopback_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Spawn {
            what: "a free loopback port".into(),
            source,
        })
}
