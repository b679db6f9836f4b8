//! The AgentCore container contract over HTTP: `GET /ping`, `POST /invocations`, and (only
//! with emulator hooks on) `POST /emulator/terminate`.
//!
//! Each session may run one batch, ever: in AgentCore a session is one microVM running this
//! process, so one batch per session is one batch per process; locally, where every session
//! shares one process, the agent enforces the same rule per session ID.

use crate::processor::DocumentProcessor;
use crate::run::{RunOutcome, Services};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};
use warmpool_core::batch::message::{Accepted, AgentInvocation, BatchPayload, VERSION};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, TrackingTable};
use warmpool_core::batch::{BatchId, RunningAttempt};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::session::SessionId;

/// The header through which AgentCore passes the runtime session ID to the container.
pub const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";
/// Finished runs remembered for [`RunningAgent::runs`]; the oldest are forgotten first.
const HISTORY: usize = 10_000;

/// One run, as the agent saw it (for logs and for tests of the local stack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub batch_id: BatchId,
    pub attempt: u32,
    pub session_id: SessionId,
    pub started_at: u64,
    pub ended_at: u64,
    #[serde(flatten)]
    pub outcome: RunOutcome,
}

struct Running {
    attempt: RunningAttempt,
    started_at: u64,
    abort: AbortHandle,
}

/// What the agent knows about sessions; under one lock, never held across an await.
struct Sessions {
    running: HashMap<SessionId, Running>,
    /// Every session that was ever handed a batch.
    used: HashSet<SessionId>,
    busy: bool,
    /// When `busy` last changed, in epoch seconds: AgentCore reads it as how long the agent
    /// has been idle, so it must not move on every ping.
    changed_at_secs: u64,
    finished: VecDeque<RunRecord>,
}

impl Sessions {
    fn update_busy(&mut self) {
        let busy = !self.running.is_empty();
        if busy != self.busy {
            self.busy = busy;
            self.changed_at_secs = SystemClock.now_ms() / 1000;
        }
    }

    fn finish(&mut self, session_id: &SessionId, outcome: RunOutcome) {
        // Whoever removes the entry (the run finishing, or a termination) records the end,
        // so a run ends exactly once.
        let Some(run) = self.running.remove(session_id) else {
            return;
        };
        if self.finished.len() == HISTORY {
            self.finished.pop_front();
        }
        self.finished.push_back(RunRecord {
            batch_id: run.attempt.batch_id,
            attempt: run.attempt.attempt,
            session_id: run.attempt.session_id,
            started_at: run.started_at,
            ended_at: SystemClock.now_ms(),
            outcome,
        });
        self.update_busy();
    }
}

type SharedSessions = Arc<Mutex<Sessions>>;

fn lock(sessions: &SharedSessions) -> MutexGuard<'_, Sessions> {
    // Every mutation is a few field writes: a panic elsewhere cannot leave them half done.
    sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct AppState<T, S, Q, P> {
    services: Arc<Services<T, S, Q, P>>,
    sessions: SharedSessions,
}

/// A running agent. Dropping it stops the server; [`Self::shutdown`] stops it and waits.
pub struct RunningAgent {
    addr: SocketAddr,
    sessions: SharedSessions,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningAgent {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Finished runs, oldest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        lock(&self.sessions).finished.iter().cloned().collect()
    }

    /// Sessions running a batch now.
    pub fn running(&self) -> Vec<SessionId> {
        lock(&self.sessions).running.keys().cloned().collect()
    }

    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Batches still running die with the agent, as they would with its microVM.
        for run in lock(&self.sessions).running.values() {
            run.abort.abort();
        }
    }
}

/// Binds `listen` and serves until the handle is shut down or dropped.
pub async fn serve<T, S, Q, P>(
    listen: SocketAddr,
    services: Services<T, S, Q, P>,
    emulator_hooks: bool,
) -> std::io::Result<RunningAgent>
where
    T: TrackingTable + 'static,
    S: DocumentStore + 'static,
    Q: MessageSink + 'static,
    P: DocumentProcessor,
{
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let sessions = Arc::new(Mutex::new(Sessions {
        running: HashMap::new(),
        used: HashSet::new(),
        busy: false,
        changed_at_secs: SystemClock.now_ms() / 1000,
        finished: VecDeque::new(),
    }));
    let state = Arc::new(AppState {
        services: Arc::new(services),
        sessions: sessions.clone(),
    });
    let mut app = Router::new()
        .route("/ping", get(ping::<T, S, Q, P>))
        .route("/invocations", post(invocations::<T, S, Q, P>));
    if emulator_hooks {
        app = app.route("/emulator/terminate", post(terminate::<T, S, Q, P>));
    }
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, app.with_state(state)).with_graceful_shutdown(async {
        let _ = shutdown_rx.await;
    });
    let task = tokio::spawn(async move { server.await });
    info!(%addr, emulator_hooks, "document agent listening");
    Ok(RunningAgent {
        addr,
        sessions,
        shutdown: Some(shutdown_tx),
        task: Some(task),
    })
}

