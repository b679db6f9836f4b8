//! What every SDK adapter shares: the configuration, and what a failed call says.

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
