//! A local stand-in for Amazon Bedrock AgentCore Runtime's data plane, for tests and the local
//! stack. It speaks the real wire protocol, so the unmodified `aws-sdk-bedrockagentcore`
//! client works against it through `endpoint_url`, and it models the session lifecycle that
//! makes a warm pool matter: cold and warm latency, idle timeout, max lifetime, the creation
//! rate and active-session quotas, and injected faults.
//!
//! The cold start follows the runtime's platform (`LifecycleConfig::platform`, `--platform`):
//! V1 starts the container per session (2.9 s median), V2 restores a snapshot (about 2 s at
//! p75). The quotas default to 2026's: 25 new sessions per second, and 5,000 active sessions
//! in us-east-1 and us-west-2, 2,500 elsewhere (`--region`). On V2 in per-session mode the
//! agent's warmup build hook (`build_hook`, `--build-hook-path`) is POSTed on each session's
//! process before its first invocation; a failed hook fails that start (RuntimeClientError).
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
//!   ResourceNotFoundException, as AgentCore answers.
//! - Errors are restJson1: header `x-amzn-errortype` and body `{"message": ...}`:
//!   ValidationException 400, ResourceNotFoundException 404, ThrottlingException 429 (creation
//!   rate, injected stop throttles), ServiceQuotaExceededException 402 (active sessions),
//!   InternalServerException 500 (`errorRate`, injected stop errors), RuntimeClientError 424
//!   (crashed microVM, failing or unreachable agent, an agent process that never became
//!   healthy).
//!
//! # Agent
//!
//! Three modes. The agent gets `POST /invocations` with the payload and the container
//! contract's headers: the session header, an `X-Amzn-Bedrock-AgentCore-Runtime-Request-Id`,
//! `Content-Type`, `Accept`, the trace, user-ID and MCP headers and any
//! `X-Amzn-Bedrock-AgentCore-Runtime-Custom-*` header; never the caller's SigV4 headers.
//!
//! - `agent_url` (`--agent-url`): one agent serves every session. When a session's microVM
//!   ends under it (a crash, injected or targeted, or StopRuntimeSession), the emulator also
//!   sends `POST {agent_url}/emulator/terminate` with the session header and
//!   `{"reason":"crashed"|"stopped"}`, and waits for it (5 s at most): in AgentCore everything
//!   in a microVM dies with it, but a shared agent must be told to drop that session's work.
//!   An agent without the hook answers 404 and is left alone. The idle clock runs from each
//!   admission.
//! - `agent_command` (`--agent-command`): one agent process per session, as AgentCore gives
//!   each session a microVM. It starts on the session's first invocation on a free 127.0.0.1
//!   port (in `AGENT_PORT` and in place of `{port}` in the arguments); that cold start lasts
//!   until `GET /ping` answers Healthy (bounded by `agent_start_timeout`; a process that
//!   exits or never gets there fails the invocation with RuntimeClientError and crashes the
//!   session). The process group is stopped when the session ends: StopRuntimeSession, crash
//!   injection, idle timeout or max lifetime (a reaper on a 100 ms tick), and when the
//!   emulator stops or is dropped. An invocation in flight, or a `/ping` answering
//!   HealthyBusy, holds the idle timeout off; the idle clock restarts when the work ends.
//!   Near their idle timeout, sessions' agents are pinged at most every 500 ms.
//! - Neither: a built-in agent answers `{"type":"warmup"}` with `{"status":"warm"}`, other
//!   JSON with `{"echo": <payload>, "sessionId": "<id>"}`, and echoes anything else.
//!
//! # Admin endpoints (JSON, camelCase)
//!
//! Times are milliseconds on the emulator's clock (since it started).
//!
//! - `GET /admin/sessions`: every session ID seen, as
//!   `[{"sessionId", "createdAtMs", "lastInvokedAtMs", "invocationCount", "generation",
//!   "state": "active"|"idleExpired"|"lifetimeExpired"|"stopped"|"crashed", "busy",
//!   "idleSinceMs", "history": [{"atMs", "cold", "generation"}]}]`. `generation` counts the
//!   microVMs the ID has had, so a warm hit shows as `cold: false` on the same generation.
//! - `GET /admin/stats`: `{"creations", "cold", "warm", "throttled", "quotaRejected",
//!   "errors", "crashes", "stops", "stopsNotFound", "stopThrottles", "stopErrors",
//!   "lostAnswers", "lateAnswers", "creationsPerSecond": {"<second>": n},
//!   "maxCreationsInAnySecond"}`, plus in per-session mode `"agentProcesses": {"started",
//!   "failedStarts", "buildHooks", "live", "ended": {"<reason>": n}}`.
//! - `POST /admin/faults` with any of `{"errorRate", "crashRate", "throttleAll",
//!   "crashSessions": [ids], "lostAnswerRate", "lateAnswerRate", "lateAnswerMs",
//!   "nextLostAnswers", "nextLateAnswers", "stopThrottleRate", "stopErrorRate",
//!   "nextStopThrottles", "nextStopErrors"}`: answers with every fault now in force and
//!   `"crashedSessions": [ids that were active and crashed]`. `throttleAll` refuses every new
//!   microVM until set back to false. A lost answer closes the connection after the agent
//!   answered (the SDK sees a dispatch failure, no HTTP answer); a late one is held
//!   `lateAnswerMs` after the agent answered. `next*` counts are spent before rates are drawn
//!   and replace the pending count. A faulted stop does not take effect.
//! - `POST /admin/reset`: forgets sessions, counters and fault changes, and ends per-session
//!   processes (204).

mod agent;
mod error;
pub mod lifecycle;
mod server;
pub mod wire;

pub use agent::process::ProcessStats;
pub use agent::{AgentCommand, PORT_ENV};
pub use error::Error;
pub use server::{Emulator, EmulatorConfig, FaultsReport, FaultsUpdate, RunningEmulator};
