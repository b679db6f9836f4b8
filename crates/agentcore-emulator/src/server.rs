//! The emulator's HTTP server: the two AgentCore data-plane operations over the lifecycle
//! model, the admin endpoints, and the handle that starts and stops it.
//!
//! The model sits under one `std::sync::Mutex` and reads a wall clock (milliseconds since the
//! server started). Admission is decided under the lock; the sampled latency is slept and the
//! agent called outside it, so slow invocations never serialize the others.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Error;
use crate::agent::Agent;
use crate::lifecycle::{Ended, Faults, LifecycleConfig, Model, Rejection, SessionView, Stats};
use crate::wire::{self, ErrorKind, SESSION_HEADER, ServiceError};

/// AgentCore's payload limit for InvokeAgentRuntime.
const PAYLOAD_LIMIT: usize = 100 * 1024 * 1024;
/// How long `shutdown` waits for in-flight invocations before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the emulator can be told at start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Must be a loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    pub lifecycle: LifecycleConfig,
    /// Base URL of an agent serving the AgentCore container contract (`POST /invocations`).
    /// `None` answers with the built-in agent.
    pub agent_url: Option<String>,
    /// Bounds one forwarded invocation; AgentCore's synchronous limit is 15 minutes.
    pub agent_timeout: Duration,
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
            agent_timeout: Duration::from_secs(15 * 60),
            runtime_arns: Vec::new(),
            seed: None,
        }
    }
}

/// Body of `POST /admin/faults`; absent fields keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsUpdate {
    pub error_rate: Option<f64>,
    pub crash_rate: Option<f64>,
    pub throttle_all: Option<bool>,
    /// Crash these sessions' microVMs now.
    #[serde(default)]
    pub crash_sessions: Vec<String>,
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

