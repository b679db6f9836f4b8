//! The Lambda contract of an SQS event source: the event (the fields we read) and the
//! partial batch response (`ReportBatchItemFailures`).
//!
//! Our own five-field types rather than `aws_lambda_events` (docs/decisions/0053): a record
//! without a body parses in both, but there `messageId` is optional too, and a record without
//! one cannot be reported as failed, so it would be deleted with the successes. Here it fails
//! the whole event, which SQS redelivers and finally moves to the dead-letter queue: nothing
//! is lost. And the invoker links no crate of every Lambda event for four structs.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    /// Always set by SQS; the identifier a failure is reported under.
    pub message_id: String,
    #[serde(default)]
    pub receipt_handle: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `ApproximateReceiveCount`, `SentTimestamp`, ...
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    #[serde(default, rename = "eventSource")]
    pub event_source: String,
    #[serde(default, rename = "eventSourceARN")]
    pub event_source_arn: String,
}

impl SqsRecord {
    /// How many times SQS has delivered this message, this delivery included (1 if unknown).
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }
}

/// `{"batchItemFailures":[{"itemIdentifier":"<messageId>"}]}`: the records SQS keeps; every
/// other record of the batch is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_event_parses_with_its_receive_counts() {
        let event: SqsEvent = serde_json::from_str(include_str!("../../../../events/invoker-sqs.json")).unwrap();
        assert_eq!(event.records.len(), 3);
        assert_eq!(event.records[1].receive_count(), 2);
        assert!(event.records.iter().all(|r| !r.message_id.is_empty()));
    }

    #[test]
    fn a_record_without_a_body_still_parses_so_it_can_fail_alone() {
        let event: SqsEvent = serde_json::from_str(r#"{"Records":[{"messageId":"m-1"}]}"#).unwrap();
        assert_eq!(event.records[0].body, None);
        assert_eq!(event.records[0].receive_count(), 1);
    }

    #[test]
    fn the_response_has_the_shape_lambda_expects() {
        let response = SqsBatchResponse {
            batch_item_failures: vec![BatchItemFailure {
                item_identifier: "m-1".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"batchItemFailures":[{"itemIdentifier":"m-1"}]}"#
        );
    }

    #[test]
    fn a_record_without_a_body_parses_and_one_without_a_message_id_fails_the_whole_event() {
        let no_body: SqsEvent = serde_json::from_str(r#"{"Records":[{"messageId":"m-1"}]}"#).unwrap();
        assert_eq!(no_body.records[0].body, None);
        let no_id = serde_json::from_str::<SqsEvent>(r#"{"Records":[{"messageId":"m-1"},{"body":"x"}]}"#);
        assert!(
            no_id.is_err(),
            "an unreportable record must not be deleted with the rest"
        );
    }
}
