//! The agent the emulator answers with when no real one is configured: enough of the
//! contract to warm sessions and see which session served a request.

use axum::body::Bytes;
use serde_json::{Value, json};

use super::{AgentReply, DEFAULT_CONTENT_TYPE};

const JSON: &str = "application/json";

/// `{"type":"warmup"}` is answered without work, as the reference agent must; other JSON is
/// echoed with the session ID; anything else is echoed byte for byte.
pub(super) fn respond(session_id: &str, content_type: Option<&str>, payload: &[u8]) -> AgentReply {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return AgentReply {
            content_type: content_type.unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
            body: Bytes::copy_from_slice(payload),
        };
    };
    let reply = if value.get("type").and_then(Value::as_str) == Some("warmup") {
        json!({ "status": "warm" })
    } else {
        json!({ "echo": value, "sessionId": session_id })
    };
    AgentReply {
        content_type: JSON.to_owned(),
        body: Bytes::from(reply.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "session-0000000000000000000000000001";

    fn body_json(reply: &AgentReply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn warmup_is_answered_without_echoing_the_payload() {
        let reply = respond(ID, Some(JSON), br#"{"type":"warmup"}"#);
        assert_eq!(body_json(&reply), json!({"status": "warm"}));
        assert_eq!(reply.content_type, JSON);
    }

    #[test]
    fn json_is_echoed_with_the_session_id() {
        let reply = respond(ID, Some(JSON), br#"{"prompt":"hi"}"#);
        assert_eq!(body_json(&reply), json!({"echo": {"prompt": "hi"}, "sessionId": ID}));
    }

    #[test]
    fn non_json_is_echoed_byte_for_byte() {
        let reply = respond(ID, Some("text/plain"), b"\xffhello");
        assert_eq!(reply.body.as_ref(), b"\xffhello");
        assert_eq!(reply.content_type, "text/plain");
    }
}
