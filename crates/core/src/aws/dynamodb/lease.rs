//! The lease table on DynamoDB (docs/architecture.md, "Leases"): key (`pk`, `sk`), every
//! change one TransactWriteItems, every read one strongly consistent BatchGetItem or Query.
//!
//! Items: `user#<userId>`/`lease` (a user's current lease), `session#<sessionId>`/`lease` (a
//! handed-out session and its holder), `corr#<correlationId>`/`claim` (an idempotent claim),
//! `audit#user#<userId>` or `audit#anonymous` / `<epoch ms, 13 digits>#<id>` (audit records;
//! the session only as `auditSession`, its keyed hash). Times in epoch ms; `expiresAt` in epoch
//! seconds (the table's TTL). Open and stop-pending leases carry `dueShard` = 0 and `dueAt`,
//! the sparse index the sweep reads.

use super::{Item, corrupt, n, number, required, s, table_error, text};
use crate::clock::millis;
use crate::error::{TableError, TableErrorKind};
use crate::lease::ports::{AuditQuery, LeaseTable};
use crate::lease::{AuditEvent, AuditRecord, Correlation, CorrelationId, EndReason, Ending, Expect, Lease, LeaseItem};
use crate::lease::{LeaseOp, Lookup, UserId};
use crate::pool::claim::{ClaimedSession, Source};
use crate::session::SessionId;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, Select, TransactWriteItem};
use std::time::Duration;

/// The sparse GSI on (`dueShard`, `dueAt`), projecting every attribute.
pub const LEASES_DUE_INDEX: &str = "leases-due";
/// The GSI on (`auditSession`, `sk`): a session's audit trail.
pub const AUDIT_BY_SESSION_INDEX: &str = "audit-by-session";
/// Pages one query reads at most.
const MAX_PAGES: usize = 50;
/// Rounds of a BatchGetItem whose keys come back unprocessed.
const LOOKUP_ROUNDS: usize = 3;

#[derive(Debug, Clone)]
pub struct DynamoLeaseTable {
    client: Client,
    table: String,
    /// How long lease items stay after their session was created (max lifetime plus the
    /// audit retention): the full session ID is kept no longer than its audit trail.
    keep: Duration,
}

