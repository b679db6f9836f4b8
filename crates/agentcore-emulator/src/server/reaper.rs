//! The clock-driven half of the per-session-process mode. On a short tick it ends the
//! processes of sessions the model no longer counts as active (idle timeout, max lifetime, a
//! reset), and it asks the agents of sessions about to idle out for their `/ping`, so that a
//! HealthyBusy agent keeps its session, as in AgentCore. Pings go only to sessions within
//! reach of their idle timeout (or already busy), each at most every `PING_INTERVAL`, at most
//! `MAX_PINGS_PER_TICK` per tick. The task stops with the server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::App;
use crate::agent::process::{PING_TIMEOUT, ProcessEnd, ProcessPool};
use crate::lifecycle::SessionState;

const TICK: Duration = Duration::from_millis(100);
const PING_INTERVAL: Duration = Duration::from_millis(500);
const MAX_PINGS_PER_TICK: usize = 16;
/// Pinging starts this long before the idle timeout, so one answer lands before it strikes.
const PING_LOOKAHEAD: Duration = PING_INTERVAL.saturating_add(PING_TIMEOUT).saturating_add(TICK);

pub(super) async fn run(app: Arc<App>, pool: Arc<ProcessPool>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pinged: HashMap<String, Instant> = HashMap::new();
    loop {
        let round = async {
            tick.tick().await;
            reap(&app, &pool).await;
            poll_busy(&app, &pool, &mut pinged).await;
        };
        tokio::select! {
            () = round => {}
            // A dropped sender ends the wait too.
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Ends every process whose session generation the model no longer has active.
async fn reap(app: &App, pool: &ProcessPool) {
    let sessions = pool.sessions();
    if sessions.is_empty() {
        return;
    }
    let ended: Vec<(String, u32, ProcessEnd)> = app.with_model(|model, _, now| {
        sessions
            .into_iter()
            .filter_map(|(id, generation)| {
                let why = match model.session_state(&id, now) {
                    None => ProcessEnd::Forgotten,
                    Some((current, _)) if current != generation => ProcessEnd::Replaced,
                    Some((_, SessionState::Active)) => return None,
                    Some((_, SessionState::IdleExpired)) => ProcessEnd::IdleExpired,
                    Some((_, SessionState::LifetimeExpired)) => ProcessEnd::LifetimeExpired,
                    Some((_, SessionState::Stopped)) => ProcessEnd::Stopped,
                    Some((_, SessionState::Crashed)) => ProcessEnd::Crashed,
                };
                Some((id, generation, why))
            })
            .collect()
    });
    let ends = ended
        .iter()
        .map(|(id, generation, why)| pool.end(id, Some(*generation), *why));
    futures::future::join_all(ends).await;
}

/// Pings the agents of sessions near their idle timeout and tells the model what they said.
async fn poll_busy(app: &App, pool: &ProcessPool, pinged: &mut HashMap<String, Instant>) {
    let within_ms = u64::try_from(PING_LOOKAHEAD.as_millis()).unwrap_or(u64::MAX);
    let candidates = app.with_model(|model, _, now| model.idle_candidates(now, within_ms));
    let wanted: HashSet<&String> = candidates.iter().map(|(id, _)| id).collect();
    pinged.retain(|id, _| wanted.contains(id));
    let with_process: HashSet<(String, u32)> = pool.sessions().into_iter().collect();
    let now = Instant::now();
    let due: Vec<(String, u32)> = candidates
        .iter()
        .filter(|candidate| with_process.contains(*candidate))
        .filter(|(id, _)| pinged.get(id).is_none_or(|at| now.duration_since(*at) >= PING_INTERVAL))
        .take(MAX_PINGS_PER_TICK)
        .cloned()
        .collect();
    if due.is_empty() {
        return;
    }
    for (id, _) in &due {
        pinged.insert(id.clone(), now);
    }
    let answers = futures::future::join_all(
        due.iter()
            .map(|(id, generation)| async move { (id, *generation, pool.ping(id, *generation).await) }),
    )
    .await;
    app.with_model(|model, _, now| {
        for (id, generation, busy) in answers {
            if let Some(busy) = busy {
                let applied = model.report_ping(id, generation, busy, now);
                tracing::debug!(session_id = %id, generation, busy, applied, "agent pinged");
            }
        }
    });
}
