//! Capability traits of the batch path; AWS adapters in [`crate::aws`], in-memory fakes in
//! [`super::fakes`] (feature `fakes`).

use super::{BatchId, BatchRow, ObjectRef, Transition};
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

    /// RUNNING rows whose deadline is before `now_ms`, at most `limit`, from the sparse index
    /// (never a scan). Index reads are eventually consistent: callers decide with a
    /// conditional write, never on what this returned alone.
    fn overdue(&self, now_ms: u64, limit: usize) -> impl Future<Output = Result<Vec<BatchRow>, TableError>> + Send;
}

/// An object and what S3 says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// Where documents, manifests and results live (S3 in production).
pub trait DocumentStore: Send + Sync {
    /// Reads an object of at most `max_bytes`; a larger one is `TooLarge`, unread.
    fn get(&self, object: &ObjectRef, max_bytes: u64) -> impl Future<Output = Result<StoredObject, StoreError>> + Send;

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
    fn overdue(&self, now_ms: u64, limit: usize) -> impl Future<Output = Result<Vec<BatchRow>, TableError>> + Send {
        (**self).overdue(now_ms, limit)
    }
}

impl<S: DocumentStore + ?Sized> DocumentStore for Arc<S> {
    fn get(&self, object: &ObjectRef, max_bytes: u64) -> impl Future<Output = Result<StoredObject, StoreError>> + Send {
        (**self).get(object, max_bytes)
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
