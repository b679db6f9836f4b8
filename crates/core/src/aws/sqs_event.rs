//! The Lambda contract of an SQS event source: the event (the fields we read) and the
//! partial batch response (`ReportBatchItemFailures`).
//!
//! Small types of our own rather than a crate of every Lambda event: a record without a body
//! still parses, so it fails alone instead of failing the whole event.

use super::describe;
use crate::batch::ports::Redelivery;
use crate::error::{QueueError, QueueErrorKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

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

/// Redelivery of a record through ChangeMessageVisibility on the queue it came from. Lambda's
/// event source leaves a failed record's visibility as the function set it, so a record that
/// failed for a passing reason (no pooled session yet) comes back after seconds instead of the
/// queue's visibility timeout.
#[derive(Debug, Clone)]
pub struct SqsRedelivery {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRedelivery {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Redelivery for SqsRedelivery {
    async fn redeliver_after(&self, receipt: &str, after: Duration) -> Result<(), QueueError> {
        let secs = i32::try_from(after.min(MAX_VISIBILITY).as_secs()).unwrap_or(0);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|error| {
                let failure = describe(&error);
                let kind = match failure.code.as_deref() {
                    Some("ReceiptHandleIsInvalid" | "MessageNotInflight") => QueueErrorKind::ReceiptInvalid,
                    _ if failure.transport => QueueErrorKind::Transport,
                    _ => QueueErrorKind::Rejected,
                };
                QueueError {
                    operation: "change_message_visibility",
                    kind,
                    message: failure.message,
                    source: Some(Box::new(error)),
                }
            })?;
        Ok(())
    }
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
}
