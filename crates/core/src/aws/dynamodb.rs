//! The batch tracking table on DynamoDB: one item per batch, every transition one conditional
//! UpdateItem, and the sparse index the detector queries.
//!
//! Item attributes: `batchId` (key), `status`, `attempt`, `maxAttempts`, `sessionId`,
//! `documents`, `acceptedAt`, `startedAt`, `deadline`, `updatedAt`, `lastError`, `resultRef`,
//! `writeId`, `notifiedAt`, `closedAt` (times in epoch ms), plus two for the table's sake:
//! - `runningShard` (number) is set on every row that still owes the detector something, and
//!   removed when the row is closed. The index keyed on (`runningShard`, `deadline`) therefore
//!   holds PENDING rows (due at their start-by time), RUNNING rows (due at the attempt's
//!   deadline) and settled rows whose follow-up is not done (due at once for SUCCEEDED, after a
//!   grace for FAILED), and nothing else. The attribute kept its first name (it once marked
//!   RUNNING rows only) so that existing tables and their index need no migration;
//! - `expiresAt` (epoch *seconds*, DynamoDB's TTL unit) is set when a batch finishes. Rows
//!   stay for the retention period so a late duplicate notification still finds its batch.
//!
//! `documents` is a list of maps `{"uri": "s3://...", "versionId": "...", "size": n}` (the pins
//! taken at admission); a plain `s3://` string, as rows written before pinning hold, still reads.
//! A row reads back only if its list passes [`check_document_list`], the same rule the manifest
//! check applies, so whatever a manifest got accepted with can be read back.

use super::sdk::describe;
use crate::batch::manifest::check_document_list;
use crate::batch::ports::{Due, TrackingTable, UnreadableRow};
use crate::batch::settings::TrackingLayout;
use crate::batch::{BatchId, BatchRow, BatchStatus, Change, ObjectRef, PinnedDocument, Transition, bounded_error};
use crate::error::{TableError, TableErrorKind};
use crate::hash::stable_hash;
use crate::session::SessionId;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::collections::HashMap;

/// The sparse GSI on (`runningShard`, `deadline`), projecting every attribute.
pub const RUNNING_INDEX: &str = "running-by-deadline";
/// Pages one overdue query reads per shard at most; with `limit` it bounds a detector run.
const MAX_PAGES_PER_SHARD: usize = 20;
/// What a quarantine is conditioned on: the row must still be the unreadable thing it was.
const FINGERPRINT: [&str; 5] = ["status", "attempt", "sessionId", "updatedAt", "writeId"];

/// The index partition of a row that owes the detector something. Spreading those rows over a
/// few partition keys keeps one hot key from limiting how many batches can start per second;
/// the detector queries every shard, so a row is found whichever shard it was written under.
pub fn running_shard(batch_id: &BatchId, shards: u32) -> u32 {
    let shard = stable_hash(batch_id.as_str().as_bytes()) % u64::from(shards.max(1));
    u32::try_from(shard).unwrap_or(0)
}

pub(super) type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoTrackingTable {
    client: Client,
    table: String,
    layout: TrackingLayout,
}

impl DynamoTrackingTable {
    pub fn new(client: Client, table: impl Into<String>, layout: TrackingLayout) -> Self {
        Self {
            client,
            table: table.into(),
            layout,
        }
    }
}

pub(super) fn table_error<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> TableError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = describe(&error);
    let kind = match failure.code.as_deref() {
        Some("ConditionalCheckFailedException") => TableErrorKind::ConditionFailed,
        Some("ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded") => {
            TableErrorKind::Throttled
        }
        _ if failure.transport => TableErrorKind::Transport,
        _ => TableErrorKind::Rejected,
    };
    TableError {
        operation,
        kind,
        message: failure.message,
        source: Some(Box::new(error)),
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn corrupt(message: String) -> TableError {
    TableError::new("read", TableErrorKind::Corrupt, bounded_error(&message))
}

pub(super) fn text<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, TableError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(other) => Err(corrupt(format!("{name} is not a string: {other:?}"))),
    }
}

pub(super) fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, TableError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| corrupt(format!("{name} = {value} is not a valid number"))),
        Some(other) => Err(corrupt(format!("{name} is not a number: {other:?}"))),
    }
}

pub(super) fn required<T>(value: Option<T>, name: &str) -> Result<T, TableError> {
    value.ok_or_else(|| corrupt(format!("row has no {name}")))
}

