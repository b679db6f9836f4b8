//! Whose batch this is. The agent acts only on the attempt the tracking row assigns to its own
//! session (invariant 9): the row, read consistently, must be RUNNING, at the attempt the
//! payload names, on the session AgentCore's header names. The payload names the batch and
//! the attempt and nothing else the agent uses; the documents come from the row.
//!
//! Anyone who holds a session ID (get-session hands them out) can invoke it with any payload,
//! so the payload is a request, never an authority.

use serde::Deserialize;
use serde::de::IgnoredAny;
use std::fmt;
use warmpool_core::batch::ports::TrackingTable;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, ObjectRef, RunningAttempt};
use warmpool_core::error::TableError;
use warmpool_core::session::SessionId;

/// What the agent accepts on `POST /invocations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Invocation {
    Warmup,
    Batch(BatchOrder),
}

/// `{"type":"batch","v":1,"batchId","attempt"}`. A v1 invoker also sends `documents` and
/// `deadline`: both are accepted and never read (the row holds the truth); any other field is
/// refused, so a caller who believes it can steer the agent learns at once that it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchOrder {
    pub v: u8,
    pub batch_id: BatchId,
    pub attempt: u32,
    #[serde(default, rename = "documents", deserialize_with = "ignored")]
    _documents: (),
    #[serde(default, rename = "deadline", deserialize_with = "ignored")]
    _deadline: (),
}

/// Accepts any value and keeps none of it.
fn ignored<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| ())
}

impl BatchOrder {
    pub fn new(batch_id: BatchId, attempt: u32) -> Self {
        Self {
            v: 1,
            batch_id,
            attempt,
            _documents: (),
            _deadline: (),
        }
    }
}

/// One document to read, as the row lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDocument {
    pub location: ObjectRef,
    /// The S3 version pinned at admission, once rows carry one; read exactly that version.
    pub version_id: Option<String>,
}

/// The documents of a row: the one place that knows how a row lists them.
pub fn documents_of(row: &BatchRow) -> Vec<RowDocument> {
    row.documents
        .iter()
        .map(|location| RowDocument {
            location: location.clone(),
            version_id: None,
        })
        .collect()
}

/// An attempt the row assigns to this session, with what it must read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAttempt {
    pub attempt: RunningAttempt,
    pub documents: Vec<RowDocument>,
}

/// Why the row does not assign the attempt to this session (for the logs; the caller only
/// hears that it does not own the attempt, so it learns nothing about other batches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOwner {
    NoRow,
    NotRunning(BatchStatus),
    OtherAttempt(u32),
    OtherSession,
}

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRow => f.write_str("no such batch"),
            Self::NotRunning(status) => write!(f, "the batch is {status}"),
            Self::OtherAttempt(current) => write!(f, "the batch is at attempt {current}"),
            Self::OtherSession => f.write_str("another session runs the attempt"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("this session does not own attempt {attempt} of batch {batch_id}")]
    NotOwner {
        batch_id: BatchId,
        attempt: u32,
        why: NotOwner,
    },
    /// Fail closed: without the row there is no owner.
    #[error("the tracking row of batch {batch_id} could not be read; try again")]
    Unreadable {
        batch_id: BatchId,
        #[source]
        source: TableError,
    },
}

impl Refusal {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreadable { .. })
    }
}

/// The ownership rule, on a row as read.
pub fn owned_attempt(
    row: Option<&BatchRow>,
    order: &BatchOrder,
    session: &SessionId,
) -> Result<OwnedAttempt, NotOwner> {
    let row = row.ok_or(NotOwner::NoRow)?;
    if row.status != BatchStatus::Running {
        return Err(NotOwner::NotRunning(row.status));
    }
    if row.attempt != order.attempt {
        return Err(NotOwner::OtherAttempt(row.attempt));
    }
    if row.session_id.as_ref() != Some(session) {
        return Err(NotOwner::OtherSession);
    }
    Ok(OwnedAttempt {
        attempt: RunningAttempt {
            batch_id: row.batch_id.clone(),
            attempt: row.attempt,
            session_id: session.clone(),
        },
        documents: documents_of(row),
    })
}

