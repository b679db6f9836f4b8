//! The AgentCore control plane: GetAgentRuntimeEndpoint, for the version the endpoint serves
//! (`liveVersion`) and when it last changed (`lastUpdatedAt`).

use super::sdk::describe;
use crate::error::{VersionError, VersionErrorKind};
use crate::pool::version::VersionSource;
use crate::session::AgentVersion;
use aws_sdk_bedrockagentcorecontrol::Client;

/// A control-plane client with the SDK's standard retries: one read per replenish run, off the
/// claim path, where a retried read costs nothing but a little of the run's time.
pub fn agentcore_control_client(sdk: &aws_config::SdkConfig) -> Client {
    Client::new(sdk)
}

/// The runtime ID in a runtime ARN (`arn:...:runtime/<id>`), as the control plane names it.
pub fn runtime_id_of(runtime_arn: &str) -> Option<&str> {
    runtime_arn
        .rsplit_once(":runtime/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The live version of one endpoint (the qualifier the pool invokes) of one runtime.
#[derive(Debug, Clone)]
pub struct AgentCoreEndpointVersion {
    client: Client,
    runtime_id: String,
    endpoint: String,
}

impl AgentCoreEndpointVersion {
    pub fn new(client: Client, runtime_id: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self {
            client,
            runtime_id: runtime_id.into(),
            endpoint: endpoint.into(),
        }
    }
}

impl VersionSource for AgentCoreEndpointVersion {
    async fn live_version(&self) -> Result<AgentVersion, VersionError> {
        let answer = self
            .client
            .get_agent_runtime_endpoint()
            .agent_runtime_id(&self.runtime_id)
            .endpoint_name(&self.endpoint)
            .send()
            .await
            .map_err(|error| {
                let failure = describe(&error);
                let kind = match failure.code.as_deref() {
                    Some("ThrottlingException") => VersionErrorKind::Throttled,
                    _ if failure.transport => VersionErrorKind::Transport,
                    _ => VersionErrorKind::Rejected,
                };
                VersionError {
                    kind,
                    message: failure.message,
                    source: Some(Box::new(error)),
                }
            })?;
        let Some(version) = answer.live_version() else {
            return Err(VersionError::new(
                VersionErrorKind::NoLiveVersion,
                format!("endpoint {} has no live version ({:?})", self.endpoint, answer.status()),
            ));
        };
        let since_ms = answer.last_updated_at().to_millis().unwrap_or(0).max(0);
        let since_ms = u64::try_from(since_ms).unwrap_or(0);
        AgentVersion::new(version, since_ms).map_err(|e| VersionError::new(VersionErrorKind::Rejected, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_id_is_the_last_part_of_a_runtime_arn() {
        let arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent_a-Ab12Cd34Ef";
        assert_eq!(runtime_id_of(arn), Some("agent_a-Ab12Cd34Ef"));
        assert_eq!(runtime_id_of("arn:aws:bedrock-agentcore:us-east-1:1:runtime/"), None);
        assert_eq!(runtime_id_of("my-agent"), None);
    }
}
