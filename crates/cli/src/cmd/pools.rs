//! `warmpool pools`: the pools of this account and region, and the check that keeps their
//! creation shares inside the account's quota (`make deploy-pool` runs it before deploying).

use crate::error::{CliError, bounded};
use crate::output::OutputArgs;
use crate::pools::{DeployedPool, PoolRow, discover, render, status};
use crate::ui::Ui;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::aws;
use warmpool_core::pool::quota::{ACCOUNT_QUOTA_PER_SEC, PoolShare, check_account_shares};

/// A listing or a check reads a few pages of stacks and one queue and two metrics per pool.
const CALLS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every pool of the account and region (stacks tagged warmpool:pool): runtime, share of
    /// the creation quota, depth, target in force, warm-hit rate over the last hour.
    List(ListArgs),
    /// Refuses a creation share that, with the other pools' shares, exceeds the account's quota.
    Check(CheckArgs),
}

impl Command {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        match self {
            Self::List(args) => args.run(ui).await,
            Self::Check(args) => args.run(ui).await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

impl ListArgs {
    pub async fn run(self, _ui: Ui) -> Result<(), CliError> {
        let sdk = aws::load_config().await;
        let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
        let (sqs, cloudwatch) = (aws_sdk_sqs::Client::new(&sdk), aws_sdk_cloudwatch::Client::new(&sdk));
        let rows: Vec<PoolRow> = bounded("pools list", CALLS_TIMEOUT, async {
            let mut rows = Vec::new();
            for pool in discover(&cloudformation).await? {
                rows.push(status(&pool, &sqs, &cloudwatch).await);
            }
            Ok::<_, CliError>(rows)
        })
        .await?;
        self.output.print(&rows, || render(&rows))
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The pool about to be deployed (its warmpool:pool tag); its own current share is replaced.
    #[arg(long)]
    pub pool: String,
    /// Its creation share, new sessions per second (the CreationBudgetPerSec parameter).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub share: u32,
    /// The account's new-session quota per second in this region (Service Quotas).
    #[arg(long, default_value_t = ACCOUNT_QUOTA_PER_SEC)]
    pub quota: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport {
    pool: String,
    share_per_sec: u32,
    account_total_per_sec: u32,
    quota_per_sec: u32,
    others: Vec<PoolShare>,
}

impl CheckArgs {
    pub async fn run(self, _ui: Ui) -> Result<(), CliError> {
        let sdk = aws::load_config().await;
        let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
        let pools = bounded("pools check", CALLS_TIMEOUT, discover(&cloudformation)).await?;
        let others: Vec<PoolShare> = pools.iter().map(DeployedPool::share).collect();
        let total =
            check_account_shares(&others, &self.pool, self.share, self.quota).map_err(CliError::Oversubscribed)?;
        let report = CheckReport {
            others: others.into_iter().filter(|s| s.pool != self.pool).collect(),
            pool: self.pool,
            share_per_sec: self.share,
            account_total_per_sec: total,
            quota_per_sec: self.quota,
        };
        self.output.print(&report, || {
            format!(
                "ok: pool {} at {}/s brings the account to {}/s of its {}/s quota",
                report.pool, report.share_per_sec, report.account_total_per_sec, report.quota_per_sec
            )
        })
    }
}
