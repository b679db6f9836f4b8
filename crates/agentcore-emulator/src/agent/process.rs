//! The per-session-process mode: each session gets an agent process of its own, as each
//! AgentCore session gets a microVM of its own, so nothing one session leaves in memory is seen
//! by another.
//!
//! A session's process starts on its first invocation (a real cold start: from process start
//! until `GET /ping` answers Healthy, bounded by the start timeout) on a free loopback port,
//! and ends with the session: StopRuntimeSession, a crash, idle timeout or max lifetime (the
//! server's reaper), a new microVM generation for the same ID, or the emulator stopping. Each
//! process leads its own process group and ending it signals the whole group, so a shell
//! wrapper's children die with it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tracing::{debug, info, warn};

use super::command::AgentCommand;
use crate::Error;

/// How often a starting process's `/ping` is tried.
const HEALTH_POLL: Duration = Duration::from_millis(25);
/// Bounds one `/ping`; a healthy agent answers in milliseconds.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_millis(400);
/// A process that exited before it was healthy may have lost a race for its port; one more
/// try on a new port tells that from a command that cannot start.
const START_ATTEMPTS: u32 = 2;
/// Time to exit after SIGTERM before the group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
const KILL_WAIT: Duration = Duration::from_secs(2);
/// AgentCore's limit for the warmup build hook.
const BUILD_HOOK_LIMIT: Duration = Duration::from_secs(120);
/// Output is logged in pieces of at most this size.
const OUTPUT_CHUNK: usize = 4_096;

/// Why a session's process ends; the key it is counted under in [`ProcessStats::ended`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessEnd {
    Stopped,
    Crashed,
    IdleExpired,
    LifetimeExpired,
    /// The session ID got a new microVM while the old process was still running.
    Replaced,
    /// The emulator no longer knows the session (admin reset).
    Forgotten,
    Shutdown,
}

impl ProcessEnd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Crashed => "crashed",
            Self::IdleExpired => "idleExpired",
            Self::LifetimeExpired => "lifetimeExpired",
            Self::Replaced => "replaced",
            Self::Forgotten => "forgotten",
            Self::Shutdown => "shutdown",
        }
    }

    /// A crash is abrupt; every other end lets the agent exit cleanly first.
    fn graceful(self) -> bool {
        self != Self::Crashed
    }
}

/// Counters of the per-session processes since the emulator started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStats {
    pub started: u64,
    pub failed_starts: u64,
    /// Warmup build hooks that answered 2xx (a failed one counts as a failed start).
    pub build_hooks: u64,
    /// Processes running now.
    pub live: u64,
    /// Ended processes by reason: `stopped`, `crashed`, `idleExpired`, `lifetimeExpired`,
    /// `replaced`, `forgotten`, `shutdown`.
    pub ended: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub(crate) struct ProcessPool {
    command: AgentCommand,
    start_timeout: Duration,
    /// For `/ping` only; invocations go through the agent's own client.
    ping: reqwest::Client,
    build_hook: Option<String>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    stats: Mutex<ProcessStats>,
    closed: AtomicBool,
}

/// One session generation's process. The async lock is held while the process starts, so
/// concurrent first invocations share one cold start.
#[derive(Debug)]
struct Slot {
    session_id: String,
    generation: u32,
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Debug)]
enum SlotState {
    NotStarted,
    Running(Box<AgentProcess>),
    Ended,
}

