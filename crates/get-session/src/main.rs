use get_session::{Config, GetSession, flush};
use lambda_runtime::Error;
use warmpool_core::aws::{self, LambdaReplenishTrigger, SqsPoolQueue};
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
    flush::run(|event| function.handle(event), worker).await
}
