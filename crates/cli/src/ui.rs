//! What the person at the terminal sees besides a command's result, and how much of it: the
//! log filter, notes ("no --emulator-url: warm-hit rates are unknown") and progress of long
//! waits, all on stderr. `-v` and `-q` are global: they can stand anywhere on the line.

use crate::progress::Progress;
use clap::ArgAction;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Verbosity {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (default: warnings, or RUST_LOG).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less on stderr: errors only, no progress or notes; `batch submit` prints only the batch ID.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Verbosity {
    /// The log filter `-v`/`-q` ask for; `None` when neither was given.
    pub fn log_filter(self) -> Option<&'static str> {
        match (self.quiet, self.verbose) {
            (true, _) => Some("error"),
            (false, 0) => None,
            (false, 1) => Some("info"),
            (false, 2) => Some("debug"),
            (false, _) => Some("trace"),
        }
    }

    /// Logs to stderr, so that stdout stays parseable. `-v`/`-q` win over `RUST_LOG`, which
    /// wins over the default of warnings.
    pub fn init_logging(self) {
        let filter = match self.log_filter() {
            Some(level) => EnvFilter::new(level),
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        };
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
}

/// Handed to every command's `run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub verbosity: Verbosity,
}

impl Ui {
    pub fn new(verbosity: Verbosity) -> Self {
        Self { verbosity }
    }

    pub fn quiet(self) -> bool {
        self.verbosity.quiet
    }

    /// A line for the person running the command, left out under `-q`.
    pub fn note(self, text: impl std::fmt::Display) {
        if !self.quiet() {
            eprintln!("{text}");
        }
    }

    /// A spinner for a wait of unknown length (see [`Progress`]).
    pub fn spinner(self, what: &str) -> Progress {
        if self.quiet() {
            Progress::hidden()
        } else {
            Progress::spinner(what)
        }
    }

    /// A bar for a wait for `length` things.
    pub fn bar(self, what: &str, length: u64) -> Progress {
        if self.quiet() {
            Progress::hidden()
        } else {
            Progress::bar(what, length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_raises_the_log_level_and_q_lowers_it() {
        let at = |verbose, quiet| Verbosity { verbose, quiet }.log_filter();
        assert_eq!(at(0, false), None);
        assert_eq!(at(1, false), Some("info"));
        assert_eq!(at(2, false), Some("debug"));
        assert_eq!(at(5, false), Some("trace"));
        assert_eq!(at(0, true), Some("error"));
    }
}
