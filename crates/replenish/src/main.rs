use lambda_runtime::{Error, service_fn};
use replenish::{Config, Replenish};
use warmpool_core::aws::{self, AgentCoreRuntime, LambdaReplenishTrigger, SqsPoolQueue};
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
    let function = Replenish::new(config, agent, queue, SystemClock, itself);
    lambda_runtime::run(service_fn(|event| function.handle(event))).await
}
