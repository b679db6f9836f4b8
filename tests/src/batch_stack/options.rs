//! What a [`super::BatchStack`] is started with, and the test doubles it is built from.

use crate::faults::FaultInjector;
use document_agent::processor::{Document, DocumentProcessor, DocumentRecord, ProcessError, describe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use warmpool_core::clock::{Clock, SystemClock};

/// The system clock plus an adjustable offset: lets a test make the detector see the future.
#[derive(Debug, Clone, Default)]
pub struct SkewedClock(Arc<AtomicI64>);

impl SkewedClock {
    /// Runs the clock `ahead` of the system clock from now on.
    pub fn skew(&self, ahead: Duration) {
        self.0
            .store(i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> u64 {
        SystemClock
            .now_ms()
            .saturating_add_signed(self.0.load(Ordering::SeqCst))
    }
}

/// The reference processor, optionally slowed per document (a fixed delay plus a random one
/// up to `jitter`) and held at a gate.
#[derive(Clone)]
pub struct TestProcessor {
    pub delay: Duration,
    pub jitter: Duration,
    pub gate: Arc<Semaphore>,
}

impl TestProcessor {
    pub fn open_gate(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl DocumentProcessor for TestProcessor {
    async fn process(&self, document: Document) -> Result<DocumentRecord, ProcessError> {
        let permit = self.gate.acquire().await.map_err(|e| ProcessError {
            location: document.location.clone(),
            reason: e.to_string(),
        })?;
        // Given back at once: an open gate lets everyone through together.
        drop(permit);
        let jitter_ms = rand::random_range(0..=warmpool_core::clock::millis(self.jitter));
        tokio::time::sleep(self.delay + Duration::from_millis(jitter_ms)).await;
        Ok(describe(&document))
    }
}

/// Where the emulator sends invocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AgentMode {
    /// One document agent in this process serves every session (fast; shares memory).
    #[default]
    InProcess,
    /// One `document-agent` process per session, started by the emulator from this binary.
    PerSessionProcess { binary: PathBuf },
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub max_attempts: u32,
    pub batch_deadline_secs: u64,
    pub invoke_timeout_secs: u64,
    pub max_receive_count: u32,
    pub retry_delay_secs: u64,
    /// Warm sessions put in the pool before the test.
    pub pool_sessions: u32,
    pub processing_delay: Duration,
    pub processing_jitter: Duration,
    pub gate_open: bool,
    /// Run the detector this often; `None` leaves it to the test.
    pub detector_every: Option<Duration>,
    /// Run the invoker from the batch queue; `false` leaves delivery to the test.
    pub pump: bool,
    pub pollers: usize,
    pub creation_rate_per_sec: f64,
    /// `BATCH_FRESH_FALLBACK`: most tests here count sessions exactly and run without a
    /// scheduled top-up, so they let the invoker create a session when the pool is empty; the
    /// tests of the default (wait for a pooled session) turn it off.
    pub fresh_fallback: bool,
    pub agent_mode: AgentMode,
    /// The injector to attach (a seeded one for a soak); `None` attaches a fresh one.
    pub faults: Option<FaultInjector>,
    /// Attach the injector to the invoker's and the detector's SQS clients too.
    pub faults_on_sqs: bool,
    /// `BATCH_PENDING_TIMEOUT_SECS` of the invoker and the detector; `None` keeps the default.
    pub pending_timeout_secs: Option<u64>,
    /// More settings of the batch pool's replenish (`POOL_TARGET`, `CREATION_BUDGET_PER_SEC`, ...).
    pub replenish_settings: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            batch_deadline_secs: 60,
            invoke_timeout_secs: 20,
            max_receive_count: 5,
            retry_delay_secs: 1,
            pool_sessions: 0,
            processing_delay: Duration::ZERO,
            processing_jitter: Duration::ZERO,
            gate_open: true,
            detector_every: None,
            pump: true,
            pollers: 2,
            creation_rate_per_sec: 200.0,
            fresh_fallback: true,
            agent_mode: AgentMode::InProcess,
            faults: None,
            faults_on_sqs: false,
            pending_timeout_secs: None,
            replenish_settings: Vec::new(),
        }
    }
}
