//! Domain rules, ports and AWS adapters of the AgentCore warm pool.
//!
//! The functions (`get-session`, `replenish`, ...) are thin wiring over this crate:
//! - [`pool`]: the pool domain: freshness, claims, warmups, the creation budget, the target,
//!   maintenance;
//! - [`lease`]: sessions that belong to someone: idempotent claims, per-user affinity,
//!   release, the audit trail (optional, with a lease table);
//! - [`batch`]: document batches: the manifest, the tracking row's state machine, message
//!   formats, starting and settling attempts;
//! - shared concepts: [`session`] (session IDs and the pool message format), [`ports`] (the
//!   small capability traits the rules need, the agent runtime among them), [`stop`]
//!   (StopRuntimeSession retried until the session is gone), [`schedule`] (runs started by a
//!   schedule), [`process`] (signals and failure reports of the binaries), [`clock`],
//!   [`config`], [`metrics`], [`error`], [`hash`], [`num`];
//! - [`aws`]: the adapters behind the ports, one cargo feature per AWS service (`sqs`,
//!   `lambda`, `agentcore`, `dynamodb`, `s3`), so that each function links only the SDKs it
//!   calls.

pub mod aws;
pub mod batch;
pub mod clock;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod hash;
pub mod lease;
pub mod metrics;
pub mod num;
pub mod pool;
pub mod ports;
pub mod process;
pub mod schedule;
pub mod session;
pub mod stop;
