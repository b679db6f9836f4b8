//! `warmpool demo` (what `make demo` runs): the whole local stack with batches, a filled pool,
//! the same agent calls without the pool and through it side by side (`demo compare`), the
//! pool refilling itself, one call through the invoke wrapper, then one document batch end to
//! end; then everything it started is stopped, on success, failure or Ctrl-C alike.
//!
//! The steps that are commands of their own run as this binary's children with the stack's
//! environment, exactly as a person would type them after `warmpool local up`; each is bounded.

use crate::cmd::local::up;
use crate::error::CliError;
use crate::ui::Ui;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use warmpool_core::process::shutdown_signal;
use warmpool_local_stack::LocalStack;
use warmpool_local_stack::stack::StackOptions;

/// How long the pool may take to refill itself through get-session's replenish triggers.
const REFILL_WITHIN_SECS: u64 = 120;
/// Added to a child command's own bound before it is killed.
const CHILD_MARGIN: Duration = Duration::from_secs(60);
/// Sessions warmed into the batch pool before the batch is submitted.
const BATCH_POOL_SESSIONS: u32 = 2;

#[derive(Debug, clap::Args)]
#[group(id = "full_demo")]
pub struct Args {
    /// Invocations per route in the comparison, and sessions put in the pool.
    #[arg(short = 'n', long, env = "DEMO_N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub invocations: u32,
    /// Invocations in flight at once per route, and function instances under watch.
    #[arg(long, env = "DEMO_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Bound on a function's first invoke, which compiles it under `cargo lambda watch`.
    #[arg(long, env = "DEMO_FIRST_CALL_TIMEOUT", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub first_call_timeout_secs: u64,
    /// Do not build the binaries first (when they are up to date).
    #[arg(long)]
    pub no_build: bool,
}

impl Args {
    pub async fn run(self, ui: Ui) -> Result<(), CliError> {
        let started = Instant::now();
        let options = self.options()?;
        let stack = up::start(&options, ui).await?;
        let outcome = tokio::select! {
            outcome = self.steps(&stack, ui) => outcome,
            _ = shutdown_signal() => Err(CliError::Interrupted),
        };
        ui.note("\n==> stopping what the demo started");
        let run_dir = stack.run_dir().to_path_buf();
        stack.stop().await;
        match &outcome {
            Ok(()) => ui.note(format!(
                "details: {} (compare.json, service logs); demo took {} s",
                run_dir.display(),
                started.elapsed().as_secs()
            )),
            Err(_) => show_logs(&run_dir),
        }
        outcome
    }

    fn options(&self) -> Result<StackOptions, CliError> {
        let stack = up::StackArgs {
            with_batches: true,
            with_leases: false,
            agent_url: None,
            agent_command: None,
            concurrency: self.concurrency,
            latency_scale: 1.0,
            no_build: self.no_build,
        };
        stack.options(true)
    }

    async fn steps(&self, stack: &LocalStack, ui: Ui) -> Result<(), CliError> {
        let demo = Demo {
            stack,
            ui,
            first_call: Duration::from_secs(self.first_call_timeout_secs),
        };
        self.pool_part(&demo).await?;
        demo.batch_part().await
    }

