//! The batch path on the local stack, end to end: moto (S3, SQS, DynamoDB), the AgentCore
//! emulator forwarding to the reference document agent (in-process, on 127.0.0.1), the invoker
//! fed by a local SQS event source, the stale-batch detector on a schedule, and replenish
//! behind the asynchronous Lambda relay. Every function runs with real SDK clients over HTTP.
//!
//! The invoker and the detector reach DynamoDB and AgentCore (and, with
//! [`StackOptions::faults_on_sqs`], SQS) through clients carrying the stack's [`FaultInjector`]
//! (no rules until a test adds some), so a test can lose their answers at the wire; the agent
//! and the test's own reads go through clean clients.
//!
//! The agent runs in this process by default. [`AgentMode::PerSessionProcess`] has the emulator
//! start the built `document-agent` binary once per session instead, as AgentCore gives each
//! session its own microVM; the in-process agent then runs idle.
//!
//! Everything a stack starts stops when it is dropped; every wait here is bounded.

use crate::faults::FaultInjector;
use crate::{Moto, ReplenishFunction, fill_through_replenish, replenish_with_relay, sdk_config};
use agentcore_emulator::RunningEmulator;
use document_agent::{RunRecord, RunningAgent};
use invoker::{Invoker, Outcome, batch_response};
use stale_batch_detector::{Detector, RunReport};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::aws::SqsRedelivery;
use warmpool_core::aws::sqs_event::SqsEvent;
use warmpool_core::aws::{
    AgentCoreRuntime, DynamoTrackingTable, LambdaReplenishTrigger, S3DocumentStore, SqsMessageSink, SqsPoolQueue,
};
use warmpool_core::batch::manifest::BatchLimits;
use warmpool_core::batch::ports::TrackingTable;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus};
use warmpool_core::clock::SystemClock;
use warmpool_local_stack::event_source::{EventDispatch, EventSource, RunningEventSource};
use warmpool_local_stack::setup::batches::BatchResources;

mod options;
mod wiring;

pub use options::{AgentMode, SkewedClock, StackOptions, TestProcessor};
use wiring::{Created, Wired, detector, invoker, start_agent, start_emulator};

pub type StackInvoker = Invoker<
    DynamoTrackingTable,
    S3DocumentStore,
    SqsMessageSink,
    AgentCoreRuntime,
    SqsPoolQueue,
    LambdaReplenishTrigger,
    SystemClock,
    SqsRedelivery,
>;
pub type StackDetector = Detector<DynamoTrackingTable, SqsMessageSink, AgentCoreRuntime, SkewedClock>;

/// What the invoker said about each record it was given (message ID, outcomes or reason).
pub type InvokerLog = Arc<Mutex<Vec<(String, Result<Vec<Outcome>, String>)>>>;

pub struct BatchStack {
    pub resources: BatchResources,
    pub sqs: aws_sdk_sqs::Client,
    pub table: DynamoTrackingTable,
    pub store: S3DocumentStore,
    pub emulator: RunningEmulator,
    /// The in-process agent; idle in [`AgentMode::PerSessionProcess`].
    pub agent: RunningAgent,
    pub processor: TestProcessor,
    pub invoker: Arc<StackInvoker>,
    pub detector: Arc<StackDetector>,
    pub detector_clock: SkewedClock,
    pub invoker_log: InvokerLog,
    pub detector_reports: Arc<Mutex<Vec<RunReport>>>,
    pub options: StackOptions,
    /// Faults of the invoker's and the detector's DynamoDB and AgentCore (and SQS) calls.
    pub faults: FaultInjector,
    /// The batch pool's replenish, for a test that runs its schedule.
    pub replenish: Arc<ReplenishFunction>,
    pub pool: SqsPoolQueue,
    lambda: aws_sdk_lambda::Client,
    event_source: Option<RunningEventSource>,
    background: Background,
    _relay: warmpool_local_stack::relay::RunningRelay,
}

