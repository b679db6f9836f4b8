//! What a long wait shows while it lasts: what is being waited for, how far it got and for how
//! long. On a terminal that is an `indicatif` spinner or bar redrawn in place; when stderr is
//! a pipe or a file (a script, CI, `2>log`), redrawing would fill it with control codes, so the
//! same state is written as plain lines instead: one each time it changes (for a bar, each
//! time it passes another tenth of the way, so a thousand steps make about ten lines) and a
//! repeat now and then while it does not, so a log shows the wait is alive. Always on stderr:
//! stdout carries only the result.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An unchanged state is written again after this long, in plain-line mode.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// Redraw period of a spinner on a terminal.
const TICK: Duration = Duration::from_millis(120);
/// Spinner frames; the last one is what a finished wait shows.
const FRAMES: &[&str] = &["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"];

pub struct Progress(Mode);

enum Mode {
    Hidden,
    Drawn(ProgressBar),
    Lines(Mutex<Lines>),
}

impl Progress {
    /// Shows nothing (`-q`).
    pub fn hidden() -> Self {
        Self(Mode::Hidden)
    }

    /// A wait of unknown length, described by `what` ("waiting for batch b-1").
    pub fn spinner(what: &str) -> Self {
        Self::on_stderr(what, None)
    }

    /// A wait for `length` things to happen ("invocations through the pool", 20).
    pub fn bar(what: &str, length: u64) -> Self {
        Self::on_stderr(what, Some(length))
    }

    /// Plain lines to `out` whatever it is; what non-terminals get, and what tests read.
    pub fn lines(out: Box<dyn Write + Send>, what: &str, length: Option<u64>) -> Self {
        let lines = Lines {
            out,
            what: what.to_string(),
            length,
            position: 0,
            message: String::new(),
            started: Instant::now(),
            printed: None,
        };
        let progress = Self(Mode::Lines(Mutex::new(lines)));
        progress.update(|_| {});
        progress
    }

    fn on_stderr(what: &str, length: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::lines(Box::new(std::io::stderr()), what, length);
        }
        let bar = match length {
            Some(length) => ProgressBar::new(length),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(style(length.is_some(), "{spinner}"));
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(TICK);
        Self(Mode::Drawn(bar))
    }

    /// What the wait is at now ("RUNNING, attempt 1 of 3").
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.0 {
            Mode::Hidden => {}
            Mode::Drawn(bar) => bar.set_message(message),
            Mode::Lines(_) => self.update(|lines| lines.message = message),
        }
    }

    /// How many of the bar's things have happened.
    pub fn set_position(&self, position: u64) {
        match &self.0 {
            Mode::Hidden => {}
            Mode::Drawn(bar) => bar.set_position(position),
            Mode::Lines(_) => self.update(|lines| lines.position = position),
        }
    }

    pub fn inc(&self, delta: u64) {
        match &self.0 {
            Mode::Hidden => {}
            Mode::Drawn(bar) => bar.inc(delta),
            Mode::Lines(_) => self.update(|lines| lines.position += delta),
        }
    }

    /// Ends the wait with its outcome ("SUCCEEDED"); a spinner stays on screen with it.
    pub fn finish(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.0 {
            Mode::Hidden => {}
            Mode::Drawn(bar) => bar.finish_with_message(message),
            Mode::Lines(_) => self.update(|lines| lines.message = message),
        }
    }

    /// Ends a wait that stopped short of its goal ("not filled"): the bar keeps where it got
    /// to and is marked as given up rather than done.
    pub fn give_up(&self, message: impl Into<String>) {
        match &self.0 {
            Mode::Drawn(bar) => {
                bar.set_style(style(bar.length().is_some(), "✗"));
                bar.abandon_with_message(message.into());
            }
            _ => self.finish(message),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Lines)) {
        if let Mode::Lines(lines) = &self.0 {
            // A panic elsewhere while holding the lock leaves plain counters: still usable.
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut lines);
            lines.write_if_due();
        }
    }
}

