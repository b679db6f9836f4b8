//! The owner of everything a local stack started: child processes (each in its own process
//! group, see [`crate::process`]), background tasks, and in-process servers held as guards.
//! [`Supervisor::stop`] (also run on drop, so on an error's way out too) stops them newest
//! first, so that a relay stops before the functions it forwards to; every wait is bounded.

use crate::error::Error;
use crate::process::{Process, STOP_GRACE};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// One thing the supervisor stops.
enum Owned {
    Process(Process),
    Task(tokio::task::JoinHandle<()>),
    /// Stopped by dropping it (an in-process server's handle).
    Guard(Box<dyn Send>),
}

pub struct Supervisor {
    run_dir: PathBuf,
    owned: Mutex<Vec<Owned>>,
}

impl Supervisor {
    /// A supervisor whose children log to files in `run_dir` (created if missing).
    pub fn new(run_dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let run_dir = run_dir.into();
        std::fs::create_dir_all(&run_dir).map_err(|source| Error::Write {
            path: run_dir.clone(),
            source,
        })?;
        Ok(Self {
            run_dir,
            owned: Mutex::new(Vec::new()),
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Where `name`'s output goes.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.log"))
    }

    /// Starts `command` as `name` (output to [`Supervisor::log_path`]); returns its pid.
    pub fn spawn(&self, name: &str, command: Command) -> Result<u32, Error> {
        let process = Process::spawn(name, command, Some(&self.log_path(name)))?;
        let pid = process.id();
        tracing::info!(name, pid, "started");
        self.push(Owned::Process(process));
        Ok(pid)
    }

    /// Takes over an already started process.
    pub fn adopt(&self, process: Process) {
        self.push(Owned::Process(process));
    }

    /// Aborts `task` on stop.
    pub fn task(&self, task: tokio::task::JoinHandle<()>) {
        self.push(Owned::Task(task));
    }

    /// Drops `guard` on stop.
    pub fn hold(&self, guard: impl Send + 'static) {
        self.push(Owned::Guard(Box::new(guard)));
    }

    /// The names of the processes it started that have ended by themselves.
    pub fn exited(&self) -> Vec<String> {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        owned
            .iter_mut()
            .filter_map(|o| match o {
                Owned::Process(p) => p.exited().then(|| p.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The pids of the processes it started (for a test that checks they are gone).
    pub fn pids(&self) -> Vec<u32> {
        let owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        owned
            .iter()
            .filter_map(|o| match o {
                Owned::Process(p) => Some(p.id()),
                _ => None,
            })
            .collect()
    }

    /// Stops everything, newest first. Blocks for at most [`STOP_GRACE`] per process.
    pub fn stop(&self) {
        let owned = std::mem::take(&mut *self.owned.lock().unwrap_or_else(PoisonError::into_inner));
        for thing in owned.into_iter().rev() {
            match thing {
                Owned::Process(mut process) => {
                    tracing::info!(name = %process.name, "stopping");
                    process.stop(STOP_GRACE);
                }
                Owned::Task(task) => task.abort(),
                Owned::Guard(guard) => drop(guard),
            }
        }
    }

    fn push(&self, thing: Owned) {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner).push(thing);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}
