//! The lease table (`warmpool local up --with-leases`, the lease wire tests): on-demand, key
//! (`pk`, `sk`), TTL on `expiresAt`, point-in-time recovery, and the two indexes the code reads
//! (`leases-due` for the sweep, `audit-by-session` for `warmpool session show`), as the pool
//! template creates it.

use super::batches::{protect_table, setup_error};
use crate::error::Error;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use warmpool_core::aws::{AUDIT_BY_SESSION_INDEX, LEASES_DUE_INDEX};

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, Error> {
    result.map_err(|e| Error::Setup {
        operation: "CreateTable",
        message: e.to_string(),
    })
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, Error> {
    built(KeySchemaElement::builder().attribute_name(name).key_type(kind).build())
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, Error> {
    built(
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build(),
    )
}

fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, Error> {
    built(
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key(range, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build(),
    )
}

pub async fn create_lease_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), Error> {
    let created = dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("dueShard", ScalarAttributeType::N)?)
        .attribute_definitions(attribute("dueAt", ScalarAttributeType::N)?)
        .attribute_definitions(attribute("auditSession", ScalarAttributeType::S)?)
        .global_secondary_indexes(index(LEASES_DUE_INDEX, "dueShard", "dueAt")?)
        .global_secondary_indexes(index(AUDIT_BY_SESSION_INDEX, "auditSession", "sk")?)
        .send()
        .await;
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
