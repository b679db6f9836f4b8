//! What the tables of the local stack share: key and index definitions, and the protection
//! (TTL on `expiresAt`, point-in-time recovery) a table gets when it is created.

use super::batches::setup_error;
use crate::error::Error;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::{CreateTableError, CreateTableOutput};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, Error> {
    result.map_err(|e| Error::Setup {
        operation: "CreateTable",
        message: e.to_string(),
    })
}

pub(super) fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, Error> {
    built(KeySchemaElement::builder().attribute_name(name).key_type(kind).build())
}

pub(super) fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, Error> {
    built(
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build(),
    )
}

/// A global secondary index on (`hash`, `range`) projecting every attribute, so its readers
/// need no second read.
pub(super) fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, Error> {
    built(
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key(range, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build(),
    )
}

/// A table CreateTable just made gets its protection; one that exists already is kept as it is
/// (setup runs again with the same name).
pub(super) async fn protect_if_created(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    created: Result<CreateTableOutput, SdkError<CreateTableError>>,
) -> Result<(), Error> {
    match created {
        Ok(_) => protect_table(dynamodb, table).await,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(error) => Err(setup_error("CreateTable")(error)),
    }
}

/// TTL on `expiresAt` and point-in-time recovery, as the template sets them.
async fn protect_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), Error> {
    dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(true)
                .build()
                .map_err(|e| Error::Setup {
                    operation: "UpdateTimeToLive",
                    message: e.to_string(),
                })?,
        )
        .send()
        .await
        .map_err(setup_error("UpdateTimeToLive"))?;
    dynamodb
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(|e| Error::Setup {
                    operation: "UpdateContinuousBackups",
                    message: e.to_string(),
                })?,
        )
        .send()
        .await
        .map_err(setup_error("UpdateContinuousBackups"))?;
    Ok(())
}
