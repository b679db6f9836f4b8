//! The batch path's message formats: direct requests on the batch queue, the invocation the
//! agent receives, and the notices on the results and failure queues.

use super::{BatchId, ObjectRef};
use crate::session::SessionId;
use serde::{Deserialize, Serialize};

/// Format version of every message below.
pub const VERSION: u8 = 1;

/// A document batch request on the batch queue: `{"v":1,"batchId","documents":["s3://..."],
/// "attempt":n}`. Direct submissions send attempt 1; the detector sends attempt n + 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchRequest {
    pub v: u8,
    pub batch_id: BatchId,
    pub documents: Vec<ObjectRef>,
    pub attempt: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MalformedRequest {
    #[error("not a v1 batch request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported batch request version {0}")]
    Version(u8),
    #[error("attempt must be at least 1")]
    AttemptZero,
}

impl BatchRequest {
    pub fn new(batch_id: BatchId, documents: Vec<ObjectRef>, attempt: u32) -> Self {
        Self {
            v: VERSION,
            batch_id,
            documents,
            attempt,
        }
    }

    pub fn parse(value: serde_json::Value) -> Result<Self, MalformedRequest> {
        let request: Self = serde_json::from_value(value)?;
        if request.v != VERSION {
            return Err(MalformedRequest::Version(request.v));
        }
        if request.attempt == 0 {
            return Err(MalformedRequest::AttemptZero);
        }
        Ok(request)
    }

    pub fn to_body(&self) -> String {
        // Strings and integers only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the invoker sends the agent, and what the agent accepts: `{"type":"warmup"}` or
/// `{"type":"batch","v":1,"batchId","attempt","documents","deadline"}`. The session is not in
/// the payload: the agent takes it from the runtime's session header, which cannot lie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentInvocation {
    Warmup,
    Batch(BatchPayload),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchPayload {
    pub v: u8,
    pub batch_id: BatchId,
    pub attempt: u32,
    pub documents: Vec<ObjectRef>,
    /// Epoch ms after which the detector may give this attempt up.
    pub deadline: u64,
}

impl AgentInvocation {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The agent's answer to a batch invocation: it runs in the background from here on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub status: String,
    pub batch_id: BatchId,
    pub attempt: u32,
}

impl Accepted {
    pub const STATUS: &'static str = "accepted";
}

/// On the results queue when an attempt finished: `{"v":1,"batchId","attempt","sessionId",
/// "resultRef","documentCount","finishedAt"}`. Published before the row is marked SUCCEEDED,
/// so a consumer may see a result of an attempt the table later superseded: the row's
/// `attempt` and `resultRef` say which one counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultNotice {
    pub v: u8,
    pub batch_id: BatchId,
    pub attempt: u32,
    pub session_id: SessionId,
    pub result_ref: ObjectRef,
    pub document_count: usize,
    pub finished_at: u64,
}

/// On the failure queue when a batch ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureNotice {
    pub v: u8,
    pub batch_id: BatchId,
    pub attempts: u32,
    pub last_error: String,
    pub documents: Vec<ObjectRef>,
    pub failed_at: u64,
}

pub fn to_body<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_direct_request_reads_and_writes_the_documented_format() {
        let body = json!({"v":1,"batchId":"case-1","documents":["s3://docs/incoming/case-1/a.txt"],"attempt":2});
        let request = BatchRequest::parse(body.clone()).unwrap();
        assert_eq!(request.attempt, 2);
        assert_eq!(request.documents[0].key, "incoming/case-1/a.txt");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&request.to_body()).unwrap(),
            body
        );
    }

    #[test]
    fn requests_with_bad_versions_attempts_fields_or_locations_are_malformed() {
        for body in [
            json!({"v":2,"batchId":"c","documents":["s3://docs/incoming/c/a"],"attempt":1}),
            json!({"v":1,"batchId":"c","documents":["s3://docs/incoming/c/a"],"attempt":0}),
            json!({"v":1,"batchId":"c","documents":["s3://docs/incoming/c/a"],"attempt":1,"x":1}),
            json!({"v":1,"batchId":"c","documents":["/etc/passwd"],"attempt":1}),
            json!({"v":1,"batchId":"../c","documents":[],"attempt":1}),
            json!({"v":1,"batchId":"c","attempt":1}),
        ] {
            assert!(BatchRequest::parse(body.clone()).is_err(), "accepted {body}");
        }
    }

    #[test]
    fn the_agent_invocation_is_tagged_by_type() {
        assert_eq!(
            serde_json::from_str::<AgentInvocation>(r#"{"type":"warmup"}"#).unwrap(),
            AgentInvocation::Warmup
        );
        let batch = AgentInvocation::Batch(BatchPayload {
            v: VERSION,
            batch_id: BatchId::parse("c").unwrap(),
            attempt: 1,
            documents: vec![ObjectRef::new("docs", "incoming/c/a")],
            deadline: 5,
        });
        let value: serde_json::Value = serde_json::from_slice(&batch.to_bytes()).unwrap();
        assert_eq!(
            value,
            json!({"type":"batch","v":1,"batchId":"c","attempt":1,"documents":["s3://docs/incoming/c/a"],"deadline":5})
        );
    }
}
