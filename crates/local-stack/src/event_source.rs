//! A local stand-in for Lambda's SQS event source mapping (`warmpool local pump`), and the
//! tests' way to drive the invoker: receive up to ten messages, hand them to the function as
//! one SQS event, delete the records it did not report in `batchItemFailures`, and return the
//! others to the queue.
//!
//! Two deliberate differences from Lambda, both for speed: a failed record becomes visible
//! again after `retry_after` instead of the queue's visibility timeout, and a function error
//! returns the whole batch the same way. Receive counts, redrive to the DLQ and the record
//! format are SQS's own.

use crate::error::{Error, sqs_error};
use crate::relay::DispatchFuture;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warmpool_core::aws::sqs_event::{SqsBatchResponse, SqsEvent, SqsRecord};

/// Runs the function on one serialized SQS event; `Err` is a function error.
pub type EventDispatch = Arc<dyn Fn(Vec<u8>) -> DispatchFuture + Send + Sync>;

#[derive(Debug, Clone)]
pub struct EventSource {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    /// Messages per event, 1..=10.
    pub batch_size: i32,
    /// Long-poll wait of each receive.
    pub wait: Duration,
    /// How long received messages stay hidden; bounds the function's run.
    pub visibility: Duration,
    pub retry_after: Duration,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub deleted: usize,
    pub returned: usize,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl EventSource {
    /// One receive, one invocation with what it received, then each record deleted or
    /// returned to the queue as the function's answer says.
    pub async fn poll_once(&self, dispatch: &EventDispatch) -> Result<PollReport, Error> {
        let records = self.receive().await?;
        if records.is_empty() {
            return Ok(PollReport::default());
        }
        let event = serde_json::to_vec(&SqsEvent {
            records: records.clone(),
        })
        .unwrap_or_default();
        let answer = tokio::time::timeout(self.visibility, dispatch(event)).await;
        let failed = match answer {
            Ok(answer) => failed_records(answer, &records),
            Err(_) => records.iter().map(|r| r.message_id.clone()).collect(),
        };
        let (retry, done): (Vec<&SqsRecord>, Vec<&SqsRecord>) =
            records.iter().partition(|r| failed.contains(&r.message_id));
        self.delete(&done).await?;
        self.return_soon(&retry).await;
        Ok(PollReport {
            received: records.len(),
            deleted: done.len(),
            returned: retry.len(),
        })
    }

    /// Up to `batch_size` messages as SQS event records.
    async fn receive(&self) -> Result<Vec<SqsRecord>, Error> {
        let messages = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size.clamp(1, 10))
            .wait_time_seconds(secs(self.wait).min(20))
            .visibility_timeout(secs(self.visibility))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(sqs_error("ReceiveMessage"))?
            .messages
            .unwrap_or_default();
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                Some(SqsRecord {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body,
                    attributes: m
                        .attributes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k.as_str().to_string(), v))
                        .collect(),
                    event_source: "aws:sqs".into(),
                    event_source_arn: self.queue_arn.clone(),
                })
            })
            .collect())
    }

    async fn delete(&self, done: &[&SqsRecord]) -> Result<(), Error> {
        if done.is_empty() {
            return Ok(());
        }
        let entries = done
            .iter()
            .enumerate()
            .filter_map(|(n, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(&r.receipt_handle)
                    .build()
                    .ok()
            })
            .collect();
        self.sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error("DeleteMessageBatch"))?;
        Ok(())
    }

    /// Best effort: a record whose change fails comes back at its visibility timeout.
    async fn return_soon(&self, retry: &[&SqsRecord]) {
        for record in retry {
            let _ = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(&record.receipt_handle)
                .visibility_timeout(secs(self.retry_after))
                .send()
                .await;
        }
    }

    /// Polls with `pollers` concurrent loops until the handle is dropped.
    pub fn spawn(self, dispatch: EventDispatch, pollers: usize) -> RunningEventSource {
        let stats = Arc::new(EventSourceStats::default());
        let source = Arc::new(self);
        let tasks = (0..pollers.max(1))
            .map(|_| {
                let (source, dispatch, stats) = (source.clone(), dispatch.clone(), stats.clone());
                tokio::spawn(async move {
                    loop {
                        match source.poll_once(&dispatch).await {
                            Ok(report) => stats.add(&report),
                            Err(error) => {
                                stats.errors.fetch_add(1, Ordering::SeqCst);
                                tracing::warn!(%error, "event source poll failed");
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        RunningEventSource { tasks, stats }
    }
}

/// The message IDs the function's answer (or error) sends back to the queue.
fn failed_records(answer: Result<Vec<u8>, String>, records: &[SqsRecord]) -> HashSet<String> {
    let all = || records.iter().map(|r| r.message_id.clone()).collect();
    match answer {
        Ok(body) if body.is_empty() || body == b"null" => HashSet::new(),
        Ok(body) => match serde_json::from_slice::<SqsBatchResponse>(&body) {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            // An answer Lambda could not read fails the whole batch, as Lambda does.
            Err(_) => all(),
        },
        Err(error) => {
            tracing::warn!(%error, "function error; returning the batch to the queue");
            all()
        }
    }
}

#[derive(Debug, Default)]
pub struct EventSourceStats {
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub returned: AtomicU64,
    pub errors: AtomicU64,
}

impl EventSourceStats {
    fn add(&self, report: &PollReport) {
        self.received.fetch_add(report.received as u64, Ordering::SeqCst);
        self.deleted.fetch_add(report.deleted as u64, Ordering::SeqCst);
        self.returned.fetch_add(report.returned as u64, Ordering::SeqCst);
    }
}

/// Stops polling when dropped.
pub struct RunningEventSource {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub stats: Arc<EventSourceStats>,
}

impl Drop for RunningEventSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// An EventBridge scheduled event, as the detector receives it.
pub fn scheduled_event(rule: &str, now_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": format!("@{}", now_ms / 1000),
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")],
        "detail": {}
    })
}