/// A spinner's or a bar's look on a terminal, led by `mark` (the spinner, or a final mark).
fn style(bar: bool, mark: &str) -> ProgressStyle {
    let template = if bar {
        format!("{mark} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}})")
    } else {
        format!("{mark} {{prefix}} {{msg}} ({{elapsed}})")
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(FRAMES)
        .progress_chars("=> ")
}

impl Drop for Progress {
    /// A wait given up (an error on its way to `main`) leaves no half-drawn spinner behind.
    fn drop(&mut self) {
        if let Mode::Drawn(bar) = &self.0
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

struct Lines {
    out: Box<dyn Write + Send>,
    what: String,
    length: Option<u64>,
    position: u64,
    message: String,
    started: Instant,
    /// The [`Lines::key`] last written, and when.
    printed: Option<(String, Instant)>,
}

impl Lines {
    fn state(&self) -> String {
        let mut state = self.what.clone();
        if let Some(length) = self.length {
            state.push_str(&format!(": {}/{length}", self.position));
        }
        if !self.message.is_empty() {
            state.push_str(if self.length.is_some() { " " } else { ": " });
            state.push_str(&self.message);
        }
        state
    }

    /// What must change for a new line: the message, or for a bar the tenth it is in.
    fn key(&self) -> String {
        let tenth = self
            .length
            .map(|length| (self.position.saturating_mul(10)).checked_div(length).unwrap_or(10));
        format!("{tenth:?} {}", self.message)
    }

    fn write_if_due(&mut self) {
        let key = self.key();
        let due = match &self.printed {
            None => true,
            Some((last, at)) => *last != key || at.elapsed() >= HEARTBEAT,
        };
        if due {
            // Progress is a courtesy: a closed stderr must not fail the command.
            let _ = writeln!(self.out, "{} ({} s)", self.state(), self.started.elapsed().as_secs());
            self.printed = Some((key, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap().lines().map(str::to_string).collect()
        }
    }

    #[test]
    fn off_a_terminal_each_new_state_is_one_plain_line() {
        let out = Captured::default();
        let progress = Progress::lines(Box::new(out.clone()), "waiting for batch b-1", None);
        progress.set_message("not accepted yet");
        progress.set_message("not accepted yet");
        progress.set_message("RUNNING, attempt 1 of 3");
        progress.set_message("SUCCEEDED");
        progress.finish("SUCCEEDED");
        assert_eq!(
            out.lines(),
            vec![
                "waiting for batch b-1 (0 s)",
                "waiting for batch b-1: not accepted yet (0 s)",
                "waiting for batch b-1: RUNNING, attempt 1 of 3 (0 s)",
                "waiting for batch b-1: SUCCEEDED (0 s)",
            ],
            "a finish that changes nothing adds no line"
        );
    }

    #[test]
    fn a_bar_off_a_terminal_counts_what_happened_of_how_many() {
        let out = Captured::default();
        let progress = Progress::lines(Box::new(out.clone()), "pool depth", Some(3));
        progress.set_position(1);
        progress.inc(2);
        progress.finish("full");
        assert_eq!(
            out.lines(),
            vec![
                "pool depth: 0/3 (0 s)",
                "pool depth: 1/3 (0 s)",
                "pool depth: 3/3 (0 s)",
                "pool depth: 3/3 full (0 s)",
            ]
        );
    }

    #[test]
    fn a_long_bar_off_a_terminal_writes_a_line_per_tenth_not_per_step() {
        let out = Captured::default();
        let progress = Progress::lines(Box::new(out.clone()), "invocations", Some(1_000));
        for _ in 0..1_000 {
            progress.inc(1);
        }
        progress.finish("done");
        let lines = out.lines();
        assert_eq!(lines.len(), 12, "{lines:?}");
        assert_eq!(lines[1], "invocations: 100/1000 (0 s)");
        assert_eq!(lines[11], "invocations: 1000/1000 done (0 s)");
    }

    #[test]
    fn hidden_progress_writes_nothing_and_accepts_every_call() {
        let progress = Progress::hidden();
        progress.set_message("x");
        progress.inc(1);
        progress.finish("done");
    }
}
