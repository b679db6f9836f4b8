//! Sending to the batch path's SQS standard queues (batch, results, failure).

use super::sqs::{queue_error, whole_seconds};
use crate::batch::ports::MessageSink;
use crate::error::QueueError;
use aws_sdk_sqs::Client;
use std::time::Duration;

/// SQS's longest message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
pub struct SqsMessageSink {
    client: Client,
    queue_url: String,
}

impl SqsMessageSink {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl MessageSink for SqsMessageSink {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        let delay_secs = whole_seconds(delay.min(MAX_DELAY));
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs)
            .send()
            .await
            .map_err(|error| queue_error("send", error))?;
        Ok(())
    }
}
