//! In-memory fakes of the batch ports that really behave: the table applies the same
//! conditional transitions as DynamoDB and keeps the same sparse index, the store keeps every
//! version of every object, the sinks keep bodies. Faults are injected per call: writes that
//! fail before they apply, writes that apply and lose their answer, sends that fail.

use super::ports::{
    DocumentStore, Due, MessageSink, ObjectHead, Redelivery, StoredObject, TrackingTable, UnreadableRow,
};
use super::{BatchId, BatchRow, ObjectRef, PinnedDocument, Transition};
use crate::error::{QueueError, QueueErrorKind, StoreError, StoreErrorKind, TableError, TableErrorKind};
use crate::hash::stable_hash;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Shards of the fake's index, as the default layout.
const SHARDS: u32 = 8;

/// The fake index's partition of a row: like the table's, spread by a stable hash.
fn shard(batch_id: &BatchId) -> u32 {
    u32::try_from(stable_hash(batch_id.as_str().as_bytes()) % u64::from(SHARDS)).unwrap_or(0)
}

#[derive(Debug, Clone)]
struct Unreadable {
    row: UnreadableRow,
    deadline: u64,
    quarantined: Option<String>,
}

#[derive(Debug, Default)]
pub struct MemoryTable {
    rows: Mutex<HashMap<BatchId, BatchRow>>,
    unreadable: Mutex<HashMap<String, Unreadable>>,
    failing_writes: AtomicU32,
    lost_acks: AtomicU32,
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

    /// A row that does not read (as a hostile or buggy writer could leave), due at `deadline`.
    pub fn insert_unreadable(&self, key: &str, reason: &str, deadline: u64) {
        let row = UnreadableRow {
            key: key.to_string(),
            reason: reason.to_string(),
            fingerprint: vec![("version".into(), Some("1".into()))],
        };
        self.unreadable.lock().unwrap().insert(
            key.to_string(),
            Unreadable {
                row,
                deadline,
                quarantined: None,
            },
        );
    }

    /// The reason an unreadable row was quarantined with, if it was.
    pub fn quarantined(&self, key: &str) -> Option<String> {
        self.unreadable
            .lock()
            .unwrap()
            .get(key)
            .and_then(|u| u.quarantined.clone())
    }

    /// Changes an unreadable row, as a second hostile write would.
    pub fn touch_unreadable(&self, key: &str) {
        if let Some(entry) = self.unreadable.lock().unwrap().get_mut(key) {
            entry.row.fingerprint = vec![("version".into(), Some("2".into()))];
        }
    }

    /// The next `n` writes fail as if the table could not be reached (nothing applied).
    pub fn fail_next_writes(&self, n: u32) {
        self.failing_writes.store(n, Ordering::SeqCst);
    }

    /// The next `n` writes are applied, and then answered as the SDK's own retry of a write
    /// whose first answer was lost would be: the retry fails its condition.
    pub fn lose_next_acks(&self, n: u32) {
        self.lost_acks.store(n, Ordering::SeqCst);
    }