    async fn pool_part(&self, demo: &Demo<'_>) -> Result<(), CliError> {
        let pool = &demo.stack.pool;
        let (n, concurrency) = (self.invocations.to_string(), self.concurrency.to_string());
        step(
            demo.ui,
            "first get-session call; the pool is empty, so it answers fresh",
        );
        demo.first_call(&pool.lambda_url, "get-session", "{}").await?;
        step(demo.ui, &format!("filling the pool: replenish {{\"count\": {n}}}"));
        demo.first_call(&pool.lambda_url, "replenish", &format!("{{\"count\": {n}}}"))
            .await?;
        step(demo.ui, "pool status");
        demo.warmpool(
            &["pool", "status", "--queue-url", &pool.queue_url, "--sample", &n],
            None,
        )
        .await?;
        step(
            demo.ui,
            &format!("comparing {n} invocations without the pool and {n} through it, {concurrency} at a time"),
        );
        let json_out = demo.stack.run_dir().join("compare.json");
        let compare = [
            "demo",
            "compare",
            "--invocations",
            &n,
            "--concurrency",
            &concurrency,
            "--runtime-arn",
            &pool.runtime_arn,
            "--emulator-url",
            &pool.emulator_url,
            "--json-out",
        ];
        demo.warmpool(&[&compare[..], &[&json_out.display().to_string()]].concat(), None)
            .await?;
        step(
            demo.ui,
            &format!(
                "waiting for the pool to refill through get-session's replenish triggers (up to {REFILL_WITHIN_SECS} s)"
            ),
        );
        let refill = REFILL_WITHIN_SECS.to_string();
        let status = [
            "pool",
            "status",
            "--queue-url",
            &pool.queue_url,
            "--sample",
            "0",
            "--wait-depth",
            &n,
        ];
        demo.warmpool(&[&status[..], &["--wait-secs", &refill]].concat(), None)
            .await?;
        step(demo.ui, "one call through the invoke wrapper (claim, invoke, report)");
        let payload = r#"{"prompt":"summarise the warm pool demo"}"#;
        let invoke = [
            "invoke",
            "--runtime-arn",
            &pool.runtime_arn,
            "--emulator-url",
            &pool.emulator_url,
        ];
        demo.warmpool(&[&invoke[..], &["--payload", payload]].concat(), None)
            .await?;
        Ok(())
    }
}

/// What the steps share.
struct Demo<'a> {
    stack: &'a LocalStack,
    ui: Ui,
    first_call: Duration,
}