impl Emulator {
    /// Binds `cfg.listen` and serves until the returned handle is shut down or dropped.
    /// Must be called inside a tokio runtime.
    pub async fn spawn(cfg: EmulatorConfig) -> Result<RunningEmulator, Error> {
        if !cfg.listen.ip().is_loopback() {
            return Err(Error::NonLoopbackListen(cfg.listen));
        }
        cfg.lifecycle.validate()?;
        for arn in &cfg.runtime_arns {
            wire::validate_runtime_arn(arn).map_err(|e| Error::invalid_config("runtime_arns", e.message))?;
        }
        let agent = Agent::new(cfg.agent_url.as_deref(), cfg.agent_timeout)?;
        let seed = cfg.seed.unwrap_or_else(|| rand::rng().random());

        let bind_error = |source| Error::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = TcpListener::bind(cfg.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;

        let app = Arc::new(App {
            inner: Mutex::new(Inner {
                model: Model::new(cfg.lifecycle),
                rng: StdRng::seed_from_u64(seed),
            }),
            started: Instant::now(),
            agent,
            runtime_arns: cfg.runtime_arns.into_iter().collect(),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = axum::serve(listener, router(app.clone())).with_graceful_shutdown(async {
            // A dropped sender ends the wait too: that is what makes the handle drop-safe.
            let _ = shutdown_rx.await;
        });
        let task = tokio::spawn(async move { server.await });
        info!(%addr, seed, agent = ?cfg.agent_url, "agentcore emulator listening");
        Ok(RunningEmulator {
            addr,
            app,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server in the background; [`Self::shutdown`]
/// stops it and waits.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
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

    /// Also tells the agent, in the background, which sessions crashed.
    pub fn set_faults(&self, update: FaultsUpdate) -> Result<FaultsReport, Error> {
        let report = self.app.set_faults(update)?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (app, crashed) = (self.app.clone(), report.crashed_sessions.clone());
            runtime.spawn(async move { app.crashed(&crashed).await });
        }
        Ok(report)
    }

    /// Stops accepting, lets in-flight requests finish for a short grace, then cuts them off.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(served)) => served.map_err(Error::Serve),
            Ok(Err(join)) => Err(Error::Serve(std::io::Error::other(join))),
            Err(_) => {
                warn!(addr = %self.addr, "in-flight requests outlived the shutdown grace; aborting");
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug)]
struct App {
    inner: Mutex<Inner>,
    started: Instant,
    agent: Agent,
    runtime_arns: HashSet<String>,
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
            let current = model.faults();
            let faults = Faults {
                error_rate: update.error_rate.unwrap_or(current.error_rate),
                crash_rate: update.crash_rate.unwrap_or(current.crash_rate),
                throttle_all: update.throttle_all.unwrap_or(current.throttle_all),
            };
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

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/runtimes/{arn}/invocations", post(invoke))
        .route("/runtimes/{arn}/stopruntimesession", post(stop))
        .route("/admin/sessions", get(admin_sessions))
        .route("/admin/stats", get(admin_stats))
        .route("/admin/faults", post(admin_faults))
        .route("/admin/reset", post(admin_reset))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::max(PAYLOAD_LIMIT))
        .with_state(app)
}

async fn invoke(
    State(app): State<Arc<App>>,
    arn: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ServiceError> {
    app.check_runtime(arn)?;
    let session_id = wire::session_id(&headers)?;
    let admission = match app.with_model(|model, rng, now| model.invoke(&session_id, now, rng)) {
        Ok(admission) => admission,
        Err(rejection) => {
            info!(session_id = %session_id, %rejection, "invocation rejected");
            if matches!(rejection, Rejection::Crashed { .. }) {
                app.agent.session_ended(&session_id, Ended::Crashed).await;
            }
            return Err(rejection.into());
        }
    };
    tokio::time::sleep(admission.latency).await;

    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let reply = app
        .agent
        .invoke(&session_id, content_type, payload)
        .await
        .map_err(|err| {
            let message = error_chain(&err);
            warn!(session_id = %session_id, error = %message, "agent failed");
            ServiceError::new(ErrorKind::RuntimeClient, message)
        })?;
    info!(
        session_id = %session_id,
        cold = admission.cold,
        generation = admission.generation,
        latency_ms = u64::try_from(admission.latency.as_millis()).unwrap_or(u64::MAX),
        "invoked"
    );
    let content_type =
        HeaderValue::from_str(&reply.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(with_session_header(
        (StatusCode::OK, [(CONTENT_TYPE, content_type)], reply.body).into_response(),
        &session_id,
    ))
}

async fn stop(
    State(app): State<Arc<App>>,
    arn: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    app.check_runtime(arn)?;
    let session_id = wire::session_id(&headers)?;
    app.with_model(|model, _, now| model.stop(&session_id, now))?;
    app.agent.session_ended(&session_id, Ended::Stopped).await;
    info!(session_id = %session_id, "session stopped");
    Ok(with_session_header(
        (
            StatusCode::OK,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            "{}",
        )
            .into_response(),
        &session_id,
    ))
}

async fn admin_sessions(State(app): State<Arc<App>>) -> Json<Vec<SessionView>> {
    Json(app.with_model(|model, _, now| model.sessions(now)))
}

async fn admin_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    Json(app.with_model(|model, _, _| model.stats()))
}

async fn admin_faults(
    State(app): State<Arc<App>>,
    update: Result<Json<FaultsUpdate>, JsonRejection>,
) -> Result<Json<FaultsReport>, ServiceError> {
    let Json(update) = update.map_err(|e| ServiceError::validation(e.body_text()))?;
    let report = app
        .set_faults(update)
        .map_err(|e| ServiceError::validation(e.to_string()))?;
    app.crashed(&report.crashed_sessions).await;
    info!(faults = ?report.faults, crashed = ?report.crashed_sessions, "faults set");
    Ok(Json(report))
}

async fn admin_reset(State(app): State<Arc<App>>) -> StatusCode {
    app.with_model(|model, _, now| model.reset(now));
    info!("emulator reset");
    StatusCode::NO_CONTENT
}

async fn unknown_operation() -> ServiceError {
    ServiceError::new(ErrorKind::UnknownOperation, "no such operation")
}

fn with_session_header(mut response: Response, session_id: &str) -> Response {
    // The ID came from a header, so it is always a valid header value.
    if let Some(value) = wire::session_header_value(session_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SESSION_HEADER), value);
    }
    response
}

/// The agent's failure with its causes, since the caller only sees this message.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
