//! The AgentCore container contract over HTTP: `GET /ping`, `POST /invocations`, the warmup
//! build hook `POST /warmup` (platform V2), and (only with emulator hooks on)
//! `POST /emulator/terminate`.
//!
//! Each session may run one batch, ever: in AgentCore a session is one microVM running this
//! process, so one batch per session is one batch per process; locally, where every session
//! shares one process, the agent enforces the same rule per session ID. And a session runs
//! only the attempt the tracking row assigns to it ([`crate::ownership`]): the payload asks,
//! the row decides.

use crate::ownership::{self, Invocation, OwnedAttempt, Refusal};
use crate::processor::{Document, DocumentProcessor};
use crate::run::{RunOutcome, Services, session_tag};
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
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};
use warmpool_core::session::SESSION_HEADER;

use warmpool_core::batch::message::{Accepted, VERSION};
use warmpool_core::batch::ports::{DocumentStore, MessageSink, TrackingTable};
use warmpool_core::batch::{BatchId, ObjectRef, RunningAttempt};
use warmpool_core::clock::{Clock, SystemClock};
use warmpool_core::session::SessionId;

/// Where AgentCore's warmup build hook reaches the agent (platform V2): a POST on the
/// container's port before the snapshot is taken. Neither `/invocations` nor `/ping`, which
/// the platform already calls.
pub const BUILD_HOOK_PATH: &str = "/warmup";
/// The hook must succeed within the platform's 120 s; this leaves room for the platform's own
/// steps and answers a clear failure rather than being cut off.
const BUILD_HOOK_LIMIT: Duration = Duration::from_secs(100);

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
    /// has been idle, so it must not move on every ping. `None` until the first invocation:
    /// on platform V2 the start-up state is a snapshot every session is restored from, so a
    /// time taken at start-up (or at a ping before the snapshot) would be the same, and old,
    /// in every session.
    changed_at_secs: Option<u64>,
    finished: VecDeque<RunRecord>,
}

impl Sessions {
    /// The state before any session: nothing in it may differ between sessions (no clock
    /// reading, no randomness), since a V2 snapshot copies it into each of them.
    fn at_startup() -> Self {
        Self {
            running: HashMap::new(),
            used: HashSet::new(),
            busy: false,
            changed_at_secs: None,
            finished: VecDeque::new(),
        }
    }

    /// `GET /ping`'s status and `time_of_last_update` (now, before any invocation: the
    /// status has not changed since the session began).
    fn ping(&self, now_ms: u64) -> (&'static str, u64) {
        let status = if self.busy { "HealthyBusy" } else { "Healthy" };
        (status, self.changed_at_secs.unwrap_or(now_ms / 1000))
    }

    /// An invocation reached this process: the session's idle clock starts with its first.
    fn invoked(&mut self, now_ms: u64) {
        self.changed_at_secs.get_or_insert(now_ms / 1000);
    }

    fn update_busy(&mut self) {
        let busy = !self.running.is_empty();
        if busy != self.busy {
            self.busy = busy;
            self.changed_at_secs = Some(SystemClock.now_ms() / 1000);
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
    let sessions = Arc::new(Mutex::new(Sessions::at_startup()));
    let state = Arc::new(AppState {
        services: Arc::new(services),
        sessions: sessions.clone(),
    });
    let mut app = Router::new()
        .route("/ping", get(ping::<T, S, Q, P>))
        .route("/invocations", post(invocations::<T, S, Q, P>))
        .route(BUILD_HOOK_PATH, post(build_hook::<T, S, Q, P>));
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
    let (status, changed_at_secs) = lock(&state.sessions).ping(SystemClock.now_ms());
    Json(json!({"status": status, "time_of_last_update": changed_at_secs}))
}

/// The warmup build hook: the shared start-up work worth doing before the snapshot, and
/// nothing per session. It runs one sample document through the processor, so the code and
/// allocations of a run are in place in the snapshot; it calls no AWS service (credentials and
/// connections would be captured, shared by every session and expire), reads no clock and
/// draws no randomness. After an invocation it is refused, since it is not the place to change
/// a live session's state. Any 2xx ends the hook; anything else fails the platform's build.
async fn build_hook<T, S, Q, P>(State(state): State<Arc<AppState<T, S, Q, P>>>) -> Response
where
    T: TrackingTable + 'static,
    S: DocumentStore + 'static,
    Q: MessageSink + 'static,
    P: DocumentProcessor,
{
    if lock(&state.sessions).changed_at_secs.is_some() {
        return refuse(
            StatusCode::CONFLICT,
            "the warmup build hook runs before any session, and this process has served one",
        );
    }
    let sample = Document {
        location: ObjectRef::new("warmup", "sample.txt"),
        bytes: b"warm up\n".to_vec(),
        content_type: Some("text/plain".into()),
    };
    match tokio::time::timeout(BUILD_HOOK_LIMIT, state.services.processor.process(sample)).await {
        Ok(Ok(_)) => {
            info!("warmup build hook done");
            Json(json!({"status": "ready"})).into_response()
        }
        Ok(Err(error)) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the processor failed on the sample: {}", error.reason),
        ),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the processor did not finish the sample within {BUILD_HOOK_LIMIT:?}"),
        ),
    }
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
    lock(&state.sessions).invoked(SystemClock.now_ms());
    let order = match serde_json::from_slice::<Invocation>(&body) {
        // Before anything else: a warmup only has to prove the microVM is up.
        Ok(Invocation::Warmup) => return Json(json!({"status": "warm"})).into_response(),
        Ok(Invocation::Batch(order)) => order,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not a warmup or v1 batch invocation: {error}"),
            );
        }
    };
    if order.v != VERSION || order.attempt == 0 {
        return refuse(StatusCode::BAD_REQUEST, "batch needs v 1 and an attempt >= 1");
    }
    let session_id = match session_of(&headers) {
        Ok(id) => id,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    let Some(reservation) = Reservation::take(&state.sessions, &session_id) else {
        return refuse(StatusCode::CONFLICT, "this session already has a batch");
    };
    match ownership::check(&state.services.table, &order, &session_id).await {
        Ok(owned) => start(state.as_ref(), reservation, owned),
        Err(refusal) => refuse_not_owned(&session_id, &refusal),
    }
}

