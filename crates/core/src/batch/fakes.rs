//! In-memory fakes of the batch ports that really behave: the table applies the same
//! conditional transitions as DynamoDB, the store keeps bytes, the sinks keep bodies.

use super::ports::{DocumentStore, MessageSink, StoredObject, TrackingTable};
use super::{BatchId, BatchRow, BatchStatus, ObjectRef, Transition};
use crate::error::{QueueError, QueueErrorKind, StoreError, StoreErrorKind, TableError, TableErrorKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[derive(Debug, Default)]
pub struct MemoryTable {
    rows: Mutex<HashMap<BatchId, BatchRow>>,
    failing_writes: AtomicU32,
}

impl MemoryTable {
    pub fn insert(&self, row: BatchRow) {
        self.rows.lock().unwrap().insert(row.batch_id.clone(), row);
    }

    pub fn row(&self, batch_id: &BatchId) -> Option<BatchRow> {
        self.rows.lock().unwrap().get(batch_id).cloned()
    }

    pub fn rows(&self) -> Vec<BatchRow> {
        self.rows.lock().unwrap().values().cloned().collect()
    }

    /// The next `n` writes fail as if the table could not be reached.
    pub fn fail_next_writes(&self, n: u32) {
        self.failing_writes.store(n, Ordering::SeqCst);
    }

    fn injected(&self, operation: &'static str) -> Result<(), TableError> {
        if take_failure(&self.failing_writes) {
            return Err(TableError::new(
                operation,
                TableErrorKind::Transport,
                "injected write failure",
            ));
        }
        Ok(())
    }
}

impl TrackingTable for MemoryTable {
    async fn get(&self, batch_id: &BatchId) -> Result<Option<BatchRow>, TableError> {
        Ok(self.row(batch_id))
    }

    async fn create(&self, row: &BatchRow) -> Result<(), TableError> {
        self.injected("create")?;
        let mut rows = self.rows.lock().unwrap();
        if rows.contains_key(&row.batch_id) {
            return Err(TableError::new(
                "create",
                TableErrorKind::ConditionFailed,
                "batch exists",
            ));
        }
        rows.insert(row.batch_id.clone(), row.clone());
        Ok(())
    }

    async fn transition(&self, transition: &Transition) -> Result<(), TableError> {
        self.injected("transition")?;
        let mut rows = self.rows.lock().unwrap();
        let refused = |message: String| TableError::new("transition", TableErrorKind::ConditionFailed, message);
        let current = rows
            .get(&transition.batch_id)
            .ok_or_else(|| refused("no such batch".into()))?;
        let next = transition.apply(current).map_err(|e| refused(e.to_string()))?;
        rows.insert(next.batch_id.clone(), next);
        Ok(())
    }

    async fn overdue(&self, now_ms: u64, limit: usize) -> Result<Vec<BatchRow>, TableError> {
        let rows = self.rows.lock().unwrap();
        let mut overdue: Vec<BatchRow> = rows
            .values()
            .filter(|r| r.status == BatchStatus::Running && r.deadline.is_some_and(|d| d < now_ms))
            .cloned()
            .collect();
        overdue.sort_by_key(|r| r.deadline);
        overdue.truncate(limit);
        Ok(overdue)
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<ObjectRef, StoredObject>>,
}

impl MemoryStore {
    pub fn insert(&self, object: ObjectRef, bytes: impl Into<Vec<u8>>, content_type: Option<&str>) {
        self.objects.lock().unwrap().insert(
            object,
            StoredObject {
                bytes: bytes.into(),
                content_type: content_type.map(str::to_string),
            },
        );
    }

    pub fn object(&self, object: &ObjectRef) -> Option<StoredObject> {
        self.objects.lock().unwrap().get(object).cloned()
    }
}

impl DocumentStore for MemoryStore {
    async fn get(&self, object: &ObjectRef, max_bytes: u64) -> Result<StoredObject, StoreError> {
        let found = self
            .object(object)
            .ok_or_else(|| StoreError::new("get", object.to_string(), StoreErrorKind::NotFound, "no such key"))?;
        if found.bytes.len() as u64 > max_bytes {
            return Err(StoreError::new(
                "get",
                object.to_string(),
                StoreErrorKind::TooLarge,
                format!("{} bytes", found.bytes.len()),
            ));
        }
        Ok(found)
    }

    async fn put(&self, object: &ObjectRef, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.insert(object.clone(), bytes, Some(content_type));
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemorySink {
    bodies: Mutex<Vec<String>>,
    failing: AtomicU32,
}

impl MemorySink {
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn fail_next(&self, n: u32) {
        self.failing.store(n, Ordering::SeqCst);
    }
}

impl MessageSink for MemorySink {
    async fn send(&self, body: &str, _delay: Duration) -> Result<(), QueueError> {
        if take_failure(&self.failing) {
            return Err(QueueError::new(
                "send",
                QueueErrorKind::Transport,
                "injected send failure",
            ));
        }
        self.bodies.lock().unwrap().push(body.to_string());
        Ok(())
    }
}
