//! document-agent: the reference AgentCore Runtime container app for document batches.
//!
//! - `GET /ping`: `{"status":"Healthy"|"HealthyBusy","time_of_last_update":<epoch s>}`, busy
//!   while a batch runs; the timestamp moves only when the status changes.
//! - `POST /invocations`: `{"type":"warmup"}` is answered `{"status":"warm"}` before any other
//!   work; `{"type":"batch","v":1,"batchId","attempt"}` (a v1 invoker's `documents` and
//!   `deadline` are accepted and ignored; other fields are refused, 400) starts the batch in
//!   the background and answers `{"status":"accepted","batchId","attempt"}` at once, if and
//!   only if the tracking row assigns that attempt to this session ([`ownership`]); else 403
//!   (`{"error","retryable":false}`), or 503 if the row cannot be read (`"retryable":true`),
//!   and nothing is read, written or sent. The session is read from AgentCore's session
//!   header, never from the payload; the documents come from the row.
//! - `POST /emulator/terminate` (only with `AGENT_EMULATOR_HOOKS=true`): the local AgentCore
//!   emulator ends a session's run when it crashes or stops that session.
//!
//! The run itself is [`run::Services::run`]; document processing sits behind
//! [`processor::DocumentProcessor`].

pub mod config;
pub mod ownership;
pub mod processor;
pub mod run;
pub mod server;

pub use config::{AgentConfig, RunSettings};
pub use processor::{BasicProcessor, DocumentProcessor};
pub use run::{RunOutcome, Services};
pub use server::{RunRecord, RunningAgent, serve};
