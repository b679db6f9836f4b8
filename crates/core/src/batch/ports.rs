//! Capability traits of the batch path; AWS adapters in [`crate::aws`], in-memory fakes in
//! [`super::fakes`] (feature `fakes`).

use super::{BatchId, BatchRow, ObjectRef, PinnedDocument, Transition};
use crate::error::{QueueError, StoreError, TableError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The tracking table (DynamoDB in production).
pub trait TrackingTable: Send + Sync {
    /// A strongly consistent read: a decision is never taken on a stale row.
    fn get(&self, batch_id: &BatchId) -> impl Future<Output = Result<Option<BatchRow>, TableError>> + Send;

    /// Writes a new row; `ConditionFailed` if the batch already has one.
    fn create(&self, row: &BatchRow) -> impl Future<Output = Result<(), TableError>> + Send;

    /// Applies `transition` if and only if the row is as it expects; `ConditionFailed` otherwise.
    fn transition(&self, transition: &Transition) -> impl Future<Output = Result<(), TableError>> + Send;

    /// Rows of the sparse index (never a scan) due before `now_ms`, at most `limit`, reading
    /// the shards in order from `first_shard` (the caller rotates it, so no shard waits for
    /// another to drain). A row that does not read comes back as [`Due::Unreadable`], never as
    /// an error: one bad row must not hide the others. Index reads are eventually consistent:
    /// callers decide with a conditional write, never on what this returned alone.
    fn overdue(
        &self,
        now_ms: u64,
        limit: usize,
        first_shard: u32,
    ) -> impl Future<Output = Result<Vec<Due>, TableError>> + Send;

    /// Settles an unreadable row as FAILED with `reason` and takes it out of the index, if and
    /// only if it is still exactly what was read (`ConditionFailed` otherwise).
    fn quarantine(
        &self,
        row: &UnreadableRow,
        reason: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), TableError>> + Send;
}

/// One row the detector found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Readable(BatchRow),
    Unreadable(UnreadableRow),
}

/// A stored row that does not read as a tracking row (written by a bug, by hand, or by a
/// version with other rules): its raw key, why it does not read, and what it looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRow {
    pub key: String,
    pub reason: String,
    /// The attributes a quarantine is conditioned on, as read; opaque outside the adapter.
    pub fingerprint: Vec<(String, Option<String>)>,
}

/// An object and what S3 says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// What S3 says of an object without reading it (HeadObject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// `None` on a bucket without versioning.
    pub version_id: Option<String>,
}

/// Where documents, manifests and results live (S3 in production).
pub trait DocumentStore: Send + Sync {
    /// Reads an object of at most `max_bytes`; a larger one is `TooLarge`, unread.
    fn get(&self, object: &ObjectRef, max_bytes: u64) -> impl Future<Output = Result<StoredObject, StoreError>> + Send;

    /// Size and version of an object; `NotFound` if there is none.
    fn head(&self, object: &ObjectRef) -> impl Future<Output = Result<ObjectHead, StoreError>> + Send;

    /// Reads exactly the pinned version (the current one if none was pinned), of at most
    /// `max_bytes`; an object whose size is not the pinned one is `Rejected`, so an attempt
    /// never reads other bytes than the batch was accepted with.
    fn get_pinned(
        &self,
        document: &PinnedDocument,
        max_bytes: u64,
    ) -> impl Future<Output = Result<StoredObject, StoreError>> + Send;

    fn put(
        &self,
        object: &ObjectRef,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A queue the batch path sends to: the batch queue (retries), the results queue, the
/// failure queue (SQS standard queues in production).
pub trait MessageSink: Send + Sync {
    /// Sends `body`, visible to consumers after `delay` (whole seconds, at most 15 minutes).
    fn send(&self, body: &str, delay: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The queue a record was delivered from: a record that failed for a passing reason comes
/// back after `after` instead of the queue's visibility timeout (ChangeMessageVisibility).
pub trait Redelivery: Send + Sync {
    fn redeliver_after(&self, receipt: &str, after: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
}

impl<T: TrackingTable + ?Sized> TrackingTable for Arc<T> {
    fn get(&self, batch_id: &BatchId) -> impl Future<Output = Result<Option<BatchRow>, TableError>> + Send {
        (**self).get(batch_id)
    }
    fn create(&self, row: &BatchRow) -> impl Future<Output = Result<(), TableError>> + Send {
        (**self).create(row)
    }
    fn transition(&self, transition: &Transition) -> impl Future<Output = Result<(), TableError>> + Send {
        (**self).transition(transition)
    }
    fn overdue(
        &self,
        now_ms: u64,
        limit: usize,
        first_shard: u32,
    ) -> impl Future<Output = Result<Vec<Due>, TableError>> + Send {
        (**self).overdue(now_ms, limit, first_shard)
    }
    fn quarantine(
        &self,
        row: &UnreadableRow,
        reason: &str,
        at: u64,
    ) -> impl Future<Output = Result<(), TableError>> + Send {
        (**self).quarantine(row, reason, at)
    }
}

impl<S: DocumentStore + ?Sized> DocumentStore for Arc<S> {
    fn get(&self, object: &ObjectRef, max_bytes: u64) -> impl Future<Output = Result<StoredObject, StoreError>> + Send {
        (**self).get(object, max_bytes)
    }
    fn head(&self, object: &ObjectRef) -> impl Future<Output = Result<ObjectHead, StoreError>> + Send {
        (**self).head(object)
    }
    fn get_pinned(
        &self,
        document: &PinnedDocument,
        max_bytes: u64,
    ) -> impl Future<Output = Result<StoredObject, StoreError>> + Send {
        (**self).get_pinned(document, max_bytes)
    }
    fn put(
        &self,
        object: &ObjectRef,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put(object, bytes, content_type)
    }
}

impl<M: MessageSink + ?Sized> MessageSink for Arc<M> {
    fn send(&self, body: &str, delay: Duration) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(body, delay)
    }
}

impl<R: Redelivery + ?Sized> Redelivery for Arc<R> {
    fn redeliver_after(&self, receipt: &str, after: Duration) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).redeliver_after(receipt, after)
    }
}