async fn ping<T, S, Q, P>(State(state): State<Arc<AppState<T, S, Q, P>>>) -> Json<serde_json::Value> {
    let sessions = lock(&state.sessions);
    let status = if sessions.busy { "HealthyBusy" } else { "Healthy" };
    Json(json!({"status": status, "time_of_last_update": sessions.changed_at_secs}))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    warn!(%status, %message, "invocation refused");
    (status, Json(json!({ "error": message }))).into_response()
}

fn session_of(headers: &HeaderMap) -> Result<SessionId, String> {
    let raw = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("missing {SESSION_HEADER}"))?;
    SessionId::parse(raw).map_err(|e| e.to_string())
}

async fn invocations<T, S, Q, P>(
    State(state): State<Arc<AppState<T, S, Q, P>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response
where
    T: TrackingTable + 'static,
    S: DocumentStore + 'static,
    Q: MessageSink + 'static,
    P: DocumentProcessor,
{
    let invocation = match serde_json::from_slice::<AgentInvocation>(&body) {
        Ok(invocation) => invocation,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not a warmup or v1 batch invocation: {error}"),
            );
        }
    };
    let batch = match invocation {
        // Before anything else: a warmup only has to prove the microVM is up.
        AgentInvocation::Warmup => return Json(json!({"status": "warm"})).into_response(),
        AgentInvocation::Batch(batch) => batch,
    };
    if batch.v != VERSION || batch.attempt == 0 || batch.documents.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "batch needs v 1, an attempt >= 1 and documents",
        );
    }
    let session_id = match session_of(&headers) {
        Ok(id) => id,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    start(&state, session_id, batch)
}

fn start<T, S, Q, P>(state: &Arc<AppState<T, S, Q, P>>, session_id: SessionId, batch: BatchPayload) -> Response
where
    T: TrackingTable + 'static,
    S: DocumentStore + 'static,
    Q: MessageSink + 'static,
    P: DocumentProcessor,
{
    let attempt = RunningAttempt {
        batch_id: batch.batch_id.clone(),
        attempt: batch.attempt,
        session_id: session_id.clone(),
    };
    let mut sessions = lock(&state.sessions);
    // Invariant 5, enforced on the agent's side too: a session never serves a second batch.
    if !sessions.used.insert(session_id.clone()) {
        drop(sessions);
        return refuse(
            StatusCode::CONFLICT,
            format!("session {session_id} already ran a batch"),
        );
    }
    let (services, shared) = (state.services.clone(), state.sessions.clone());
    let task_attempt = attempt.clone();
    // Registered under the same lock the task takes to finish, so even an instant run finds
    // its entry.
    let task = tokio::spawn(async move {
        let outcome = services.run(&task_attempt, &batch.documents).await;
        lock(&shared).finish(&task_attempt.session_id, outcome);
    });
    sessions.running.insert(
        session_id,
        Running {
            attempt: attempt.clone(),
            started_at: SystemClock.now_ms(),
            abort: task.abort_handle(),
        },
    );
    sessions.update_busy();
    drop(sessions);
    info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, session_id = %attempt.session_id, "batch accepted");
    Json(Accepted {
        status: Accepted::STATUS.into(),
        batch_id: attempt.batch_id,
        attempt: attempt.attempt,
    })
    .into_response()
}

/// The emulator's notice that a session's microVM ended (crash or stop): the run dies
/// without finishing, as it would with its microVM.
async fn terminate<T, S, Q, P>(State(state): State<Arc<AppState<T, S, Q, P>>>, headers: HeaderMap) -> Response {
    let session_id = match session_of(&headers) {
        Ok(id) => id,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    let mut sessions = lock(&state.sessions);
    let aborted = match sessions.running.get(&session_id) {
        Some(run) => {
            run.abort.abort();
            sessions.finish(&session_id, RunOutcome::Aborted);
            true
        }
        None => false,
    };
    drop(sessions);
    info!(%session_id, aborted, "session terminated by the emulator");
    Json(json!({ "aborted": aborted })).into_response()
}
