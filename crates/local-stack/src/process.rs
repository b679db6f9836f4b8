//! One child process of the local stack, in a process group of its own, and how it is stopped:
//! SIGTERM to the group and to every descendant found beforehand, a bounded wait, then SIGKILL.
//!
//! Descendants are collected separately because `cargo lambda watch` starts each function
//! instance in a session of its own: signalling watch's group alone would miss them if watch
//! died without stopping them.

use crate::error::Error;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(6);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    /// Starts `command` as `name` in a new process group, stdout and stderr to `log` (or
    /// nowhere). Its stdin is a pipe held open for as long as this process lives: a wrapper
    /// that waits on it ([`crate::moto`]) sees it close however this process ends.
    pub fn spawn(name: &str, mut command: Command, log: Option<&Path>) -> Result<Self, Error> {
        let spawn_error = |source| Error::Spawn {
            what: name.to_string(),
            source,
        };
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).map_err(spawn_error)?;
                (Stdio::from(file.try_clone().map_err(spawn_error)?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = command
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has ended (and is reaped).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the group and every descendant; returns once all are gone or after `grace` plus
    /// a last SIGKILL. Never blocks longer than `grace` and one more poll period.
    pub fn stop(&mut self, grace: Duration) {
        let pid = self.child.id();
        let family = descendants(pid);
        signal_group(pid, libc::SIGTERM);
        for &child in &family {
            signal(child, libc::SIGTERM);
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            let leader_gone = self.exited();
            if leader_gone && !group_alive(pid) && family.iter().all(|&p| !alive(p)) {
                return;
            }
            std::thread::sleep(POLL);
        }
        tracing::warn!(name = %self.name, pid, "did not stop within its grace period; killing it");
        signal_group(pid, libc::SIGKILL);
        for &child in &family {
            signal(child, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

fn pid_t(pid: u32) -> Option<libc::pid_t> {
    libc::pid_t::try_from(pid).ok().filter(|p| *p > 1)
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Some(pid) = pid_t(pid) {
        // SAFETY: kill(2) takes plain integers; a pid that is gone yields ESRCH, nothing else.
        unsafe { libc::kill(pid, sig) };
    }
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    if let Some(pgid) = pid_t(pgid) {
        // SAFETY: as in `signal`; a negative pid addresses the process group.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Whether `pid` exists (a zombie counts until its parent reaps it).
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pid_t(pid).is_some_and(|p| unsafe { libc::kill(p, 0) } == 0) && !is_zombie(pid)
}

fn group_alive(pgid: u32) -> bool {
    // SAFETY: as in `alive`, for the group.
    pid_t(pgid).is_some_and(|p| unsafe { libc::kill(-p, 0) } == 0) && members(pgid).iter().any(|&p| !is_zombie(p))
}

fn is_zombie(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state == 'Z')
}

struct Stat {
    state: char,
    ppid: u32,
    pgid: u32,
}

/// The fields of `/proc/<pid>/stat` this module reads (after the command name, which may hold
/// spaces and parentheses, hence the last `)`).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgid })
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.pgid == pgid))
        .collect()
}

/// Every process below `pid`, children first.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in all_pids() {
        if let Some(s) = stat(p) {
            children.entry(s.ppid).or_default().push(p);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![pid];
    // Bounded: a process table has finitely many entries and each is visited once.
    while let Some(parent) = next.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if !found.contains(&child) && found.len() < 100_000 {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_process_also_stops_what_it_started_in_another_session() {
        // The shell starts a sleeper in a session of its own (as cargo lambda watch does with
        // each function) and then waits.
        let mut command = Command::new("bash");
        command.args(["-c", "setsid sleep 300 & sleep 300"]);
        let mut process = Process::spawn("sleepers", command, None).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while descendants(process.id()).len() < 2 {
            assert!(Instant::now() < until, "the sleepers did not start");
            std::thread::sleep(POLL);
        }
        let family = descendants(process.id());
        process.stop(Duration::from_secs(5));
        let until = Instant::now() + Duration::from_secs(5);
        while family.iter().any(|&p| alive(p)) {
            assert!(Instant::now() < until, "still running: {family:?}");
            std::thread::sleep(POLL);
        }
    }
}
