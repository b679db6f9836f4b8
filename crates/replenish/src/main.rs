use lambda_runtime::{Error, service_fn};
use replenish::{Config, Replenish};
use warmpool_core::aws::{
    self, AgentCoreEndpointVersion, AgentCoreRuntime, DynamoLeaseTable, LambdaReplenishTrigger, SqsPoolQueue,
};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let queue = SqsPoolQueue::new(aws_sdk_sqs::Client::new(&sdk), &config.pool_queue_url);
    let agent = AgentCoreRuntime::new(
        aws::agentcore_client(&sdk),
        &config.agent_runtime_arn,
        &config.qualifier,
    );
    let itself = LambdaReplenishTrigger::new(aws_sdk_lambda::Client::new(&sdk), &config.function_name);
    // The endpoint the pool invokes is the one whose live version it records (the ARN was
    // checked at init: it names a runtime).
    let runtime_id = aws::runtime_id_of(&config.agent_runtime_arn)
        .unwrap_or_default()
        .to_string();
    let versions = AgentCoreEndpointVersion::new(aws::agentcore_control_client(&sdk), runtime_id, &config.qualifier);
    // Without LEASE_TABLE_NAME the table is never called (`with_lease_table` keeps it off).
    let leases = config
        .leases
        .as_ref()
        .map_or_else(String::new, |l| l.table_name.clone());
    let keep = config.leases.as_ref().map(|l| l.keep()).unwrap_or_default();
    let table = DynamoLeaseTable::new(aws_sdk_dynamodb::Client::new(&sdk), leases, keep);
    let function = Replenish::new(config, agent, queue, SystemClock, itself)
        .with_version_source(versions)
        .with_lease_table(table);
    lambda_runtime::run(service_fn(|event| function.handle(event))).await
}
