//! The flags and clients of the commands that call the agent (`invoke`, `demo compare`).

use crate::claim::GetSessionClient;
use crate::emulator_admin::EmulatorAdmin;
use crate::error::CliError;
use std::time::Duration;
use warmpool_core::aws::{self, AgentCoreRuntime};
use warmpool_core::lease::UserId;

/// Where the agent is and how long one call may take.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// AgentCore Runtime ARN.
    #[arg(long, env = "AGENT_RUNTIME_ARN")]
    pub runtime_arn: String,
    /// The runtime's endpoint qualifier.
    #[arg(long, env = "AGENT_RUNTIME_QUALIFIER", default_value = "DEFAULT")]
    pub qualifier: String,
    /// JSON payload sent to the agent.
    #[arg(long, default_value = r#"{"prompt":"Hello from warmpool"}"#)]
    pub payload: String,
    /// The get-session function (name or ARN).
    #[arg(long, default_value = "get-session")]
    pub function: String,
    /// AgentCore emulator base URL, to read whether each microVM was warm.
    #[arg(long, env = "AGENTCORE_EMULATOR_URL")]
    pub emulator_url: Option<String>,
    /// Upper bound on each claim and each agent call, in seconds.
    #[arg(long, default_value_t = 120)]
    pub call_timeout_secs: u64,
    /// Claim as this user (pools with leases): the user's live session comes back, and the
    /// agent is invoked with the user as the runtime user ID.
    #[arg(long)]
    pub user: Option<String>,
}

/// The SDK clients and options the agent-facing commands share, built once.
pub struct AgentSide {
    pub claims: GetSessionClient,
    pub agent: AgentCoreRuntime,
    pub admin: Option<EmulatorAdmin>,
    pub payload: Vec<u8>,
    pub call_timeout: Duration,
    pub user: Option<UserId>,
}

impl AgentSide {
    pub async fn connect(args: AgentArgs) -> Result<Self, CliError> {
        serde_json::from_str::<serde_json::Value>(&args.payload)
            .map_err(|e| CliError::invalid("--payload", format!("not JSON: {e}")))?;
        warmpool_core::config::check_runtime_arn(&args.runtime_arn)
            .map_err(|reason| CliError::invalid("--runtime-arn", reason))?;
        let call_timeout = Duration::from_secs(args.call_timeout_secs.max(1));
        let user = args
            .user
            .map(UserId::parse)
            .transpose()
            .map_err(|e| CliError::invalid("--user", e.to_string()))?;
        let sdk = aws::load_config().await;
        Ok(Self {
            claims: GetSessionClient::new(aws_sdk_lambda::Client::new(&sdk), args.function, call_timeout),
            agent: AgentCoreRuntime::new(aws::agentcore_client(&sdk), args.runtime_arn, args.qualifier),
            admin: args.emulator_url.as_deref().map(EmulatorAdmin::new).transpose()?,
            payload: args.payload.into_bytes(),
            call_timeout,
            user,
        })
    }
}
