//! Reading the AgentCore emulator's admin view (`GET /admin/sessions`) to tell whether an
//! invocation landed on a warm microVM. Real AgentCore does not expose this, so outside the
//! local stack the answer is "unknown".

use crate::error::CliError;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Whether the microVM that served an invocation already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Warmth {
    Warm,
    Cold,
    Unknown,
}

impl Warmth {
    pub fn label(self) -> &'static str {
        match self {
            Self::Warm => "warm",
            Self::Cold => "cold",
            Self::Unknown => "unknown",
        }
    }
}

/// One session as `GET /admin/sessions` serves it: the emulator's own type, read back.
pub use agentcore_emulator::lifecycle::{InvocationRecord, SessionView};

/// The warmth of the most recent invocation of each session ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastInvocations(HashMap<String, bool>);

impl LastInvocations {
    /// A claimed session reaches one caller only, so its last invocation is that caller's.
    pub fn from_records(records: Vec<SessionView>) -> Self {
        Self(
            records
                .into_iter()
                .filter_map(|r| Some((r.session_id, r.history.last()?.cold)))
                .collect(),
        )
    }

    pub fn warmth(&self, session_id: &str) -> Warmth {
        match self.0.get(session_id) {
            Some(false) => Warmth::Warm,
            Some(true) => Warmth::Cold,
            None => Warmth::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmulatorAdmin {
    http: reqwest::Client,
    base_url: String,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

impl EmulatorAdmin {
    pub fn new(base_url: &str) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|source| CliError::EmulatorAdmin {
                url: base_url.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub async fn sessions(&self) -> Result<Vec<SessionView>, CliError> {
        let url = format!("{}/admin/sessions", self.base_url);
        let fail = |source| CliError::EmulatorAdmin {
            url: url.clone(),
            source,
        };
        self.http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)
    }

    pub async fn last_invocations(&self) -> Result<LastInvocations, CliError> {
        Ok(LastInvocations::from_records(self.sessions().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use agentcore_emulator::lifecycle::SessionState;

    /// A session in the emulator's own type; `calls` are (at, cold, generation).
    fn view(id: &str, state: SessionState, calls: &[(u64, bool, u32)]) -> SessionView {
        let history: Vec<InvocationRecord> = calls
            .iter()
            .map(|&(at_ms, cold, generation)| InvocationRecord {
                at_ms,
                cold,
                generation,
            })
            .collect();
        SessionView {
            session_id: id.to_string(),
            created_at_ms: 1,
            last_invoked_at_ms: history.last().map_or(1, |c| c.at_ms),
            invocation_count: history.len() as u64,
            generation: history.last().map_or(0, |c| c.generation),
            state,
            busy: false,
            idle_since_ms: history.last().map_or(1, |c| c.at_ms),
            history,
        }
    }

    /// What `GET /admin/sessions` serves (the emulator's values, serialized as it does), read
    /// back as the emulator's types.
    fn records() -> Vec<SessionView> {
        let served = serde_json::to_string(&[
            view("pooled", SessionState::Active, &[(1, true, 1), (9, false, 1)]),
            view(
                "expired-then-reused",
                SessionState::Active,
                &[(1, true, 1), (9, true, 2)],
            ),
            view("never-invoked", SessionState::Stopped, &[]),
        ])
        .unwrap();
        serde_json::from_str(&served).unwrap()
    }

    #[test]
    fn the_emulators_own_view_reads_back_field_for_field() {
        let record = records().remove(1);
        assert_eq!(record.session_id, "expired-then-reused");
        assert_eq!((record.state, record.generation), (SessionState::Active, 2));
        let calls = [(1, true, 1), (9, true, 2)].map(|(at_ms, cold, generation)| InvocationRecord {
            at_ms,
            cold,
            generation,
        });
        assert_eq!(record.history, calls.to_vec());
    }

    #[test]
    fn a_session_whose_last_invocation_reused_its_microvm_is_warm() {
        assert_eq!(LastInvocations::from_records(records()).warmth("pooled"), Warmth::Warm);
    }

    #[test]
    fn a_pooled_id_that_silently_got_a_new_microvm_is_cold() {
        let last = LastInvocations::from_records(records());
        assert_eq!(last.warmth("expired-then-reused"), Warmth::Cold);
    }

    #[test]
    fn unseen_or_never_invoked_sessions_are_unknown() {
        let last = LastInvocations::from_records(records());
        assert_eq!(last.warmth("never-invoked"), Warmth::Unknown);
        assert_eq!(last.warmth("someone-else"), Warmth::Unknown);
    }
}
