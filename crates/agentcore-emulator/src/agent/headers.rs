//! Which request headers reach the agent, as the AgentCore container contract passes them: the
//! session ID, a request ID of the emulator's own, the content negotiation and trace headers
//! the InvokeAgentRuntime operation carries, the user ID and MCP headers, and custom
//! `X-Amzn-Bedrock-AgentCore-Runtime-Custom-*` headers. The caller's SigV4 `Authorization`
//! and every other `x-amz*` header stay at the service, as they do in AgentCore.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use warmpool_core::session::SESSION_HEADER;

pub(crate) const REQUEST_ID_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-request-id";
const CUSTOM_PREFIX: &str = "x-amzn-bedrock-agentcore-runtime-custom-";
const PASSED: [&str; 9] = [
    "content-type",
    "accept",
    "x-amzn-bedrock-agentcore-runtime-user-id",
    "x-amzn-trace-id",
    "traceparent",
    "tracestate",
    "baggage",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// The headers for the agent's `POST /invocations`.
pub(crate) fn forwarded(incoming: &HeaderMap, session_id: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        if PASSED.contains(&name.as_str()) || name.as_str().starts_with(CUSTOM_PREFIX) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(session_id) {
        out.insert(HeaderName::from_static(SESSION_HEADER), value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id()) {
        out.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    out
}

/// A random UUID-shaped ID. Drawn from the thread's RNG, not the model's seeded one, so that
/// forwarding does not shift the model's reproducible draws.
fn request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_headers_pass_and_the_callers_credentials_do_not() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-amzn-trace-id", "Root=1-abc"),
            ("traceparent", "00-abc-def-01"),
            ("x-amzn-bedrock-agentcore-runtime-custom-tenant", "t1"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=..."),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-security-token", "secret"),
            (SESSION_HEADER, "spoofed-by-caller"),
        ] {
            incoming.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let out = forwarded(&incoming, "the-session-id-00000000000000000000");
        assert_eq!(out[SESSION_HEADER], "the-session-id-00000000000000000000");
        assert_eq!(out["x-amzn-bedrock-agentcore-runtime-custom-tenant"], "t1");
        assert_eq!(out["traceparent"], "00-abc-def-01");
        assert_eq!(out["accept"], "application/json");
        for absent in ["authorization", "x-amz-date", "x-amz-security-token"] {
            assert!(!out.contains_key(absent), "{absent} reached the agent");
        }
        assert_eq!(out[REQUEST_ID_HEADER].len(), 36);
    }
}