fn document_from(value: &AttributeValue) -> Result<PinnedDocument, TableError> {
    let object = |uri: &str| ObjectRef::parse(uri).map_err(|e| corrupt(e.to_string()));
    match value {
        AttributeValue::S(uri) => Ok(object(uri)?.into()),
        AttributeValue::M(map) => Ok(PinnedDocument {
            object: object(required(text(map, "uri")?, "document uri")?)?,
            version_id: text(map, "versionId")?.map(str::to_string),
            size: number(map, "size")?,
        }),
        other => Err(corrupt(format!("document is neither a string nor a map: {other:?}"))),
    }
}

fn document_item(document: &PinnedDocument) -> AttributeValue {
    let mut map = Item::new();
    map.insert("uri".into(), s(document.object.to_string()));
    if let Some(version_id) = &document.version_id {
        map.insert("versionId".into(), s(version_id.as_str()));
    }
    if let Some(size) = document.size {
        map.insert("size".into(), n(size));
    }
    AttributeValue::M(map)
}

fn row_from_item(item: &Item) -> Result<BatchRow, TableError> {
    let batch_id = BatchId::parse(required(text(item, "batchId")?, "batchId")?).map_err(|e| corrupt(e.to_string()))?;
    let status_text = required(text(item, "status")?, "status")?;
    let status = BatchStatus::parse(status_text).ok_or_else(|| corrupt(format!("unknown status {status_text}")))?;
    let session_id = text(item, "sessionId")?
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let documents = match item.get("documents") {
        Some(AttributeValue::L(values)) => values.iter().map(document_from).collect::<Result<Vec<_>, _>>()?,
        other => return Err(corrupt(format!("documents is not a list: {other:?}"))),
    };
    let objects: Vec<ObjectRef> = documents.iter().map(|d| d.object.clone()).collect();
    check_document_list(&batch_id, &objects).map_err(|e| corrupt(e.to_string()))?;
    Ok(BatchRow {
        batch_id,
        status,
        attempt: required(number(item, "attempt")?, "attempt")?,
        max_attempts: required(number(item, "maxAttempts")?, "maxAttempts")?,
        session_id,
        documents,
        accepted_at: required(number(item, "acceptedAt")?, "acceptedAt")?,
        started_at: number(item, "startedAt")?,
        deadline: number(item, "deadline")?,
        updated_at: required(number(item, "updatedAt")?, "updatedAt")?,
        last_error: text(item, "lastError")?.map(str::to_string),
        result_ref: text(item, "resultRef")?.map(str::to_string),
        write_id: text(item, "writeId")?.map(str::to_string),
        notified_at: number(item, "notifiedAt")?,
        closed_at: number(item, "closedAt")?,
    })
}

/// What a quarantine compares: each fingerprint attribute as read, typed.
fn fingerprint_of(item: &Item) -> Vec<(String, Option<String>)> {
    FINGERPRINT
        .iter()
        .map(|name| {
            let value = item.get(*name).map(|v| match v {
                AttributeValue::S(text) => format!("S:{text}"),
                AttributeValue::N(number) => format!("N:{number}"),
                _ => "?".to_string(),
            });
            ((*name).to_string(), value)
        })
        .collect()
}

fn due_from_item(item: &Item) -> Due {
    match row_from_item(item) {
        Ok(row) => Due::Readable(row),
        Err(error) => Due::Unreadable(UnreadableRow {
            key: match item.get("batchId") {
                Some(AttributeValue::S(key)) => key.clone(),
                other => format!("{other:?}"),
            },
            reason: error.message,
            fingerprint: fingerprint_of(item),
        }),
    }
}

impl DynamoTrackingTable {
    fn item_from_row(&self, row: &BatchRow) -> Item {
        let mut item = Item::new();
        item.insert("batchId".into(), s(row.batch_id.as_str()));
        item.insert("status".into(), s(row.status.as_str()));
        item.insert("attempt".into(), n(row.attempt));
        item.insert("maxAttempts".into(), n(row.max_attempts));
        item.insert(
            "documents".into(),
            AttributeValue::L(row.documents.iter().map(document_item).collect()),
        );
        item.insert("acceptedAt".into(), n(row.accepted_at));
        item.insert("updatedAt".into(), n(row.updated_at));
        let optional = [
            ("sessionId", row.session_id.as_ref().map(|id| s(id.as_str()))),
            ("startedAt", row.started_at.map(n)),
            ("deadline", row.deadline.map(n)),
            ("lastError", row.last_error.as_deref().map(|e| s(bounded_error(e)))),
            ("resultRef", row.result_ref.as_deref().map(s)),
            ("writeId", row.write_id.as_deref().map(s)),
            ("notifiedAt", row.notified_at.map(n)),
            ("closedAt", row.closed_at.map(n)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                item.insert(name.into(), value);
            }
        }
        if row.closed_at.is_none() && row.deadline.is_some() {
            item.insert(
                "runningShard".into(),
                n(running_shard(&row.batch_id, self.layout.shards)),
            );
        }
        if row.status.is_terminal() {
            item.insert("expiresAt".into(), n(self.expires_at(row.updated_at)));
        }
        item
    }

