//! Adapters from the ports to AWS services, through the official SDK clients.
//!
//! Endpoints come from the standard SDK configuration, so the same code talks to AWS or to the
//! local stack (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`, ...).

pub mod agentcore;
pub mod lambda;
pub mod sqs;

pub use agentcore::AgentCoreRuntime;
pub use lambda::LambdaReplenishTrigger;
pub use sqs::SqsPoolQueue;

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

pub(crate) fn describe<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let message = aws_smithy_types::error::display::DisplayErrorContext(error).to_string();
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let server_fault = matches!(
                code.as_deref(),
                Some("InternalServerException" | "InternalFailure" | "ServiceUnavailable" | "InternalError")
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
            message,
        },
        _ => Failure {
            code: None,
            transport: true,
            message,
        },
    }
}

/// The AgentCore client without SDK-level retries: warmups retry themselves, with jitter and
/// within the function's deadline, and must see each throttle to count and pace it.
pub fn agentcore_client(sdk: &aws_config::SdkConfig) -> aws_sdk_bedrockagentcore::Client {
    let config = aws_sdk_bedrockagentcore::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockagentcore::Client::from_conf(config)
}
