//! `warmpool demo compare`: the flags, progress and printing of [`crate::compare`].

use crate::cmd::agent::{AgentArgs, AgentSide};
use crate::compare::{Comparison, ComparisonReport, Route};
use crate::emulator_admin::EmulatorAdmin;
use crate::error::CliError;
use crate::output::{OutputArgs, to_json};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Invocations per route.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub invocations: u32,
    /// Invocations in flight at once, per route.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Also write the report, every sample included, as JSON to this file (for `warmpool
    /// demo`, which shows the table and keeps the file; prefer --output json).
    #[arg(long, hide = true)]
    pub json_out: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let (output, json_out) = (self.output, self.json_out.clone());
        let (n, concurrency) = (self.invocations as usize, self.concurrency as usize);
        let side = AgentSide::connect(self.agent).await?;
        let comparison = Comparison {
            claims: &side.claims,
            agent: &side.agent,
            payload: &side.payload,
            concurrency,
            call_timeout: side.call_timeout,
        };
        let mut runs = Vec::new();
        for (route, what) in [
            (Route::WithoutPool, "without the pool (a new session each)"),
            (Route::ThroughPool, "through the pool (claim, then invoke)"),
        ] {
            let progress = ui.bar(&format!("invocations {what}, {concurrency} at a time"), n as u64);
            let samples = comparison.run(route, n, &progress).await;
            let failed = samples.iter().filter(|s| s.error.is_some()).count();
            progress.finish(format!("done, {failed} failed"));
            runs.push(samples);
        }
        let through = runs.pop().unwrap_or_default();
        let without = runs.pop().unwrap_or_default();
        let mut report = ComparisonReport::new(without, through);
        // Read once both routes have run: failing here must not throw their results away.
        match side.admin.as_ref().map(EmulatorAdmin::last_invocations) {
            Some(last) => match last.await {
                Ok(last) => report.attach_warmth(&last),
                Err(error) => tracing::warn!(%error, "cannot tell warmth from the emulator"),
            },
            None => ui.note("no --emulator-url: warm-hit rates are unknown"),
        }
        output.print(&report, || report.render())?;
        for error in report.distinct_errors() {
            eprintln!("error: {error}");
        }
        if let Some(path) = json_out {
            std::fs::write(&path, to_json(&report)).map_err(|source| CliError::Write { path, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Cli, Command};
    use crate::output::Format;
    use clap::Parser;

    fn compare(line: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(["warmpool", "demo", "compare"].iter().chain(line))?;
        let Command::Demo(crate::cmd::demo::Args {
            command: Some(crate::cmd::demo::Command::Compare(args)),
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command)
        };
        Ok(args)
    }

    const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-agent";

    #[test]
    fn demo_compare_takes_the_documented_flags() {
        let args = compare(&[
            "--invocations",
            "20",
            "--concurrency",
            "4",
            "--runtime-arn",
            ARN,
            "--emulator-url",
            "http://127.0.0.1:9090",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!((args.invocations, args.concurrency), (20, 4));
        assert_eq!(args.agent.function, "get-session");
        assert_eq!(args.output.output, Format::Json);
        assert_eq!(compare(&["-n", "7", "--runtime-arn", ARN]).unwrap().invocations, 7);
    }

    #[test]
    fn the_hidden_json_out_of_the_demo_script_still_parses() {
        let args = compare(&["--invocations", "20", "--runtime-arn", ARN, "--json-out", "out.json"]).unwrap();
        assert_eq!(args.json_out.as_deref(), Some("out.json"));
        assert!(
            compare(&["--n", "20", "--runtime-arn", ARN]).is_err(),
            "--n is now -n/--invocations"
        );
    }

    #[test]
    fn a_concurrency_or_count_of_zero_is_refused() {
        assert!(compare(&["--concurrency", "0", "--runtime-arn", "arn:x:runtime/y"]).is_err());
        assert!(compare(&["--invocations", "0", "--runtime-arn", "arn:x:runtime/y"]).is_err());
    }
}
