//! `warmpool local pump`: the flags and lifetime of the SQS event source
//! ([`warmpool_local_stack::event_source`]); it runs until Ctrl-C or SIGTERM and prints nothing on stdout.

use crate::cmd::QUEUE_CALLS_TIMEOUT;
use crate::cmd::local::forward_events;
use crate::error::{CliError, bounded};
use crate::ui::Ui;
use aws_sdk_sqs::types::QueueAttributeName;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use warmpool_core::aws;
use warmpool_core::process::shutdown_signal;
use warmpool_local_stack::event_source::EventSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue to feed from (the batch queue).
    #[arg(long)]
    pub queue_url: String,
    /// The function to feed (name on the Invoke API).
    #[arg(long, default_value = "invoker")]
    pub function: String,
    /// Base URL of the Invoke API (`cargo lambda watch`), on loopback.
    #[arg(long)]
    pub forward: String,
    /// Records per event, at most (SQS receives at most 10 at once).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub batch_size: u32,
    /// Concurrent pollers, like the event source's concurrency.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub pollers: u32,
    /// A failed record is visible again after this many seconds.
    #[arg(long, default_value_t = 2)]
    pub retry_after_secs: u64,
    /// How long a received record stays hidden while the function runs, in seconds.
    #[arg(long, default_value_t = 180)]
    pub visibility_timeout_secs: u64,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let dispatch = forward_events(&self.forward, self.function.clone())?;
        let batch_size = i32::try_from(self.batch_size).map_err(|_| CliError::invalid("--batch-size", "at most 10"))?;
        let sdk = aws::load_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_arn = bounded("GetQueueAttributes", QUEUE_CALLS_TIMEOUT, async {
            sqs.get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(warmpool_local_stack::error::sqs_error("GetQueueAttributes"))
        })
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
        let source = EventSource {
            sqs,
            queue_arn,
            queue_url: self.queue_url,
            batch_size,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(self.visibility_timeout_secs.max(1)),
            retry_after: Duration::from_secs(self.retry_after_secs),
        };
        let running = source.spawn(dispatch, self.pollers as usize);
        ui.note(format!("pumping into {} with {} pollers", self.function, self.pollers));
        shutdown_signal().await;
        ui.note(format!(
            "pump: {} records received, {} deleted, {} returned, {} poll errors",
            running.stats.received.load(SeqCst),
            running.stats.deleted.load(SeqCst),
            running.stats.returned.load(SeqCst),
            running.stats.errors.load(SeqCst)
        ));
        Ok(())
    }
}
