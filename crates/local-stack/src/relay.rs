//! An honest asynchronous Lambda invoke path for the local stack.
//!
//! `cargo lambda watch` answers an `Event` invoke synchronously and moto answers it with 202
//! without running anything, so neither shows what production does: the caller gets 202 at
//! once and the function runs afterwards. This relay serves the Lambda Invoke API
//! (`POST /2015-03-31/functions/<name>/invocations`) on 127.0.0.1: `Event` invokes are
//! accepted with 202 and dispatched in the background; `RequestResponse` invokes wait for the
//! dispatch and return its answer.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

pub type DispatchFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Runs one invocation of the named function with the payload; `Err` is a function error.
pub type Dispatch = Arc<dyn Fn(String, Vec<u8>) -> DispatchFuture + Send + Sync>;

#[derive(Clone)]
struct Relay {
    dispatch: Dispatch,
    stats: Arc<RelayStats>,
}

/// Background (`Event`) invocations: accepted, finished, failed, and a way to wait for them.
pub type RelayStats = warmpool_core::pool::trigger::Background;

pub struct RunningRelay {
    pub addr: SocketAddr,
    pub stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the relay on `listen`, which must be a loopback address.
pub async fn spawn(listen: SocketAddr, dispatch: Dispatch) -> std::io::Result<RunningRelay> {
    if !listen.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the relay binds loopback addresses only",
        ));
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(RelayStats::default());
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .with_state(Relay {
            dispatch,
            stats: stats.clone(),
        });
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "lambda relay stopped");
        }
    });
    Ok(RunningRelay { addr, stats, task })
}

/// Lambda's longest function timeout.
pub const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// A dispatch that forwards each invocation synchronously to another Lambda Invoke API
/// (`cargo lambda watch`), so the relay adds the asynchrony in front of it.
///
/// The client ignores proxy settings (the target is on loopback) and gives each invocation at
/// most [`FORWARD_TIMEOUT`], Lambda's own maximum, so no dispatch can hang forever.
pub fn forward_to(base_url: String) -> Dispatch {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(FORWARD_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    Arc::new(move |function, payload| {
        let request = client
            .post(format!("{base_url}/2015-03-31/functions/{function}/invocations"))
            .header("X-Amz-Invocation-Type", "RequestResponse")
            .body(payload);
        Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let failed = response.headers().contains_key("x-amz-function-error") || !response.status().is_success();
            let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
            if failed {
                Err(String::from_utf8_lossy(&body).into_owned())
            } else {
                Ok(body)
            }
        })
    })
}

async fn invoke(State(relay): State<Relay>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let function = name.rsplit(':').next().unwrap_or(&name).to_string();
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "Event" => {
            relay.stats.start();
            let stats = relay.stats.clone();
            let run = (relay.dispatch)(function, body.to_vec());
            tokio::spawn(async move {
                let result = run.await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "asynchronous invocation failed");
                }
                stats.finish(result.is_ok());
            });
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        _ => match (relay.dispatch)(function, body.to_vec()).await {
            Ok(answer) => (StatusCode::OK, answer).into_response(),
            Err(error) => (StatusCode::OK, [("X-Amz-Function-Error", "Unhandled")], error).into_response(),
        },
    }
}

/// The local stack never leaves the machine: a forward target must be http:// on loopback.
/// Returns it without a trailing slash.
pub fn loopback_url(raw: &str) -> Result<String, crate::error::Error> {
    let invalid = |reason: String| crate::error::Error::invalid("--forward", reason);
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() != "http" || !loopback {
        return Err(invalid(format!("{raw}: expected http:// on a loopback address")));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// A dispatch that invokes `function` synchronously on the Invoke API at `forward` with each
/// event (what the event source and the schedule hand over).
pub fn forward_events(
    forward: &str,
    function: String,
) -> Result<crate::event_source::EventDispatch, crate::error::Error> {
    let forward = forward_to(loopback_url(forward)?);
    Ok(Arc::new(move |payload| forward(function.clone(), payload)))
}

/// One `RequestResponse` invoke of `function` on the Invoke API at `base_url`, bounded by
/// `within`; the answer, or the function's error.
pub async fn invoke_sync(
    base_url: &str,
    function: &str,
    payload: &[u8],
    within: std::time::Duration,
) -> Result<Vec<u8>, crate::error::Error> {
    let what = || format!("{function} invoke");
    let run = forward_to(base_url.trim_end_matches('/').to_string())(function.to_string(), payload.to_vec());
    match tokio::time::timeout(within, run).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(reason)) => Err(crate::error::Error::Tool { what: what(), reason }),
        Err(_) => Err(crate::error::Error::NotReady {
            what: what(),
            after: within,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_forwards_only_to_loopback_http() {
        assert_eq!(loopback_url("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        assert!(loopback_url("http://localhost:9000").is_ok());
        assert!(loopback_url("http://[::1]:9000").is_ok());
        for bad in [
            "http://10.0.0.1:9000",
            "https://127.0.0.1:9000",
            "http://example.com",
            "not a url",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }
}
