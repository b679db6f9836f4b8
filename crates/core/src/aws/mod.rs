//! Adapters from the ports to AWS services, through the official SDK clients.
//!
//! Endpoints come from the standard SDK configuration, so the same code talks to AWS or to the
//! local stack (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`, ...).

pub mod agentcore;
pub mod dynamodb;
pub mod lambda;
pub mod s3;
pub mod sqs;
pub mod sqs_event;
pub mod sqs_sink;

pub use agentcore::AgentCoreRuntime;
pub use dynamodb::DynamoTrackingTable;
pub use lambda::LambdaReplenishTrigger;
pub use s3::S3DocumentStore;
pub use sqs::SqsPoolQueue;
pub use sqs_sink::SqsMessageSink;

use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::error::Error as StdError;

/// Loads the shared SDK configuration once per function instance.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// What an SDK call's failure says, independent of the operation.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The service's error code (`ThrottlingException`, ...), if the service answered.
    pub code: Option<String>,
    /// No usable answer: timeout, connection failure, unparseable response, or a 5xx.
    pub transport: bool,
    pub message: String,
}

fn context(error: &(dyn StdError + 'static)) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(error).to_string()
}

pub(crate) fn describe<E>(error: &aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let server_fault = matches!(
                code.as_deref(),
                Some("InternalServerException" | "InternalFailure" | "ServiceUnavailable" | "InternalError")
            ) || service.raw().status().is_server_error();
            // The code and the service's own message; the full context (raw response
            // included) stays reachable through the error's source.
            let message = format!(
                "{}: {}",
                code.as_deref().unwrap_or("UnknownError"),
                service.err().message().unwrap_or("no message")
            );
            Failure {
                code,
                transport: server_fault,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => Failure {
            code: None,
            transport: false,
            message: context(error),
        },
        _ => Failure {
            code: None,
            transport: true,
            message: context(error),
        },
    }
}

/// The AgentCore client without SDK-level retries: warmups retry themselves, with jitter and
/// within the function's deadline, and must see each throttle to count and pace it; stops
/// retry themselves with one client token ([`crate::stop::stop_until_gone`]).
pub fn agentcore_client(sdk: &aws_config::SdkConfig) -> aws_sdk_bedrockagentcore::Client {
    let config = aws_sdk_bedrockagentcore::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockagentcore::Client::from_conf(config)
}
