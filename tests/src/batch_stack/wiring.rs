//! How a [`super::BatchStack`] is put together: its resources, the agent and the emulator, and
//! the functions under test with their (fault-injecting) clients.

use super::{AgentMode, SkewedClock, StackDetector, StackInvoker, StackOptions, TestProcessor, unique_name};
use crate::faults::{self, FaultInjector};
use crate::{RUNTIME_ARN, create_pool_queue, sdk_config};
use agentcore_emulator::AgentCommand;
use agentcore_emulator::lifecycle::LifecycleConfig;
use agentcore_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use document_agent::{RunSettings, RunningAgent, Services};
use invoker::Invoker;
use stale_batch_detector::Detector;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use warmpool_core::aws::SqsRedelivery;
use warmpool_core::aws::{
    AgentCoreRuntime, DynamoTrackingTable, LambdaReplenishTrigger, S3DocumentStore, SqsMessageSink, SqsPoolQueue,
};
use warmpool_core::batch::settings::PENDING_TIMEOUT;
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::pool::claim::Claimer;
use warmpool_local_stack::setup::batches::{BatchQueueSettings, BatchResources, Clients, create_batch_resources};

/// The resources a stack creates on the shared moto, and the clean clients reading them.
pub(super) struct Created {
    pub(super) sqs: aws_sdk_sqs::Client,
    pub(super) resources: BatchResources,
    pub(super) pool: SqsPoolQueue,
    pub(super) table: DynamoTrackingTable,
    pub(super) store: S3DocumentStore,
}

impl Created {
    /// The batch resources as `warmpool local setup batches` creates them, and a batch pool.
    pub(super) async fn on(sdk: &aws_config::SdkConfig, options: &StackOptions) -> Created {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let s3 = warmpool_core::aws::s3_client(sdk, true);
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
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
        let table = DynamoTrackingTable::new(dynamodb, &resources.tracking_table, Default::default());
        let store = S3DocumentStore::new(s3);
        Created {
            sqs,
            resources,
            pool,
            table,
            store,
        }
    }
}

impl TestProcessor {
    pub(super) fn new(options: &StackOptions) -> Self {
        let permits = if options.gate_open {
            Semaphore::MAX_PERMITS / 2
        } else {
            0
        };
        Self {
            delay: options.processing_delay,
            jitter: options.processing_jitter,
            gate: Arc::new(Semaphore::new(permits)),
        }
    }
}

/// The document agent in this process, on a free loopback port, with emulator hooks.
pub(super) async fn start_agent(
    sqs: &aws_sdk_sqs::Client,
    resources: &BatchResources,
    table: &DynamoTrackingTable,
    store: &S3DocumentStore,
    processor: &TestProcessor,
) -> RunningAgent {
    let services = Services {
        table: table.clone(),
        store: store.clone(),
        results: SqsMessageSink::new(sqs.clone(), &resources.results_queue_url),
        processor: processor.clone(),
        results_bucket: resources.documents_bucket.clone(),
        results_prefix: "results/".into(),
        settings: RunSettings::default(),
    };
    document_agent::serve(([127, 0, 0, 1], 0).into(), services, true)
        .await
        .expect("start the document agent")
}

/// The emulator in front of the in-process agent, or starting one agent process per session.
pub(super) async fn start_emulator(
    options: &StackOptions,
    agent: &RunningAgent,
    moto: &str,
    resources: &BatchResources,
) -> RunningEmulator {
    Emulator::spawn(EmulatorConfig {
        lifecycle: LifecycleConfig {
            latency_scale: 0.01,
            creation_rate_per_sec: options.creation_rate_per_sec,
            max_active_sessions: 10_000,
            ..LifecycleConfig::default()
        },
        agent_url: (options.agent_mode == AgentMode::InProcess).then(|| agent.url()),
        agent_command: match &options.agent_mode {
            AgentMode::InProcess => None,
            AgentMode::PerSessionProcess { binary } => Some(agent_command(binary, moto, resources)),
        },
        agent_timeout: Duration::from_secs(30),
        seed: Some(11),
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the AgentCore emulator")
}

/// The clients the functions under test use, faults attached.
pub(super) struct Wired {
    pub(super) table: DynamoTrackingTable,
    pub(super) agent: AgentCoreRuntime,
    pub(super) sqs: aws_sdk_sqs::Client,
}

impl Wired {
    pub(super) fn with_faults(
        options: &StackOptions,
        sdk: &aws_config::SdkConfig,
        sqs: &aws_sdk_sqs::Client,
        resources: &BatchResources,
        emulator: &RunningEmulator,
        faults: &FaultInjector,
    ) -> Wired {
        Wired {
            table: DynamoTrackingTable::new(
                faults::dynamodb_client(sdk, faults),
                &resources.tracking_table,
                Default::default(),
            ),
            agent: faulty_agent_runtime(emulator, faults),
            sqs: if options.faults_on_sqs {
                faults::sqs_client(sdk, faults)
            } else {
                sqs.clone()
            },
        }
    }
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

pub(super) fn invoker(
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

pub(super) fn detector(
    options: &StackOptions,
    resources: &BatchResources,
    wired: &Wired,
    clock: SkewedClock,
) -> StackDetector {
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
