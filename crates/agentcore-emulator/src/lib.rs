//! A local stand-in for Amazon Bedrock AgentCore Runtime's data plane, for tests and the local
//! stack. It speaks the real wire protocol, so the unmodified `aws-sdk-bedrockagentcore`
//! client works against it through `endpoint_url`, and it models the session lifecycle that
//! makes a warm pool matter: cold and warm latency, idle timeout, max lifetime, the creation
//! rate and active-session quotas, and injected faults.
//!
//! # In-process use
//!
//! ```no_run
//! # async fn demo() -> Result<(), agentcore_emulator::Error> {
//! use agentcore_emulator::{Emulator, EmulatorConfig, lifecycle::LifecycleConfig};
//!
//! let emulator = Emulator::spawn(EmulatorConfig {
//!     lifecycle: LifecycleConfig { latency_scale: 0.01, ..Default::default() },
//!     ..Default::default()
//! })
//! .await?;
//! let endpoint = emulator.endpoint_url(); // give this to the SDK as endpoint_url
//! # let _ = endpoint;
//! emulator.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Wire protocol (what the SDK sends)
//!
//! - `POST /runtimes/{percent-encoded ARN}/invocations?qualifier=DEFAULT` with header
//!   `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` (33..=256 chars) and the raw payload.
//!   200 answers with the agent's payload and content type and echoes the session header.
//!   An unknown, expired, stopped or crashed session ID silently gets a new microVM.
//! - `POST /runtimes/{ARN}/stopruntimesession?qualifier=DEFAULT`, same header, body
//!   `{"clientToken": ...}`: 200 `{}` with the session header; an unknown or ended session is
//!   ResourceNotFoundException.
//! - Errors are restJson1: header `x-amzn-errortype` and body `{"message": ...}`:
//!   ValidationException 400, ResourceNotFoundException 404, ThrottlingException 429 (creation
//!   rate), ServiceQuotaExceededException 402 (active sessions), InternalServerException 500
//!   (`errorRate`), RuntimeClientError 424 (crashed microVM, failing or unreachable agent).
//!
//! # Agent
//!
//! With `agent_url` set, an admitted invocation is forwarded as `POST {agent_url}/invocations`
//! with the payload, its content type and the session header, as AgentCore does to a
//! container. When a session's microVM ends under it (a crash, injected or targeted, or
//! StopRuntimeSession), the emulator also sends `POST {agent_url}/emulator/terminate` with the
//! session header and `{"reason":"crashed"|"stopped"}`, and waits for it (5 s at most). In
//! AgentCore everything in a microVM dies with it; a local agent serves every session in one
//! process, so it must be told to drop that session's work. An agent without the hook answers
//! 404 and is left alone. Without an agent URL, a built-in agent answers `{"type":"warmup"}` with
//! `{"status":"warm"}`, other JSON with `{"echo": <payload>, "sessionId": "<id>"}`, and echoes
//! anything else.
//!
//! # Admin endpoints (JSON, camelCase)
//!
//! Times are milliseconds on the emulator's clock (since it started).
//!
//! - `GET /admin/sessions`: every session ID seen, as
//!   `[{"sessionId", "createdAtMs", "lastInvokedAtMs", "invocationCount", "generation",
//!   "state": "active"|"idleExpired"|"lifetimeExpired"|"stopped"|"crashed",
//!   "history": [{"atMs", "cold", "generation"}]}]`. `generation` counts the microVMs the ID
//!   has had, so a warm hit shows as `cold: false` on the same generation.
//! - `GET /admin/stats`: `{"creations", "cold", "warm", "throttled", "quotaRejected",
//!   "errors", "crashes", "stops", "creationsPerSecond": {"<second>": n},
//!   "maxCreationsInAnySecond"}`.
//! - `POST /admin/faults` with any of `{"errorRate", "crashRate", "throttleAll",
//!   "crashSessions": [ids]}`: answers `{"errorRate", "crashRate", "throttleAll",
//!   "crashedSessions": [ids that were active and crashed]}`. `throttleAll` refuses every new
//!   microVM until set back to false.
//! - `POST /admin/reset`: forgets sessions, counters and fault changes (204).

mod agent;
mod error;
pub mod lifecycle;
mod server;
pub mod wire;

pub use agent::process::ProcessStats;
pub use agent::{AgentCommand, PORT_ENV};
pub use error::Error;
pub use server::{Emulator, EmulatorConfig, FaultsReport, FaultsUpdate, RunningEmulator};
