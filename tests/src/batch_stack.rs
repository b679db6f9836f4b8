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

use crate::faults::{self, FaultInjector};
use crate::{
    Moto, RUNTIME_ARN, ReplenishFunction, create_pool_queue, fill_through_replenish, replenish_with_relay, sdk_config,
};
use agentcore_emulator::AgentCommand;
use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use cli::batch_setup::{BatchQueueSettings, BatchResources, Clients, create_batch_resources};
use cli::event_source::{EventDispatch, EventSource, RunningEventSource};
use document_agent::processor::{Document, DocumentProcessor, DocumentRecord, ProcessError, describe};
use document_agent::{RunRecord, RunSettings, RunningAgent, Services};
use invoker::{Invoker, Outcome, batch_response};
use stale_batch_detector::{Detector, RunReport};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use warmpool_core::aws::SqsRedelivery;
use warmpool_core::aws::sqs_event::SqsEvent;
use warmpool_core::aws::{
    AgentCoreRuntime, DynamoTrackingTable, LambdaReplenishTrigger, S3DocumentStore, SqsMessageSink, SqsPoolQueue,
};
use warmpool_core::batch::manifest::BatchLimits;
use warmpool_core::batch::ports::TrackingTable;
use warmpool_core::batch::settings::PENDING_TIMEOUT;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::pool::claim::Claimer;

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

/// The system clock plus an adjustable offset: lets a test make the detector see the future.
#[derive(Debug, Clone, Default)]
pub struct SkewedClock(Arc<AtomicI64>);

