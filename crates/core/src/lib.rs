//! Domain rules, ports and AWS adapters of the AgentCore warm pool.
//!
//! The functions (`get-session`, `replenish`, ...) are thin wiring over this crate:
//! - [`session`]: session IDs and the pool message format;
//! - [`pool`]: freshness rules and the claim algorithm (usable in-process by a trusted service);
//! - [`warmup`]: warming new sessions and enqueueing them only once warm;
//! - [`enqueue`]: the pool send, resent while its outcome is unknown;
//! - [`stop`]: StopRuntimeSession retried until the session is gone;
//! - [`ports`]: the small capability traits the rules need, with [`aws`] adapters behind them;
//! - [`trigger`]: the replenish trigger that never blocks nor fails a claim;
//! - [`maintenance`]: heartbeats, retirement and trimming of pooled sessions (the sweep);
//! - [`target`]: how many sessions the pool should hold (static, scheduled, adaptive);
//! - [`quota`]: pacing creations within the account's creation budget;
//! - [`schedule`]: runs started by a schedule: their event and their time budget;
//! - [`batch`]: document batches: the tracking row's state machine, message formats, and
//!   settling failed attempts; [`manifest`]: the batch manifest and limits;
//! - [`clock`], [`config`], [`metrics`], [`error`].

pub mod aws;
pub mod batch;
pub mod clock;
pub mod config;
pub mod enqueue;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod maintenance;
pub mod manifest;
pub mod metrics;
pub mod pool;
pub mod ports;
pub mod quota;
pub mod schedule;
pub mod session;
pub mod stop;
pub mod target;
pub mod trigger;
pub mod warmup;

pub use error::{AgentError, AgentErrorKind, ConfigError, QueueError, QueueErrorKind, TriggerError};