    fn lost_ack(&self, operation: &'static str) -> Result<(), TableError> {
        if take_failure(&self.lost_acks) {
            return Err(TableError::new(
                operation,
                TableErrorKind::ConditionFailed,
                "the retry of an applied write failed its condition",
            ));
        }
        Ok(())
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

/// Whether a row is in the sparse index: every row whose follow-up is not done.
fn indexed(row: &BatchRow) -> bool {
    row.closed_at.is_none() && row.deadline.is_some()
}

impl TrackingTable for MemoryTable {
    async fn get(&self, batch_id: &BatchId) -> Result<Option<BatchRow>, TableError> {
        Ok(self.row(batch_id))
    }

    async fn create(&self, row: &BatchRow) -> Result<(), TableError> {
        self.injected("create")?;
        {
            let mut rows = self.rows.lock().unwrap();
            if rows.contains_key(&row.batch_id) {
                return Err(TableError::new(
                    "create",
                    TableErrorKind::ConditionFailed,
                    "batch exists",
                ));
            }
            rows.insert(row.batch_id.clone(), row.clone());
        }
        self.lost_ack("create")
    }

    async fn transition(&self, transition: &Transition) -> Result<(), TableError> {
        self.injected("transition")?;
        {
            let mut rows = self.rows.lock().unwrap();
            let refused = |message: String| TableError::new("transition", TableErrorKind::ConditionFailed, message);
            let current = rows
                .get(&transition.batch_id)
                .ok_or_else(|| refused("no such batch".into()))?;
            let next = transition.apply(current).map_err(|e| refused(e.to_string()))?;
            rows.insert(next.batch_id.clone(), next);
        }
        self.lost_ack("transition")
    }

    async fn overdue(&self, now_ms: u64, limit: usize, first_shard: u32) -> Result<Vec<Due>, TableError> {
        let shard_of = |key: &str| BatchId::parse(key).map_or(0, |id| shard(&id));
        let mut due: Vec<(u32, u64, Due)> = Vec::new();
        for row in self.rows.lock().unwrap().values().filter(|r| indexed(r)) {
            let deadline = row.deadline.unwrap_or(0);
            if deadline < now_ms {
                let row_shard = shard(&row.batch_id);
                due.push((row_shard, deadline, Due::Readable(row.clone())));
            }
        }
        for entry in self.unreadable.lock().unwrap().values() {
            if entry.quarantined.is_none() && entry.deadline < now_ms {
                due.push((
                    shard_of(&entry.row.key),
                    entry.deadline,
                    Due::Unreadable(entry.row.clone()),
                ));
            }
        }
        // As the index is read: shard by shard from `first_shard`, each in deadline order.
        due.sort_by_key(|(shard, deadline, _)| ((shard + SHARDS - first_shard % SHARDS) % SHARDS, *deadline));
        Ok(due.into_iter().take(limit).map(|(_, _, d)| d).collect())
    }

    async fn quarantine(&self, row: &UnreadableRow, reason: &str, _at: u64) -> Result<(), TableError> {
        self.injected("quarantine")?;
        let mut unreadable = self.unreadable.lock().unwrap();
        match unreadable.get_mut(&row.key) {
            Some(entry) if entry.row.fingerprint == row.fingerprint && entry.quarantined.is_none() => {
                entry.quarantined = Some(reason.to_string());
                Ok(())
            }
            _ => Err(TableError::new(
                "quarantine",
                TableErrorKind::ConditionFailed,
                "the row changed since it was read",
            )),
        }
    }
}

#[derive(Debug, Clone)]
struct Version {
    id: String,
    object: StoredObject,
}

/// Objects with every version kept, as on a bucket with versioning enabled.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<ObjectRef, Vec<Version>>>,
    next_version: AtomicU32,
}

impl MemoryStore {
    /// Stores a new current version of `object`; returns its version ID.
    pub fn insert(&self, object: ObjectRef, bytes: impl Into<Vec<u8>>, content_type: Option<&str>) -> String {
        let id = format!("v{}", self.next_version.fetch_add(1, Ordering::SeqCst) + 1);
        let version = Version {
            id: id.clone(),
            object: StoredObject {
                bytes: bytes.into(),
                content_type: content_type.map(str::to_string),
            },
        };
        self.objects.lock().unwrap().entry(object).or_default().push(version);
        id
    }

    /// The current version of `object`.
    pub fn object(&self, object: &ObjectRef) -> Option<StoredObject> {
        self.current(object).map(|v| v.object)
    }

    fn current(&self, object: &ObjectRef) -> Option<Version> {
        self.objects.lock().unwrap().get(object).and_then(|v| v.last().cloned())
    }

