//! `warmpool pool status`: the report of [`crate::pool_status`], optionally after waiting
//! for the pool to fill to a depth (with a bar of the visible sessions).

use crate::cmd::QUEUE_CALLS_TIMEOUT;
use crate::error::{CliError, bounded};
use crate::output::OutputArgs;
use crate::pool_status::{StatusReport, peek, peek_stats, wait_for_depth};
use crate::ui::Ui;
use std::time::Duration;
use warmpool_core::aws::{self, SqsPoolQueue};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::config::Env;
use warmpool_core::pool::Lifecycle;
use warmpool_core::pool::maintenance::MaintenanceRules;
use warmpool_core::pool::target::{Observation, TargetPolicy};
use warmpool_core::ports::{PoolMaintenance, PoolQueue};

/// How often a wait for depth reads the queue's attributes.
const DEPTH_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pool queue's URL.
    #[arg(long, env = "POOL_QUEUE_URL")]
    pub queue_url: String,
    /// Messages to peek at most (zero-visibility receives, never deleted).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub sample: u32,
    /// Sessions that pass a limit within this many seconds count as near it.
    #[arg(long, default_value_t = 120)]
    pub horizon_secs: u64,
    /// Before reporting, wait until at least this many sessions are visible (bounded by
    /// --wait-secs).
    #[arg(long, requires = "wait_secs")]
    pub wait_depth: Option<u32>,
    /// Wait up to this many seconds for --wait-depth.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub wait_secs: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        // The same settings replenish reads, so the picture is the one maintenance acts on.
        let env = Env::from_process();
        let rules = MaintenanceRules::from_env(&env, Lifecycle::from_env(&env)?)?;
        let target_policy = TargetPolicy::from_env(&env)?;
        let sdk = aws::load_config().await;
        let queue = SqsPoolQueue::new(aws_sdk_sqs::Client::new(&sdk), &self.queue_url);
        if let Some(at_least) = self.wait_depth {
            self.wait_for(&queue, at_least, ui).await?;
        }
        let (depth, oldest_sent_at_ms, bodies) = bounded("pool status", QUEUE_CALLS_TIMEOUT, async {
            Ok::<_, CliError>((
                queue.depth().await?,
                queue.oldest_sent_at(10).await?,
                peek(&queue, self.sample).await?,
            ))
        })
        .await?;
        let now = SystemClock.now_ms();
        let stats = peek_stats(&bodies, now, &rules, Duration::from_secs(self.horizon_secs));
        let observation = Observation {
            depth,
            oldest_sent_at_ms,
            warmup_p95: None,
        };
        let report = StatusReport::new(self.queue_url, depth, self.sample, stats)
            .with_target(target_policy.target(now, &observation));
        self.output.print(&report, || report.render())?;
        Ok(())
    }

    /// Waits for the pool to fill, with a bar of the visible sessions.
    async fn wait_for(&self, queue: &SqsPoolQueue, at_least: u32, ui: Ui) -> Result<(), CliError> {
        let wait = Duration::from_secs(self.wait_secs);
        let progress = ui.bar("waiting for the pool to fill", u64::from(at_least));
        let depth = bounded(
            "pool status --wait-depth",
            wait + QUEUE_CALLS_TIMEOUT,
            wait_for_depth(queue, at_least, wait, DEPTH_POLL, |depth| {
                progress.set_position(depth.visible.min(u64::from(at_least)));
                progress.set_message(format!("visible, {} in flight", depth.in_flight));
            }),
        )
        .await?;
        if depth.visible >= u64::from(at_least) {
            progress.finish(format!("{} visible", depth.visible));
        } else {
            progress.give_up(format!(
                "{} visible, not filled within {} s",
                depth.visible, self.wait_secs
            ));
        }
        Ok(())
    }
}
