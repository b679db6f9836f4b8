//! The agent's table writes when a write lands and its answer is lost: the retry (the SDK's or
//! the agent's own) then fails its condition, and the agent must tell its own landed write
//! from another writer's.

use document_agent::processor::BasicProcessor;
use document_agent::{RunOutcome, RunSettings, RunningAgent, Services, serve};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warmpool_core::batch::fakes::{MemorySink, MemoryStore, MemoryTable};
use warmpool_core::batch::ports::{Due, TrackingTable, UnreadableRow};
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus, ObjectRef, Transition};
use warmpool_core::error::{TableError, TableErrorKind};
use warmpool_core::session::SessionId;

/// A table whose next `n` transitions are applied and then answered with a transport error,
/// as a write whose response was lost on the way back.
#[derive(Default)]
struct LosingTable {
    inner: MemoryTable,
    lose_answers: AtomicU32,
}

impl TrackingTable for LosingTable {
    async fn get(&self, batch_id: &BatchId) -> Result<Option<BatchRow>, TableError> {
        self.inner.get(batch_id).await
    }
    async fn create(&self, row: &BatchRow) -> Result<(), TableError> {
        self.inner.create(row).await
    }
    async fn transition(&self, transition: &Transition) -> Result<(), TableError> {
        self.inner.transition(transition).await?;
        let lose = self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(TableError::new("transition", TableErrorKind::Transport, "answer lost"));
        }
        Ok(())
    }
    async fn overdue(&self, now_ms: u64, limit: usize, first_shard: u32) -> Result<Vec<Due>, TableError> {
        self.inner.overdue(now_ms, limit, first_shard).await
    }
    async fn quarantine(&self, row: &UnreadableRow, reason: &str, at: u64) -> Result<(), TableError> {
        self.inner.quarantine(row, reason, at).await
    }
}

async fn agent(table: Arc<LosingTable>, store: Arc<MemoryStore>) -> RunningAgent {
    let services = Services {
        table,
        store,
        results: Arc::new(MemorySink::default()),
        processor: BasicProcessor,
        results_bucket: "docs".into(),
        results_prefix: "results/".into(),
        settings: RunSettings::default(),
    };
    serve(SocketAddr::from(([127, 0, 0, 1], 0)), services, false)
        .await
        .unwrap()
}

#[tokio::test]
async fn when_the_success_write_lands_but_its_answer_is_lost_then_the_run_counts_as_recorded() {
    let (table, store) = (Arc::new(LosingTable::default()), Arc::new(MemoryStore::default()));
    let document = ObjectRef::new("docs", "incoming/case-1/a.txt");
    store.insert(document.clone(), b"words".to_vec(), None);
    let row = BatchRow::new_running(
        BatchId::parse("case-1").unwrap(),
        vec![document],
        3,
        SessionId::generate(),
        1,
        u64::MAX / 2,
    );
    table.inner.insert(row.clone());
    table.lose_answers.store(1, Ordering::SeqCst);
    let agent = agent(table.clone(), store).await;

    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/invocations", agent.url()))
        .header(
            warmpool_core::session::SESSION_HEADER,
            row.session_id.as_ref().unwrap().as_str(),
        )
        .json(&json!({"type":"batch","v":1,"batchId":"case-1","attempt":1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    for _ in 0..500 {
        if !agent.runs().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(table.inner.row(&row.batch_id).unwrap().status, BatchStatus::Succeeded);
    assert_eq!(
        agent.runs()[0].outcome,
        RunOutcome::Recorded,
        "its own write, not a lost race"
    );
}
