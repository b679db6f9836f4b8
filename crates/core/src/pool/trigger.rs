//! The replenish trigger as get-session uses it: handing over a request never waits for the
//! `Event` invoke and can never fail the claim.
//!
//! [`DeferredTrigger`] queues each request for a worker task that performs the real invoke.
//! [`TriggerWorker::idle`] lets the host wait until every queued request was delivered, so a
//! Lambda execution environment is not frozen with a request still in flight.

use crate::error::TriggerError;
use crate::ports::ReplenishTrigger;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

#[derive(Debug, Clone)]
pub struct DeferredTrigger {
    sender: mpsc::UnboundedSender<u32>,
    progress: Arc<Background>,
}

/// Counts of work handed to the background (started, finished, failed), and a way to wait
/// until all of it has finished. Shared by the deferred trigger and the local Lambda relay.
#[derive(Debug, Default)]
pub struct Background {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    changed: Notify,
}

impl Background {
    pub fn start(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    pub fn finish(&self, succeeded: bool) {
        if !succeeded {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    pub fn succeeded(&self) -> u64 {
        self.finished.load(Ordering::SeqCst) - self.failed()
    }

    /// Resolves once everything started so far has finished.
    pub async fn idle(&self) {
        loop {
            let changed = self.changed.notified();
            if self.finished.load(Ordering::SeqCst) >= self.started() {
                return;
            }
            changed.await;
        }
    }
}

/// Handle on the worker: how many requests it delivered or failed, and a way to wait for it.
#[derive(Debug, Clone)]
pub struct TriggerWorker {
    progress: Arc<Background>,
}

impl DeferredTrigger {
    /// Spawns the worker on the current tokio runtime.
    pub fn spawn<T: ReplenishTrigger + 'static>(inner: T) -> (Self, TriggerWorker) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<u32>();
        let progress = Arc::new(Background::default());
        let worker_progress = progress.clone();
        tokio::spawn(async move {
            while let Some(count) = receiver.recv().await {
                let result = inner.request(count).await;
                if let Err(error) = &result {
                    warn!(count, %error, "replenish trigger failed; the maintenance schedule will top up");
                }
                worker_progress.finish(result.is_ok());
            }
        });
        (
            Self {
                sender,
                progress: progress.clone(),
            },
            TriggerWorker { progress },
        )
    }
}

impl ReplenishTrigger for DeferredTrigger {
    async fn request(&self, count: u32) -> Result<(), TriggerError> {
        self.progress.start();
        self.sender.send(count).map_err(|_| {
            self.progress.finish(false);
            TriggerError {
                message: "replenish trigger worker has stopped".into(),
                source: None,
            }
        })
    }
}

impl TriggerWorker {
    /// Resolves once every request queued so far was delivered or failed.
    pub async fn idle(&self) {
        self.progress.idle().await
    }

    pub fn delivered(&self) -> u64 {
        self.progress.succeeded()
    }

    pub fn failed(&self) -> u64 {
        self.progress.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::RecordingTrigger;

    #[tokio::test]
    async fn requests_reach_the_inner_trigger_after_the_caller_moved_on() {
        let inner = Arc::new(RecordingTrigger::default());
        let (trigger, worker) = DeferredTrigger::spawn(inner.clone());
        trigger.request(2).await.unwrap();
        trigger.request(1).await.unwrap();
        worker.idle().await;
        assert_eq!(inner.requests(), vec![2, 1]);
        assert_eq!((worker.delivered(), worker.failed()), (2, 0));
    }

    #[tokio::test]
    async fn a_failing_inner_trigger_is_counted_not_returned() {
        let inner = Arc::new(RecordingTrigger::default());
        inner.fail_all();
        let (trigger, worker) = DeferredTrigger::spawn(inner.clone());
        assert!(trigger.request(1).await.is_ok());
        worker.idle().await;
        assert_eq!(worker.failed(), 1);
    }
}