impl ProcessPool {
    pub fn new(command: AgentCommand, start_timeout: Duration) -> Result<Self, Error> {
        let ping = reqwest::Client::builder()
            .timeout(PING_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            command,
            start_timeout,
            ping,
            build_hook: None,
            slots: Mutex::new(HashMap::new()),
            stats: Mutex::new(ProcessStats::default()),
            closed: AtomicBool::new(false),
        })
    }

    pub fn with_build_hook(self, build_hook: Option<String>) -> Self {
        Self { build_hook, ..self }
    }

    /// The base URL of the process serving this session generation, started first if it has
    /// none yet. An older generation's process is ended before the new one starts.
    pub async fn base_url(&self, session_id: &str, generation: u32) -> Result<Url, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::AgentProcessEnded);
        }
        let (slot, replaced) = {
            let mut slots = lock(&self.slots);
            let current = slots.get(session_id).filter(|s| s.generation == generation).cloned();
            match current {
                Some(slot) => (slot, None),
                None => {
                    let slot = Arc::new(Slot {
                        session_id: session_id.to_owned(),
                        generation,
                        state: tokio::sync::Mutex::new(SlotState::NotStarted),
                    });
                    (slot.clone(), slots.insert(session_id.to_owned(), slot))
                }
            }
        };
        if let Some(old) = replaced {
            self.end_slot(&old, ProcessEnd::Replaced).await;
        }
        let mut state = slot.state.lock().await;
        let exited = match &mut *state {
            SlotState::Running(process) => process.exited(),
            SlotState::NotStarted | SlotState::Ended => false,
        };
        if exited {
            // It died on its own: a crash of its microVM.
            if let SlotState::Running(process) = std::mem::replace(&mut *state, SlotState::Ended) {
                warn!(session_id, pid = process.pid, "agent process exited on its own");
                process.terminate(false).await;
                self.count_end(ProcessEnd::Crashed);
            }
            return Err(Error::AgentProcessEnded);
        }
        match &*state {
            SlotState::Running(process) => Ok(process.base.clone()),
            SlotState::Ended => Err(Error::AgentProcessEnded),
            SlotState::NotStarted => {
                let process = self.start(session_id, generation).await?;
                let base = process.base.clone();
                *state = SlotState::Running(Box::new(process));
                Ok(base)
            }
        }
    }

    /// Ends the session's process, if it has one (of `generation`, when given), and waits
    /// until its process group is gone.
    pub async fn end(&self, session_id: &str, generation: Option<u32>, why: ProcessEnd) {
        let slot = {
            let mut slots = lock(&self.slots);
            let matches = slots
                .get(session_id)
                .is_some_and(|s| generation.is_none_or(|g| g == s.generation));
            if matches { slots.remove(session_id) } else { None }
        };
        if let Some(slot) = slot {
            self.end_slot(&slot, why).await;
        }
    }

    /// Every session generation that has a process slot.
    pub fn sessions(&self) -> Vec<(String, u32)> {
        lock(&self.slots)
            .iter()
            .map(|(id, slot)| (id.clone(), slot.generation))
            .collect()
    }

    /// The agent's `/ping` for this session generation: `Some(true)` for HealthyBusy,
    /// `Some(false)` for Healthy, `None` if it has no running process (or one starting) or
    /// gave no usable answer.
    pub async fn ping(&self, session_id: &str, generation: u32) -> Option<bool> {
        let slot = lock(&self.slots)
            .get(session_id)
            .filter(|s| s.generation == generation)
            .cloned()?;
        let base = match &*slot.state.try_lock().ok()? {
            SlotState::Running(process) => process.base.clone(),
            SlotState::NotStarted | SlotState::Ended => return None,
        };
        ping_status(&self.ping, &base).await
    }

    /// Ends every process and refuses to start new ones.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.end_all(ProcessEnd::Shutdown).await;
    }

    /// Ends every process, all at once.
    pub async fn end_all(&self, why: ProcessEnd) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).drain().map(|(_, slot)| slot).collect();
        futures::future::join_all(slots.iter().map(|slot| self.end_slot(slot, why))).await;
    }

    pub fn stats(&self) -> ProcessStats {
        lock(&self.stats).clone()
    }

    async fn end_slot(&self, slot: &Slot, why: ProcessEnd) {
        let previous = std::mem::replace(&mut *slot.state.lock().await, SlotState::Ended);
        if let SlotState::Running(process) = previous {
            let pid = process.pid;
            process.terminate(why.graceful()).await;
            self.count_end(why);
            info!(
                session_id = %slot.session_id,
                pid,
                generation = slot.generation,
                reason = why.as_str(),
                "agent process ended"
            );
        }
    }

    fn count_end(&self, why: ProcessEnd) {
        let mut stats = lock(&self.stats);
        stats.live = stats.live.saturating_sub(1);
        *stats.ended.entry(why.as_str().to_owned()).or_default() += 1;
    }

    async fn start(&self, session_id: &str, generation: u32) -> Result<AgentProcess, Error> {
        let mut attempt = 1;
        loop {
            match self.start_once().await {
                Ok(process) => {
                    let mut stats = lock(&self.stats);
                    stats.started += 1;
                    stats.live += 1;
                    info!(session_id, generation, pid = process.pid, base = %process.base, "agent process healthy");
                    return Ok(process);
                }
                Err(StartError { exited: true, error }) if attempt < START_ATTEMPTS => {
                    warn!(session_id, error = %error, "agent process exited while starting; trying a new port");
                    attempt += 1;
                }
                Err(StartError { error, .. }) => {
                    lock(&self.stats).failed_starts += 1;
                    warn!(session_id, generation, error = %error, "agent process failed to start");
                    return Err(error);
                }
            }
        }
    }

    /// One cold start: spawn on a free port, then poll `/ping` until Healthy, the process
    /// exits, or the start timeout passes. A failed start leaves nothing running.
    async fn start_once(&self) -> Result<AgentProcess, StartError> {
        let spawn_error = |source| StartError {
            exited: false,
            error: Error::AgentSpawn {
                program: self.command.program.clone(),
                source,
            },
        };
        let port = free_port().map_err(spawn_error)?;
        let mut child = self.command.command(port).spawn().map_err(spawn_error)?;
        let pid = child.id().unwrap_or_default();
        for (pipe, stream) in [
            (child.stdout.take().map(boxed), "stdout"),
            (child.stderr.take().map(boxed), "stderr"),
        ] {
            if let Some(pipe) = pipe {
                tokio::spawn(log_output(pipe, pid, stream));
            }
        }
        let base = Url::parse(&format!("http://{}/", SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
            .map_err(|e| spawn_error(std::io::Error::other(e)))?;
        let mut process = AgentProcess {
            child,
            pid,
            base,
            ended: false,
        };
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                process.terminate(false).await;
                let reason = format!("it exited ({status}) before answering /ping");
                return Err(StartError {
                    exited: true,
                    error: Error::AgentNotHealthy { pid, reason },
                });
            }
            if ping_status(&self.ping, &process.base).await.is_some() {
                return match self.call_build_hook(&process.base).await {
                    Ok(()) => Ok(process),
                    Err(reason) => {
                        process.terminate(false).await;
                        Err(StartError {
                            exited: false,
                            error: Error::AgentNotHealthy { pid, reason },
                        })
                    }
                };
            }
            if Instant::now() >= deadline {
                process.terminate(false).await;
                let reason = format!("no Healthy answer on /ping within {:?}", self.start_timeout);
                return Err(StartError {
                    exited: false,
                    error: Error::AgentNotHealthy { pid, reason },
                });
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }
}

impl ProcessPool {
    /// One POST to the hook, not retried, as AgentCore calls it: any 2xx within the limit
    /// succeeds, anything else fails the start (in AgentCore, the runtime's build).
    async fn call_build_hook(&self, base: &Url) -> Result<(), String> {
        let Some(path) = &self.build_hook else {
            return Ok(());
        };
        let url = base.join(path.trim_start_matches('/')).map_err(|e| e.to_string())?;
        let answer = self.ping.post(url).timeout(BUILD_HOOK_LIMIT).send().await;
        match answer {
            Ok(response) if response.status().is_success() => {
                lock(&self.stats).build_hooks += 1;
                Ok(())
            }
            Ok(response) => Err(format!("the warmup build hook {path} answered {}", response.status())),
            Err(error) => Err(format!("the warmup build hook {path} failed: {error}")),
        }
    }
}

struct StartError {
    exited: bool,
    error: Error,
}

/// A running agent process, the leader of its own process group.
#[derive(Debug)]
struct AgentProcess {
    child: Child,
    pid: u32,
    base: Url,
    ended: bool,
}

impl AgentProcess {
    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Signals the group (SIGTERM, or SIGKILL when not `graceful`), waits for the leader, and
    /// finally SIGKILLs whatever is left in the group.
    async fn terminate(mut self, graceful: bool) {
        if graceful {
            group::terminate(self.pid);
        } else {
            group::kill(self.pid);
            let _ = self.child.start_kill();
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_err() {
            warn!(pid = self.pid, "agent process ignored SIGTERM; killing its group");
            group::kill(self.pid);
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(KILL_WAIT, self.child.wait()).await;
        }
        group::kill(self.pid);
        self.ended = true;
    }
}

impl Drop for AgentProcess {
    /// Last resort when the emulator is dropped without a shutdown: no process may outlive it.
    fn drop(&mut self) {
        if !self.ended {
            group::kill(self.pid);
        }
    }
}

#[cfg(unix)]
mod group {
    pub(super) fn terminate(pgid: u32) {
        signal(pgid, libc::SIGTERM);
    }

    pub(super) fn kill(pgid: u32) {
        signal(pgid, libc::SIGKILL);
    }

    fn signal(pgid: u32, signal: libc::c_int) {
        // 0 and 1 would address our own group or init's; a real agent's pid is neither.
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return;
        };
        if pgid > 1 {
            // SAFETY: kill(2) takes two integers and touches no memory of this process. The
            // negative pid addresses the group the agent leads (spawned with process_group(0)).
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }
}

#[cfg(not(unix))]
mod group {
    // Without process groups only the leader can be killed, through `Child::start_kill`.
    pub(super) fn terminate(_pgid: u32) {}
    pub(super) fn kill(_pgid: u32) {}
}

/// `Some(busy)` if `/ping` answered 200 with status Healthy or HealthyBusy.
async fn ping_status(client: &reqwest::Client, base: &Url) -> Option<bool> {
    let url = base.join("ping").ok()?;
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    match body.get("status")?.as_str()? {
        "Healthy" => Some(false),
        "HealthyBusy" => Some(true),
        _ => None,
    }
}

/// A port that was free a moment ago; the agent binds it soon after. A lost race shows as an
/// early exit, which `start` retries on another port.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn boxed(pipe: impl AsyncRead + Unpin + Send + 'static) -> Box<dyn AsyncRead + Unpin + Send> {
    Box::new(pipe)
}

/// Forwards the agent's output to the log (debug level) until the pipe closes, which it does
/// when the last process of the group holding it exits.
async fn log_output(mut pipe: Box<dyn AsyncRead + Unpin + Send>, pid: u32, stream: &'static str) {
    let mut buf = vec![0; OUTPUT_CHUNK];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        for line in String::from_utf8_lossy(&buf[..n])
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            debug!(pid, stream, line, "agent output");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
