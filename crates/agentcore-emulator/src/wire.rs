//! The AgentCore Runtime data-plane wire format as `aws-sdk-bedrockagentcore` speaks it: the
//! session header, what a valid session ID and runtime ARN look like, and restJson1 errors
//! (`x-amzn-errortype` header plus `{"message"}` body, which the SDK turns into typed errors by
//! name, whatever the status code).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use warmpool_core::session::SESSION_HEADER;

use crate::lifecycle::{Rejection, StopRejection};

const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// Length bounds of `runtimeSessionId` in the service model.
const SESSION_ID_LEN: std::ops::RangeInclusive<usize> = 33..=256;

/// The modelled errors the emulator answers with. Names are the SDK's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Validation,
    ResourceNotFound,
    Throttling,
    ServiceQuotaExceeded,
    InternalServer,
    RuntimeClient,
    UnknownOperation,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::Throttling => "ThrottlingException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::InternalServer => "InternalServerException",
            Self::RuntimeClient => "RuntimeClientError",
            Self::UnknownOperation => "UnknownOperationException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Validation => StatusCode::BAD_REQUEST,
            Self::ResourceNotFound | Self::UnknownOperation => StatusCode::NOT_FOUND,
            Self::Throttling => StatusCode::TOO_MANY_REQUESTS,
            // AgentCore documents 402 for this quota; the SDK matches on the name anyway.
            Self::ServiceQuotaExceeded => StatusCode::PAYMENT_REQUIRED,
            Self::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RuntimeClient => StatusCode::FAILED_DEPENDENCY,
        }
    }
}

/// An error response in the service's own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
}

impl From<Rejection> for ServiceError {
    fn from(rejection: Rejection) -> Self {
        let kind = match rejection {
            Rejection::Throttled => ErrorKind::Throttling,
            Rejection::QuotaExceeded { .. } => ErrorKind::ServiceQuotaExceeded,
            Rejection::InternalError => ErrorKind::InternalServer,
            Rejection::Crashed { .. } => ErrorKind::RuntimeClient,
            Rejection::SessionNotFound => ErrorKind::ResourceNotFound,
        };
        Self::new(kind, rejection.to_string())
    }
}

impl From<StopRejection> for ServiceError {
    fn from(rejection: StopRejection) -> Self {
        let kind = match rejection {
            StopRejection::Throttled => ErrorKind::Throttling,
            StopRejection::InternalError => ErrorKind::InternalServer,
            StopRejection::SessionNotFound => ErrorKind::ResourceNotFound,
        };
        Self::new(kind, rejection.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { message: &self.message }).unwrap_or_default();
        (
            self.kind.status(),
            [
                (header::CONTENT_TYPE, "application/json"),
                (HeaderName::from_static(ERROR_TYPE_HEADER), self.kind.code()),
            ],
            body,
        )
            .into_response()
    }
}

/// The session ID of a request, which the service requires to be present and well sized.
pub fn session_id(headers: &HeaderMap) -> Result<String, ServiceError> {
    let value = headers
        .get(SESSION_HEADER)
        .ok_or_else(|| ServiceError::validation("runtimeSessionId is required"))?;
    let id = value
        .to_str()
        .map_err(|_| ServiceError::validation("runtimeSessionId must be printable ASCII"))?;
    let len = id.chars().count();
    if !SESSION_ID_LEN.contains(&len) {
        return Err(ServiceError::validation(format!(
            "runtimeSessionId must be {}..={} characters, got {len}",
            SESSION_ID_LEN.start(),
            SESSION_ID_LEN.end()
        )));
    }
    Ok(id.to_owned())
}

pub fn session_header_value(session_id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(session_id).ok()
}

/// Accepts `arn:<aws partition>:bedrock-agentcore:<region>:<12-digit account>:runtime/<id>`.
pub fn validate_runtime_arn(arn: &str) -> Result<(), ServiceError> {
    let invalid = || ServiceError::validation(format!("{arn:?} is not an agent runtime ARN"));
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("bedrock-agentcore"), Some(region), Some(account)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let resource = parts.next().unwrap_or_default();
    let runtime_id = resource.strip_prefix("runtime/").unwrap_or_default();
    let well_formed = partition.starts_with("aws")
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !runtime_id.is_empty()
        && runtime_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed { Ok(()) } else { Err(invalid()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_arns_must_name_a_bedrock_agentcore_runtime() {
        for ok in [
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/my_agent-Ab12",
            "arn:aws-us-gov:bedrock-agentcore:us-gov-west-1:123456789012:runtime/a",
        ] {
            assert_eq!(validate_runtime_arn(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "my-agent",
            "arn:aws:bedrock:us-east-1:123456789012:runtime/a",
            "arn:aws:bedrock-agentcore:us-east-1:1234:runtime/a",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/a",
            "arn:aws:bedrock-agentcore::123456789012:runtime/a",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a/b",
        ] {
            assert!(validate_runtime_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_ids_must_be_33_to_256_characters() {
        let headers = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(SESSION_HEADER, HeaderValue::from_str(id).unwrap());
            h
        };
        assert!(session_id(&HeaderMap::new()).is_err());
        assert!(session_id(&headers(&"x".repeat(32))).is_err());
        assert!(session_id(&headers(&"x".repeat(33))).is_ok());
        assert!(session_id(&headers(&"x".repeat(256))).is_ok());
        assert!(session_id(&headers(&"x".repeat(257))).is_err());
    }
}
