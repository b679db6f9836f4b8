//! Claiming a session the way an application does: a synchronous `lambda:Invoke` of
//! get-session, and reading its answer or its function error.

use crate::error::{CliError, sdk_message};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::lease::UserId;
use warmpool_core::pool::claim::ClaimedSession;

/// The error body a Lambda runtime reports: `{"errorType","errorMessage"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionErrorBody {
    error_type: Option<String>,
    error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GetSessionClient {
    lambda: aws_sdk_lambda::Client,
    function: String,
    timeout: Duration,
}

impl GetSessionClient {
    pub fn new(lambda: aws_sdk_lambda::Client, function: impl Into<String>, timeout: Duration) -> Self {
        Self {
            lambda,
            function: function.into(),
            timeout,
        }
    }

    /// Claims one session and measures the claim as the caller sees it (invoke round trip).
    pub async fn claim(&self) -> Result<(ClaimedSession, Duration), CliError> {
        self.claim_for(None).await
    }

    /// [`Self::claim`] as `user` (`{"userId"}`: their live session, on a pool with leases).
    pub async fn claim_for(&self, user: Option<&UserId>) -> Result<(ClaimedSession, Duration), CliError> {
        let request = match user {
            Some(user) => serde_json::json!({ "userId": user }),
            None => serde_json::json!({}),
        };
        let started = Instant::now();
        let send = self
            .lambda
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(request.to_string()))
            .send();
        let output = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| CliError::TimedOut {
                what: "get-session invoke",
                after: self.timeout,
            })?
            .map_err(|error| CliError::LambdaInvoke {
                function: self.function.clone(),
                message: sdk_message(&error),
                source: Some(Box::new(error)),
            })?;
        let elapsed = started.elapsed();
        let payload = output.payload.as_ref().map(|b| b.as_ref()).unwrap_or_default();
        let answer = parse_answer(&self.function, output.function_error.as_deref(), payload)?;
        Ok((answer, elapsed))
    }
}

/// Reads an invoke's result: the function error if `X-Amz-Function-Error` was set, the claimed
/// session otherwise (get-session's answer, read with its own type).
pub fn parse_answer(function: &str, function_error: Option<&str>, payload: &[u8]) -> Result<ClaimedSession, CliError> {
    if let Some(kind) = function_error {
        let body: Option<FunctionErrorBody> = serde_json::from_slice(payload).ok();
        let error_type = body
            .as_ref()
            .and_then(|b| b.error_type.clone())
            .unwrap_or_else(|| kind.to_string());
        let message = body
            .and_then(|b| b.error_message)
            .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
        return Err(CliError::FunctionFailed {
            function: function.to_string(),
            error_type,
            message,
        });
    }
    serde_json::from_slice(payload).map_err(|e| CliError::UnexpectedAnswer {
        function: function.to_string(),
        reason: format!("{e} in {}", String::from_utf8_lossy(payload)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::pool::claim::Source;

    const ID: &str = "0f0e8a4c-5a0e-4d8f-9a7d-2c1b3e4f5a6b";

    #[test]
    fn a_pool_answer_is_read_in_the_documented_shape() {
        let payload = format!(r#"{{"sessionId":"{ID}","source":"pool","createdAt":10,"lastPingAt":20}}"#);
        let claimed = parse_answer("get-session", None, payload.as_bytes()).unwrap();
        assert_eq!(claimed.session_id.as_str(), ID);
        assert_eq!(claimed.source, Source::Pool);
        assert_eq!(claimed.last_ping_at, Some(20));
    }

    #[test]
    fn a_fresh_answer_has_no_ping_time() {
        let payload = format!(r#"{{"sessionId":"{ID}","source":"fresh","createdAt":10,"lastPingAt":null}}"#);
        let claimed = parse_answer("get-session", None, payload.as_bytes()).unwrap();
        assert_eq!((claimed.source, claimed.last_ping_at), (Source::Fresh, None));
    }

    #[test]
    fn a_function_error_reports_the_functions_error_type_and_message() {
        let payload = br#"{"errorType":"PoolEmpty","errorMessage":"no warm session in the pool"}"#;
        let error = parse_answer("get-session", Some("Unhandled"), payload).unwrap_err();
        assert_eq!(
            error.to_string(),
            "function get-session failed with PoolEmpty: no warm session in the pool"
        );
    }

    #[test]
    fn a_function_error_without_a_json_body_still_says_what_happened() {
        let error = parse_answer("get-session", Some("Unhandled"), b"process exited").unwrap_err();
        assert_eq!(
            error.to_string(),
            "function get-session failed with Unhandled: process exited"
        );
    }

    #[test]
    fn an_answer_with_an_invalid_session_id_is_refused() {
        let payload = br#"{"sessionId":"short","source":"pool","createdAt":1,"lastPingAt":1}"#;
        assert!(matches!(
            parse_answer("get-session", None, payload),
            Err(CliError::UnexpectedAnswer { .. })
        ));
    }
}
