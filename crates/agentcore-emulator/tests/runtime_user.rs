//! The project's AgentCore adapter invoking a leased session: the holder reaches the agent
//! as the runtime user ID, through the real SDK client and the emulator's forwarding.

mod support;

use agentcore_emulator::EmulatorConfig;
use agentcore_emulator::lifecycle::LifecycleConfig;
use std::time::Duration;
use support::*;
use warmpool_core::aws::{AgentCoreRuntime, agentcore_client};
use warmpool_core::lease::UserId;
use warmpool_core::pool::claim::{ClaimedSession, Source};
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;

#[tokio::test]
async fn a_leased_session_is_invoked_as_its_holder_and_an_anonymous_one_as_nobody() {
    let (agent_url, seen) = recording_agent(200).await;
    let (emulator, _client) = start(EmulatorConfig {
        agent_url: Some(agent_url),
        agent_timeout: Duration::from_secs(5),
        ..fast(LifecycleConfig::default())
    })
    .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_bedrockagentcore::config::Credentials::for_tests())
        .load()
        .await;
    let runtime = AgentCoreRuntime::new(agentcore_client(&sdk), ARN, "DEFAULT");
    let claimed = |user: Option<&str>| ClaimedSession {
        session_id: SessionId::parse(session(7)).unwrap(),
        source: Source::Reused,
        created_at: 1,
        last_ping_at: Some(1),
        user_id: user.map(|u| UserId::parse(u).unwrap()),
    };

    runtime
        .invoke_claimed(&claimed(Some("alice@example.com")), b"{}")
        .await
        .unwrap();
    runtime.invoke_claimed(&claimed(None), b"{}").await.unwrap();

    let users: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            s.headers
                .get("x-amzn-bedrock-agentcore-runtime-user-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(users, [Some("alice@example.com".to_string()), None]);
}