impl DynamoLeaseTable {
    pub fn new(client: Client, table: impl Into<String>, keep: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            keep,
        }
    }

    fn lease_item(&self, pk: String, lease: &Lease) -> Item {
        let mut item = Item::from([
            ("pk".into(), s(pk)),
            ("sk".into(), s("lease")),
            ("sessionId".into(), s(lease.session_id.as_str())),
            ("source".into(), s(lease.source.label())),
            ("createdAt".into(), n(lease.created_at)),
            ("boundAt".into(), n(lease.bound_at)),
            ("lastUseAt".into(), n(lease.last_use_at)),
            ("stopPending".into(), AttributeValue::Bool(lease.stop_pending)),
            ("writeId".into(), s(&lease.write_id)),
            ("expiresAt".into(), n((lease.created_at + millis(self.keep)) / 1000)),
        ]);
        let optional = [
            ("userId", lease.user_id.as_ref().map(|u| s(u.as_str()))),
            ("lastPingAt", lease.last_ping_at.map(n)),
            ("endedAt", lease.ended.map(|e| n(e.at))),
            ("endReason", lease.ended.map(|e| s(e.reason.label()))),
            ("dueAt", lease.due_at.map(n)),
            ("dueShard", lease.due_at.map(|_| n(0))),
        ];
        item.extend(optional.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))));
        item
    }

    fn put(
        &self,
        item: Item,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, TableError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if condition.contains("#until") {
            put = put.expression_attribute_names("#until", "until");
        }
        for (name, value) in values {
            put = put.expression_attribute_values(name, value);
        }
        let put = put
            .build()
            .map_err(|e| TableError::new("commit", TableErrorKind::Rejected, e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn write_item(&self, op: &LeaseOp) -> Result<TransactWriteItem, TableError> {
        let over = |expect: &Expect| match expect {
            Expect::Absent => ("attribute_not_exists(pk)", vec![]),
            Expect::Write(id) => ("writeId = :w", vec![(":w", s(id))]),
            Expect::LiveFor(session) => (
                "sessionId = :s AND attribute_not_exists(endedAt)",
                vec![(":s", s(session.as_str()))],
            ),
        };
        match op {
            LeaseOp::Session { lease, expect } => {
                let (condition, values) = over(expect);
                self.put(self.lease_item(session_pk(&lease.session_id), lease), condition, values)
            }
            LeaseOp::User { lease, expect } => {
                let user = lease.user_id.as_ref().ok_or_else(|| {
                    TableError::new("commit", TableErrorKind::Rejected, "a user lease without a user")
                })?;
                let (condition, values) = over(expect);
                self.put(self.lease_item(user_pk(user), lease), condition, values)
            }
            LeaseOp::Correlate(c) => self.put(
                correlation_item(c)?,
                "attribute_not_exists(pk) OR #until <= :at",
                vec![(":at", n(c.at))],
            ),
            LeaseOp::Audit(record) => self.put(audit_item(record), "attribute_not_exists(pk)", vec![]),
        }
    }

    async fn query_items(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: usize,
    ) -> Result<Vec<Item>, TableError> {
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..MAX_PAGES {
            let remaining = i32::try_from(limit.saturating_sub(items.len())).unwrap_or(i32::MAX);
            let page = query
                .clone()
                .limit(remaining.max(1))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| table_error("query", e))?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || items.len() >= limit {
                break;
            }
        }
        items.truncate(limit);
        Ok(items)
    }
}

fn user_pk(user: &UserId) -> String {
    format!("user#{user}")
}

fn session_pk(session: &SessionId) -> String {
    format!("session#{session}")
}

fn correlation_pk(id: &CorrelationId) -> String {
    format!("corr#{id}")
}

fn audit_pk(user: Option<&UserId>) -> String {
    user.map_or_else(|| "audit#anonymous".to_string(), |u| format!("audit#user#{u}"))
}

fn key(pk: String, sk: &str) -> Item {
    Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

fn correlation_item(c: &Correlation) -> Result<Item, TableError> {
    let answer = serde_json::to_string(&c.answer)
        .map_err(|e| TableError::new("commit", TableErrorKind::Rejected, e.to_string()))?;
    let mut item = key(correlation_pk(&c.id), "claim");
    item.extend([
        ("answer".into(), s(answer)),
        ("at".into(), n(c.at)),
        ("until".into(), n(c.until)),
        ("writeId".into(), s(&c.write_id)),
        ("expiresAt".into(), n(c.until / 1000 + 1)),
    ]);
    Ok(item)
}

fn audit_item(r: &AuditRecord) -> Item {
    let mut item = key(audit_pk(r.user_id.as_ref()), &format!("{:013}#{}", r.at, r.id));
    item.extend([
        ("event".into(), s(r.event.label())),
        ("source".into(), s(r.source.label())),
        ("auditSession".into(), s(&r.session)),
        ("at".into(), n(r.at)),
        ("recordId".into(), s(&r.id)),
        ("expiresAt".into(), n(r.expires_at)),
    ]);
    if let Some(user) = &r.user_id {
        item.insert("userId".into(), s(user.as_str()));
    }
    if let Some(c) = &r.correlation_id {
        item.insert("correlationId".into(), s(c.as_str()));
    }
    item
}

fn parsed<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, TableError> {
    let raw = required(text(item, name)?, name)?;
    serde_json::from_value(serde_json::Value::String(raw.to_string()))
        .map_err(|e| corrupt(format!("{name} = {raw:?}: {e}")))
}

fn lease_from(item: &Item) -> Result<Lease, TableError> {
    let ended = match (number(item, "endedAt")?, text(item, "endReason")?) {
        (Some(at), Some(_)) => Some(Ending {
            at,
            reason: parsed::<EndReason>(item, "endReason")?,
        }),
        (None, None) => None,
        _ => return Err(corrupt("endedAt and endReason come together".into())),
    };
    let session = required(text(item, "sessionId")?, "sessionId")?;
    Ok(Lease {
        session_id: SessionId::parse(session).map_err(|e| corrupt(e.to_string()))?,
        user_id: match text(item, "userId")? {
            Some(u) => Some(UserId::parse(u).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        },
        source: parsed::<Source>(item, "source")?,
        created_at: required(number(item, "createdAt")?, "createdAt")?,
        last_ping_at: number(item, "lastPingAt")?,
        bound_at: required(number(item, "boundAt")?, "boundAt")?,
        last_use_at: required(number(item, "lastUseAt")?, "lastUseAt")?,
        ended,
        stop_pending: matches!(item.get("stopPending"), Some(AttributeValue::Bool(true))),
        due_at: number(item, "dueAt")?,
        write_id: required(text(item, "writeId")?, "writeId")?.to_string(),
    })
}

fn correlation_from(item: &Item) -> Result<Correlation, TableError> {
    let pk = required(text(item, "pk")?, "pk")?;
    let id = pk.strip_prefix("corr#").unwrap_or(pk);
    let answer = required(text(item, "answer")?, "answer")?;
    Ok(Correlation {
        id: CorrelationId::parse(id).map_err(|e| corrupt(e.to_string()))?,
        answer: serde_json::from_str::<ClaimedSession>(answer).map_err(|e| corrupt(e.to_string()))?,
        at: required(number(item, "at")?, "at")?,
        until: required(number(item, "until")?, "until")?,
        write_id: required(text(item, "writeId")?, "writeId")?.to_string(),
    })
}

fn audit_from(item: &Item) -> Result<AuditRecord, TableError> {
    let optional_id = |name| -> Result<Option<String>, TableError> { Ok(text(item, name)?.map(str::to_string)) };
    Ok(AuditRecord {
        at: required(number(item, "at")?, "at")?,
        event: parsed::<AuditEvent>(item, "event")?,
        source: parsed::<Source>(item, "source")?,
        user_id: optional_id("userId")?
            .map(UserId::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        correlation_id: optional_id("correlationId")?
            .map(CorrelationId::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        session: required(text(item, "auditSession")?, "auditSession")?.to_string(),
        id: required(text(item, "recordId")?, "recordId")?.to_string(),
        expires_at: required(number(item, "expiresAt")?, "expiresAt")?,
    })
}

/// A cancelled transaction whose reasons include a failed condition, or another transaction
/// on one of its items (`TransactionConflict`), lost a race: the writer reads again and decides
/// on what it finds. Any other cancellation (throttling, capacity) may succeed when retried.
fn commit_error(
    error: aws_smithy_runtime_api::client::result::SdkError<
        TransactWriteItemsError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> TableError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() {
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|c| *c != "None")
            .collect();
        let lost_race = codes
            .iter()
            .any(|c| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict"));
        let kind = if lost_race {
            TableErrorKind::ConditionFailed
        } else {
            TableErrorKind::Throttled
        };
        return TableError::new("commit", kind, format!("transaction cancelled: {}", codes.join(", ")));
    }
    table_error("commit", error)
}

impl LeaseTable for DynamoLeaseTable {
    async fn lookup(
        &self,
        user: Option<&UserId>,
        correlation: Option<&CorrelationId>,
        session: Option<&SessionId>,
    ) -> Result<Lookup, TableError> {
        let mut keys: Vec<Item> = user.map(|u| key(user_pk(u), "lease")).into_iter().collect();
        keys.extend(correlation.map(|c| key(correlation_pk(c), "claim")));
        keys.extend(session.map(|s| key(session_pk(s), "lease")));
        let mut found = Lookup::default();
        for _ in 0..LOOKUP_ROUNDS {
            if keys.is_empty() {
                return Ok(found);
            }
            let wanted = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| TableError::new("lookup", TableErrorKind::Rejected, e.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, wanted)
                .send()
                .await
                .map_err(|e| table_error("lookup", e))?;
            let items = output
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            for item in items {
                match text(&item, "pk")?.unwrap_or_default() {
                    pk if pk.starts_with("user#") => found.user = Some(lease_from(&item)?),
                    pk if pk.starts_with("session#") => found.session = Some(lease_from(&item)?),
                    _ => found.correlation = Some(correlation_from(&item)?),
                }
            }
            keys = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        Err(TableError::new(
            "lookup",
            TableErrorKind::Throttled,
            "keys left unprocessed",
        ))
    }

    async fn commit(&self, ops: &[LeaseOp]) -> Result<(), TableError> {
        let items = ops
            .iter()
            .map(|op| self.write_item(op))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            // A retry of a write that landed is answered as the first was (for 10 minutes).
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .map_err(commit_error)?;
        Ok(())
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<(LeaseItem, Lease)>, TableError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LEASES_DUE_INDEX)
            .key_condition_expression("dueShard = :shard AND dueAt <= :now")
            .expression_attribute_values(":shard", n(0))
            .expression_attribute_values(":now", n(now_ms));
        let items = self.query_items(query, limit).await?;
        items
            .iter()
            .map(|item| {
                let kind = match text(item, "pk")?.unwrap_or_default() {
                    pk if pk.starts_with("user#") => LeaseItem::User,
                    _ => LeaseItem::Session,
                };
                Ok((kind, lease_from(item)?))
            })
            .collect()
    }

    async fn open_count(&self, limit: usize) -> Result<u64, TableError> {
        let mut count = 0u64;
        let mut start = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(LEASES_DUE_INDEX)
                .key_condition_expression("dueShard = :shard")
                .filter_expression("attribute_not_exists(endedAt)")
                .expression_attribute_values(":shard", n(0))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| table_error("count", e))?;
            count += u64::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() || count >= u64::try_from(limit).unwrap_or(u64::MAX) {
                break;
            }
        }
        Ok(count)
    }

    async fn audit(&self, query: &AuditQuery, limit: usize) -> Result<Vec<AuditRecord>, TableError> {
        let base = self.client.query().table_name(&self.table).scan_index_forward(false);
        let query = match query {
            AuditQuery::User(user) => base
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(audit_pk(Some(user)))),
            AuditQuery::Session(hash) => base
                .index_name(AUDIT_BY_SESSION_INDEX)
                .key_condition_expression("auditSession = :h")
                .expression_attribute_values(":h", s(hash)),
        };
        let items: Vec<Item> = self.query_items(query, limit).await?;
        items.iter().map(audit_from).collect()
    }
}