impl SkewedClock {
    /// Runs the clock `ahead` of the system clock from now on.
    pub fn skew(&self, ahead: Duration) {
        self.0.store(ahead.as_millis() as i64, Ordering::SeqCst);
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
        let jitter_ms = rand::random_range(0..=self.jitter.as_millis() as u64);
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
    _relay: cli::relay::RunningRelay,
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
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = warmpool_core::aws::s3_client(&sdk, true);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let settings = BatchQueueSettings {
            max_receive_count: options.max_receive_count,
            visibility_timeout: Duration::from_secs(30),
        };
        let clients = Clients {
            sqs: &sqs,
            s3: &s3,
            dynamodb: &dynamodb,
        };
        let resources = create_batch_resources(&clients, &unique_name(), &settings)
            .await
            .expect("create the batch resources");
        let pool = SqsPoolQueue::new(sqs.clone(), create_pool_queue(&sqs, "batch-pool").await);
        let table = DynamoTrackingTable::new(dynamodb.clone(), &resources.tracking_table, Default::default());
        let store = S3DocumentStore::new(s3.clone());

        let processor = TestProcessor {
            delay: options.processing_delay,
            jitter: options.processing_jitter,
            gate: Arc::new(Semaphore::new(if options.gate_open {
                Semaphore::MAX_PERMITS / 2
            } else {
                0
            })),
        };
        let agent_sqs = sqs.clone();
        let agent = document_agent::serve(
            ([127, 0, 0, 1], 0).into(),
            Services {
                table: table.clone(),
                store: store.clone(),
                results: SqsMessageSink::new(agent_sqs, &resources.results_queue_url),
                processor: processor.clone(),
                results_bucket: resources.documents_bucket.clone(),
                results_prefix: "results/".into(),
                settings: RunSettings::default(),
            },
            true,
        )
        .await
        .expect("start the document agent");
        let emulator = Emulator::spawn(EmulatorConfig {
            lifecycle: LifecycleConfig {
                latency_scale: 0.01,
                creation_rate_per_sec: options.creation_rate_per_sec,
                max_active_sessions: 10_000,
                ..LifecycleConfig::default()
            },
            agent_url: (options.agent_mode == AgentMode::InProcess).then(|| agent.url()),
            agent_command: match &options.agent_mode {
                AgentMode::InProcess => None,
                AgentMode::PerSessionProcess { binary } => Some(agent_command(binary, &moto.endpoint, &resources)),
            },
            agent_timeout: Duration::from_secs(30),
            seed: Some(11),
            ..EmulatorConfig::default()
        })
        .await
        .expect("start the AgentCore emulator");

        let replenish_settings: Vec<(&str, &str)> = options
            .replenish_settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (replenish, relay, lambda) = replenish_with_relay(pool.clone(), &emulator, &replenish_settings).await;
        let faults = options.faults.clone().unwrap_or_default();
        let wired = Wired {
            table: DynamoTrackingTable::new(
                faults::dynamodb_client(&sdk, &faults),
                &resources.tracking_table,
                Default::default(),
            ),
            agent: faulty_agent_runtime(&emulator, &faults),
            sqs: if options.faults_on_sqs {
                faults::sqs_client(&sdk, &faults)
            } else {
                sqs.clone()
            },
        };
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
                serde_json::from_str(include_str!("../../events/replenish-schedule.json")).expect("schedule event");
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

    /// Agent runs per batch ID.
    /// The in-process agent's runs of `batch`, once there is at least one: the agent records a
    /// run after its SUCCEEDED write returns, so a test that saw the row finish may be ahead of
    /// the record. Bounded by `within`; empty if none came.
    pub async fn runs_of(&self, batch: &BatchId, within: Duration) -> Vec<RunRecord> {
        let until = Instant::now() + within;
        loop {
            let runs = self.runs_by_batch().remove(batch).unwrap_or_default();
            if !runs.is_empty() || Instant::now() >= until {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn runs_by_batch(&self) -> HashMap<BatchId, Vec<RunRecord>> {
        let mut runs: HashMap<BatchId, Vec<RunRecord>> = HashMap::new();
        for run in self.agent.runs() {
            runs.entry(run.batch_id.clone()).or_default().push(run);
        }
        runs
    }
}

pub fn scheduled() -> lambda_runtime::LambdaEvent<serde_json::Value> {
    let payload = serde_json::from_str(include_str!("../../events/stale-batch-detector-schedule.json"))
        .expect("sample schedule event");
    lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
}

/// The clients the functions under test use, faults attached.
struct Wired {
    table: DynamoTrackingTable,
    agent: AgentCoreRuntime,
    sqs: aws_sdk_sqs::Client,
}

/// The per-session command: `/usr/bin/env` sets the agent's configuration (and the SDK's
/// endpoint and test credentials for moto), then runs the binary on the session's port.
fn agent_command(binary: &std::path::Path, moto: &str, resources: &BatchResources) -> AgentCommand {
    let settings = [
        ("AGENT_LISTEN", "127.0.0.1:{port}".to_string()),
        ("TRACKING_TABLE", resources.tracking_table.clone()),
        ("RESULTS_QUEUE_URL", resources.results_queue_url.clone()),
        ("RESULTS_BUCKET", resources.documents_bucket.clone()),
        ("RESULTS_PREFIX", "results/".into()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("AWS_ENDPOINT_URL", moto.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("RUST_LOG", "warn".into()),
    ];
    let args = settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain([binary.display().to_string()]);
    AgentCommand::new("/usr/bin/env", args)
}

/// The AgentCore client of [`crate::agent_runtime`], with `faults` attached.
fn faulty_agent_runtime(emulator: &RunningEmulator, faults: &FaultInjector) -> AgentCoreRuntime {
    let sdk = sdk_config(&emulator.endpoint_url());
    let config = aws_sdk_bedrockagentcore::config::Builder::from(&sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .interceptor(faults.clone())
        .build();
    AgentCoreRuntime::new(
        aws_sdk_bedrockagentcore::Client::from_conf(config),
        RUNTIME_ARN,
        "DEFAULT",
    )
}

fn invoker(
    options: &StackOptions,
    resources: &BatchResources,
    wired: &Wired,
    store: &S3DocumentStore,
    pool: &SqsPoolQueue,
    lambda: aws_sdk_lambda::Client,
) -> StackInvoker {
    let sqs = &wired.sqs;
    let pending_timeout = options.pending_timeout_secs.map(|s| s.to_string());
    let numbers = [
        ("MAX_ATTEMPTS", options.max_attempts.to_string()),
        ("BATCH_DEADLINE_SECS", options.batch_deadline_secs.to_string()),
        ("INVOKE_TIMEOUT_SECS", options.invoke_timeout_secs.to_string()),
        ("MAX_RECEIVE_COUNT", options.max_receive_count.to_string()),
        ("RETRY_DELAY_SECS", options.retry_delay_secs.to_string()),
        ("BATCH_FRESH_FALLBACK", options.fresh_fallback.to_string()),
    ];
    let mut pairs: Vec<(&str, &str)> = vec![
        ("BATCH_QUEUE_URL", &resources.batch_queue_url),
        ("FAILURE_QUEUE_URL", &resources.failure_queue_url),
        ("TRACKING_TABLE", &resources.tracking_table),
        ("DOCUMENTS_BUCKET", &resources.documents_bucket),
        ("POOL_QUEUE_URL", pool.queue_url()),
        ("REPLENISH_FUNCTION_NAME", "replenish"),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
        // An empty pool answers at once: the fresh fallback is the point of most tests.
        ("CLAIM_WAIT_SECS", "0"),
    ];
    pairs.extend(numbers.iter().map(|(k, v)| (*k, v.as_str())));
    pairs.extend(pending_timeout.as_deref().map(|v| (PENDING_TIMEOUT, v)));
    let config = invoker::Config::from_env(&Env::from_pairs(pairs)).expect("invoker config");
    Invoker {
        table: wired.table.clone(),
        store: store.clone(),
        batch_queue: SqsMessageSink::new(sqs.clone(), &resources.batch_queue_url),
        failure_queue: SqsMessageSink::new(sqs.clone(), &resources.failure_queue_url),
        redelivery: SqsRedelivery::new(sqs.clone(), &resources.batch_queue_url),
        agent: wired.agent.clone(),
        claimer: Claimer {
            queue: pool.clone(),
            trigger: LambdaReplenishTrigger::new(lambda, "replenish"),
            clock: SystemClock,
            policy: config.claim,
        },
        config,
    }
}

fn detector(options: &StackOptions, resources: &BatchResources, wired: &Wired, clock: SkewedClock) -> StackDetector {
    let sqs = &wired.sqs;
    let retry_delay = options.retry_delay_secs.to_string();
    let pending_timeout = options.pending_timeout_secs.map(|s| s.to_string());
    let mut pairs = vec![
        ("TRACKING_TABLE", resources.tracking_table.as_str()),
        ("BATCH_QUEUE_URL", &resources.batch_queue_url),
        ("FAILURE_QUEUE_URL", &resources.failure_queue_url),
        ("AGENT_RUNTIME_ARN", RUNTIME_ARN),
        ("RETRY_DELAY_SECS", &retry_delay),
    ];
    pairs.extend(pending_timeout.as_deref().map(|v| (PENDING_TIMEOUT, v)));
    let env = Env::from_pairs(pairs);
    let config = stale_batch_detector::Config::from_env(&env).expect("detector config");
    Detector::new(
        config,
        wired.table.clone(),
        SqsMessageSink::new(sqs.clone(), &resources.batch_queue_url),
        SqsMessageSink::new(sqs.clone(), &resources.failure_queue_url),
        wired.agent.clone(),
        clock,
    )
}
