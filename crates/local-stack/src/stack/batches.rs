//! The batch side: bucket, queues and table; the document agent and its emulator; invoker,
//! stale-batch-detector and replenish under a second watch behind a second relay; the event
//! source feeding the batch queue to the invoker; the detector every ten seconds.

use super::pool::{drain, emulator, function_env, relay, unique};
use super::{Agent, DOCUMENT_RUNTIME_ARN, StackOptions};
use crate::error::Error;
use crate::event_source::EventSource;
use crate::relay::RelayStats;
use crate::schedule::Schedule;
use crate::setup::batches::{BatchQueueSettings, BatchResources, Clients, create_batch_resources};
use crate::supervisor::Supervisor;
use agentcore_emulator::RunningEmulator;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use warmpool_core::pool::Lifecycle;

/// The detector's period on the local stack (production: minutes).
const DETECTOR_EVERY: Duration = Duration::from_secs(10);
const AGENT_START_WITHIN: Duration = Duration::from_secs(30);

pub struct BatchSide {
    pub resources: BatchResources,
    pub pool_queue_url: String,
    pub runtime_arn: String,
    pub agent_url: String,
    pub emulator_url: String,
    pub lambda_url: String,
    pub watch_url: String,
    emulator: RunningEmulator,
    relay_stats: Arc<RelayStats>,
}

impl BatchSide {
    pub(super) async fn shutdown(self) {
        drain(&self.relay_stats).await;
        if let Err(error) = self.emulator.shutdown().await {
            tracing::warn!(%error, "the batch emulator did not stop cleanly");
        }
    }
}

pub(super) async fn start(supervisor: &Supervisor, options: &StackOptions, moto_url: &str) -> Result<BatchSide, Error> {
    let sdk = crate::sdk::sdk_config(moto_url);
    let (sqs, dynamodb) = (aws_sdk_sqs::Client::new(&sdk), aws_sdk_dynamodb::Client::new(&sdk));
    let s3 = warmpool_core::aws::s3_client(&sdk, true);
    let clients = Clients {
        sqs: &sqs,
        s3: &s3,
        dynamodb: &dynamodb,
    };
    let resources = create_batch_resources(&clients, &unique("demo"), &BatchQueueSettings::default()).await?;
    let pool_queue_url =
        crate::setup::pool::create_pool_queue(&sqs, &unique("batch-pool"), &Lifecycle::default()).await?;
    let agent_url = start_document_agent(supervisor, options, moto_url, &resources).await?;
    let emulator = emulator(options, &Agent::Url(agent_url.clone())).await?;
    let emulator_url = emulator.endpoint_url();
    let watch_port = crate::free_loopback_port()?;
    let relay = relay(watch_port).await?;
    let lambda_url = relay.endpoint_url();
    let env = watch_env(moto_url, &resources, &pool_queue_url, &emulator_url, &lambda_url);
    let watch_url = crate::watch::start(supervisor, &options.workspace, "watch-batches", &env, 4, watch_port).await?;
    let relay_stats = relay.stats.clone();
    supervisor.hold(relay);
    feed(supervisor, &sqs, &resources, &watch_url)?;
    Ok(BatchSide {
        resources,
        pool_queue_url,
        runtime_arn: DOCUMENT_RUNTIME_ARN.to_string(),
        agent_url,
        emulator_url,
        lambda_url,
        watch_url,
        emulator,
        relay_stats,
    })
}

/// What invoker, stale-batch-detector and the batch pool's replenish read.
fn watch_env(
    moto_url: &str,
    resources: &BatchResources,
    pool_queue_url: &str,
    emulator_url: &str,
    lambda_url: &str,
) -> Vec<(String, String)> {
    let mut env = resources.env_pairs();
    env.extend(function_env(
        pool_queue_url,
        DOCUMENT_RUNTIME_ARN,
        moto_url,
        emulator_url,
        lambda_url,
    ));
    for (k, v) in [
        ("BATCH_DEADLINE_SECS", "120"),
        ("INVOKE_TIMEOUT_SECS", "60"),
        ("MAX_RECEIVE_COUNT", "5"),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ENDPOINT_URL_S3", moto_url),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto_url),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// The reference document agent (the debug build) on a free port, with emulator hooks.
async fn start_document_agent(
    supervisor: &Supervisor,
    options: &StackOptions,
    moto_url: &str,
    resources: &BatchResources,
) -> Result<String, Error> {
    let binary = options.workspace.debug_binary("document-agent");
    if !binary.exists() {
        return Err(Error::Missing { path: binary });
    }
    let port = crate::free_loopback_port()?;
    let mut command = Command::new(binary);
    command
        .env("AGENT_LISTEN", format!("127.0.0.1:{port}"))
        .env("AGENT_EMULATOR_HOOKS", "true")
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("AWS_ENDPOINT_URL", moto_url)
        .envs(crate::sdk::base_env())
        .envs(resources.env_pairs());
    supervisor.spawn("document-agent", command)?;
    let url = format!("http://127.0.0.1:{port}");
    crate::ready::wait_http("document-agent", &format!("{url}/ping"), AGENT_START_WITHIN).await?;
    crate::ready::loopback_only("document-agent", port)?;
    Ok(url)
}

/// The batch queue to the invoker (as Lambda's event source mapping) and the detector on
/// its schedule, both through the batch watch; the supervisor holds them.
fn feed(
    supervisor: &Supervisor,
    sqs: &aws_sdk_sqs::Client,
    resources: &BatchResources,
    watch_url: &str,
) -> Result<(), Error> {
    let source = EventSource {
        sqs: sqs.clone(),
        queue_url: resources.batch_queue_url.clone(),
        queue_arn: resources.batch_queue_arn.clone(),
        batch_size: 10,
        wait: Duration::from_secs(1),
        visibility: BatchQueueSettings::default().visibility_timeout,
        retry_after: Duration::from_secs(2),
    };
    let dispatch = crate::relay::forward_events(watch_url, "invoker".into())?;
    supervisor.hold(source.spawn(dispatch, 2));
    let schedule = Schedule {
        function: "stale-batch-detector".into(),
        period: DETECTOR_EVERY,
        dispatch: crate::relay::forward_events(watch_url, "stale-batch-detector".into())?,
    };
    supervisor.task(schedule.spawn());
    Ok(())
}