    fn expires_at(&self, at_ms: u64) -> u64 {
        at_ms / 1000 + self.layout.retention.as_secs()
    }

    /// The UpdateItem of one transition: `(update expression, condition, values)`. Attribute
    /// names all go through `#name` placeholders (`status` is a DynamoDB reserved word).
    fn update_of(&self, t: &Transition) -> (String, String, Item) {
        let mut values = Item::new();
        values.insert(":expectedStatus".into(), s(t.expected.status.as_str()));
        values.insert(":expectedAttempt".into(), n(t.expected.attempt));
        let session_condition = match &t.expected.session_id {
            Some(id) => {
                values.insert(":expectedSession".into(), s(id.as_str()));
                "#sessionId = :expectedSession"
            }
            None => "attribute_not_exists(#sessionId)",
        };
        let condition = format!("#status = :expectedStatus AND #attempt = :expectedAttempt AND {session_condition}");

        values.insert(":status".into(), s(t.target_status().as_str()));
        values.insert(":at".into(), n(t.at));
        values.insert(":writeId".into(), s(t.write_id.as_str()));
        let mut set = vec!["#status = :status", "#updatedAt = :at", "#writeId = :writeId"];
        let mut remove: Vec<&str> = Vec::new();
        if let Some(due) = t.due_at() {
            values.insert(":due".into(), n(due));
            values.insert(":shard".into(), n(running_shard(&t.batch_id, self.layout.shards)));
            set.extend(["#deadline = :due", "#runningShard = :shard"]);
        }
        if let Some(error) = t.error_text() {
            values.insert(":reason".into(), s(error));
            set.push("#lastError = :reason");
        }
        if t.target_status().is_terminal() {
            values.insert(":expiresAt".into(), n(self.expires_at(t.at)));
            set.push("#expiresAt = :expiresAt");
        }
        match &t.change {
            Change::Start { session_id, .. } => {
                values.insert(":session".into(), s(session_id.as_str()));
                set.extend(["#sessionId = :session", "#startedAt = :at"]);
            }
            Change::Retry { .. } => {
                values.insert(":nextAttempt".into(), n(t.expected.attempt + 1));
                set.push("#attempt = :nextAttempt");
                remove.push("#sessionId");
            }
            Change::Succeed { result_ref } => {
                values.insert(":resultRef".into(), s(result_ref.as_str()));
                set.push("#resultRef = :resultRef");
            }
            Change::Close { notified } => {
                set.push("#closedAt = :at");
                if *notified {
                    set.push("#notifiedAt = if_not_exists(#notifiedAt, :at)");
                }
                remove.push("#runningShard");
            }
            Change::Fail { .. } | Change::Expire { .. } => {}
        }
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        (update, condition, values)
    }

    /// The quarantine UpdateItem: `(update, condition, values)`.
    fn quarantine_of(&self, row: &UnreadableRow, reason: &str, at: u64) -> (String, String, Item) {
        let mut values = Item::new();
        let mut conditions = vec!["attribute_exists(#batchId)".to_string()];
        for (i, (name, seen)) in row.fingerprint.iter().enumerate() {
            if !FINGERPRINT.contains(&name.as_str()) {
                continue;
            }
            let placeholder = format!(":seen{i}");
            match seen.as_deref() {
                None => conditions.push(format!("attribute_not_exists(#{name})")),
                Some(typed) => match typed.split_once(':') {
                    Some(("S", text)) => {
                        values.insert(placeholder.clone(), s(text));
                        conditions.push(format!("#{name} = {placeholder}"));
                    }
                    Some(("N", number)) => {
                        values.insert(placeholder.clone(), n(number));
                        conditions.push(format!("#{name} = {placeholder}"));
                    }
                    _ => conditions.push(format!("attribute_exists(#{name})")),
                },
            }
        }
        values.insert(":failed".into(), s(BatchStatus::Failed.as_str()));
        values.insert(":reason".into(), s(bounded_error(reason)));
        values.insert(":at".into(), n(at));
        values.insert(":expiresAt".into(), n(self.expires_at(at)));
        let update = "SET #status = :failed, #lastError = :reason, #updatedAt = :at, #closedAt = :at, \
                      #expiresAt = :expiresAt REMOVE #runningShard"
            .to_string();
        (update, conditions.join(" AND "), values)
    }
}

