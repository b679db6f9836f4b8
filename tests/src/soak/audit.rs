//! What the batch soak counts once the run is over, from what the functions left behind: the
//! tracking rows, the result objects in S3, the result notices on the results queue and the
//! sessions the emulator still runs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use warmpool_core::batch::message::ResultNotice;
use warmpool_core::batch::{BatchId, BatchRow};
use warmpool_core::session::SessionId;

/// One result written for an attempt, by the session whose tag it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResultWrite {
    pub batch_id: String,
    pub attempt: u32,
    pub session_tag: String,
    /// `object` (S3) or `notice` (results queue).
    pub via: &'static str,
}

/// `<prefix><batchId>/attempt-<n>/session-<tag>.json`, as the agent writes result keys.
pub fn parse_result_key(prefix: &str, key: &str) -> Option<ResultWrite> {
    let rest = key.strip_prefix(prefix)?;
    let (rest, file) = rest.rsplit_once('/')?;
    let (batch_id, attempt) = rest.rsplit_once('/')?;
    let session_tag = file.strip_prefix("session-")?.strip_suffix(".json")?;
    Some(ResultWrite {
        batch_id: batch_id.to_string(),
        attempt: attempt.strip_prefix("attempt-")?.parse().ok()?,
        session_tag: session_tag.to_string(),
        via: "object",
    })
}

pub fn notice_write(notice: &ResultNotice) -> ResultWrite {
    ResultWrite {
        batch_id: notice.batch_id.to_string(),
        attempt: notice.attempt,
        session_tag: document_agent::run::session_tag(&notice.session_id),
        via: "notice",
    }
}

/// The counts of result writes that must be zero, with the offending writes for the report.
#[derive(Debug, Clone, Default)]
pub struct WriteAudit {
    /// (batch, attempt) pairs written by more than one session.
    pub attempts_on_two_sessions: Vec<(String, u32, BTreeSet<String>)>,
    pub foreign_result_writes: Vec<ResultWrite>,
}

/// A write is foreign when a prober's session made it, or when it is for the attempt a final
/// row names and its session is not the row's. Earlier attempts' owners are not kept in the
/// row; a second session on them shows as an attempt on two sessions instead.
pub fn audit_writes(writes: &[ResultWrite], rows: &HashMap<BatchId, BatchRow>, probers: &[SessionId]) -> WriteAudit {
    let prober_tags: HashSet<String> = probers.iter().map(document_agent::run::session_tag).collect();
    let owners: HashMap<(String, u32), String> = rows
        .values()
        .filter_map(|row| {
            let session = row.session_id.as_ref()?;
            Some((
                (row.batch_id.to_string(), row.attempt),
                document_agent::run::session_tag(session),
            ))
        })
        .collect();
    let mut sessions: BTreeMap<(String, u32), BTreeSet<String>> = BTreeMap::new();
    let mut audit = WriteAudit::default();
    for write in writes {
        let key = (write.batch_id.clone(), write.attempt);
        sessions
            .entry(key.clone())
            .or_default()
            .insert(write.session_tag.clone());
        let not_the_owner = owners.get(&key).is_some_and(|owner| *owner != write.session_tag);
        if prober_tags.contains(&write.session_tag) || not_the_owner {
            audit.foreign_result_writes.push(write.clone());
        }
    }
    audit.attempts_on_two_sessions = sessions
        .into_iter()
        .filter(|(_, tags)| tags.len() > 1)
        .map(|((batch, attempt), tags)| (batch, attempt, tags))
        .collect();
    audit
}

/// Sessions the emulator still runs that nobody accounts for: not in a pool queue, not a
/// prober's (a get-session caller owns its session), not running a batch that is still open.
pub fn sessions_left_running(
    active: &[String],
    pooled: &HashSet<String>,
    probers: &[SessionId],
    rows: &HashMap<BatchId, BatchRow>,
) -> Vec<String> {
    let mut accounted: HashSet<&str> = pooled.iter().map(String::as_str).collect();
    accounted.extend(probers.iter().map(SessionId::as_str));
    accounted.extend(
        rows.values()
            .filter(|r| !r.status.is_terminal())
            .filter_map(|r| r.session_id.as_ref().map(SessionId::as_str)),
    );
    active
        .iter()
        .filter(|id| !accounted.contains(id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::batch::{BatchStatus, ObjectRef};

    fn row(batch: &str, attempt: u32, session: &SessionId) -> BatchRow {
        let mut row = BatchRow::new_running(
            BatchId::parse(batch).unwrap(),
            vec![ObjectRef::new("bucket", format!("incoming/{batch}/a.txt"))],
            3,
            session.clone(),
            1,
            2,
        );
        row.attempt = attempt;
        row.status = BatchStatus::Succeeded;
        row
    }

    fn write(batch: &str, attempt: u32, session: &SessionId) -> ResultWrite {
        ResultWrite {
            batch_id: batch.into(),
            attempt,
            session_tag: document_agent::run::session_tag(session),
            via: "object",
        }
    }

    #[test]
    fn result_keys_are_read_back_into_batch_attempt_and_session() {
        let parsed = parse_result_key("results/", "results/soak-0001/attempt-2/session-ab12.json").unwrap();
        assert_eq!(
            (parsed.batch_id.as_str(), parsed.attempt, parsed.session_tag.as_str()),
            ("soak-0001", 2, "ab12")
        );
        assert!(parse_result_key("results/", "results/soak-0001/attempt-x/session-ab12.json").is_none());
        assert!(parse_result_key("results/", "elsewhere/soak-0001/attempt-1/session-ab12.json").is_none());
    }

    #[test]
    fn when_a_second_session_writes_an_attempt_then_it_counts_once_as_two_sessions_and_as_foreign() {
        let (owner, other, prober) = (SessionId::generate(), SessionId::generate(), SessionId::generate());
        let rows: HashMap<BatchId, BatchRow> = [row("b-1", 2, &owner)]
            .into_iter()
            .map(|r| (r.batch_id.clone(), r))
            .collect();
        let writes = [
            write("b-1", 1, &other),
            write("b-1", 2, &owner),
            write("b-1", 2, &owner),
            write("b-1", 2, &other),
            write("b-2", 1, &prober),
        ];
        let audit = audit_writes(&writes, &rows, std::slice::from_ref(&prober));
        assert_eq!(audit.attempts_on_two_sessions.len(), 1);
        assert_eq!(audit.attempts_on_two_sessions[0].1, 2);
        assert_eq!(audit.foreign_result_writes, vec![writes[3].clone(), writes[4].clone()]);
    }

    #[test]
    fn sessions_of_pools_probers_and_open_batches_are_accounted_for() {
        let (pooled, prober, open, settled, stray) = (
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
        );
        let mut open_row = row("open-1", 1, &open);
        open_row.status = BatchStatus::Running;
        let rows: HashMap<BatchId, BatchRow> = [open_row, row("done-1", 1, &settled)]
            .into_iter()
            .map(|r| (r.batch_id.clone(), r))
            .collect();
        let active: Vec<String> = [&pooled, &prober, &open, &settled, &stray]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let left = sessions_left_running(&active, &[pooled.to_string()].into(), &[prober], &rows);
        assert_eq!(left, vec![settled.to_string(), stray.to_string()]);
    }
}
