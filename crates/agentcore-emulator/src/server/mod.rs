//! The emulator's HTTP server: the two AgentCore data-plane operations over the lifecycle
//! model, the admin endpoints, and the handle that starts and stops it.
//!
//! The model sits under one `std::sync::Mutex` and reads a wall clock (milliseconds since the
//! server started). Admission is decided under the lock; the sampled latency is slept and the
//! agent called outside it, so slow invocations never serialize the others. In per-session
//! mode a reaper task ends the processes of sessions the clock has ended (see `reaper`).

mod connection;
mod reaper;
mod routes;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Error;
use crate::agent::process::ProcessStats;
use crate::agent::{Agent, AgentCommand, AgentSettings};
use crate::lifecycle::{Ended, Faults, LifecycleConfig, Model, Platform, SessionView, Stats};
use crate::wire::{self, ErrorKind, ServiceError};
use connection::CuttableListener;

/// How long `shutdown` waits for in-flight invocations before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the emulator can be told at start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Must be a loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    pub lifecycle: LifecycleConfig,
    /// Base URL of one agent serving the AgentCore container contract (`POST /invocations`)
    /// for every session. `None` (and no `agent_command`) answers with the built-in agent.
    pub agent_url: Option<String>,
    /// One agent process per session, started from this command on the session's first
    /// invocation; exclusive with `agent_url`.
    pub agent_command: Option<AgentCommand>,
    /// Bounds one forwarded invocation; AgentCore's synchronous limit is 15 minutes.
    pub agent_timeout: Duration,
    /// Bounds a per-session cold start: process start until `/ping` answers Healthy.
    pub agent_start_timeout: Duration,
    /// Path of the agent's warmup build hook (platform V2 only, per-session mode only): each
    /// session's process gets `POST <path>` once it is healthy and before its first
    /// invocation, as every session restored from a V2 snapshot carries the hook's effects.
    pub build_hook: Option<String>,
    /// Runtime ARNs that exist; any other well-formed ARN is ResourceNotFoundException.
    /// Empty accepts every well-formed ARN.
    pub runtime_arns: Vec<String>,
    /// Seeds the model's RNG so latencies and faults repeat; `None` picks a random seed.
    pub seed: Option<u64>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            lifecycle: LifecycleConfig::default(),
            agent_url: None,
            agent_command: None,
            agent_timeout: Duration::from_secs(15 * 60),
            agent_start_timeout: Duration::from_secs(30),
            build_hook: None,
            runtime_arns: Vec::new(),
            seed: None,
        }
    }
}

/// Body of `POST /admin/faults`; absent fields keep their current value, and a `next*` count
/// replaces the count still pending.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsUpdate {
    pub error_rate: Option<f64>,
    pub crash_rate: Option<f64>,
    pub throttle_all: Option<bool>,
    /// Crash these sessions' microVMs now.
    #[serde(default)]
    pub crash_sessions: Vec<String>,
    pub lost_answer_rate: Option<f64>,
    pub late_answer_rate: Option<f64>,
    pub late_answer_ms: Option<u64>,
    pub next_lost_answers: Option<u32>,
    pub next_late_answers: Option<u32>,
    pub stop_throttle_rate: Option<f64>,
    pub stop_error_rate: Option<f64>,
    pub next_stop_throttles: Option<u32>,
    pub next_stop_errors: Option<u32>,
}

