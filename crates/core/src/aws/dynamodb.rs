//! The batch tracking table on DynamoDB: one item per batch, every transition one conditional
//! UpdateItem, and the sparse `running-by-deadline` index for the detector.
//!
//! Item attributes: `batchId` (key), `status`, `attempt`, `maxAttempts`, `sessionId`,
//! `documents` (list of `s3://` URIs), `acceptedAt`, `startedAt`, `deadline`, `updatedAt`,
//! `lastError`, `resultRef` (epoch ms), plus two that exist for the table's sake:
//! - `runningShard` (number) is set on entering RUNNING and removed on leaving it, so the
//!   index keyed on (`runningShard`, `deadline`) holds RUNNING rows only;
//! - `expiresAt` (epoch *seconds*, DynamoDB's TTL unit) is set when a batch finishes. Rows
//!   stay for the retention period so a late duplicate notification still finds its batch.

use super::describe;
use crate::batch::ports::TrackingTable;
use crate::batch::{BatchId, BatchRow, BatchStatus, Change, ObjectRef, Transition, running_shard};
use crate::error::{TableError, TableErrorKind};
use crate::session::SessionId;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::collections::HashMap;
use std::time::Duration;

/// The sparse GSI on (`runningShard`, `deadline`), projecting every attribute.
pub const RUNNING_INDEX: &str = "running-by-deadline";
/// Pages one overdue query reads per shard at most; with `limit` it bounds a detector run.
const MAX_PAGES_PER_SHARD: usize = 20;

type Item = HashMap<String, AttributeValue>;

/// How rows are laid out: shards of the running index and how long finished rows stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackingLayout {
    /// Partition keys of the running index. Writers and the detector must agree on it.
    pub shards: u32,
    /// Finished rows expire (TTL) this long after their last update.
    pub retention: Duration,
}

impl Default for TrackingLayout {
    fn default() -> Self {
        Self {
            shards: 8,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

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

fn table_error<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> TableError
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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn corrupt(message: String) -> TableError {
    TableError::new("read", TableErrorKind::Corrupt, message)
}

fn text<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, TableError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(other) => Err(corrupt(format!("{name} is not a string: {other:?}"))),
    }
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, TableError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| corrupt(format!("{name} = {value} is not a valid number"))),
        Some(other) => Err(corrupt(format!("{name} is not a number: {other:?}"))),
    }
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, TableError> {
    value.ok_or_else(|| corrupt(format!("row has no {name}")))
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
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(uri) => ObjectRef::parse(uri).map_err(|e| corrupt(e.to_string())),
                other => Err(corrupt(format!("document is not a string: {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(corrupt(format!("documents is not a list: {other:?}"))),
    };
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
    })
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
            AttributeValue::L(row.documents.iter().map(|d| s(d.to_string())).collect()),
        );
        item.insert("acceptedAt".into(), n(row.accepted_at));
        item.insert("updatedAt".into(), n(row.updated_at));
        let optional = [
            ("sessionId", row.session_id.as_ref().map(|id| s(id.as_str()))),
            ("startedAt", row.started_at.map(n)),
            ("deadline", row.deadline.map(n)),
            ("lastError", row.last_error.as_deref().map(s)),
            ("resultRef", row.result_ref.as_deref().map(s)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                item.insert(name.into(), value);
            }
        }
        if row.status == BatchStatus::Running {
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
        let mut set = vec!["#status = :status", "#updatedAt = :at"];
        let mut remove: Vec<&str> = Vec::new();
        match &t.change {
            Change::Start { session_id, deadline } => {
                values.insert(":session".into(), s(session_id.as_str()));
                values.insert(":deadline".into(), n(deadline));
                values.insert(":shard".into(), n(running_shard(&t.batch_id, self.layout.shards)));
                set.extend([
                    "#sessionId = :session",
                    "#startedAt = :at",
                    "#deadline = :deadline",
                    "#runningShard = :shard",
                ]);
            }
            Change::Release { reason } | Change::Retry { reason } => {
                values.insert(":reason".into(), s(reason.as_str()));
                set.push("#lastError = :reason");
                if matches!(t.change, Change::Retry { .. }) {
                    values.insert(":nextAttempt".into(), n(t.expected.attempt + 1));
                    set.push("#attempt = :nextAttempt");
                }
                remove.extend(["#sessionId", "#deadline", "#runningShard"]);
            }
            Change::Fail { reason } => {
                values.insert(":reason".into(), s(reason.as_str()));
                values.insert(":expiresAt".into(), n(self.expires_at(t.at)));
                set.extend(["#lastError = :reason", "#expiresAt = :expiresAt"]);
                remove.push("#runningShard");
            }
            Change::Succeed { result_ref } => {
                values.insert(":resultRef".into(), s(result_ref.as_str()));
                values.insert(":expiresAt".into(), n(self.expires_at(t.at)));
                set.extend(["#resultRef = :resultRef", "#expiresAt = :expiresAt"]);
                remove.push("#runningShard");
            }
            Change::Expire { reason } => {
                values.insert(":reason".into(), s(reason.as_str()));
                set.extend(["#deadline = :at", "#lastError = :reason"]);
            }
        }
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        (update, condition, values)
    }
}

