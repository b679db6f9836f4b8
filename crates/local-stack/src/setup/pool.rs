//! The pool queue (`warmpool local setup pool`), with the attributes docs/architecture.md
//! requires of it. CreateQueue is idempotent for identical attributes, so re-running is safe.

use crate::error::{Error, sdk_message};
use aws_sdk_sqs::types::QueueAttributeName;
use std::time::Duration;
use warmpool_core::error::BoxError;
use warmpool_core::pool::Lifecycle;

/// SQS's longest retention (14 days): a pooled message must outlive any session it names, and
/// a batch DLQ entry a long weekend.
pub const RETENTION_SECS: u64 = 1_209_600;

/// The pool queue's attributes.
///
/// - FIFO: a standard queue may deliver a message twice, i.e. one session to two callers.
/// - High-throughput FIFO (`perMessageGroupId` + `messageGroup` scope): every session is its
///   own message group, so the pool's throughput must scale per group, not per queue.
/// - No content-based deduplication: the producers set `sessionId:lastPingAt` explicitly.
pub fn pool_queue_attributes(lifecycle: &Lifecycle) -> Result<Vec<(QueueAttributeName, String)>, Error> {
    if lifecycle.max_lifetime > Duration::from_secs(RETENTION_SECS) {
        return Err(Error::invalid(
            "SESSION_MAX_LIFETIME_SECS",
            format!(
                "{} s exceeds the longest SQS retention ({RETENTION_SECS} s)",
                lifecycle.max_lifetime.as_secs()
            ),
        ));
    }
    Ok(vec![
        (QueueAttributeName::FifoQueue, "true".into()),
        (QueueAttributeName::FifoThroughputLimit, "perMessageGroupId".into()),
        (QueueAttributeName::DeduplicationScope, "messageGroup".into()),
        (QueueAttributeName::ContentBasedDeduplication, "false".into()),
        (QueueAttributeName::MessageRetentionPeriod, RETENTION_SECS.to_string()),
    ])
}

/// SQS requires FIFO queue names to end in `.fifo` and allows 80 characters of
/// `[A-Za-z0-9_-]` plus that suffix; `pool` becomes `pool.fifo`.
pub fn fifo_queue_name(name: &str) -> Result<String, Error> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let valid_chars = base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let full = format!("{base}.fifo");
    if base.is_empty() || !valid_chars || full.len() > 80 {
        return Err(Error::invalid(
            "--pool-queue",
            format!("{name:?}: expected up to 75 characters of letters, digits, '-' and '_' (then .fifo)"),
        ));
    }
    Ok(full)
}

/// Creates (or finds, if identical) the pool queue and returns its URL.
pub async fn create_pool_queue(sqs: &aws_sdk_sqs::Client, name: &str, lifecycle: &Lifecycle) -> Result<String, Error> {
    let name = fifo_queue_name(name)?;
    create_queue(sqs, &name, pool_queue_attributes(lifecycle)?, |message, source| {
        Error::Sqs {
            operation: "CreateQueue",
            message,
            source,
        }
    })
    .await
}

/// Creates (or finds, if identical) a queue and returns its URL. `error` words a failure from
/// its message and, when SQS refused, the SDK error.
pub(crate) async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
    error: impl FnOnce(String, Option<BoxError>) -> Error,
) -> Result<String, Error> {
    let mut request = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute, value);
    }
    match request.send().await {
        Ok(output) => output
            .queue_url
            .ok_or_else(|| error(format!("no queue URL returned for {name}"), None)),
        Err(refused) => Err(error(sdk_message(&refused), Some(Box::new(refused)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_queue_is_high_throughput_fifo_without_content_deduplication() {
        let attributes = pool_queue_attributes(&Lifecycle::default()).unwrap();
        let get = |name: QueueAttributeName| attributes.iter().find(|(a, _)| *a == name).map(|(_, v)| v.as_str());
        assert_eq!(get(QueueAttributeName::FifoQueue), Some("true"));
        assert_eq!(get(QueueAttributeName::FifoThroughputLimit), Some("perMessageGroupId"));
        assert_eq!(get(QueueAttributeName::DeduplicationScope), Some("messageGroup"));
        assert_eq!(get(QueueAttributeName::ContentBasedDeduplication), Some("false"));
        assert_eq!(get(QueueAttributeName::MessageRetentionPeriod), Some("1209600"));
    }

    #[test]
    fn retention_outlasts_the_longest_session() {
        assert!(Duration::from_secs(RETENTION_SECS) >= Lifecycle::default().max_lifetime);
        let too_long = Lifecycle {
            max_lifetime: Duration::from_secs(RETENTION_SECS + 1),
            ..Lifecycle::default()
        };
        assert!(pool_queue_attributes(&too_long).is_err());
    }

    #[test]
    fn a_queue_name_gets_the_fifo_suffix_once() {
        assert_eq!(fifo_queue_name("warm-pool").unwrap(), "warm-pool.fifo");
        assert_eq!(fifo_queue_name("warm-pool.fifo").unwrap(), "warm-pool.fifo");
    }

    #[test]
    fn queue_names_sqs_would_refuse_are_refused_here() {
        for bad in ["", ".fifo", "has space", "slash/name", &"x".repeat(76)] {
            assert!(fifo_queue_name(bad).is_err(), "{bad:?}");
        }
        assert!(fifo_queue_name(&"x".repeat(75)).is_ok());
    }
}