impl Demo<'_> {
    /// A `RequestResponse` invoke through a relay, bounded by the first-call timeout, with a
    /// spinner: the first invoke of a function under watch compiles it first.
    async fn first_call(&self, lambda_url: &str, function: &str, payload: &str) -> Result<(), CliError> {
        let progress = self.ui.spinner(&format!(
            "{function}: waiting for cargo lambda watch to build and run it (up to {} s)",
            self.first_call.as_secs()
        ));
        let answer =
            warmpool_local_stack::relay::invoke_sync(lambda_url, function, payload.as_bytes(), self.first_call).await;
        match answer {
            Ok(answer) => {
                progress.finish("answered");
                println!("{}", String::from_utf8_lossy(&answer));
                Ok(())
            }
            Err(error) => {
                progress.give_up("failed");
                Err(error.into())
            }
        }
    }

    /// Runs `warmpool ARGS` with the stack's environment; its output shows, or with `capture`
    /// its stdout is returned (and shown too). Bounded by `bound` (or the first-call timeout)
    /// plus a margin.
    async fn warmpool(&self, args: &[&str], capture: Option<Duration>) -> Result<String, CliError> {
        let exe = std::env::current_exe().map_err(|source| CliError::Read {
            path: "the warmpool binary".into(),
            source,
        })?;
        let mut command = tokio::process::Command::new(exe);
        if self.ui.quiet() {
            command.arg("-q");
        }
        command
            .args(args)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(self.stack.exports().0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let bound = capture.unwrap_or(self.first_call) + CHILD_MARGIN;
        let output = tokio::time::timeout(bound, command.output())
            .await
            .map_err(|_| CliError::TimedOut {
                what: "a demo step",
                after: bound,
            })?
            .map_err(|source| CliError::Read {
                path: format!("warmpool {}", args.join(" ")),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        if !output.status.success() {
            return Err(CliError::DemoStep {
                step: args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
                status: output.status.to_string(),
            });
        }
        Ok(stdout)
    }

    async fn batch_part(&self) -> Result<(), CliError> {
        let Some(batches) = &self.stack.batches else {
            return Ok(());
        };
        step(
            self.ui,
            &format!("warming {BATCH_POOL_SESSIONS} document-agent sessions into the batch pool"),
        );
        let payload = format!("{{\"count\": {BATCH_POOL_SESSIONS}}}");
        self.first_call(&batches.lambda_url, "replenish", &payload).await?;
        step(self.ui, "submitting a folder of documents as one batch");
        let folder = write_documents(self.stack.run_dir())?;
        let submitted = Instant::now();
        let bucket = &batches.resources.documents_bucket;
        let submit = [
            "-q",
            "batch",
            "submit",
            &folder.display().to_string(),
            "--bucket",
            bucket,
        ]
        .map(String::from);
        let submit: Vec<&str> = submit.iter().map(String::as_str).collect();
        let batch_id = self.warmpool(&submit, Some(CHILD_MARGIN)).await?.trim().to_string();
        step(
            self.ui,
            &format!(
                "waiting for batch {batch_id} (the first invoker call compiles it; up to {} s)",
                self.first_call.as_secs()
            ),
        );
        let wait = self.first_call.as_secs().to_string();
        let status = [
            "batch",
            "status",
            &batch_id,
            "--table",
            &batches.resources.tracking_table,
            "--wait-secs",
            &wait,
            "--emulator-url",
            &batches.emulator_url,
            "--result",
        ];
        let shown = self.warmpool(&status, None).await?;
        if !shown
            .lines()
            .any(|l| l.starts_with("status") && l.trim_end().ends_with("SUCCEEDED"))
        {
            return Err(CliError::DemoStep {
                step: format!("batch {batch_id}"),
                status: "did not succeed".into(),
            });
        }
        self.ui.note(format!(
            "submit to SUCCEEDED as the client saw it: {} ms (upload, notification, the pump's poll, the invoker's first start under watch, the run)",
            submitted.elapsed().as_millis()
        ));
        Ok(())
    }
}

fn step(ui: Ui, what: &str) {
    ui.note(format!("\n==> {what}"));
}

/// A claim folder: a letter, notes, a policy and a photo.
fn write_documents(run_dir: &Path) -> Result<PathBuf, CliError> {
    let folder = run_dir.join("claim-4711");
    let photo: Vec<u8> = (0..4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let files: [(&str, &[u8]); 4] = [
        (
            "letter.txt",
            b"Dear insurer,\nOn 3 March my parked car was hit by a delivery van.\nPlease find the photos attached.\n",
        ),
        (
            "notes.md",
            b"# Adjuster notes\n\n- damage to the rear bumper\n- no injuries\n",
        ),
        (
            "policy.json",
            b"{\"policy\":\"P-2026-0042\",\"holder\":\"A. Example\"}\n",
        ),
        ("photos/rear.jpg", &photo),
    ];
    for (name, bytes) in files {
        let path = folder.join(name);
        let write = |source| CliError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, bytes).map_err(|source| CliError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(folder)
}

/// The last lines of every service log, for a demo that failed.
fn show_logs(run_dir: &Path) {
    eprintln!("demo failed; logs in {}", run_dir.display());
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            eprintln!("--- last lines of {}", path.display());
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::demo::{Args, Command as Demo};
    use crate::cmd::{Cli, Command};
    use clap::Parser;

    fn demo(line: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(["warmpool", "demo"].iter().chain(line))?;
        match cli.command {
            Command::Demo(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn demo_without_a_subcommand_is_the_full_demo_with_the_scripts_defaults() {
        let args = demo(&[]).unwrap();
        assert!(args.command.is_none());
        let full = args.full;
        assert_eq!(
            (full.invocations, full.concurrency, full.first_call_timeout_secs),
            (20, 4, 900)
        );
        let full = demo(&["-n", "5", "--concurrency", "2", "--first-call-timeout-secs", "60"])
            .unwrap()
            .full;
        assert_eq!(
            (full.invocations, full.concurrency, full.first_call_timeout_secs),
            (5, 2, 60)
        );
    }

    #[test]
    fn demo_compare_stays_a_subcommand_and_the_full_demos_flags_do_not_mix_with_it() {
        let args = demo(&[
            "compare",
            "--runtime-arn",
            "arn:aws:bedrock-agentcore:us-east-1:1:runtime/x",
        ])
        .unwrap();
        assert!(matches!(args.command, Some(Demo::Compare(_))));
        assert!(demo(&["-n", "101"]).is_err(), "replenish takes at most 100 per trigger");
    }
}
