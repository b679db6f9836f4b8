//! The pool queue on SQS FIFO.

use super::sdk::describe;
use crate::batch::ports::Redelivery;
use crate::error::{QueueError, QueueErrorKind};
use crate::ports::{PoolDepth, PoolMaintenance, PoolQueue, Received};
use crate::session::PooledSession;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SqsPoolQueue {
    client: Client,
    queue_url: String,
}

impl SqsPoolQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

pub(super) fn queue_error<E>(
    operation: &'static str,
    error: aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>,
) -> QueueError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = describe(&error);
    let kind = match failure.code.as_deref() {
        _ if failure.transport => QueueErrorKind::Transport,
        Some(code) if code.contains("Throttl") => QueueErrorKind::Throttled,
        // FIFO refuses a receipt handle past its visibility timeout with either code.
        // A record whose visibility already ended answers MessageNotInflight.
        Some(
            "ReceiptHandleIsInvalid"
            | "InvalidParameterValue"
            | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
            | "MessageNotInflight",
        ) => QueueErrorKind::ReceiptInvalid,
        _ => QueueErrorKind::Rejected,
    };
    QueueError {
        operation,
        kind,
        message: failure.message,
        source: Some(Box::new(error)),
    }
}

/// Whole seconds as the SQS API takes them, saturating.
pub(super) fn whole_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl PoolQueue for SqsPoolQueue {
    async fn receive(&self, max: u8, wait: Duration, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(whole_seconds(wait).min(20))
            .visibility_timeout(whole_seconds(visibility))
            .send()
            .await
            .map_err(|e| queue_error("receive", e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Received {
                    message_id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| queue_error("delete", e))?;
        Ok(())
    }

    async fn enqueue(&self, session: &PooledSession) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(session.to_body())
            .message_group_id(session.message_group_id())
            .message_deduplication_id(session.deduplication_id())
            .send()
            .await
            .map_err(|e| queue_error("enqueue", e))?;
        Ok(())
    }

    async fn depth(&self) -> Result<PoolDepth, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| queue_error("depth", e))?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: &QueueAttributeName| attributes.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(PoolDepth {
            visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}

impl PoolMaintenance for SqsPoolQueue {
    async fn release(&self, receipts: &[String]) -> Result<u32, QueueError> {
        let mut not_ours = 0;
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| QueueError::new("release", QueueErrorKind::Rejected, e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| queue_error("release", e))?;
            not_ours += u32::try_from(output.failed.len()).unwrap_or(u32::MAX);
        }
        Ok(not_ours)
    }

    async fn oldest_sent_at(&self, max: u8) -> Result<Option<u64>, QueueError> {
        // Visibility 0: a look that hides nothing, so claims are never held up by it.
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(0)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| queue_error("oldest_sent_at", e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .iter()
            .filter_map(|m| {
                m.attributes
                    .as_ref()?
                    .get(&MessageSystemAttributeName::SentTimestamp)?
                    .parse()
                    .ok()
            })
            .min())
    }
}
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

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
        let secs = whole_seconds(after.min(MAX_VISIBILITY));
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|error| queue_error("change_message_visibility", error))?;
        Ok(())
    }
}