const NAMES: [&str; 14] = [
    "status",
    "attempt",
    "sessionId",
    "startedAt",
    "deadline",
    "updatedAt",
    "runningShard",
    "lastError",
    "resultRef",
    "expiresAt",
    "batchId",
    "writeId",
    "notifiedAt",
    "closedAt",
];

fn names_used(expressions: &[&str]) -> HashMap<String, String> {
    NAMES
        .iter()
        .filter(|name| {
            expressions.iter().any(|e| {
                let placeholder = format!("#{name}");
                // `#status` must not count as used because `#statusX` is; names never prefix
                // one another here except by whole words, so check the next character.
                e.match_indices(&placeholder).any(|(at, _)| {
                    !e[at + placeholder.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric())
                })
            })
        })
        .map(|name| (format!("#{name}"), (*name).to_string()))
        .collect()
}

impl TrackingTable for DynamoTrackingTable {
    async fn get(&self, batch_id: &BatchId) -> Result<Option<BatchRow>, TableError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("batchId", s(batch_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| table_error("get", e))?;
        output.item.as_ref().map(row_from_item).transpose()
    }

    async fn create(&self, row: &BatchRow) -> Result<(), TableError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item_from_row(row)))
            .condition_expression("attribute_not_exists(#batchId)")
            .expression_attribute_names("#batchId", "batchId")
            .send()
            .await
            .map_err(|e| table_error("create", e))?;
        Ok(())
    }

    async fn transition(&self, transition: &Transition) -> Result<(), TableError> {
        let update = self.update_of(transition);
        self.conditional_update("transition", transition.batch_id.as_str(), update)
            .await
    }

    async fn overdue(&self, now_ms: u64, limit: usize, first_shard: u32) -> Result<Vec<Due>, TableError> {
        let shards = self.layout.shards.max(1);
        let mut due: Vec<(u64, Due)> = Vec::new();
        for k in 0..shards {
            let shard = (first_shard % shards + k) % shards;
            let mut start: Option<Item> = None;
            for _ in 0..MAX_PAGES_PER_SHARD {
                let remaining = limit.saturating_sub(due.len());
                if remaining == 0 {
                    break;
                }
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(RUNNING_INDEX)
                    .key_condition_expression("#runningShard = :shard AND #deadline < :now")
                    .expression_attribute_names("#runningShard", "runningShard")
                    .expression_attribute_names("#deadline", "deadline")
                    .expression_attribute_values(":shard", n(shard))
                    .expression_attribute_values(":now", n(now_ms))
                    .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| table_error("overdue", e))?;
                for item in output.items.unwrap_or_default() {
                    let deadline = number::<u64>(&item, "deadline").ok().flatten().unwrap_or(0);
                    due.push((deadline, due_from_item(&item)));
                }
                match output.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        // Most overdue first within what was read; which shards were read is the rotation's.
        due.sort_by_key(|(deadline, _)| *deadline);
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, d)| d).collect())
    }

    async fn quarantine(&self, row: &UnreadableRow, reason: &str, at: u64) -> Result<(), TableError> {
        let update = self.quarantine_of(row, reason, at);
        self.conditional_update("quarantine", row.key.as_str(), update).await
    }
}

impl DynamoTrackingTable {
    /// One conditional `UpdateItem` of the row `key`: (update, condition, values).
    async fn conditional_update(
        &self,
        operation: &'static str,
        key: &str,
        (update, condition, values): (String, String, Item),
    ) -> Result<(), TableError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("batchId", s(key))
            .update_expression(&update)
            .condition_expression(&condition)
            .set_expression_attribute_names(Some(names_used(&[&update, &condition])))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| table_error(operation, e))?;
        Ok(())
    }
}

pub(super) mod lease;
#[cfg(test)]
mod tests;