    fn version(&self, object: &ObjectRef, version_id: &str) -> Option<Version> {
        let objects = self.objects.lock().unwrap();
        objects.get(object)?.iter().find(|v| v.id == version_id).cloned()
    }
}

fn not_found(operation: &'static str, object: &ObjectRef) -> StoreError {
    StoreError::new(operation, object.to_string(), StoreErrorKind::NotFound, "no such key")
}

fn within(object: &ObjectRef, found: StoredObject, max_bytes: u64) -> Result<StoredObject, StoreError> {
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

impl DocumentStore for MemoryStore {
    async fn get(&self, object: &ObjectRef, max_bytes: u64) -> Result<StoredObject, StoreError> {
        let found = self.object(object).ok_or_else(|| not_found("get", object))?;
        within(object, found, max_bytes)
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectHead, StoreError> {
        let found = self.current(object).ok_or_else(|| not_found("head", object))?;
        Ok(ObjectHead {
            size: found.object.bytes.len() as u64,
            version_id: Some(found.id),
        })
    }

    async fn get_pinned(&self, document: &PinnedDocument, max_bytes: u64) -> Result<StoredObject, StoreError> {
        let object = &document.object;
        let found = match &document.version_id {
            Some(version_id) => self.version(object, version_id),
            None => self.current(object),
        }
        .ok_or_else(|| not_found("get", object))?;
        if let Some(size) = document.size
            && size != found.object.bytes.len() as u64
        {
            return Err(StoreError::new(
                "get",
                object.to_string(),
                StoreErrorKind::Rejected,
                format!("{} bytes, pinned at {size}", found.object.bytes.len()),
            ));
        }
        within(object, found.object, max_bytes)
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

    /// Forgets every body sent so far, as a queue whose messages went to its DLQ.
    pub fn clear(&self) {
        self.bodies.lock().unwrap().clear();
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

/// Records every redelivery a function asked for: (receipt, after).
#[derive(Debug, Default)]
pub struct RecordingRedelivery {
    requests: Mutex<Vec<(String, Duration)>>,
}

impl RecordingRedelivery {
    pub fn requests(&self) -> Vec<(String, Duration)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Redelivery for RecordingRedelivery {
    async fn redeliver_after(&self, receipt: &str, after: Duration) -> Result<(), QueueError> {
        self.requests.lock().unwrap().push((receipt.to_string(), after));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pinned_version_reads_the_bytes_it_pinned_after_an_overwrite() {
        let store = MemoryStore::default();
        let object = ObjectRef::new("docs", "incoming/c/a.txt");
        let first = store.insert(object.clone(), "first", None);
        store.insert(object.clone(), "second!", None);
        let pinned = PinnedDocument {
            object: object.clone(),
            version_id: Some(first),
            size: Some(5),
        };
        assert_eq!(store.get_pinned(&pinned, 100).await.unwrap().bytes, b"first");
        let wrong_size = PinnedDocument {
            size: Some(9),
            ..pinned
        };
        assert_eq!(
            store.get_pinned(&wrong_size, 100).await.unwrap_err().kind,
            StoreErrorKind::Rejected
        );
    }

    #[tokio::test]
    async fn the_index_is_read_from_the_first_shard_on() {
        let table = MemoryTable::default();
        let names: Vec<String> = (0..40).map(|n| format!("b-{n}")).collect();
        for name in &names {
            let id = BatchId::parse(name.as_str()).unwrap();
            table.insert(BatchRow::new_pending(id, vec![ObjectRef::new("docs", "k")], 3, 0, 10));
        }
        for first in 0..SHARDS {
            let due = table.overdue(100, 1, first).await.unwrap();
            let Due::Readable(row) = &due[0] else { panic!() };
            let row_shard = shard(&row.batch_id);
            let has_rows = |s: u32| names.iter().any(|n| shard(&BatchId::parse(n.as_str()).unwrap()) == s);
            let expected = (0..SHARDS)
                .map(|k| (first + k) % SHARDS)
                .find(|s| has_rows(*s))
                .unwrap();
            assert_eq!(row_shard, expected);
        }
    }
}
