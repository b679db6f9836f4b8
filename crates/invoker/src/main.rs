use invoker::{Config, Invoker};
use lambda_runtime::{Error, service_fn};
use warmpool_core::aws::SqsRedelivery;
use warmpool_core::aws::{
    self, AgentCoreRuntime, DynamoTrackingTable, LambdaReplenishTrigger, S3DocumentStore, SqsMessageSink, SqsPoolQueue,
};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::pool::claim::Claimer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The batch pool and its own replenish function: get-session's pool is out of reach.
    // The replenish trigger is awaited in-line (no deferred worker): starting a batch is not
    // latency-critical, and the trigger is then delivered before Lambda can freeze us.
    let claimer = Claimer {
        queue: SqsPoolQueue::new(sqs.clone(), &config.pool_queue_url),
        trigger: LambdaReplenishTrigger::new(aws_sdk_lambda::Client::new(&sdk), &config.replenish_function_name),
        clock: SystemClock,
        policy: config.claim,
    };
    let function = Invoker {
        table: DynamoTrackingTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &config.tracking_table,
            config.layout,
        ),
        store: S3DocumentStore::new(aws::s3_client(&sdk, config.s3_force_path_style)),
        batch_queue: SqsMessageSink::new(sqs.clone(), &config.batch_queue_url),
        redelivery: SqsRedelivery::new(sqs.clone(), &config.batch_queue_url),
        failure_queue: SqsMessageSink::new(sqs, &config.failure_queue_url),
        agent: AgentCoreRuntime::new(
            aws::agentcore_client(&sdk),
            &config.agent_runtime_arn,
            &config.qualifier,
        ),
        claimer,
        config,
    };
    lambda_runtime::run(service_fn(|event| function.handle(event))).await
}