impl FaultsUpdate {
    fn apply(&self, current: Faults) -> Faults {
        Faults {
            error_rate: self.error_rate.unwrap_or(current.error_rate),
            crash_rate: self.crash_rate.unwrap_or(current.crash_rate),
            throttle_all: self.throttle_all.unwrap_or(current.throttle_all),
            lost_answer_rate: self.lost_answer_rate.unwrap_or(current.lost_answer_rate),
            late_answer_rate: self.late_answer_rate.unwrap_or(current.late_answer_rate),
            late_answer_ms: self.late_answer_ms.unwrap_or(current.late_answer_ms),
            next_lost_answers: self.next_lost_answers.unwrap_or(current.next_lost_answers),
            next_late_answers: self.next_late_answers.unwrap_or(current.next_late_answers),
            stop_throttle_rate: self.stop_throttle_rate.unwrap_or(current.stop_throttle_rate),
            stop_error_rate: self.stop_error_rate.unwrap_or(current.stop_error_rate),
            next_stop_throttles: self.next_stop_throttles.unwrap_or(current.next_stop_throttles),
            next_stop_errors: self.next_stop_errors.unwrap_or(current.next_stop_errors),
        }
    }
}

/// Answer to `POST /admin/faults`: the faults now in force and which of the requested
/// sessions really crashed (ones not active are left alone).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultsReport {
    #[serde(flatten)]
    pub faults: Faults,
    pub crashed_sessions: Vec<String>,
}

/// Starts emulators.
pub struct Emulator;

/// A hook needs what AgentCore needs for one (platform V2), and a process of its own to call.
fn validate_build_hook(cfg: &EmulatorConfig) -> Result<(), Error> {
    let Some(path) = &cfg.build_hook else {
        return Ok(());
    };
    if cfg.lifecycle.platform != Platform::V2 {
        return Err(Error::invalid_config(
            "build_hook",
            "needs platform V2, as in AgentCore",
        ));
    }
    if cfg.agent_command.is_none() {
        return Err(Error::invalid_config(
            "build_hook",
            "needs agent_command (one process per session)",
        ));
    }
    if !path.starts_with('/') || ["/invocations", "/ping"].contains(&path.as_str()) {
        return Err(Error::invalid_config(
            "build_hook",
            "must be an absolute path other than /invocations and /ping",
        ));
    }
    Ok(())
}

