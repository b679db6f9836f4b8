use document_agent::{AgentConfig, BasicProcessor, Services, serve};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use warmpool_core::aws::{self, DynamoTrackingTable, S3DocumentStore, SqsMessageSink};
use warmpool_core::config::Env;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = match AgentConfig::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("document-agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = aws::load_config().await;
    let services = Services {
        table: DynamoTrackingTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &config.tracking_table,
            config.layout,
        ),
        store: S3DocumentStore::new(aws::s3_client(&sdk, config.s3_force_path_style)),
        results: SqsMessageSink::new(aws_sdk_sqs::Client::new(&sdk), &config.results_queue_url),
        processor: BasicProcessor,
        results_bucket: config.results_bucket.clone(),
        results_prefix: config.results_prefix.clone(),
        settings: config.run.clone(),
    };
    let agent = match serve(config.listen, services, config.emulator_hooks).await {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("document-agent: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    warmpool_core::process::shutdown_signal().await;
    tracing::info!("shutting down");
    match agent.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("document-agent: {error}");
            ExitCode::FAILURE
        }
    }
}