const NAMES: [&str; 11] = [
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
];

fn names_used(expressions: &[&str]) -> HashMap<String, String> {
    NAMES
        .iter()
        .filter(|name| expressions.iter().any(|e| e.contains(&format!("#{name}"))))
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
        let (update, condition, values) = self.update_of(transition);
        self.client
            .update_item()
            .table_name(&self.table)
            .key("batchId", s(transition.batch_id.as_str()))
            .update_expression(&update)
            .condition_expression(&condition)
            .set_expression_attribute_names(Some(names_used(&[&update, &condition])))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| table_error("transition", e))?;
        Ok(())
    }

    async fn overdue(&self, now_ms: u64, limit: usize) -> Result<Vec<BatchRow>, TableError> {
        let mut rows = Vec::new();
        for shard in 0..self.layout.shards.max(1) {
            let mut start: Option<Item> = None;
            for _ in 0..MAX_PAGES_PER_SHARD {
                let remaining = limit.saturating_sub(rows.len());
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
                    rows.push(row_from_item(&item)?);
                }
                match output.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        rows.sort_by_key(|r| r.deadline);
        rows.truncate(limit);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DynamoTrackingTable {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        DynamoTrackingTable::new(Client::from_conf(config), "t", TrackingLayout::default())
    }

    fn running() -> BatchRow {
        BatchRow::new_running(
            BatchId::parse("case-1").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
            3,
            SessionId::generate(),
            1_000,
            61_000,
        )
    }

    #[test]
    fn a_row_survives_the_trip_through_an_item() {
        let row = running();
        let item = table().item_from_row(&row);
        assert_eq!(row_from_item(&item).unwrap(), row);
        assert!(item.contains_key("runningShard"), "RUNNING rows are in the index");
        assert!(!item.contains_key("expiresAt"), "a running row never expires");
    }

    #[test]
    fn leaving_running_removes_the_index_key_and_a_finished_row_expires() {
        let row = running();
        let attempt = row.running_attempt().unwrap();
        let (update, condition, values) = table().update_of(&Transition::of_running(
            &attempt,
            Change::Succeed {
                result_ref: "s3://r/x".into(),
            },
            2_000,
        ));
        assert!(update.contains("REMOVE #runningShard"), "{update}");
        assert!(update.contains("#expiresAt = :expiresAt"), "{update}");
        assert_eq!(values[":expiresAt"], n(2 + 30 * 24 * 3600));
        assert_eq!(
            condition,
            "#status = :expectedStatus AND #attempt = :expectedAttempt AND #sessionId = :expectedSession"
        );
    }

    #[test]
    fn a_start_is_conditioned_on_a_pending_row_without_a_session() {
        let start = Transition::start(BatchId::parse("c").unwrap(), 2, SessionId::generate(), 5, 10);
        let (update, condition, _) = table().update_of(&start);
        assert!(condition.ends_with("attribute_not_exists(#sessionId)"), "{condition}");
        assert!(update.contains("#runningShard = :shard"), "{update}");
        let names = names_used(&[&update, &condition]);
        assert_eq!(names["#status"], "status");
        assert!(
            !names.contains_key("#resultRef"),
            "unused names are refused by DynamoDB"
        );
    }

    #[test]
    fn a_stored_row_that_does_not_read_is_corrupt_not_a_panic() {
        let mut item = table().item_from_row(&running());
        item.insert("status".into(), s("EXPLODED"));
        assert_eq!(row_from_item(&item).unwrap_err().kind, TableErrorKind::Corrupt);
        item.remove("status");
        assert_eq!(row_from_item(&item).unwrap_err().kind, TableErrorKind::Corrupt);
    }
}
