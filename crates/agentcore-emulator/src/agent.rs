//! Where an admitted invocation goes: an agent speaking the AgentCore container contract
//! (`POST <agent_url>/invocations`, session header passed through) or, with no agent
//! configured, the built-in one.

mod builtin;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use reqwest::Url;

use crate::Error;
use crate::lifecycle::Ended;
use crate::wire::SESSION_HEADER;

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

#[derive(Debug, Clone)]
pub(crate) enum Agent {
    BuiltIn,
    Remote {
        client: reqwest::Client,
        invocations_url: Url,
        terminate_url: Url,
    },
}

impl Agent {
    /// `timeout` bounds one whole invocation, like AgentCore's synchronous request limit.
    pub fn new(agent_url: Option<&str>, timeout: Duration) -> Result<Self, Error> {
        let Some(agent_url) = agent_url else {
            return Ok(Self::BuiltIn);
        };
        let invalid = |reason: &str| Error::InvalidAgentUrl {
            url: agent_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(agent_url).map_err(|e| invalid(&e.to_string()))?;
        if base.scheme() != "http" {
            // The client is built without TLS: agents run next to the emulator.
            return Err(invalid("only http:// agents are supported"));
        }
        let invocations_url = base
            .join(&format!("{}/invocations", base.path().trim_end_matches('/')))
            .map_err(|e| invalid(&e.to_string()))?;
        let terminate_url = base
            .join(&format!("{}/emulator/terminate", base.path().trim_end_matches('/')))
            .map_err(|e| invalid(&e.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A proxy from the environment must not capture traffic to a local agent.
            .no_proxy()
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self::Remote {
            client,
            invocations_url,
            terminate_url,
        })
    }

    /// Tells the agent that a session's microVM ended, so that the work it runs for that
    /// session dies with it. In AgentCore the microVM and everything in it simply stop; a local
    /// agent serves every session in one process and needs to be told. Best effort: an agent
    /// without the hook (404) or a failure is only logged.
    pub async fn session_ended(&self, session_id: &str, how: Ended) {
        let Self::Remote {
            client, terminate_url, ..
        } = self
        else {
            return;
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

    pub async fn invoke(
        &self,
        session_id: &str,
        content_type: Option<&str>,
        payload: Bytes,
    ) -> Result<AgentReply, Error> {
        let (client, url) = match self {
            Self::BuiltIn => return Ok(builtin::respond(session_id, content_type, &payload)),
            Self::Remote {
                client,
                invocations_url,
                ..
            } => (client, invocations_url),
        };
        let unreachable = |source| Error::AgentUnreachable {
            url: url.to_string(),
            source,
        };
        let response = client
            .post(url.clone())
            .header(CONTENT_TYPE, content_type.unwrap_or(DEFAULT_CONTENT_TYPE))
            .header(SESSION_HEADER, session_id)
            .body(payload)
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
}
