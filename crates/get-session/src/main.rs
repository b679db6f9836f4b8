use get_session::{Config, GetSession, flush};
use lambda_runtime::Error;
use warmpool_core::aws::{self, AgentCoreRuntime, DynamoLeaseTable, LambdaReplenishTrigger, SqsPoolQueue};
use warmpool_core::clock::SystemClock;
use warmpool_core::config::Env;
use warmpool_core::pool::trigger::DeferredTrigger;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::from_process())?;
    let sdk = aws::load_config().await;
    let queue = SqsPoolQueue::new(aws_sdk_sqs::Client::new(&sdk), &config.pool_queue_url);
    let lambda = LambdaReplenishTrigger::new(aws_sdk_lambda::Client::new(&sdk), &config.replenish_function_name);
    let (trigger, worker) = DeferredTrigger::spawn(lambda);
    let function = GetSession::new(&config, queue, trigger, SystemClock);
    match (&config.leases, &config.agent_runtime) {
        (Some(leases), Some(runtime)) => {
            let table = DynamoLeaseTable::new(aws_sdk_dynamodb::Client::new(&sdk), &leases.table_name, leases.keep());
            let agent = AgentCoreRuntime::new(aws::agentcore_client(&sdk), &runtime.arn, &runtime.qualifier);
            let function = function.with_leases(&config, table, agent);
            flush::run(|event| function.respond(event), worker).await
        }
        _ => flush::run(|event| function.respond(event), worker).await,
    }
}
