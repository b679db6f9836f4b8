//! `warmpool pool prewarm`: the pre-warm a known burst needs, from the same formulas the
//! scheduled run applies ([`Burst::prewarm`]). Computes and prints; calls nothing.

use crate::error::CliError;
use crate::output::OutputArgs;
use serde::Serialize;
use std::time::Duration;
use warmpool_core::pool::target::Burst;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Claims per second outside the burst.
    #[arg(long)]
    pub base_rate: f64,
    /// Claims per second during the burst.
    #[arg(long)]
    pub peak_rate: f64,
    /// How long the burst lasts, in seconds.
    #[arg(long)]
    pub burst_secs: u64,
    /// replenish's creation budget (sessions per second).
    #[arg(long, env = "CREATION_BUDGET_PER_SEC", default_value_t = 20.0)]
    pub budget: f64,
    /// p95 warmup time in milliseconds (the WarmupLatency metric).
    #[arg(long, default_value_t = 5_000)]
    pub warmup_ms: u64,
    /// The scheduled run's period in seconds (MAINTENANCE_INTERVAL_SECS).
    #[arg(long, env = "MAINTENANCE_INTERVAL_SECS", default_value_t = 60)]
    pub interval_secs: u64,
    /// When each burst starts, UTC: `HH:MM` (daily) or `*:MM` (hourly); repeatable.
    #[arg(long)]
    pub starts_at: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `pool prewarm` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrewarmPlan {
    /// Sessions to hold from the lead before each burst to its end.
    pub target: u32,
    pub lead_secs: u64,
    /// The least `MAX_CREATIONS_PER_RUN` that lets one scheduled run build at the budget.
    pub min_creations_per_run: f64,
    pub interval_secs: u64,
    /// `POOL_TARGET_SCHEDULE` for `--starts-at`; absent without it.
    pub pool_target_schedule: Option<String>,
}

impl PrewarmPlan {
    pub fn render(&self) -> String {
        let mut out = format!(
            "target {} sessions, from {} min before each burst to its end\n\
             MAX_CREATIONS_PER_RUN >= {} (budget x {} s schedule), so the build runs at the budget",
            self.target,
            self.lead_secs / 60,
            self.min_creations_per_run,
            self.interval_secs
        );
        if let Some(schedule) = &self.pool_target_schedule {
            out.push_str(&format!("\nPOOL_TARGET_SCHEDULE={schedule}"));
        }
        out
    }
}

impl Args {
    pub fn run(self) -> Result<(), CliError> {
        let plan = self.plan()?;
        self.output.print(&plan, || plan.render())?;
        Ok(())
    }

    pub fn plan(&self) -> Result<PrewarmPlan, CliError> {
        let invalid = |reason| CliError::InvalidArgument { name: "burst", reason };
        let length = Duration::from_secs(self.burst_secs);
        let burst = Burst {
            base_rate: self.base_rate,
            peak_rate: self.peak_rate,
            length,
        };
        let plan = burst
            .prewarm(self.budget, Duration::from_millis(self.warmup_ms))
            .map_err(invalid)?;
        let pool_target_schedule = if self.starts_at.is_empty() {
            None
        } else {
            let windows = self
                .starts_at
                .iter()
                .map(|start| plan.windows(start, length))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            Some(windows.join("; "))
        };
        Ok(PrewarmPlan {
            target: plan.target,
            lead_secs: plan.lead.as_secs(),
            min_creations_per_run: (self.budget * self.interval_secs as f64).ceil(),
            interval_secs: self.interval_secs,
            pool_target_schedule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cli, Command};
    use clap::Parser;

    fn parsed(extra: &[&str]) -> Args {
        let mut line = vec![
            "warmpool",
            "pool",
            "prewarm",
            "--base-rate",
            "10",
            "--peak-rate",
            "50",
            "--burst-secs",
            "300",
            "--budget",
            "20",
            "--starts-at",
            "*:25",
            "--starts-at",
            "*:55",
        ];
        line.extend_from_slice(extra);
        let cli = Cli::try_parse_from(line).unwrap();
        let Command::Pool(crate::cmd::pool::Command::Prewarm(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        args
    }

    #[test]
    fn pool_prewarm_prints_the_window_a_burst_needs() {
        let args = parsed(&[]);
        let plan = args.plan().unwrap().render();
        assert!(plan.starts_with("target 9250 sessions, from 16 min before"), "{plan}");
        assert!(plan.contains("MAX_CREATIONS_PER_RUN >= 1200"), "{plan}");
        assert!(
            plan.ends_with("POOL_TARGET_SCHEDULE=* *:09-*:30=9250; * *:39-*:60=9250"),
            "{plan}"
        );
        let short_budget = Args { budget: 10.0, ..args };
        assert!(matches!(
            short_budget.plan(),
            Err(CliError::InvalidArgument { name: "burst", .. })
        ));
    }

    #[test]
    fn the_json_plan_holds_the_same_figures() {
        let args = parsed(&["--output", "json"]);
        let text = args.output.render(&args.plan().unwrap(), || unreachable!());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["target"], 9250);
        assert_eq!(json["minCreationsPerRun"], 1200.0);
        assert_eq!(json["poolTargetSchedule"], "* *:09-*:30=9250; * *:39-*:60=9250");
    }
}
