//! Adapters from the ports to AWS services, through the official SDK clients.
//!
//! Endpoints come from the standard SDK configuration, so the same code talks to AWS or to the
//! local stack (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE`, ...).

#[cfg(feature = "agentcore")]
mod agentcore;
#[cfg(feature = "agentcore-control")]
mod agentcore_control;
#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "lambda")]
mod lambda;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "sdk")]
mod sdk;
#[cfg(feature = "sqs")]
mod sqs;
pub mod sqs_event;
#[cfg(feature = "sqs")]
mod sqs_sink;

#[cfg(feature = "agentcore")]
pub use agentcore::{AgentCoreRuntime, agentcore_client};
#[cfg(feature = "agentcore-control")]
pub use agentcore_control::{AgentCoreEndpointVersion, agentcore_control_client, runtime_id_of};
#[cfg(feature = "dynamodb")]
pub use dynamodb::lease::{AUDIT_BY_SESSION_INDEX, DynamoLeaseTable, LEASES_DUE_INDEX};
#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoTrackingTable, RUNNING_INDEX, running_shard};
#[cfg(feature = "lambda")]
pub use lambda::LambdaReplenishTrigger;
#[cfg(feature = "s3")]
pub use s3::{S3DocumentStore, s3_client};
#[cfg(feature = "sqs")]
pub use sqs::{SqsPoolQueue, SqsRedelivery};
#[cfg(feature = "sqs")]
pub use sqs_sink::SqsMessageSink;

#[cfg(feature = "sdk")]
pub use sdk::load_config;
