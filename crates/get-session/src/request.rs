//! get-session's request: `{}`, `{"correlationId"}`, `{"userId"}` (both may come together),
//! or `{"release": "<sessionId>", "userId"}`. Unknown fields and malformed IDs are refused.

use crate::GetSessionError;
use serde::Deserialize;
use serde_json::Value;
use warmpool_core::lease::handout::Request as HandoutRequest;
use warmpool_core::lease::{CorrelationId, UserId};
use warmpool_core::session::SessionId;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    correlation_id: Option<String>,
    user_id: Option<String>,
    release: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Handout(HandoutRequest),
    Release { session_id: SessionId, user: UserId },
}

impl Request {
    /// Whether serving it needs the lease table: a correlation ID alone does not (without
    /// leases it is logged only, as before leases existed).
    pub fn needs_leases(&self) -> bool {
        match self {
            Self::Handout(h) => h.user.is_some(),
            Self::Release { .. } => true,
        }
    }
}

fn invalid(message: impl ToString) -> GetSessionError {
    GetSessionError::Validation(message.to_string())
}

pub fn parse(payload: Value) -> Result<Request, GetSessionError> {
    let payload = if payload.is_null() {
        Value::Object(Default::default())
    } else {
        payload
    };
    let raw: Raw = serde_json::from_value(payload).map_err(invalid)?;
    let user = raw.user_id.map(UserId::parse).transpose().map_err(invalid)?;
    let correlation = raw
        .correlation_id
        .map(CorrelationId::parse)
        .transpose()
        .map_err(invalid)?;
    match raw.release {
        None => Ok(Request::Handout(HandoutRequest { user, correlation })),
        Some(_) if correlation.is_some() => Err(invalid("a release takes no correlationId")),
        Some(session) => Ok(Request::Release {
            session_id: SessionId::parse(session).map_err(|e| invalid(format!("release: {e}")))?,
            user: user.ok_or_else(|| invalid("a release names the userId that holds the session"))?,
        }),
    }
}