/// Reads the row (the port's `get` is strongly consistent) and applies the rule. One read,
/// retried only by the SDK: a caller that sees `Unreadable` invokes again or gives up.
pub async fn check<T: TrackingTable>(
    table: &T,
    order: &BatchOrder,
    session: &SessionId,
) -> Result<OwnedAttempt, Refusal> {
    let row = table.get(&order.batch_id).await.map_err(|source| Refusal::Unreadable {
        batch_id: order.batch_id.clone(),
        source,
    })?;
    owned_attempt(row.as_ref(), order, session).map_err(|why| Refusal::NotOwner {
        batch_id: order.batch_id.clone(),
        attempt: order.attempt,
        why,
    })
}

/// Whether the row still assigns `attempt` to its session.
pub async fn still_owns<T: TrackingTable>(table: &T, attempt: &RunningAttempt) -> Result<bool, TableError> {
    let row = table.get(&attempt.batch_id).await?;
    Ok(row.and_then(|r| r.running_attempt()).as_ref() == Some(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> BatchRow {
        BatchRow::new_running(
            BatchId::parse("case-1").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
            3,
            SessionId::generate(),
            1,
            100,
        )
    }

    fn order(attempt: u32) -> BatchOrder {
        BatchOrder::new(BatchId::parse("case-1").unwrap(), attempt)
    }

    #[test]
    fn the_owner_gets_the_rows_attempt_and_documents() {
        let row = running();
        let owner = row.session_id.clone().unwrap();
        let owned = owned_attempt(Some(&row), &order(1), &owner).unwrap();
        assert_eq!(owned.attempt, row.running_attempt().unwrap());
        assert_eq!(owned.documents, documents_of(&row));
        assert_eq!(owned.documents[0].location, row.documents[0]);
    }

    #[test]
    fn anyone_else_or_any_other_state_is_not_the_owner() {
        let row = running();
        let owner = row.session_id.clone().unwrap();
        let other = SessionId::generate();
        assert_eq!(owned_attempt(None, &order(1), &owner), Err(NotOwner::NoRow));
        assert_eq!(
            owned_attempt(Some(&row), &order(1), &other),
            Err(NotOwner::OtherSession)
        );
        assert_eq!(
            owned_attempt(Some(&row), &order(2), &owner),
            Err(NotOwner::OtherAttempt(1))
        );
        for status in [BatchStatus::Pending, BatchStatus::Succeeded, BatchStatus::Failed] {
            let settled = BatchRow { status, ..row.clone() };
            assert_eq!(
                owned_attempt(Some(&settled), &order(1), &owner),
                Err(NotOwner::NotRunning(status))
            );
        }
    }

    #[test]
    fn a_v1_invokers_payload_reads_and_its_documents_are_ignored_but_other_fields_are_refused() {
        let v1 = r#"{"type":"batch","v":1,"batchId":"case-1","attempt":2,
            "documents":["s3://docs/incoming/elsewhere/x"],"deadline":5}"#;
        assert_eq!(
            serde_json::from_str::<Invocation>(v1).unwrap(),
            Invocation::Batch(order(2))
        );
        let bare = r#"{"type":"batch","v":1,"batchId":"case-1","attempt":2}"#;
        assert_eq!(
            serde_json::from_str::<Invocation>(bare).unwrap(),
            Invocation::Batch(order(2))
        );
        let steering = r#"{"type":"batch","v":1,"batchId":"case-1","attempt":2,"resultRef":"s3://x/y"}"#;
        let error = serde_json::from_str::<Invocation>(steering).unwrap_err().to_string();
        assert!(error.contains("resultRef"), "{error}");
        assert_eq!(
            serde_json::from_str::<Invocation>(r#"{"type":"warmup"}"#).unwrap(),
            Invocation::Warmup
        );
    }
}
