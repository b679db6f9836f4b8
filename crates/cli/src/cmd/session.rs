//! `warmpool session show`: the audit trail of a pool with leases, per user or per session
//! (newest first): every handout, reuse, release and expiry, with its time, source and
//! correlation ID. Sessions appear as the keyed hash the logs use.

use crate::cmd::QUEUE_CALLS_TIMEOUT;
use crate::error::{CliError, bounded};
use crate::output::OutputArgs;
use crate::table::Table;
use warmpool_core::aws::{self, DynamoLeaseTable};
use warmpool_core::clock::format_utc;
use warmpool_core::config::Env;
use warmpool_core::lease::ports::{AuditQuery, LeaseTable};
use warmpool_core::lease::{AuditRecord, UserId};
use warmpool_core::session::{LogKey, SessionId};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The audit trail of one user or one session.
    Show(ShowArgs),
}

impl Command {
    pub async fn run(self) -> Result<(), CliError> {
        match self {
            Self::Show(args) => args.run().await,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("whose").required(true).args(["user", "session", "session_hash"])))]
pub struct ShowArgs {
    /// A user ID, as get-session callers pass it.
    #[arg(long)]
    pub user: Option<String>,
    /// A full session ID; it is hashed under SESSION_LOG_KEY (the pool's), as logs show it.
    #[arg(long)]
    pub session: Option<String>,
    /// A session as logs and audit records show it (16 hex digits).
    #[arg(long)]
    pub session_hash: Option<String>,
    /// The pool's lease table (the stack output LeaseTableName).
    #[arg(long, env = "LEASE_TABLE_NAME")]
    pub table: String,
    /// Most records shown.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl ShowArgs {
    fn query(&self) -> Result<AuditQuery, CliError> {
        if let Some(user) = &self.user {
            return UserId::parse(user.clone())
                .map(AuditQuery::User)
                .map_err(|e| CliError::invalid("--user", e.to_string()));
        }
        if let Some(session) = &self.session {
            let id = SessionId::parse(session.clone()).map_err(|e| CliError::invalid("--session", e.to_string()))?;
            let key = LogKey::from_env(&Env::from_process())?;
            return Ok(AuditQuery::Session(id.log_id(&key).to_string()));
        }
        let hash = self.session_hash.clone().unwrap_or_default();
        if hash.len() != 16 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CliError::invalid(
                "--session-hash",
                "16 hex digits, as the logs show a session",
            ));
        }
        Ok(AuditQuery::Session(hash.to_ascii_lowercase()))
    }

    pub async fn run(self) -> Result<(), CliError> {
        let query = self.query()?;
        let sdk = aws::load_config().await;
        // Reading needs no expiry: items are written by the functions.
        let table = DynamoLeaseTable::new(aws_sdk_dynamodb::Client::new(&sdk), &self.table, Default::default());
        let records: Vec<AuditRecord> = bounded(
            "session show",
            QUEUE_CALLS_TIMEOUT,
            table.audit(&query, usize::from(self.limit)),
        )
        .await?;
        self.output.print(&records, || render(&records))?;
        Ok(())
    }
}

pub fn render(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records (none yet, or past their retention)\n".into();
    }
    let mut table =
        Table::with_header(["time (UTC)", "event", "source", "user", "session", "correlation"]).values_left();
    for r in records {
        table.row([
            format_utc(r.at),
            r.event.label().to_string(),
            r.source.label().to_string(),
            r.user_id.as_ref().map_or("-", |u| u.as_str()).to_string(),
            r.session.clone(),
            r.correlation_id.as_ref().map_or("-", |c| c.as_str()).to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warmpool_core::lease::AuditEvent;
    use warmpool_core::pool::claim::Source;

    #[test]
    fn times_read_as_utc_calendar_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_796_136_462_637), "2026-12-01T14:47:42.637Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_trail_shows_each_event_with_its_user_session_hash_and_correlation() {
        let record = AuditRecord {
            at: 0,
            event: AuditEvent::Reuse,
            source: Source::Reused,
            user_id: Some(UserId::parse("alice").unwrap()),
            correlation_id: None,
            session: "00112233aabbccdd".into(),
            id: "w".into(),
            expires_at: 1,
        };
        let text = render(&[record]);
        for expected in [
            "reuse",
            "reused",
            "alice",
            "00112233aabbccdd",
            "1970-01-01T00:00:00.000Z",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
        assert!(render(&[]).contains("no audit records"));
    }
}
