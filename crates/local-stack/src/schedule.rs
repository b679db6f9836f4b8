//! EventBridge's schedule for the local stack: a function invoked with a scheduled event at a
//! fixed period (`warmpool local schedule`, and the stale-batch detector of `local up`).

use crate::event_source::{EventDispatch, scheduled_event};
use crate::relay::FORWARD_TIMEOUT;
use std::time::Duration;
use warmpool_core::clock::{Clock, SystemClock};

/// What one scheduled invocation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    Answered(Vec<u8>),
    Failed(String),
    /// No answer within Lambda's longest timeout.
    Silent,
}

pub struct Schedule {
    /// The function's name, also the rule's name in the event.
    pub function: String,
    pub period: Duration,
    pub dispatch: EventDispatch,
}

impl Schedule {
    /// Invokes the function every `period` (the first at once), telling `on_tick` each
    /// outcome; runs until the future is dropped. Each invocation is bounded.
    pub async fn run(self, on_tick: impl Fn(&str, Tick)) {
        let mut ticks = tokio::time::interval(self.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let event = scheduled_event(&self.function, SystemClock.now_ms())
                .to_string()
                .into_bytes();
            let tick = match tokio::time::timeout(FORWARD_TIMEOUT, (self.dispatch)(event)).await {
                Ok(Ok(answer)) => Tick::Answered(answer),
                Ok(Err(error)) => Tick::Failed(error),
                Err(_) => Tick::Silent,
            };
            on_tick(&self.function, tick);
        }
    }

    /// [`Schedule::run`] in the background, outcomes to the log.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(|function, tick| match tick {
            Tick::Answered(answer) => {
                tracing::info!(function, answer = %String::from_utf8_lossy(&answer), "scheduled run")
            }
            Tick::Failed(error) => tracing::warn!(function, %error, "scheduled run failed"),
            Tick::Silent => tracing::warn!(function, "scheduled run did not answer"),
        }))
    }
}
