//! Conditional writes whose answer may be lost (invariant 8).
//!
//! The SDK retries a write whose first try was applied but answered with a 5xx or an I/O
//! error; that retry then fails its condition, because the row already is what the write made
//! it. A writer that read "condition failed" as "another writer won" would stop its own
//! session, skip its own notice, or never invoke its own attempt. So every writer goes through
//! here: on a failed condition, or on an answer that never came, the row is read back with a
//! consistent read and its `writeId` compared with the one this write stamped. Write IDs are
//! unique per write, so "mine" is exact; a later write by someone else can only replace it
//! after acting on the row as it was, which nobody does before the writer acts.

use super::ports::TrackingTable;
use super::{BatchRow, Transition};
use crate::error::TableError;
use tracing::info;

/// What became of one conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// This write is on the row (its answer may have been lost on the way).
    Landed,
    /// Another write was there first; the row as read afterwards (consistently), if any.
    Superseded(Option<Box<BatchRow>>),
}

impl Written {
    pub fn landed(&self) -> bool {
        matches!(self, Self::Landed)
    }
}

fn is_mine(row: Option<&BatchRow>, write_id: &str) -> bool {
    row.and_then(|r| r.write_id.as_deref()) == Some(write_id)
}

/// Applies `transition` and says whose write the row now holds.
///
/// A failure whose outcome is unknown (transport, throttle after a retry) is resolved by the
/// same read: landed, superseded, or (the row still as expected) not applied, which is
/// returned as the original, retryable error.
pub async fn transition<T: TrackingTable>(table: &T, transition: &Transition) -> Result<Written, TableError> {
    let error = match table.transition(transition).await {
        Ok(()) => return Ok(Written::Landed),
        Err(error) if error.is_condition_failed() || error.is_retryable() => error,
        Err(error) => return Err(error),
    };
    let row = table.get(&transition.batch_id).await?;
    if is_mine(row.as_ref(), &transition.write_id) {
        info!(batch_id = %transition.batch_id, %error, "conditional write landed; its answer was lost");
        return Ok(Written::Landed);
    }
    match row {
        Some(row) if !error.is_condition_failed() && transition.matches(&row) => Err(error),
        row => Ok(Written::Superseded(row.map(Box::new))),
    }
}

/// Creates `row` and says whose row the table now holds (see [`transition`]).
pub async fn create<T: TrackingTable>(table: &T, row: &BatchRow) -> Result<Written, TableError> {
    let error = match table.create(row).await {
        Ok(()) => return Ok(Written::Landed),
        Err(error) if error.is_condition_failed() || error.is_retryable() => error,
        Err(error) => return Err(error),
    };
    let found = table.get(&row.batch_id).await?;
    let Some(write_id) = row.write_id.as_deref() else {
        return Err(error);
    };
    if is_mine(found.as_ref(), write_id) {
        info!(batch_id = %row.batch_id, %error, "row created; the answer was lost");
        return Ok(Written::Landed);
    }
    match found {
        None => Err(error),
        found => Ok(Written::Superseded(found.map(Box::new))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::fakes::MemoryTable;
    use crate::batch::{BatchId, BatchStatus, Change, ObjectRef};
    use crate::session::SessionId;

    fn pending() -> BatchRow {
        BatchRow::new_pending(
            BatchId::parse("case-1").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-1/a.txt")],
            3,
            1_000,
            2_000,
        )
    }

    #[tokio::test]
    async fn when_a_write_lands_and_its_retry_fails_the_condition_then_it_is_still_mine() {
        let table = MemoryTable::default();
        table.insert(pending());
        table.lose_next_acks(1);
        let start = Transition::start(BatchId::parse("case-1").unwrap(), 1, SessionId::generate(), 5, 10);

        assert_eq!(transition(&table, &start).await.unwrap(), Written::Landed);
    }

    #[tokio::test]
    async fn when_another_write_was_first_then_mine_is_superseded_with_the_row_as_it_is() {
        let table = MemoryTable::default();
        table.insert(pending());
        let theirs = Transition::start(BatchId::parse("case-1").unwrap(), 1, SessionId::generate(), 5, 10);
        let mine = Transition::start(BatchId::parse("case-1").unwrap(), 1, SessionId::generate(), 6, 10);
        transition(&table, &theirs).await.unwrap();

        let Written::Superseded(Some(row)) = transition(&table, &mine).await.unwrap() else {
            panic!("mine cannot have landed");
        };
        assert_eq!(row.write_id.as_deref(), Some(theirs.write_id.as_str()));
        assert_eq!(row.status, BatchStatus::Running);
    }

    #[tokio::test]
    async fn when_a_write_fails_without_landing_then_the_retryable_error_is_returned() {
        let table = MemoryTable::default();
        table.insert(pending());
        table.fail_next_writes(1);
        let start = Transition::start(BatchId::parse("case-1").unwrap(), 1, SessionId::generate(), 5, 10);

        let error = transition(&table, &start).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
    }

    #[tokio::test]
    async fn when_a_create_lands_but_its_answer_is_lost_then_it_is_mine_and_a_second_creator_is_superseded() {
        let table = MemoryTable::default();
        let row = pending();
        table.lose_next_acks(1);
        assert_eq!(create(&table, &row).await.unwrap(), Written::Landed);

        let other = pending();
        assert!(matches!(
            create(&table, &other).await.unwrap(),
            Written::Superseded(Some(_))
        ));
        let fail = Transition::of_row(&row, Change::Fail { reason: "x".into() }, 7);
        assert!(transition(&table, &fail).await.unwrap().landed());
    }
}
