//! `warmpool batch status <batchId>`: the flags, the wait (with a spinner saying where the
//! batch is) and the printing of [`crate::batch::status`].

use crate::batch;
use crate::cmd::QUEUE_CALLS_TIMEOUT;
use crate::emulator_admin::{EmulatorAdmin, Warmth};
use crate::error::{CliError, bounded};
use crate::output::{OutputArgs, embedded};
use crate::ui::Ui;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::aws::{self, DynamoTrackingTable, S3DocumentStore};
use warmpool_core::batch::ports::DocumentStore;
use warmpool_core::batch::settings::TrackingLayout;
use warmpool_core::batch::{BatchId, BatchRow, ObjectRef};
use warmpool_core::config::Env;

/// Largest result document `--result` downloads.
const MAX_RESULT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The batch ID (what `batch submit` printed).
    pub batch_id: String,
    /// The tracking table.
    #[arg(long, env = "TRACKING_TABLE")]
    pub table: String,
    /// Wait up to this many seconds for the batch to finish.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub wait_secs: u64,
    /// Also print the result document from S3.
    #[arg(long)]
    pub result: bool,
    /// Path-style S3 addressing (the local stack).
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub s3_path_style: bool,
    /// AgentCore emulator base URL, to show whether the batch landed on a warm microVM.
    #[arg(long, env = "AGENTCORE_EMULATOR_URL")]
    pub emulator_url: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `batch status --output json`: the row's own fields, and what the flags added.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView<'a> {
    #[serde(flatten)]
    pub row: &'a BatchRow,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microvm: Option<Warmth>,
    /// The result document (`--result`), as JSON when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let batch_id =
            BatchId::parse(self.batch_id.clone()).map_err(|e| CliError::invalid("batch id", e.to_string()))?;
        let sdk = aws::load_config().await;
        let layout = TrackingLayout::from_env(&Env::from_process())?;
        let table = DynamoTrackingTable::new(aws_sdk_dynamodb::Client::new(&sdk), &self.table, layout);
        let row = self
            .wait_for_row(&table, &batch_id, ui)
            .await?
            .ok_or_else(|| CliError::NoSuchBatch(batch_id.to_string()))?;
        let warmth = match (&self.emulator_url, &row.session_id) {
            // The batch invocation is the last one its session ever gets. A failing admin view
            // costs that line, not the row.
            (Some(url), Some(session)) => Some(match EmulatorAdmin::new(url)?.last_invocations().await {
                Ok(last) => last.warmth(session.as_str()),
                Err(error) => {
                    tracing::warn!(%error, "cannot tell warmth from the emulator");
                    Warmth::Unknown
                }
            }),
            _ => None,
        };
        let result = match (self.result, &row.result_ref) {
            (true, Some(result)) => {
                let store = S3DocumentStore::new(aws::s3_client(&sdk, self.s3_path_style));
                Some(download(&store, result).await?)
            }
            _ => None,
        };
        let view = StatusView {
            row: &row,
            microvm: warmth,
            result: result.as_deref().map(embedded),
        };
        self.output.print(&view, || {
            let mut text = batch::render_status(&row, warmth.map(Warmth::label));
            if let Some(document) = &result {
                text.push_str(&String::from_utf8_lossy(document));
            }
            text
        })?;
        Ok(())
    }

    /// The row, after waiting up to `--wait-secs` for it to finish, with a spinner saying
    /// where the batch is meanwhile.
    async fn wait_for_row(
        &self,
        table: &DynamoTrackingTable,
        batch_id: &BatchId,
        ui: Ui,
    ) -> Result<Option<BatchRow>, CliError> {
        let wait = Duration::from_secs(self.wait_secs);
        let progress = if wait.is_zero() {
            crate::progress::Progress::hidden()
        } else {
            ui.spinner(&format!("waiting for batch {batch_id}"))
        };
        let row = bounded(
            "batch status",
            wait + QUEUE_CALLS_TIMEOUT,
            batch::status(table, batch_id, wait, |row| progress.set_message(describe(row))),
        )
        .await?;
        if row.as_ref().is_some_and(|r| r.status.is_terminal()) {
            progress.finish(describe(row.as_ref()));
        } else {
            progress.give_up(format!(
                "{}, not finished within {} s",
                describe(row.as_ref()),
                self.wait_secs
            ));
        }
        Ok(row)
    }
}

/// Where a batch is, in a few words.
pub fn describe(row: Option<&BatchRow>) -> String {
    match row {
        None => "no tracking row yet".to_string(),
        Some(row) => format!(
            "{}, attempt {} of {}",
            row.status.as_str(),
            row.attempt,
            row.max_attempts
        ),
    }
}

async fn download(store: &S3DocumentStore, result_ref: &str) -> Result<Vec<u8>, CliError> {
    let location = ObjectRef::parse(result_ref).map_err(|e| CliError::invalid("resultRef", e.to_string()))?;
    let object = bounded(
        "result download",
        QUEUE_CALLS_TIMEOUT,
        store.get(&location, MAX_RESULT_BYTES),
    )
    .await?;
    Ok(object.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cli, Command};
    use clap::Parser;
    use warmpool_core::batch::BatchStatus;
    use warmpool_core::session::SessionId;

    fn row() -> BatchRow {
        let mut row = BatchRow::new_running(
            BatchId::parse("case-9").unwrap(),
            vec![ObjectRef::new("docs", "incoming/case-9/a.txt")],
            3,
            SessionId::generate(),
            1_000,
            61_000,
        );
        row.status = BatchStatus::Succeeded;
        row
    }

    #[test]
    fn batch_status_takes_the_documented_arguments() {
        let cli = Cli::try_parse_from([
            "warmpool",
            "batch",
            "status",
            "claim-4711-ab12",
            "--table",
            "t",
            "--wait-secs",
            "60",
            "--result",
        ])
        .unwrap();
        let Command::Batch(crate::cmd::batch::Command::Status(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            (args.batch_id.as_str(), args.wait_secs, args.result),
            ("claim-4711-ab12", 60, true)
        );
        let too_long = [
            "warmpool",
            "batch",
            "status",
            "x",
            "--table",
            "t",
            "--wait-secs",
            "4000",
        ];
        assert!(Cli::try_parse_from(too_long).is_err());
    }

    #[test]
    fn the_json_view_keeps_the_rows_fields_at_the_top_and_adds_warmth_and_result() {
        let row = row();
        let view = StatusView {
            row: &row,
            microvm: Some(Warmth::Warm),
            result: Some(embedded(br#"{"summary":"ok"}"#)),
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["batchId"], "case-9");
        assert_eq!(json["status"], "SUCCEEDED");
        assert_eq!(json["microvm"], "warm");
        assert_eq!(json["result"]["summary"], "ok");
        let bare = serde_json::to_value(StatusView {
            row: &row,
            microvm: None,
            result: None,
        })
        .unwrap();
        assert!(bare.get("microvm").is_none() && bare.get("result").is_none(), "{bare}");
    }

    #[test]
    fn the_wait_describes_where_the_batch_is() {
        assert_eq!(describe(None), "no tracking row yet");
        assert_eq!(describe(Some(&row())), "SUCCEEDED, attempt 1 of 3");
    }
}
