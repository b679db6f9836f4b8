//! The HTTP surface: InvokeAgentRuntime and StopRuntimeSession as the SDK calls them, and the
//! admin endpoints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tracing::{info, warn};

use super::connection::Connection;
use super::{App, FaultsReport, FaultsUpdate};
use crate::Error;
use crate::agent::Invocation;
use crate::agent::process::{ProcessEnd, ProcessStats};
use crate::lifecycle::{Admission, Answer, Ended, Rejection, SessionView, Stats};
use crate::wire::{self, ErrorKind, ServiceError};
use warmpool_core::session::SESSION_HEADER;

/// AgentCore's payload limit for InvokeAgentRuntime.
const PAYLOAD_LIMIT: usize = 100 * 1024 * 1024;

pub(super) fn router(app: Arc<App>) -> Router {
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
    ConnectInfo(connection): ConnectInfo<Connection>,
    arn: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ServiceError> {
    app.check_runtime(arn)?;
    let session_id = wire::session_id(&headers)?;
    let admission = admit(&app, &session_id).await?;
    // The agent's turn runs on its own task: a caller that gives up (its timeout, a lost
    // connection) does not cancel work the agent has started, as it does not in AgentCore.
    let turn = {
        let (app, session_id) = (app.clone(), session_id.clone());
        tokio::spawn(async move {
            let mut stopping = app.shutdown.clone();
            tokio::select! {
                answered = call_agent(&app, &session_id, &admission, &headers, payload) => answered,
                _ = stopping.wait_for(|stop| *stop) => {
                    Err(ServiceError::new(ErrorKind::RuntimeClient, "the emulator is stopping"))
                }
            }
        })
    };
    let response = match turn.await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(join) => {
            ServiceError::new(ErrorKind::InternalServer, format!("the invocation failed: {join}")).into_response()
        }
    };
    Ok(deliver(&app, &connection, &session_id, admission.answer, response).await)
}

/// The model's decision, and in per-session mode the start of the work it is told about.
async fn admit(app: &App, session_id: &str) -> Result<Admission, ServiceError> {
    let per_session = app.agent.processes().is_some();
    let admitted = app.with_model(|model, rng, now| {
        let admission = model.invoke(session_id, now, rng)?;
        if per_session {
            model.begin_work(session_id, admission.generation, now);
        }
        Ok::<_, Rejection>(admission)
    });
    match admitted {
        Ok(admission) => Ok(admission),
        Err(rejection) => {
            info!(session_id, %rejection, "invocation rejected");
            if matches!(rejection, Rejection::Crashed { .. }) {
                app.agent.session_ended(session_id, Ended::Crashed).await;
            }
            Err(rejection.into())
        }
    }
}

async fn call_agent(
    app: &App,
    session_id: &str,
    admission: &Admission,
    headers: &HeaderMap,
    payload: Bytes,
) -> Result<Response, ServiceError> {
    let per_session = app.agent.processes();
    // Ends the work `admit` began even if this future is cut short (the emulator stopping).
    let work = per_session.map(|_| Work {
        app,
        session_id,
        generation: admission.generation,
    });
    // Per session, a cold start is the agent process's real start, not a sampled latency.
    if per_session.is_none() || !admission.cold {
        tokio::time::sleep(admission.latency).await;
    }
    let invocation = Invocation {
        session_id,
        generation: admission.generation,
        headers,
        payload,
    };
    let reply = app.agent.invoke(invocation).await;
    drop(work);
    let reply = match reply {
        Ok(reply) => reply,
        Err(err) => {
            let message = warmpool_core::process::error_chain(&err);
            warn!(session_id, error = %message, "agent failed");
            if let Some(pool) = per_session
                && matches!(err, Error::AgentNotHealthy { .. } | Error::AgentProcessEnded)
            {
                // The microVM is unusable: the next invocation on this ID gets a new one.
                app.with_model(|model, _, now| model.crash(session_id, now));
                pool.end(session_id, Some(admission.generation), ProcessEnd::Crashed)
                    .await;
            }
            return Err(ServiceError::new(ErrorKind::RuntimeClient, message));
        }
    };
    info!(
        session_id,
        cold = admission.cold,
        generation = admission.generation,
        latency_ms = u64::try_from(admission.latency.as_millis()).unwrap_or(u64::MAX),
        "invoked"
    );
    let content_type =
        HeaderValue::from_str(&reply.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(with_session_header(
        (StatusCode::OK, [(CONTENT_TYPE, content_type)], reply.body).into_response(),
        session_id,
    ))
}

/// An invocation the agent is working on, as the model was told in `admit`.
struct Work<'a> {
    app: &'a App,
    session_id: &'a str,
    generation: u32,
}

impl Drop for Work<'_> {
    fn drop(&mut self) {
        self.app
            .with_model(|model, _, now| model.end_work(self.session_id, self.generation, now));
    }
}

/// Applies the fault drawn at admission to the answer the agent gave: the agent has acted in
/// every case.
async fn deliver(app: &App, connection: &Connection, session_id: &str, answer: Answer, response: Response) -> Response {
    match answer {
        Answer::Delivered => {}
        Answer::Lost => {
            info!(session_id, client = %connection.remote(), "answer lost after admission (injected)");
            connection.cut();
        }
        Answer::Late(delay) => {
            info!(
                session_id,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "answer held back (injected)"
            );
            let mut stopping = app.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stopping.wait_for(|stop| *stop) => connection.cut(),
            }
        }
    }
    response
}

async fn stop(
    State(app): State<Arc<App>>,
    arn: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    app.check_runtime(arn)?;
    let session_id = wire::session_id(&headers)?;
    if let Err(rejection) = app.with_model(|model, rng, now| model.request_stop(&session_id, now, rng)) {
        info!(session_id = %session_id, %rejection, "stop refused");
        return Err(rejection.into());
    }
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

/// `/admin/stats`: the model's counters, and the per-session processes' in that mode.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdminStats {
    #[serde(flatten)]
    model: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_processes: Option<ProcessStats>,
}

async fn admin_stats(State(app): State<Arc<App>>) -> Json<AdminStats> {
    Json(AdminStats {
        model: app.with_model(|model, _, _| model.stats()),
        agent_processes: app.agent.processes().map(|pool| pool.stats()),
    })
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
    if let Some(pool) = app.agent.processes() {
        pool.end_all(ProcessEnd::Forgotten).await;
    }
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
