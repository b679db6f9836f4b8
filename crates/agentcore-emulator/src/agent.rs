//! Where an admitted invocation goes: an agent speaking the AgentCore container contract, either
//! one process at `agent_url` serving every session, or one process per session started from
//! `agent_command` (see `process`); with neither configured, the built-in agent.

mod builtin;
mod command;
mod headers;
pub(crate) mod process;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use reqwest::Url;

pub use command::{AgentCommand, PORT_ENV};
use process::{ProcessEnd, ProcessPool};

use crate::Error;
use crate::lifecycle::Ended;
use warmpool_core::session::SESSION_HEADER;

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Enough of a failing agent's body to explain the failure without echoing megabytes.
const ERROR_BODY_LIMIT: usize = 1_024;
/// Bounds one session-ended notice; the agent only has to abort a task.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent answered: the invocation's response payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentReply {
    pub content_type: String,
    pub body: Bytes,
}

/// One admitted invocation on its way to the agent.
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    pub session_id: &'a str,
    /// The session's microVM generation, which picks its process in per-session mode.
    pub generation: u32,
    pub headers: &'a HeaderMap,
    pub payload: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) enum Agent {
    BuiltIn,
    Remote {
        client: reqwest::Client,
        invocations_url: Url,
        terminate_url: Url,
    },
    PerSession {
        client: reqwest::Client,
        pool: Arc<ProcessPool>,
    },
}

/// How the emulator reaches its agent, as configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AgentSettings<'a> {
    pub url: Option<&'a str>,
    pub command: Option<&'a AgentCommand>,
    /// Bounds one whole invocation, like AgentCore's synchronous request limit.
    pub timeout: Duration,
    /// Bounds a per-session cold start.
    pub start_timeout: Duration,
    /// The warmup build hook's path, called on each process before its first invocation.
    pub build_hook: Option<&'a str>,
}

impl Agent {
    pub fn new(settings: AgentSettings<'_>) -> Result<Self, Error> {
        let client = || {
            reqwest::Client::builder()
                .timeout(settings.timeout)
                // A proxy from the environment must not capture traffic to a local agent.
                .no_proxy()
                .build()
                .map_err(Error::HttpClient)
        };
        match (settings.url, settings.command) {
            (Some(_), Some(_)) => Err(Error::invalid_config(
                "agent_command",
                "is exclusive with agent_url: one agent for all sessions, or one per session",
            )),
            (None, None) => Ok(Self::BuiltIn),
            (None, Some(command)) => Ok(Self::PerSession {
                client: client()?,
                pool: Arc::new(
                    ProcessPool::new(command.clone(), settings.start_timeout)?
                        .with_build_hook(settings.build_hook.map(str::to_owned)),
                ),
            }),
            (Some(agent_url), None) => {
                let invalid = |reason: &str| Error::InvalidAgentUrl {
                    url: agent_url.to_owned(),
                    reason: reason.to_owned(),
                };
                let base = Url::parse(agent_url).map_err(|e| invalid(&e.to_string()))?;
                if base.scheme() != "http" {
                    // The client is built without TLS: agents run next to the emulator.
                    return Err(invalid("only http:// agents are supported"));
                }
                let path = |leaf: &str| {
                    base.join(&format!("{}/{leaf}", base.path().trim_end_matches('/')))
                        .map_err(|e| invalid(&e.to_string()))
                };
                Ok(Self::Remote {
                    invocations_url: path("invocations")?,
                    terminate_url: path("emulator/terminate")?,
                    client: client()?,
                })
            }
        }
    }

    /// The per-session processes, in that mode.
    pub fn processes(&self) -> Option<&Arc<ProcessPool>> {
        match self {
            Self::PerSession { pool, .. } => Some(pool),
            Self::BuiltIn | Self::Remote { .. } => None,
        }
    }

    /// Tells the agent that a session's microVM ended, so that the work it runs for that
    /// session dies with it. Per session, its process is stopped (and this waits for it).
    /// A shared agent serves every session in one process and is sent a notice instead; an
    /// agent without the hook (404) or a failure is only logged.
    pub async fn session_ended(&self, session_id: &str, how: Ended) {
        let (client, terminate_url) = match self {
            Self::BuiltIn => return,
            Self::PerSession { pool, .. } => {
                let why = match how {
                    Ended::Stopped => ProcessEnd::Stopped,
                    Ended::Crashed => ProcessEnd::Crashed,
                };
                return pool.end(session_id, None, why).await;
            }
            Self::Remote {
                client, terminate_url, ..
            } => (client, terminate_url),
        };
        let sent = client
            .post(terminate_url.clone())
            .timeout(NOTICE_TIMEOUT)
            .header(SESSION_HEADER, session_id)
            .json(&serde_json::json!({ "reason": how.as_str() }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::debug!(session_id, status = %response.status(), "agent has no session-ended hook"),
            Err(error) => tracing::warn!(session_id, %error, "agent not told that the session ended"),
        }
    }

    /// Ends every per-session process; the other agents are not the emulator's to stop.
    pub async fn shutdown(&self) {
        if let Some(pool) = self.processes() {
            pool.shutdown().await;
        }
    }

    pub async fn invoke(&self, invocation: Invocation<'_>) -> Result<AgentReply, Error> {
        match self {
            Self::BuiltIn => {
                let content_type = invocation.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
                Ok(builtin::respond(
                    invocation.session_id,
                    content_type,
                    &invocation.payload,
                ))
            }
            Self::Remote {
                client,
                invocations_url,
                ..
            } => forward(client, invocations_url.clone(), invocation).await,
            Self::PerSession { client, pool } => {
                let base = pool.base_url(invocation.session_id, invocation.generation).await?;
                let url = base.join("invocations").map_err(|e| Error::InvalidAgentUrl {
                    url: base.to_string(),
                    reason: e.to_string(),
                })?;
                forward(client, url, invocation).await
            }
        }
    }
}

/// `POST /invocations` with the payload and the contract's headers.
async fn forward(client: &reqwest::Client, url: Url, invocation: Invocation<'_>) -> Result<AgentReply, Error> {
    let unreachable = |source| Error::AgentUnreachable {
        url: url.to_string(),
        source,
    };
    let mut headers = headers::forwarded(invocation.headers, invocation.session_id);
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    }
    let response = client
        .post(url.clone())
        .headers(headers)
        .body(invocation.payload)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_CONTENT_TYPE)
        .to_owned();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        let shown = &body[..body.len().min(ERROR_BODY_LIMIT)];
        return Err(Error::AgentStatus {
            status: status.as_u16(),
            body: String::from_utf8_lossy(shown).into_owned(),
        });
    }
    Ok(AgentReply { content_type, body })
}
