//! The AgentCore Runtime data plane: InvokeAgentRuntime and StopRuntimeSession.

use super::sdk::describe;
use crate::error::{AgentError, AgentErrorKind};
use crate::lease::UserId;
use crate::pool::claim::ClaimedSession;
use crate::ports::AgentRuntime;
use crate::session::SessionId;
use aws_sdk_bedrockagentcore::Client;
use aws_sdk_bedrockagentcore::primitives::Blob;
use aws_smithy_runtime_api::http::Response as HttpResponse;

/// The AgentCore client without SDK-level retries: warmups retry themselves, with jitter and
/// within the function's deadline, and must see each throttle to count and pace it; stops
/// retry themselves with one client token ([`crate::stop::stop_until_gone`]).
pub fn agentcore_client(sdk: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_bedrockagentcore::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

#[derive(Debug, Clone)]
pub struct AgentCoreRuntime {
    client: Client,
    runtime_arn: String,
    qualifier: String,
}

impl AgentCoreRuntime {
    pub fn new(client: Client, runtime_arn: impl Into<String>, qualifier: impl Into<String>) -> Self {
        Self {
            client,
            runtime_arn: runtime_arn.into(),
            qualifier: qualifier.into(),
        }
    }
}

fn agent_error<E>(
    operation: &'static str,
    error: aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>,
) -> AgentError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = describe(&error);
    let kind = match failure.code.as_deref() {
        Some("ThrottlingException") => AgentErrorKind::Throttled,
        Some("ServiceQuotaExceededException") => AgentErrorKind::QuotaExceeded,
        Some("RuntimeClientError") => AgentErrorKind::Agent,
        Some("RetryableConflictException") => AgentErrorKind::Server,
        Some("ResourceNotFoundException") => AgentErrorKind::NotFound,
        _ if failure.transport => AgentErrorKind::Server,
        _ => AgentErrorKind::Rejected,
    };
    AgentError {
        operation,
        kind,
        message: failure.message,
        source: Some(Box::new(error)),
    }
}

impl AgentCoreRuntime {
    async fn invoke_as(
        &self,
        session_id: &SessionId,
        user: Option<&UserId>,
        payload: &[u8],
    ) -> Result<Vec<u8>, AgentError> {
        let output = self
            .client
            .invoke_agent_runtime()
            .agent_runtime_arn(&self.runtime_arn)
            .qualifier(&self.qualifier)
            .runtime_session_id(session_id.as_str())
            .set_runtime_user_id(user.map(|u| u.as_str().to_string()))
            .content_type("application/json")
            .accept("application/json")
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| agent_error("invoke", e))?;
        let body = output.response.collect().await.map_err(|e| AgentError {
            operation: "invoke",
            kind: AgentErrorKind::Server,
            message: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        Ok(body.into_bytes().to_vec())
    }
}

impl AgentRuntime for AgentCoreRuntime {
    async fn invoke(&self, session_id: &SessionId, payload: &[u8]) -> Result<Vec<u8>, AgentError> {
        self.invoke_as(session_id, None, payload).await
    }

    async fn invoke_claimed(&self, claimed: &ClaimedSession, payload: &[u8]) -> Result<Vec<u8>, AgentError> {
        self.invoke_as(&claimed.session_id, claimed.user_id.as_ref(), payload)
            .await
    }

    async fn stop(&self, session_id: &SessionId) -> Result<(), AgentError> {
        self.stop_with_token(session_id, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// One try (the client has no SDK retries, see [`super::agentcore_client`]): the caller
    /// retries with the same token ([`crate::stop::stop_until_gone`]).
    async fn stop_with_token(&self, session_id: &SessionId, client_token: &str) -> Result<(), AgentError> {
        self.client
            .stop_runtime_session()
            .agent_runtime_arn(&self.runtime_arn)
            .qualifier(&self.qualifier)
            .runtime_session_id(session_id.as_str())
            .client_token(client_token)
            .send()
            .await
            .map_err(|e| agent_error("stop", e))?;
        Ok(())
    }
}