impl Emulator {
    /// Binds `cfg.listen` and serves until the returned handle is shut down or dropped.
    /// Must be called inside a tokio runtime.
    pub async fn spawn(cfg: EmulatorConfig) -> Result<RunningEmulator, Error> {
        if !cfg.listen.ip().is_loopback() {
            return Err(Error::NonLoopbackListen(cfg.listen));
        }
        cfg.lifecycle.validate()?;
        validate_build_hook(&cfg)?;
        for arn in &cfg.runtime_arns {
            wire::validate_runtime_arn(arn).map_err(|e| Error::invalid_config("runtime_arns", e.message))?;
        }
        let agent = Agent::new(AgentSettings {
            url: cfg.agent_url.as_deref(),
            command: cfg.agent_command.as_ref(),
            timeout: cfg.agent_timeout,
            start_timeout: cfg.agent_start_timeout,
            build_hook: cfg.build_hook.as_deref(),
        })?;
        let seed = cfg.seed.unwrap_or_else(|| rand::rng().random());

        let bind_error = |source| Error::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = TcpListener::bind(cfg.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let app = Arc::new(App {
            inner: Mutex::new(Inner {
                model: Model::new(cfg.lifecycle),
                rng: StdRng::seed_from_u64(seed),
            }),
            started: Instant::now(),
            agent,
            runtime_arns: cfg.runtime_arns.into_iter().collect(),
            shutdown: shutdown_rx.clone(),
        });
        let service = routes::router(app.clone()).into_make_service_with_connect_info::<connection::Connection>();
        let mut stopping = shutdown_rx.clone();
        let server = axum::serve(CuttableListener(listener), service).with_graceful_shutdown(async move {
            // A dropped sender ends the wait too: that is what makes the handle drop-safe.
            let _ = stopping.wait_for(|stop| *stop).await;
        });
        let reaper = app
            .agent
            .processes()
            .map(|pool| tokio::spawn(reaper::run(app.clone(), pool.clone(), shutdown_rx)));
        let task = {
            let app = app.clone();
            tokio::spawn(async move {
                let served = server.await;
                if let Some(reaper) = reaper {
                    reaper.abort();
                }
                app.agent.shutdown().await;
                served
            })
        };
        info!(%addr, seed, agent = ?cfg.agent_url, agent_command = ?cfg.agent_command, "agentcore emulator listening");
        Ok(RunningEmulator {
            addr,
            app,
            shutdown: shutdown_tx,
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server in the background; [`Self::shutdown`]
/// stops it and waits. Either way no per-session agent process outlives it.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningEmulator {
    /// What to give the SDK as `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The emulator's clock, the one all `*_ms` fields are on.
    pub fn now_ms(&self) -> u64 {
        self.app.now_ms()
    }

    pub fn sessions(&self) -> Vec<SessionView> {
        self.app.with_model(|model, _, now| model.sessions(now))
    }

    pub fn stats(&self) -> Stats {
        self.app.with_model(|model, _, _| model.stats())
    }

    /// The per-session processes' counters; `None` unless `agent_command` is set.
    pub fn agent_processes(&self) -> Option<ProcessStats> {
        self.app.agent.processes().map(|pool| pool.stats())
    }

    /// Also tells the agent, in the background, which sessions crashed.
    pub fn set_faults(&self, update: FaultsUpdate) -> Result<FaultsReport, Error> {
        let report = self.app.set_faults(update)?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (app, crashed) = (self.app.clone(), report.crashed_sessions.clone());
            runtime.spawn(async move { app.crashed(&crashed).await });
        }
        Ok(report)
    }

    /// Stops accepting, lets in-flight requests finish for a short grace, then cuts them off,
    /// and stops every per-session agent process.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.shutdown.send(true);
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(served)) => served.map_err(Error::Serve),
            Ok(Err(join)) => Err(Error::Serve(std::io::Error::other(join))),
            Err(_) => {
                warn!(addr = %self.addr, "in-flight requests outlived the shutdown grace; aborting");
                task.abort();
                Ok(())
            }
        };
        // Already done by the server task unless it was cut off; ending twice is harmless.
        self.app.agent.shutdown().await;
        served
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[derive(Debug)]
struct App {
    inner: Mutex<Inner>,
    started: Instant,
    agent: Agent,
    runtime_arns: HashSet<String>,
    /// Turns true when the emulator stops; a late answer stops waiting then.
    shutdown: watch::Receiver<bool>,
}

#[derive(Debug)]
struct Inner {
    model: Model,
    rng: StdRng,
}

impl App {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the clock under the lock so the model sees calls in clock order.
    fn with_model<T>(&self, f: impl FnOnce(&mut Model, &mut StdRng, u64) -> T) -> T {
        let mut inner = self.lock();
        let now = self.now_ms();
        let Inner { model, rng } = &mut *inner;
        f(model, rng, now)
    }

    /// A panic elsewhere while holding the lock leaves the model consistent enough for a
    /// test tool: every mutation is a few field writes.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_runtime(&self, arn: Result<Path<String>, PathRejection>) -> Result<(), ServiceError> {
        let Path(arn) = arn.map_err(|e| ServiceError::validation(e.body_text()))?;
        wire::validate_runtime_arn(&arn)?;
        if !self.runtime_arns.is_empty() && !self.runtime_arns.contains(&arn) {
            return Err(ServiceError::new(
                ErrorKind::ResourceNotFound,
                format!("no agent runtime {arn}"),
            ));
        }
        Ok(())
    }

    async fn crashed(&self, sessions: &[String]) {
        for session_id in sessions {
            self.agent.session_ended(session_id, Ended::Crashed).await;
        }
    }

    fn set_faults(&self, update: FaultsUpdate) -> Result<FaultsReport, Error> {
        self.with_model(|model, _, now| {
            let faults = update.apply(model.faults());
            faults.validate()?;
            model.set_faults(faults);
            let crashed_sessions = update
                .crash_sessions
                .into_iter()
                .filter(|id| model.crash(id, now))
                .collect();
            Ok(FaultsReport {
                faults,
                crashed_sessions,
            })
        })
    }
}
