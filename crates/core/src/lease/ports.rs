//! What leases need of their table (DynamoDB in production: [`crate::aws::DynamoLeaseTable`]).

use super::{AuditRecord, CorrelationId, Lease, LeaseItem, LeaseOp, Lookup, UserId};
use crate::error::TableError;
use crate::session::SessionId;
use std::future::Future;

/// Whose audit trail to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditQuery {
    User(UserId),
    /// The session's keyed hash, as the records carry it.
    Session(String),
}

pub trait LeaseTable: Send + Sync {
    /// One strongly consistent read of the items a request names.
    fn lookup(
        &self,
        user: Option<&UserId>,
        correlation: Option<&CorrelationId>,
        session: Option<&SessionId>,
    ) -> impl Future<Output = Result<Lookup, TableError>> + Send;

    /// Writes every op or none. A failed condition of any op is
    /// [`TableErrorKind::ConditionFailed`](crate::error::TableErrorKind) (the SDK may have
    /// retried a write that landed: the caller reads and looks for its own `writeId`).
    fn commit(&self, ops: &[LeaseOp]) -> impl Future<Output = Result<(), TableError>> + Send;

    /// Open or stop-pending leases due at or before `now_ms`, oldest first, at most `limit`.
    fn due(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(LeaseItem, Lease)>, TableError>> + Send;

    /// Leases not ended, counted (bounded by `limit`).
    fn open_count(&self, limit: usize) -> impl Future<Output = Result<u64, TableError>> + Send;

    /// Audit records, newest first, at most `limit`.
    fn audit(
        &self,
        query: &AuditQuery,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, TableError>> + Send;
}

/// The lease table and agent of a function whose leases are off: never called, since a
/// request naming a lease is refused before it reaches them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeasesOff;

fn off(operation: &'static str) -> TableError {
    TableError::new(operation, crate::error::TableErrorKind::Rejected, "leases are off")
}

impl LeaseTable for LeasesOff {
    async fn lookup(
        &self,
        _: Option<&UserId>,
        _: Option<&CorrelationId>,
        _: Option<&SessionId>,
    ) -> Result<Lookup, TableError> {
        Err(off("lookup"))
    }
    async fn commit(&self, _: &[LeaseOp]) -> Result<(), TableError> {
        Err(off("commit"))
    }
    async fn due(&self, _: u64, _: usize) -> Result<Vec<(LeaseItem, Lease)>, TableError> {
        Err(off("due"))
    }
    async fn open_count(&self, _: usize) -> Result<u64, TableError> {
        Err(off("count"))
    }
    async fn audit(&self, _: &AuditQuery, _: usize) -> Result<Vec<AuditRecord>, TableError> {
        Err(off("audit"))
    }
}

impl crate::ports::AgentRuntime for LeasesOff {
    async fn invoke(&self, _: &SessionId, _: &[u8]) -> Result<Vec<u8>, crate::error::AgentError> {
        Err(crate::error::AgentError::new(
            "invoke",
            crate::error::AgentErrorKind::Rejected,
            "leases are off",
        ))
    }
    async fn stop(&self, _: &SessionId) -> Result<(), crate::error::AgentError> {
        Err(crate::error::AgentError::new(
            "stop",
            crate::error::AgentErrorKind::Rejected,
            "leases are off",
        ))
    }
}
