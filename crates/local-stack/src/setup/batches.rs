//! `warmpool local setup batches`: the batch path's resources on the local stack (or any
//! account the SDK configuration points at): the documents bucket and its notification, the
//! batch queue with its DLQ, the results and failure queues, and the tracking table with its
//! sparse running index. Re-running with the same name finds what exists.

use crate::error::{Error, sdk_message};
use crate::setup::pool::{RETENTION_SECS, create_queue};
use crate::setup::table::{attribute, index, key, protect_if_created};
use aws_sdk_dynamodb::types::{BillingMode, KeyType, ScalarAttributeType};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration,
    S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::aws::RUNNING_INDEX;
use warmpool_core::batch::{INCOMING_PREFIX, MANIFEST_NAME};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchQueueSettings {
    /// The redrive `maxReceiveCount`; give the invoker the same `MAX_RECEIVE_COUNT`.
    pub max_receive_count: u32,
    /// At least the invoker's timeout (AWS advises six times it for Lambda event sources).
    pub visibility_timeout: Duration,
}

impl Default for BatchQueueSettings {
    fn default() -> Self {
        Self {
            max_receive_count: 5,
            visibility_timeout: Duration::from_secs(180),
        }
    }
}

/// What was created, as the functions' environment expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchResources {
    pub documents_bucket: String,
    pub batch_queue_url: String,
    pub batch_queue_arn: String,
    pub batch_dlq_url: String,
    pub results_queue_url: String,
    pub failure_queue_url: String,
    pub tracking_table: String,
}

impl BatchResources {
    /// `KEY=value` lines for an env file (the variable names the functions read).
    pub fn env_lines(&self) -> String {
        self.env_pairs().iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The variables the functions read, and their values.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        [
            ("DOCUMENTS_BUCKET", &self.documents_bucket),
            ("RESULTS_BUCKET", &self.documents_bucket),
            ("BATCH_QUEUE_URL", &self.batch_queue_url),
            ("BATCH_DLQ_URL", &self.batch_dlq_url),
            ("RESULTS_QUEUE_URL", &self.results_queue_url),
            ("FAILURE_QUEUE_URL", &self.failure_queue_url),
            ("TRACKING_TABLE", &self.tracking_table),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The SDK clients setup needs.
pub struct Clients<'a> {
    pub sqs: &'a aws_sdk_sqs::Client,
    pub s3: &'a aws_sdk_s3::Client,
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
}

/// Resource names derive from `name`: S3 allows lowercase letters, digits and '-' here.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = (3..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--name",
            format!("{name:?}: expected 3..=40 of lowercase letters, digits and '-'"),
        ))
    }
}

pub(super) fn setup_error<E, R>(operation: &'static str) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |error| Error::Setup {
        operation,
        message: sdk_message(&error),
    }
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<(String, String), Error> {
    let url = create_queue(sqs, name, attributes, |message, _| Error::Setup {
        operation: "CreateQueue",
        message,
    })
    .await?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(setup_error("GetQueueAttributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| Error::Setup {
            operation: "GetQueueAttributes",
            message: format!("no ARN for {name}"),
        })?;
    Ok((url, arn))
}

pub async fn create_batch_resources(
    clients: &Clients<'_>,
    name: &str,
    settings: &BatchQueueSettings,
) -> Result<BatchResources, Error> {
    check_name(name)?;
    let retention = vec![(QueueAttributeName::MessageRetentionPeriod, RETENTION_SECS.to_string())];
    let (dlq_url, dlq_arn) = queue(clients.sqs, &format!("{name}-batches-dlq"), retention.clone()).await?;
    let bucket = format!("{name}-documents");
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let (batch_url, batch_arn) = queue(
        clients.sqs,
        &format!("{name}-batches"),
        vec![
            (
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count})
                    .to_string(),
            ),
            (
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout.as_secs().to_string(),
            ),
            (QueueAttributeName::MessageRetentionPeriod, RETENTION_SECS.to_string()),
        ],
    )
    .await?;
    // S3 may send to the batch queue, for this bucket only.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": batch_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}}
        }]
    });
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&batch_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(setup_error("SetQueueAttributes"))?;
    let (results_url, _) = queue(clients.sqs, &format!("{name}-results"), retention.clone()).await?;
    let (failure_url, _) = queue(clients.sqs, &format!("{name}-failed"), retention).await?;

    create_bucket(clients.s3, &bucket, &batch_arn).await?;
    let table = format!("{name}-batches");
    create_tracking_table(clients.dynamodb, &table).await?;
    Ok(BatchResources {
        documents_bucket: bucket,
        batch_queue_url: batch_url,
        batch_queue_arn: batch_arn,
        batch_dlq_url: dlq_url,
        results_queue_url: results_url,
        failure_queue_url: failure_url,
        tracking_table: table,
    })
}

/// The bucket, notifying the batch queue of every `incoming/**/manifest.json` created.
/// The manifest is uploaded last, so its notification is the batch's "complete" signal.
async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, queue_arn: &str) -> Result<(), Error> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(error) => return Err(setup_error("CreateBucket")(error)),
    }
    let filter = S3KeyFilter::builder()
        .filter_rules(
            FilterRule::builder()
                .name(FilterRuleName::Prefix)
                .value(INCOMING_PREFIX)
                .build(),
        )
        .filter_rules(
            FilterRule::builder()
                .name(FilterRuleName::Suffix)
                .value(format!("/{MANIFEST_NAME}"))
                .build(),
        )
        .build();
    let queue = QueueConfiguration::builder()
        .id("batch-manifests")
        .queue_arn(queue_arn)
        .events(Event::S3ObjectCreated)
        .filter(NotificationConfigurationFilter::builder().key(filter).build())
        .build()
        .map_err(|e| Error::Setup {
            operation: "PutBucketNotificationConfiguration",
            message: e.to_string(),
        })?;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue).build())
        .send()
        .await
        .map_err(setup_error("PutBucketNotificationConfiguration"))?;
    Ok(())
}

/// The tracking table: on-demand, key `batchId`, TTL on `expiresAt`, point-in-time recovery,
/// and the sparse index (`runningShard`, `deadline`) projecting every attribute so the detector
/// needs no second read.
pub async fn create_tracking_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), Error> {
    let created = dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("batchId", KeyType::Hash)?)
        .attribute_definitions(attribute("batchId", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("runningShard", ScalarAttributeType::N)?)
        .attribute_definitions(attribute("deadline", ScalarAttributeType::N)?)
        .global_secondary_indexes(index(RUNNING_INDEX, "runningShard", "deadline")?)
        .send()
        .await;
    protect_if_created(dynamodb, table, created).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_make_valid_bucket_queue_and_table_names() {
        assert!(check_name("demo-1").is_ok());
        for bad in ["", "ab", "Demo", "a_b", "-ab", "ab-", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_env_lines_name_what_the_functions_read() {
        let resources = BatchResources {
            documents_bucket: "d".into(),
            batch_queue_url: "b".into(),
            batch_queue_arn: "arn".into(),
            batch_dlq_url: "q".into(),
            results_queue_url: "r".into(),
            failure_queue_url: "f".into(),
            tracking_table: "t".into(),
        };
        let lines = resources.env_lines();
        for key in [
            "DOCUMENTS_BUCKET=d",
            "BATCH_QUEUE_URL=b",
            "TRACKING_TABLE=t",
            "FAILURE_QUEUE_URL=f",
        ] {
            assert!(lines.contains(key), "{lines}");
        }
    }
}
