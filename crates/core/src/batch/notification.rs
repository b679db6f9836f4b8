//! What arrives on the batch queue, classified: S3 event notifications for manifests,
//! direct requests, and S3's test event. Anything else is malformed, with a reason.

use super::message::BatchRequest;
use super::{BatchId, INCOMING_PREFIX, MANIFEST_NAME, ObjectRef};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// One or more `incoming/<batchId>/manifest.json` objects were created.
    Manifests(Vec<ManifestCreated>),
    Request(BatchRequest),
    /// S3 sends `s3:TestEvent` when a notification is configured; nothing to do.
    TestEvent,
    /// An S3 notification about objects that are not manifests (e.g. a too-wide filter).
    Ignored {
        keys: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestCreated {
    pub batch_id: BatchId,
    pub manifest: ObjectRef,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedRecord(pub String);

#[derive(Debug, Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_source: String,
    #[serde(default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Debug, Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct S3Object {
    key: String,
}

/// Classifies one SQS message body.
pub fn classify(body: &str) -> Result<Incoming, MalformedRecord> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| MalformedRecord(format!("message body is not JSON: {e}")))?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Incoming::TestEvent);
    }
    if value.get("Records").is_some() {
        return from_notification(value);
    }
    if value.get("v").is_some() {
        return BatchRequest::parse(value)
            .map(Incoming::Request)
            .map_err(|e| MalformedRecord(e.to_string()));
    }
    Err(MalformedRecord(
        "message is neither an S3 event notification nor a v1 batch request".into(),
    ))
}

fn from_notification(value: Value) -> Result<Incoming, MalformedRecord> {
    let notification: S3Notification =
        serde_json::from_value(value).map_err(|e| MalformedRecord(format!("malformed S3 event notification: {e}")))?;
    let mut manifests = Vec::new();
    let mut ignored = Vec::new();
    for record in notification.records {
        if record.event_source != "aws:s3" || !record.event_name.starts_with("ObjectCreated:") {
            ignored.push(format!("{} {}", record.event_name, record.s3.object.key));
            continue;
        }
        let key = decode_key(&record.s3.object.key)?;
        match manifest_batch_id(&key)? {
            Some(batch_id) => manifests.push(ManifestCreated {
                batch_id,
                manifest: ObjectRef::new(record.s3.bucket.name, key),
            }),
            None => ignored.push(key),
        }
    }
    if manifests.is_empty() {
        Ok(Incoming::Ignored { keys: ignored })
    } else {
        Ok(Incoming::Manifests(manifests))
    }
}

/// S3 event keys are URL-encoded the way HTML forms are: `+` for a space, `%XX` for the rest.
pub fn decode_key(raw: &str) -> Result<String, MalformedRecord> {
    let spaced = raw.replace('+', " ");
    percent_decode(&spaced).ok_or_else(|| MalformedRecord(format!("object key {raw:?} is not valid URL-encoded UTF-8")))
}

/// `None` for a `%` not followed by two hex digits (the decoder would pass those through
/// unchanged, and a key S3 sent that way is not what it seems) or for bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let malformed = raw.split('%').skip(1).any(|rest| {
        !rest
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// `incoming/<batchId>/manifest.json` names a batch; any other key named `manifest.json` is a
/// mistake worth a DLQ entry; keys of other names are not manifests at all.
fn manifest_batch_id(key: &str) -> Result<Option<BatchId>, MalformedRecord> {
    if key.rsplit('/').next() != Some(MANIFEST_NAME) {
        return Ok(None);
    }
    let misplaced = || {
        MalformedRecord(format!(
            "manifest key {key:?} is not {INCOMING_PREFIX}<batchId>/{MANIFEST_NAME}"
        ))
    };
    let middle = key
        .strip_prefix(INCOMING_PREFIX)
        .and_then(|rest| rest.strip_suffix(MANIFEST_NAME))
        .and_then(|rest| rest.strip_suffix('/'))
        .ok_or_else(misplaced)?;
    BatchId::parse(middle).map(Some).map_err(|_| misplaced())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(key: &str) -> String {
        json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"docs"},"object":{"key":key,"size":10}}}]})
        .to_string()
    }

    #[test]
    fn a_manifest_notification_names_its_batch_with_the_key_url_decoded() {
        let incoming = classify(&notification("incoming%2Fcase-1%2Fmanifest.json")).unwrap();
        assert_eq!(
            incoming,
            Incoming::Manifests(vec![ManifestCreated {
                batch_id: BatchId::parse("case-1").unwrap(),
                manifest: ObjectRef::new("docs", "incoming/case-1/manifest.json"),
            }])
        );
    }

    #[test]
    fn plus_signs_and_percent_escapes_in_keys_are_decoded() {
        assert_eq!(
            decode_key("incoming/a+b/r%C3%A9sum%C3%A9.txt").unwrap(),
            "incoming/a b/résumé.txt"
        );
        assert!(decode_key("bad%zz").is_err());
        assert!(decode_key("cut%4").is_err());
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn the_s3_test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00Z","Bucket":"docs"}"#;
        assert_eq!(classify(body).unwrap(), Incoming::TestEvent);
    }

    #[test]
    fn notifications_for_documents_are_ignored_but_misplaced_manifests_are_malformed() {
        assert!(matches!(
            classify(&notification("incoming/case-1/a.txt")).unwrap(),
            Incoming::Ignored { .. }
        ));
        for key in [
            "manifest.json",
            "incoming/manifest.json",
            "incoming/a/b/manifest.json",
            "other/case-1/manifest.json",
            "incoming/..%2F/manifest.json",
        ] {
            assert!(classify(&notification(key)).is_err(), "{key}");
        }
    }

    #[test]
    fn bodies_that_are_not_json_or_of_no_known_kind_are_malformed_with_a_reason() {
        let error = classify("hello").unwrap_err();
        assert!(error.0.contains("not JSON"), "{error}");
        let error = classify(r#"{"hello":"world"}"#).unwrap_err();
        assert!(error.0.contains("neither"), "{error}");
        assert!(classify(r#"{"Records":"nope"}"#).unwrap_err().0.contains("S3 event"));
    }

    #[test]
    fn a_direct_request_is_recognised_by_its_version_field() {
        let body = r#"{"v":1,"batchId":"c","documents":["s3://docs/incoming/c/a"],"attempt":1}"#;
        assert!(matches!(classify(body).unwrap(), Incoming::Request(_)));
    }
}
