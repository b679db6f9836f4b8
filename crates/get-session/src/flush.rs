//! Keeps the Lambda execution environment from freezing while the replenish trigger of the
//! invocation that just answered is still being sent.
//!
//! The claim answers without waiting for its `Event` invoke (see `warmpool_core::pool::trigger`).
//! Lambda freezes the environment once the runtime and every extension have asked for the next
//! event, and a request caught mid-flight is delayed to the next thaw or lost. An internal
//! extension registered for INVOKE holds that moment back until the handler has finished and
//! the trigger worker is idle, so the caller gets its answer first and the trigger is still
//! delivered. Without the Extensions API (some local emulators), it runs the handler alone.

use lambda_extension::{Extension, NextEvent};
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tracing::warn;
use warmpool_core::pool::trigger::TriggerWorker;

const EXTENSION_NAME: &str = "replenish-trigger-flush";
/// How long one invocation's triggers may hold the freeze back.
const FLUSH_BOUND: Duration = Duration::from_secs(3);
/// How long to wait for the handler to finish; beyond the function timeout it cannot run anyway.
const HANDLER_BOUND: Duration = Duration::from_secs(900);

/// Signals "handler finished" when dropped, so a panicking handler signals too.
struct Finished(mpsc::UnboundedSender<()>);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

pub async fn run<H, Fut, R, E>(handler: H, worker: TriggerWorker) -> Result<(), Error>
where
    H: Fn(LambdaEvent<Value>) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: Serialize,
    E: Into<Diagnostic> + std::fmt::Debug,
{
    let (finished, finished_rx) = mpsc::unbounded_channel();
    let finished_rx = Arc::new(Mutex::new(finished_rx));
    let handler = service_fn(move |event| {
        let guard = Finished(finished.clone());
        let answer = handler(event);
        async move {
            let out = answer.await;
            drop(guard);
            out
        }
    });
    let flush = service_fn(move |event: lambda_extension::LambdaEvent| {
        let (finished_rx, worker) = (finished_rx.clone(), worker.clone());
        async move {
            if let NextEvent::Invoke(_) = event.next {
                let _ = tokio::time::timeout(HANDLER_BOUND, async { finished_rx.lock().await.recv().await }).await;
                if tokio::time::timeout(FLUSH_BOUND, worker.idle()).await.is_err() {
                    warn!("replenish trigger still in flight after {FLUSH_BOUND:?}; letting Lambda freeze");
                }
            }
            Ok::<(), lambda_extension::Error>(())
        }
    });
    let registered = Extension::new()
        .with_events(&["INVOKE"])
        .with_events_processor(flush)
        .with_extension_name(EXTENSION_NAME)
        .register()
        .await;
    match registered {
        // Boxed: the runtime's and the extension's futures nest deeply enough to overflow the
        // compiler's layout query depth when inlined into `main`'s future.
        Ok(extension) => {
            tokio::try_join!(Box::pin(lambda_runtime::run(handler)), Box::pin(extension.run())).map(|_| ())
        }
        Err(error) => {
            warn!(%error, "Extensions API unavailable; replenish triggers are sent without holding the freeze");
            Box::pin(lambda_runtime::run(handler)).await
        }
    }
}