/// A session set aside for one batch while its ownership is checked: dropped, it is given
/// back (a refused or abandoned invocation must not use the session up); kept, the session
/// has run its batch for good.
struct Reservation<'a> {
    sessions: &'a SharedSessions,
    session_id: SessionId,
    kept: bool,
}

impl<'a> Reservation<'a> {
    fn take(sessions: &'a SharedSessions, session_id: &SessionId) -> Option<Self> {
        lock(sessions).used.insert(session_id.clone()).then(|| Self {
            sessions,
            session_id: session_id.clone(),
            kept: false,
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            lock(self.sessions).used.remove(&self.session_id);
        }
    }
}

/// The caller hears only that the attempt is not its session's; the log says why.
fn refuse_not_owned(session_id: &SessionId, refusal: &Refusal) -> Response {
    let session_tag = session_tag(session_id);
    match refusal {
        Refusal::NotOwner { batch_id, attempt, why } => {
            warn!(%batch_id, attempt, %session_tag, %why, "invocation for an attempt this session does not own");
        }
        Refusal::Unreadable { batch_id, source } => {
            warn!(%batch_id, %session_tag, error = %source, "cannot check ownership");
        }
    }
    let status = if refusal.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::FORBIDDEN
    };
    let message = refusal.to_string();
    (
        status,
        Json(json!({ "error": message, "retryable": refusal.is_retryable() })),
    )
        .into_response()
}

fn start<T, S, Q, P>(state: &AppState<T, S, Q, P>, mut reservation: Reservation<'_>, owned: OwnedAttempt) -> Response
where
    T: TrackingTable + 'static,
    S: DocumentStore + 'static,
    Q: MessageSink + 'static,
    P: DocumentProcessor,
{
    let attempt = owned.attempt.clone();
    let mut sessions = lock(&state.sessions);
    // Invariant 5, enforced on the agent's side too: a session never serves a second batch.
    reservation.kept = true;
    let (services, shared) = (state.services.clone(), state.sessions.clone());
    let session_id = attempt.session_id.clone();
    // Registered under the same lock the task takes to finish, so even an instant run finds
    // its entry.
    let task = tokio::spawn(async move {
        let outcome = services.run(&owned).await;
        lock(&shared).finish(&owned.attempt.session_id, outcome);
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
    info!(batch_id = %attempt.batch_id, attempt = attempt.attempt, session = %session_tag(&attempt.session_id), "batch accepted");
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
    info!(session = %session_tag(&session_id), aborted, "session terminated by the emulator");
    Json(json!({ "aborted": aborted })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the platform builds the snapshot (V2), an hour before any session.
    const BUILD_MS: u64 = 1_780_000_000_000;
    const HOUR_MS: u64 = 3_600_000;

    /// A copy of the start-up state, as a V2 microVM restored from the snapshot holds it.
    fn restored(snapshot: &Sessions) -> Sessions {
        assert!(snapshot.running.is_empty(), "nothing runs before the snapshot");
        Sessions {
            running: HashMap::new(),
            used: snapshot.used.clone(),
            busy: snapshot.busy,
            changed_at_secs: snapshot.changed_at_secs,
            finished: snapshot.finished.clone(),
        }
    }

    #[test]
    fn when_two_sessions_are_restored_from_one_start_up_state_then_they_do_not_share_its_time() {
        let snapshot = Sessions::at_startup();
        // The platform pings the container until it is healthy, then takes the snapshot.
        assert_eq!(snapshot.ping(BUILD_MS).1, BUILD_MS / 1000);
        let (mut a, mut b) = (restored(&snapshot), restored(&snapshot));
        a.invoked(BUILD_MS + HOUR_MS);
        b.invoked(BUILD_MS + 2 * HOUR_MS);
        let (a_time, b_time) = (a.ping(BUILD_MS + 3 * HOUR_MS).1, b.ping(BUILD_MS + 3 * HOUR_MS).1);
        assert_ne!(a_time, b_time, "both restored sessions report the snapshot's time");
        assert_eq!(
            a_time,
            (BUILD_MS + HOUR_MS) / 1000,
            "idle since its own first invocation"
        );
        assert_eq!(b_time, (BUILD_MS + 2 * HOUR_MS) / 1000);
    }
}
