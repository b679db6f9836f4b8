use lambda_runtime::{Error, service_fn};
use stale_batch_detector::{Config, Detector};
use warmpool_core::aws::{self, AgentCoreRuntime, DynamoTrackingTable, SqsMessageSink};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = DynamoTrackingTable::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &config.tracking_table,
        config.layout,
    );
    let batch_queue = SqsMessageSink::new(sqs.clone(), &config.batch_queue_url);
    let failure_queue = SqsMessageSink::new(sqs, &config.failure_queue_url);
    let agent = AgentCoreRuntime::new(
        aws::agentcore_client(&sdk),
        &config.agent_runtime_arn,
        &config.qualifier,
    );
    let function = Detector::new(config, table, batch_queue, failure_queue, agent, SystemClock);
    lambda_runtime::run(service_fn(|event| function.handle(event))).await
}
