//! `warmpool invoke`: what an application does with the pool. Claim a session through
//! get-session, invoke the agent on it, and show where the time went and whether the
//! microVM was really warm.

use crate::claim::GetSessionClient;
use crate::cmd::agent::{AgentArgs, AgentSide};
use crate::emulator_admin::{EmulatorAdmin, Warmth};
use crate::error::{CliError, bounded};
use crate::output::{OutputArgs, embedded};
use crate::progress::Progress;
use crate::table::{Table, duration_ms};
use crate::ui::Ui;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::aws::AgentCoreRuntime;
use warmpool_core::clock::millis;
use warmpool_core::lease::UserId;
use warmpool_core::pool::claim::Source;
use warmpool_core::ports::AgentRuntime;
use warmpool_core::session::SessionId;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let output = self.output;
        let side = AgentSide::connect(self.agent).await?;
        let invoker = Invoker {
            claims: &side.claims,
            agent: &side.agent,
            agent_timeout: side.call_timeout,
            user: side.user.as_ref(),
        };
        // The first claim under `cargo lambda watch` compiles get-session: minutes, not ms.
        let progress = ui.spinner("invoke");
        let outcome = invoker.run(&side.payload, &progress).await?;
        let outcome = with_warmth(outcome, side.admin.as_ref()).await;
        progress.finish(format!("{} session {}", outcome.source.label(), outcome.session_id));
        output.print(&InvokeReport::of(&outcome), || render(&outcome))?;
        Ok(())
    }
}

/// One claimed-then-invoked call, timed in two parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeOutcome {
    pub session_id: SessionId,
    pub source: Source,
    pub claim: Duration,
    pub agent: Duration,
    pub warmth: Warmth,
    pub response: Vec<u8>,
}

impl InvokeOutcome {
    /// Claim plus call, each rounded down to the millisecond first, so the figures shown add up.
    pub fn total_ms(&self) -> u64 {
        millis(self.claim).saturating_add(millis(self.agent))
    }
}

pub struct Invoker<'a> {
    pub claims: &'a GetSessionClient,
    pub agent: &'a AgentCoreRuntime,
    pub agent_timeout: Duration,
    /// Claims as this user, and invokes with them as the runtime user ID.
    pub user: Option<&'a UserId>,
}

impl Invoker<'_> {
    /// Claims and invokes, saying which on `progress`; warmth is left unknown (see
    /// [`with_warmth`]).
    pub async fn run(&self, payload: &[u8], progress: &Progress) -> Result<InvokeOutcome, CliError> {
        progress.set_message("claiming a session through get-session");
        let (claimed, claim) = self.claims.claim_for(self.user).await?;
        progress.set_message(format!("invoking the agent on session {}", claimed.session_id));
        let started = Instant::now();
        let response = bounded(
            "agent invocation",
            self.agent_timeout,
            self.agent.invoke_claimed(&claimed, payload),
        )
        .await?;
        Ok(InvokeOutcome {
            session_id: claimed.session_id,
            source: claimed.source,
            claim,
            agent: started.elapsed(),
            warmth: Warmth::Unknown,
            response,
        })
    }
}

/// Fills in warmth from the emulator's record of the session's last invocation; a failing
/// admin endpoint leaves it unknown rather than failing an invocation that succeeded.
pub async fn with_warmth(mut outcome: InvokeOutcome, admin: Option<&EmulatorAdmin>) -> InvokeOutcome {
    if let Some(admin) = admin {
        match admin.last_invocations().await {
            Ok(last) => outcome.warmth = last.warmth(outcome.session_id.as_str()),
            Err(error) => tracing::warn!(%error, "cannot tell warmth from the emulator"),
        }
    }
    outcome
}

/// `warmpool invoke --output json`: the whole response, as JSON when the agent answered JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeReport<'a> {
    pub session_id: &'a str,
    pub source: Source,
    pub claim_ms: u64,
    pub agent_ms: u64,
    pub total_ms: u64,
    pub microvm: Warmth,
    pub response: serde_json::Value,
}

impl<'a> InvokeReport<'a> {
    pub fn of(outcome: &'a InvokeOutcome) -> Self {
        Self {
            session_id: outcome.session_id.as_str(),
            source: outcome.source,
            claim_ms: millis(outcome.claim),
            agent_ms: millis(outcome.agent),
            total_ms: outcome.total_ms(),
            microvm: outcome.warmth,
            response: embedded(&outcome.response),
        }
    }
}

/// Longest response excerpt printed; an agent may answer with a whole document.
const RESPONSE_EXCERPT: usize = 400;

pub fn render(outcome: &InvokeOutcome) -> String {
    let mut table = Table::new().values_left();
    let response = String::from_utf8_lossy(&outcome.response);
    let excerpt: String = response.chars().take(RESPONSE_EXCERPT).collect();
    let ellipsis = if response.chars().count() > RESPONSE_EXCERPT {
        "..."
    } else {
        ""
    };
    table
        .row(["session", outcome.session_id.as_str()])
        .row(["source", outcome.source.label()])
        .row(["claim latency", &duration_ms(millis(outcome.claim))])
        .row(["agent latency", &duration_ms(millis(outcome.agent))])
        .row(["total", &duration_ms(outcome.total_ms())])
        .row(["microVM", outcome.warmth.label()]);
    // The response can be long or multi-line: it goes on its own line, not in the table.
    format!("{}response: {excerpt}{ellipsis}\n", table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_source_both_latencies_and_warmth() {
        let outcome = InvokeOutcome {
            session_id: SessionId::parse("0f0e8a4c-5a0e-4d8f-9a7d-2c1b3e4f5a6b").unwrap(),
            source: Source::Pool,
            claim: Duration::from_millis(41),
            agent: Duration::from_millis(230),
            warmth: Warmth::Warm,
            response: br#"{"echo":{}}"#.to_vec(),
        };
        let text = render(&outcome);
        for expected in ["pool", "41 ms", "230 ms", "271 ms", "warm", r#"response: {"echo":{}}"#] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
    }

    #[test]
    fn the_json_report_keeps_the_whole_response_and_both_latencies() {
        let outcome = InvokeOutcome {
            session_id: SessionId::parse("0f0e8a4c-5a0e-4d8f-9a7d-2c1b3e4f5a6b").unwrap(),
            source: Source::Pool,
            claim: Duration::from_millis(41),
            agent: Duration::from_millis(230),
            warmth: Warmth::Warm,
            response: br#"{"echo":{"n":1}}"#.to_vec(),
        };
        let json = serde_json::to_value(InvokeReport::of(&outcome)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "sessionId": "0f0e8a4c-5a0e-4d8f-9a7d-2c1b3e4f5a6b", "source": "pool",
                "claimMs": 41, "agentMs": 230, "totalMs": 271, "microvm": "warm",
                "response": {"echo": {"n": 1}}
            })
        );
    }

    #[test]
    fn a_long_response_is_cut_to_an_excerpt() {
        let outcome = InvokeOutcome {
            session_id: SessionId::generate(),
            source: Source::Fresh,
            claim: Duration::ZERO,
            agent: Duration::ZERO,
            warmth: Warmth::Unknown,
            response: vec![b'x'; 5_000],
        };
        let text = render(&outcome);
        assert!(text.ends_with("...\n"));
        assert!(text.len() < 1_000);
    }
}
