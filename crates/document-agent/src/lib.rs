//! document-agent: the reference AgentCore Runtime container app for document batches.
//!
//! - `GET /ping`: `{"status":"Healthy"|"HealthyBusy","time_of_last_update":<epoch s>}`, busy
//!   while a batch runs; the timestamp moves only when the status changes.
//! - `POST /invocations`: `{"type":"warmup"}` is answered `{"status":"warm"}` before any other
//!   work; `{"type":"batch","v":1,"batchId","attempt","documents","deadline"}` starts the batch
//!   in the background and answers `{"status":"accepted","batchId","attempt"}` at once. The
//!   session is read from AgentCore's session header, never from the payload.
//! - `POST /emulator/terminate` (only with `AGENT_EMULATOR_HOOKS=true`): the local AgentCore
//!   emulator ends a session's run when it crashes or stops that session.
//!
//! The run itself is [`run::Services::run`]; document processing sits behind
//! [`processor::DocumentProcessor`].

pub mod config;
pub mod processor;
pub mod run;
pub mod server;

pub use config::{AgentConfig, RunSettings};
pub use processor::{BasicProcessor, DocumentProcessor};
pub use run::{RunOutcome, Services};
pub use server::{RunRecord, RunningAgent, serve};
