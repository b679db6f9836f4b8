//! `warmpool plan`: how big a pool, on which schedule, at what cost, for this traffic. Reads a
//! trace (or a built-in profile), runs every candidate configuration through the bench's own
//! simulation (`warmpool_simulation::plan`) with progress on stderr, and prints the figures,
//! the frontier, the recommendation for `--goal` and the `make deploy-pool` line; `--chart`
//! draws it (`crate::chart`). Calls nothing remote.

use crate::chart;
use crate::error::CliError;
use crate::output::OutputArgs;
use crate::table::Table;
use crate::ui::Ui;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warmpool_simulation::Conversation;
use warmpool_simulation::cost::Pricing;
use warmpool_simulation::plan::{Params, Plan, Trace, TraceFormat, builtin, plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Told apart by the content.
    Auto,
    /// One request timestamp a line (RFC 3339 UTC or epoch seconds), optional header.
    Timestamps,
    /// `minute,count` lines, optional header.
    PerMinute,
    /// `aws cloudwatch get-metric-data` output of ClaimFromPool and ClaimFresh sums per minute.
    Cloudwatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    V1,
    V2,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("traffic").required(true).args(["trace", "profile"])))]
pub struct Args {
    /// The traffic: a CSV of request timestamps, a CSV of per-minute counts, or a CloudWatch export.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// A built-in traffic profile instead of a trace: steady, burst, day, burst-quota100, week.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(builtin::NAMES))]
    pub profile: Option<String>,
    /// How to read the trace.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Also draw the charts: PATH.svg and PATH.png over time, PATH-frontier.svg and .png.
    #[arg(long, value_name = "PATH.svg")]
    pub chart: Option<PathBuf>,
    /// The warm-hit rate the recommendation must reach, 0 to 1.
    #[arg(long, default_value_t = 0.99)]
    pub goal: f64,
    /// The account's session-creation quota per second (Service Quotas; AgentCore default 25).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..))]
    pub creation_quota: u32,
    /// The pool's share of it (CreationBudgetPerSec); default 80% of the quota.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub creation_budget: Option<u32>,
    /// The runtime's platform version (cold-start times and prices).
    #[arg(long, value_enum, default_value_t = PlatformArg::V1)]
    pub platform: PlatformArg,
    /// The runtime's idleRuntimeSessionTimeout, seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(60..=28_800))]
    pub idle_timeout_secs: u64,
    /// The runtime's maxLifetime, seconds.
    #[arg(long, default_value_t = 28_800, value_parser = clap::value_parser!(u64).range(60..=28_800))]
    pub max_lifetime_secs: u64,
    /// Memory one idle session holds, GB (default: the platform's published figure).
    #[arg(long)]
    pub gb_per_session: Option<f64>,
    /// Price of a GB-hour of session memory, USD (default: the platform's us-east-1 price).
    #[arg(long)]
    pub usd_per_gb_hour: Option<f64>,
    /// With leases on: turns per conversation; adds every candidate again with affinity.
    #[arg(long, requires = "think_secs")]
    pub turns: Option<NonZeroU32>,
    /// With --turns: mean think time between turns, seconds.
    #[arg(long, requires = "turns")]
    pub think_secs: Option<u64>,
    /// Seed of the simulated arrivals and latencies.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Candidates simulated at once (default: the available cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: Option<u32>,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let (trace, params) = (self.trace()?, self.params()?);
        for note in &trace.notes {
            ui.note(format!("trace: {note}"));
        }
        let threads = self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            |t| t as usize,
        );
        let started = Instant::now();
        let plan = simulate(trace, params, threads, ui).await?;
        ui.note(format!(
            "{} candidates simulated in {:.1} s",
            plan.candidates.len(),
            started.elapsed().as_secs_f64()
        ));
        // The report first: a chart that cannot be written costs only the chart.
        self.output.print(&plan, || render(&plan))?;
        if let Some(svg) = &self.chart {
            let files = chart::write(&plan, svg).map_err(|e| CliError::invalid("chart", e.to_string()))?;
            for file in files {
                ui.note(format!("chart: {}", file.display()));
            }
        }
        Ok(())
    }

    /// The trace, read whole, or the built-in profile.
    pub fn trace(&self) -> Result<Trace, CliError> {
        if let Some(name) = &self.profile {
            return builtin::trace(name).ok_or_else(|| CliError::invalid("profile", format!("no profile {name:?}")));
        }
        let Some(path) = &self.trace else {
            return Err(CliError::invalid("trace", "--trace FILE or --profile NAME"));
        };
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let format = match self.format {
            Format::Auto => TraceFormat::Auto,
            Format::Timestamps => TraceFormat::Timestamps,
            Format::PerMinute => TraceFormat::PerMinute,
            Format::Cloudwatch => TraceFormat::Cloudwatch,
        };
        Trace::parse(&path.display().to_string(), &text, format).map_err(|e| CliError::invalid("trace", e.to_string()))
    }

    pub fn params(&self) -> Result<Params, CliError> {
        if !(self.goal > 0.0 && self.goal <= 1.0) {
            return Err(CliError::invalid(
                "goal",
                format!("{} is not a hit rate in (0, 1]", self.goal),
            ));
        }
        let platform = match self.platform {
            PlatformArg::V1 => agentcore_emulator::lifecycle::Platform::V1,
            PlatformArg::V2 => agentcore_emulator::lifecycle::Platform::V2,
        };
        let budget = self.creation_budget.unwrap_or((self.creation_quota * 4 / 5).max(1));
        if budget > self.creation_quota {
            return Err(CliError::invalid(
                "creation-budget",
                format!("{budget}/s exceeds the account's quota of {}/s", self.creation_quota),
            ));
        }
        let price = Pricing::of(platform);
        let positive = |name, value: Option<f64>, default: f64| match value {
            Some(v) if !(v.is_finite() && v > 0.0) => {
                Err(CliError::invalid(name, format!("{v} is not a positive number")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(Params {
            creation_quota: self.creation_quota,
            creation_budget: budget,
            platform,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_lifetime: Duration::from_secs(self.max_lifetime_secs),
            gb_per_session: positive("gb-per-session", self.gb_per_session, price.gb_per_session)?,
            usd_per_gb_hour: positive("usd-per-gb-hour", self.usd_per_gb_hour, price.usd_per_gb_hour)?,
            conversation: self.turns.zip(self.think_secs).map(|(turns, think)| Conversation {
                turns,
                think_time: Duration::from_secs(think),
            }),
            goal: self.goal,
            seed: self.seed,
        })
    }
}

/// Runs the planner off the async runtime, with a bar of the requests simulated so far.
async fn simulate(trace: Trace, params: Params, threads: usize, ui: Ui) -> Result<Plan, CliError> {
    let candidates = warmpool_simulation::plan::candidates::candidates(&trace, &params).len() as u64;
    let total = trace.requests().saturating_mul(candidates);
    let progress = ui.bar(
        &format!(
            "simulating {candidates} candidates on {} requests each",
            trace.requests()
        ),
        total,
    );
    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let mut work = tokio::task::spawn_blocking(move || plan(&trace, &params, threads, &counter));
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        tokio::select! {
            finished = &mut work => break finished,
            _ = ticks.tick() => progress.set_position(done.load(Ordering::Relaxed).min(total)),
        }
    };
    match outcome {
        Ok(Ok(plan)) => {
            progress.finish("done");
            Ok(plan)
        }
        Ok(Err(error)) => {
            progress.give_up("failed");
            Err(CliError::invalid("simulation", error.to_string()))
        }
        Err(join) => {
            progress.give_up("failed");
            Err(CliError::invalid("simulation", join.to_string()))
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// The text report: the trace, the candidates, the recommendation and its deploy line.
pub fn render(plan: &Plan) -> String {
    let mut table = Table::with_header([
        "candidate",
        "warm hit",
        "p50 ms",
        "p99 ms",
        "dead IDs",
        "throttles",
        "idle s-h",
        "$/month",
        "claims/req",
        "frontier",
    ]);
    for c in &plan.candidates {
        table.row([
            c.candidate.name.clone(),
            percent(c.warm_hit_rate),
            c.p50_ms.to_string(),
            c.p99_ms.to_string(),
            c.dead_ids_handed_out.to_string(),
            c.creation_throttles.to_string(),
            format!("{:.1}", c.idle_session_hours),
            format!("{:.2}", c.cost_per_month_usd),
            format!("{:.3}", c.claims_per_request),
            if c.on_frontier { "*".into() } else { String::new() },
        ]);
    }
    let mut out = format!(
        "trace {} from {}: {} minutes, {} requests; creation budget {}/s of a {}/s quota, platform {:?}\n",
        plan.trace,
        plan.trace_start,
        plan.trace_minutes,
        plan.requests,
        plan.creation_budget,
        plan.creation_quota,
        plan.platform
    );
    out.push_str(&table.render());
    out.push_str("($/month: idle pool memory for 730 h of this traffic; frontier: nothing cheaper hits more)\n");
    match &plan.recommendation {
        Some(r) => {
            let verdict = if r.goal_reached {
                "reaches"
            } else {
                "comes closest to, but misses,"
            };
            out.push_str(&format!(
                "\nrecommended: {} ({verdict} the {} goal)\n",
                r.name,
                percent(r.goal)
            ));
            if r.affinity {
                out.push_str("  with leases on: callers send their userId to get-session\n");
            }
            out.push_str(&format!(
                "  --parameter-overrides {}\n  {}\n",
                r.parameter_overrides, r.deploy_command
            ));
        }
        None => out.push_str("\nno candidate to recommend\n"),
    }
    out
}

#[cfg(test)]
mod tests;