/// Tasks a stack runs on a schedule; aborted when the stack goes. `stopping` lets them finish
/// the run in hand first ([`BatchStack::quiesce`]): a replenish run cut off mid-heartbeat could
/// leave a session out of the pool and running.
#[derive(Default)]
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Background {
    fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Bounds how long [`BatchStack::quiesce`] waits for a scheduled run to end.
const QUIESCE_WITHIN: Duration = Duration::from_secs(60);

fn unique_name() -> String {
    format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl BatchStack {
    pub async fn start(options: StackOptions) -> BatchStack {
        let moto = Moto::shared();
        let sdk = sdk_config(&moto.endpoint);
        let Created {
            sqs,
            resources,
            pool,
            table,
            store,
        } = Created::on(&sdk, &options).await;
        let processor = TestProcessor::new(&options);
        let agent = start_agent(&sqs, &resources, &table, &store, &processor).await;
        let emulator = start_emulator(&options, &agent, &moto.endpoint, &resources).await;
        let replenish_settings: Vec<(&str, &str)> = options
            .replenish_settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (replenish, relay, lambda) = replenish_with_relay(pool.clone(), &emulator, &replenish_settings).await;
        let faults = options.faults.clone().unwrap_or_default();
        let wired = Wired::with_faults(&options, &sdk, &sqs, &resources, &emulator, &faults);
        let invoker = Arc::new(invoker(&options, &resources, &wired, &store, &pool, lambda.clone()));
        let detector_clock = SkewedClock::default();
        let detector = Arc::new(detector(&options, &resources, &wired, detector_clock.clone()));
        if options.pool_sessions > 0 {
            fill_through_replenish(&lambda, options.pool_sessions).await;
        }
        let mut stack = BatchStack {
            resources,
            sqs,
            table,
            store,
            emulator,
            agent,
            processor,
            invoker,
            detector,
            detector_clock,
            invoker_log: Default::default(),
            detector_reports: Default::default(),
            options: options.clone(),
            faults,
            replenish,
            pool,
            lambda,
            event_source: None,
            background: Background::default(),
            _relay: relay,
        };
        if options.pump {
            stack.start_pump();
        }
        if let Some(every) = options.detector_every {
            stack.start_detector(every);
        }
        stack
    }

    /// Puts `count` more warm sessions in the batch pool, through replenish.
    pub async fn fill_pool(&self, count: u32) {
        fill_through_replenish(&self.lambda, count).await;
    }

    /// The invoker behind a local SQS event source, as Lambda would run it.
    pub fn start_pump(&mut self) {
        let source = EventSource {
            sqs: self.sqs.clone(),
            queue_url: self.resources.batch_queue_url.clone(),
            queue_arn: self.resources.batch_queue_arn.clone(),
            batch_size: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
        };
        self.event_source = Some(source.spawn(self.dispatch(), self.options.pollers));
    }

    /// Runs the invoker on a serialized SQS event and logs what it said of each record.
    pub fn dispatch(&self) -> EventDispatch {
        let (invoker, log) = (self.invoker.clone(), self.invoker_log.clone());
        Arc::new(move |payload| {
            let (invoker, log) = (invoker.clone(), log.clone());
            Box::pin(async move {
                let event: SqsEvent = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                let reports = invoker.handle_records(event).await.map_err(|e| e.to_string())?;
                let response = batch_response(&reports);
                let mut log = log.lock().unwrap();
                for report in reports {
                    log.push((report.message_id, report.result.map_err(|e| e.to_string())));
                }
                serde_json::to_vec(&response).map_err(|e| e.to_string())
            })
        })
    }

    /// The detector on a schedule.
    pub fn start_detector(&mut self, every: Duration) {
        let (detector, reports) = (self.detector.clone(), self.detector_reports.clone());
        let stopping = self.background.stopping.clone();
        self.background.push(tokio::spawn(async move {
            while !stopping.load(Ordering::SeqCst) {
                tokio::time::sleep(every).await;
                if let Ok(report) = detector.handle(scheduled()).await {
                    reports.lock().unwrap().push(report);
                }
            }
        }));
    }

    /// The batch pool's replenish on its schedule (heartbeats, retirement, top-up to its target).
    pub fn start_replenish_schedule(&mut self, every: Duration) {
        let replenish = self.replenish.clone();
        let stopping = self.background.stopping.clone();
        self.background.push(tokio::spawn(async move {
            let schedule: serde_json::Value =
                serde_json::from_str(include_str!("../../../events/replenish-schedule.json")).expect("schedule event");
            while !stopping.load(Ordering::SeqCst) {
                tokio::time::sleep(every).await;
                let event = lambda_runtime::LambdaEvent::new(schedule.clone(), lambda_runtime::Context::default());
                let _ = replenish.handle(event).await;
            }
        }));
    }

    /// Stops delivery, then lets each scheduled task finish its run in hand (bounded) and stops
    /// it: afterwards nothing of the stack moves sessions or rows.
    pub async fn quiesce(&mut self) {
        self.event_source = None;
        self.background.stopping.store(true, Ordering::SeqCst);
        let until = Instant::now() + QUIESCE_WITHIN;
        for task in &mut self.background.tasks {
            let _ = tokio::time::timeout_at(until, task).await;
        }
        self.background.tasks.clear();
    }

    /// Stops delivering and scheduling, then the emulator (and with it every per-session agent
    /// process), waiting for it.
    pub async fn shutdown(self) {
        drop(self.background);
        drop(self.event_source);
        let _ = self.emulator.shutdown().await;
        let _ = self.agent.shutdown().await;
    }

    /// Uploads `files` for `batch` (documents, then the manifest), as `warmpool batch submit` does.
    pub async fn submit(&self, batch: &str, files: &[(&str, &[u8])]) -> BatchId {
        let files = files.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
        cli::batch::submit_files(
            &self.store,
            &self.resources.documents_bucket,
            BatchId::parse(batch).expect("batch id"),
            files,
            &BatchLimits::default(),
        )
        .await
        .expect("submit")
        .batch_id
    }

    pub async fn row(&self, batch_id: &BatchId) -> Option<BatchRow> {
        self.table.get(batch_id).await.expect("read the tracking row")
    }

    /// The row, or `None` if it is not there or could not be read now (a soak keeps going).
    pub async fn table_row(&self, batch_id: &BatchId) -> Option<BatchRow> {
        self.table.get(batch_id).await.ok().flatten()
    }

    /// Waits until the row satisfies `done`; panics with the last row seen after `within`.
    pub async fn wait_for(&self, batch_id: &BatchId, within: Duration, done: impl Fn(&BatchRow) -> bool) -> BatchRow {
        let until = Instant::now() + within;
        loop {
            let row = self.row(batch_id).await;
            if let Some(row) = row.as_ref().filter(|r| done(r)) {
                return row.clone();
            }
            assert!(
                Instant::now() < until,
                "batch {batch_id} not as expected after {within:?}: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_status(&self, batch_id: &BatchId, status: BatchStatus, within: Duration) -> BatchRow {
        self.wait_for(batch_id, within, |r| r.status == status).await
    }

    /// Crashes sessions through the emulator's admin API (`crashSessions`), as an operator
    /// injecting a fault would; returns those that were active and crashed.
    pub async fn crash(&self, session_ids: &[&str]) -> Vec<String> {
        let report: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .post(format!("{}/admin/faults", self.emulator.endpoint_url()))
            .json(&serde_json::json!({ "crashSessions": session_ids }))
            .send()
            .await
            .expect("admin faults")
            .json()
            .await
            .expect("faults report");
        serde_json::from_value(report["crashedSessions"].clone()).unwrap_or_default()
    }

    /// The in-process agent's runs of `batch`, once there is at least one: the agent records a
    /// run after its SUCCEEDED write returns, so a test that saw the row finish may be ahead of
    /// the record. Bounded by `within`; empty if none came.
    pub async fn runs_of(&self, batch: &BatchId, within: Duration) -> Vec<RunRecord> {
        let until = Instant::now() + within;
        loop {
            let runs = self.recorded_runs().remove(batch).unwrap_or_default();
            if !runs.is_empty() || Instant::now() >= until {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits, bounded by `within`, until the in-process agent runs nothing, so every run that
    /// started has its record; false if some still run.
    pub async fn agent_idle(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while !self.agent.running().is_empty() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Agent runs per batch ID, once the agent runs nothing (for up to 10 s): a run is on
    /// record when it ends, after its terminal write, so a row can be terminal first.
    pub async fn runs_by_batch(&self) -> HashMap<BatchId, Vec<RunRecord>> {
        self.agent_idle(Duration::from_secs(10)).await;
        self.recorded_runs()
    }

    fn recorded_runs(&self) -> HashMap<BatchId, Vec<RunRecord>> {
        let mut runs: HashMap<BatchId, Vec<RunRecord>> = HashMap::new();
        for run in self.agent.runs() {
            runs.entry(run.batch_id.clone()).or_default().push(run);
        }
        runs
    }
}

pub fn scheduled() -> lambda_runtime::LambdaEvent<serde_json::Value> {
    let payload = serde_json::from_str(include_str!("../../../events/stale-batch-detector-schedule.json"))
        .expect("sample schedule event");
    lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
}
