//! The lease table (`warmpool local up --with-leases`, the lease wire tests): on-demand, key
//! (`pk`, `sk`), TTL on `expiresAt`, point-in-time recovery, and the two indexes the code reads
//! (`leases-due` for the sweep, `audit-by-session` for `warmpool session show`), as the pool
//! template creates it.

use super::table::{attribute, index, key, protect_if_created};
use crate::error::Error;
use aws_sdk_dynamodb::types::{BillingMode, KeyType, ScalarAttributeType};
use warmpool_core::aws::{AUDIT_BY_SESSION_INDEX, LEASES_DUE_INDEX};

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
    protect_if_created(dynamodb, table, created).await
}
