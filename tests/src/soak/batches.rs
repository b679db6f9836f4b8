//! The batch soak: many batches through the real functions (invoker behind its SQS event source,
//! stale-batch detector and the batch pool's replenish on their schedules, the document agent
//! one process per session) against moto and the AgentCore emulator, with the fault
//! mix, and a hostile prober invoking its own get-session sessions with running batches'
//! attempts. It counts what must never happen (see [`BatchReport::MUST_BE_ZERO`]).
//!
//! Submissions are paced (at most `max_open` open batches), so that every batch can get a
//! pooled session within its start-by time and the terminal bound is the design's, not a
//! measure of queueing. Everything the run starts is stopped at its end; every wait is bounded
//! by the run's wall-clock limit.

use super::audit::{self, ResultWrite};
use super::prober::{ProbeCounts, Prober};
use crate::batch_stack::{AgentMode, BatchStack, StackOptions};
use crate::faults::{Fault, FaultInjector};
use agentcore_emulator::FaultsUpdate;
use agentcore_emulator::lifecycle::SessionState;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use warmpool_core::batch::message::ResultNotice;
use warmpool_core::batch::{BatchId, BatchRow, BatchStatus};
use warmpool_core::clock::{Clock, SystemClock};

/// Batches of the full soak; `SOAK_BATCHES` picks fewer (or more) for a quick run.
pub const BATCHES: usize = 1_000;
/// Writes whose answer is lost (half replaced by a 5xx the SDK retries, half a dropped
/// connection the caller must resolve) at the 5% the issue names.
const LOST_ACK_OPERATIONS: [&str; 6] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "SendMessage",
    "SendMessageBatch",
];
const RESULTS_PREFIX: &str = "results/";

/// The faults injected, as probabilities per call.
#[derive(Debug, Clone)]
pub struct FaultMix {
    /// An invocation crashes its session's microVM (the agent process dies).
    pub crash_rate: f64,
    /// A DynamoDB write or SQS send of the invoker or the detector lands and loses its answer.
    pub lost_ack_rate: f64,
    /// A StopRuntimeSession call is throttled and leaves the session running.
    pub stop_throttle_rate: f64,
    /// An invocation is answered `late_answer` after the agent answered, past the invoker's
    /// invoke timeout.
    pub late_answer_rate: f64,
    pub late_answer: Duration,
}

#[derive(Debug, Clone)]
pub struct BatchSoak {
    pub batches: usize,
    /// Open (submitted, not yet seen terminal) batches at most.
    pub max_open: usize,
    /// The batch pool's replenish target, filled before the first batch.
    pub pool_target: u32,
    pub max_attempts: u32,
    pub deadline: Duration,
    pub invoke_timeout: Duration,
    pub pending_timeout: Duration,
    pub retry_delay: Duration,
    pub detector_every: Duration,
    pub replenish_every: Duration,
    pub faults: FaultMix,
    /// Sessions the hostile prober claims, and how often it probes.
    pub probers: u32,
    pub probe_every: Duration,
    /// The whole run, submission to the last count, is cut off here.
    pub wall_limit: Duration,
    /// `None`: the agent runs in this process (the fallback when no binary is built).
    pub agent_binary: Option<PathBuf>,
    pub seed: u64,
}

impl BatchSoak {
    /// The soak: `SOAK_BATCHES` (1,000) batches, the agent from `target/debug`.
    pub fn from_env() -> BatchSoak {
        let batches = std::env::var("SOAK_BATCHES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(BATCHES);
        BatchSoak {
            batches,
            ..BatchSoak::default()
        }
    }

    /// maxAttempts x (deadline + pendingTimeout) plus, per attempt, two detector intervals and
    /// the retry delay (docs/decisions/0303).
    pub fn terminal_bound(&self) -> Duration {
        let per_attempt = self.deadline + self.pending_timeout + self.detector_every * 2 + self.retry_delay;
        per_attempt * self.max_attempts
    }
}

impl Default for BatchSoak {
    fn default() -> Self {
        Self {
            batches: BATCHES,
            max_open: 32,
            pool_target: 40,
            max_attempts: 3,
            deadline: Duration::from_secs(20),
            invoke_timeout: Duration::from_secs(5),
            pending_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            detector_every: Duration::from_secs(1),
            replenish_every: Duration::from_secs(3),
            faults: FaultMix {
                crash_rate: 0.10,
                lost_ack_rate: 0.05,
                stop_throttle_rate: 0.05,
                late_answer_rate: 0.05,
                late_answer: Duration::from_secs(8),
            },
            probers: 3,
            probe_every: Duration::from_millis(250),
            wall_limit: Duration::from_secs(45 * 60),
            agent_binary: built_agent(),
            seed: 9,
        }
    }
}

fn agent_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/document-agent")
}

/// `target/debug/document-agent`, if it was built (`make soak` builds it).
pub fn built_agent() -> Option<PathBuf> {
    Some(agent_path()).filter(|p| p.exists())
}

/// Builds the agent binary (`cargo build -p document-agent`) for a test that needs it.
pub fn build_agent() -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "document-agent"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .is_ok_and(|s| s.success());
    built.then(agent_path).filter(|p| p.exists())
}

#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub batches: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub lost_batches: u64,
    pub attempts_on_two_sessions: u64,
    pub foreign_result_writes: u64,
    pub late_terminal_batches: u64,
    pub sessions_left_running: u64,
    pub agent_mode: &'static str,
    pub faults_injected: Map<String, Value>,
    pub probes: ProbeCounts,
    pub terminal_bound_secs: u64,
    /// Agent processes the emulator started (one per session's microVM); `None` in-process.
    pub agent_processes_started: Option<u64>,
    /// Slowest submit-to-terminal time seen, in seconds.
    pub slowest_terminal_secs: f64,
    pub wall_secs: f64,
    /// What broke, for the log: batch IDs, attempts, session tags.
    pub findings: Vec<String>,
}

impl BatchReport {
    pub const MUST_BE_ZERO: [&'static str; 5] = [
        "lost_batches",
        "attempts_on_two_sessions",
        "foreign_result_writes",
        "late_terminal_batches",
        "sessions_left_running",
    ];

    /// The figures merged into soak.json; `faults_injected` under its own key for merging.
    pub fn figures(&self) -> Map<String, Value> {
        let mut figures = Map::new();
        let pairs = [
            ("batches", json!(self.batches)),
            ("batches_succeeded", json!(self.succeeded)),
            ("batches_failed", json!(self.failed)),
            ("lost_batches", json!(self.lost_batches)),
            ("attempts_on_two_sessions", json!(self.attempts_on_two_sessions)),
            ("foreign_result_writes", json!(self.foreign_result_writes)),
            ("late_terminal_batches", json!(self.late_terminal_batches)),
            ("sessions_left_running", json!(self.sessions_left_running)),
            ("agent_mode", json!(self.agent_mode)),
            (
                "hostile_probes",
                json!({"probes": self.probes.probes, "refused": self.probes.refused,
                       "accepted": self.probes.accepted}),
            ),
            ("terminal_bound_secs", json!(self.terminal_bound_secs)),
            ("agent_processes_started", json!(self.agent_processes_started)),
            ("slowest_terminal_secs", json!(self.slowest_terminal_secs)),
            ("batch_wall_secs", json!(self.wall_secs)),
            ("batch_findings", json!(self.findings)),
        ];
        figures.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), v)));
        figures
    }
}

/// What the run loop knows of one batch.
struct Tracked {
    submitted_ms: u64,
    terminal_ms: Option<u64>,
}

pub async fn run(soak: &BatchSoak) -> BatchReport {
    let started = Instant::now();
    let cutoff = started + soak.wall_limit;
    let injector = FaultInjector::seeded(soak.seed);
    let mut stack = BatchStack::start(stack_options(soak, injector.clone())).await;
    let mut prober = Prober::claim(&stack, soak.probers).await;
    stack.start_replenish_schedule(soak.replenish_every);
    inject(&stack, &injector, &soak.faults);

    let tracked = drive(&stack, &mut prober, soak, cutoff).await;
    // Stragglers: late answers still on their way, stops still backing off.
    tokio::time::sleep(soak.faults.late_answer + Duration::from_secs(5)).await;
    clear(&stack, &injector);
    let mut report = count(&mut stack, &prober, &tracked, soak).await;
    report.faults_injected = faults_injected(&stack, &injector);
    report.agent_processes_started = stack.emulator.agent_processes().map(|p| p.started);
    report.probes = prober.counts;
    report.wall_secs = started.elapsed().as_secs_f64();
    drop(prober);
    stack.shutdown().await;
    report
}

fn stack_options(soak: &BatchSoak, injector: FaultInjector) -> StackOptions {
    let target = soak.pool_target.to_string();
    StackOptions {
        max_attempts: soak.max_attempts,
        batch_deadline_secs: soak.deadline.as_secs(),
        invoke_timeout_secs: soak.invoke_timeout.as_secs(),
        retry_delay_secs: soak.retry_delay.as_secs(),
        pending_timeout_secs: Some(soak.pending_timeout.as_secs()),
        pool_sessions: soak.pool_target,
        detector_every: Some(soak.detector_every),
        pollers: 4,
        creation_rate_per_sec: 200.0,
        // Batches wait for pooled sessions, as deployed: sessions stay inside the budget.
        fresh_fallback: false,
        agent_mode: soak
            .agent_binary
            .clone()
            .map_or(AgentMode::InProcess, |binary| AgentMode::PerSessionProcess { binary }),
        faults: Some(injector),
        faults_on_sqs: true,
        replenish_settings: [
            ("POOL_TARGET", target.as_str()),
            ("CREATION_BUDGET_PER_SEC", "100"),
            ("MAX_CONCURRENT_RUNS", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..StackOptions::default()
    }
}

fn inject(stack: &BatchStack, injector: &FaultInjector, mix: &FaultMix) {
    let late_ms = u64::try_from(mix.late_answer.as_millis()).unwrap_or(u64::MAX);
    stack
        .emulator
        .set_faults(FaultsUpdate {
            crash_rate: Some(mix.crash_rate),
            stop_throttle_rate: Some(mix.stop_throttle_rate),
            late_answer_rate: Some(mix.late_answer_rate),
            late_answer_ms: Some(late_ms),
            ..FaultsUpdate::default()
        })
        .expect("the soak's emulator faults are valid");
    // Two rules per operation, tried in turn: together they fire at about `lost_ack_rate`.
    let half = mix.lost_ack_rate / 2.0;
    for operation in LOST_ACK_OPERATIONS {
        injector.rate(operation, Fault::LoseAnswer, half);
        injector.rate(operation, Fault::DropAnswer, half);
    }
}

/// Faults off for the final counts, so that the soak's own reads are not hit; the counters stay.
fn clear(stack: &BatchStack, injector: &FaultInjector) {
    injector.clear();
    let _ = stack.emulator.set_faults(FaultsUpdate {
        crash_rate: Some(0.0),
        stop_throttle_rate: Some(0.0),
        late_answer_rate: Some(0.0),
        ..FaultsUpdate::default()
    });
}

/// Submits at most `max_open` open batches at a time, watches open rows until each is seen
/// terminal, and probes now and then; until every batch is terminal or the cutoff.
async fn drive(
    stack: &BatchStack,
    prober: &mut Prober,
    soak: &BatchSoak,
    cutoff: Instant,
) -> HashMap<BatchId, Tracked> {
    let mut rng = StdRng::seed_from_u64(soak.seed);
    let mut tracked: HashMap<BatchId, Tracked> = HashMap::new();
    let mut next = 0usize;
    let mut last_probe = Instant::now();
    let mut last_progress = Instant::now();
    while Instant::now() < cutoff {
        let open: Vec<BatchId> = tracked
            .iter()
            .filter(|(_, t)| t.terminal_ms.is_none())
            .map(|(b, _)| b.clone())
            .collect();
        if next >= soak.batches && open.is_empty() {
            break;
        }
        let room = soak.max_open.saturating_sub(open.len()).min(soak.batches - next);
        let names: Vec<String> = (next..next + room).map(|n| format!("soak-{n:05}")).collect();
        next += room;
        let submitted: Vec<BatchId> = futures::stream::iter(&names)
            .map(|name| submit(stack, name))
            .buffer_unordered(8)
            .collect()
            .await;
        let now = SystemClock.now_ms();
        for batch in submitted {
            tracked.insert(
                batch,
                Tracked {
                    submitted_ms: now,
                    terminal_ms: None,
                },
            );
        }
        let rows = read_rows(stack, &open).await;
        let now = SystemClock.now_ms();
        // The prober names an open batch's current attempt, running or about to run.
        let running: Vec<&BatchRow> = rows.values().filter(|r| !r.status.is_terminal()).collect();
        for row in rows.values().filter(|r| r.status.is_terminal()) {
            if let Some(t) = tracked.get_mut(&row.batch_id) {
                t.terminal_ms = Some(now);
            }
        }
        if last_probe.elapsed() >= soak.probe_every && !running.is_empty() {
            let row = running[rng.random_range(0..running.len())];
            prober.probe(row, rng.random_range(0..usize::MAX)).await;
            last_probe = Instant::now();
        }
        if last_progress.elapsed() >= Duration::from_secs(30) {
            let done = tracked.values().filter(|t| t.terminal_ms.is_some()).count();
            eprintln!("batch soak: {done} of {} terminal, {} open", soak.batches, open.len());
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracked
}

async fn submit(stack: &BatchStack, name: &str) -> BatchId {
    let first = format!("{name}: first document");
    let second = format!("{name}: second document, a little longer than the first");
    stack
        .submit(name, &[("a.txt", first.as_bytes()), ("b.txt", second.as_bytes())])
        .await
}

/// The rows of `batches`, read (eventually consistent is enough to see progress) through the
/// stack's clean table; a batch whose row is not there yet is left out.
async fn read_rows(stack: &BatchStack, batches: &[BatchId]) -> HashMap<BatchId, BatchRow> {
    futures::stream::iter(batches)
        .map(|b| async move { stack.table_row(b).await })
        .buffer_unordered(8)
        .filter_map(|row| async move { row })
        .map(|row| (row.batch_id.clone(), row))
        .collect()
        .await
}

async fn count(
    stack: &mut BatchStack,
    prober: &Prober,
    tracked: &HashMap<BatchId, Tracked>,
    soak: &BatchSoak,
) -> BatchReport {
    let batches: Vec<BatchId> = tracked.keys().cloned().collect();
    let rows = read_rows(stack, &batches).await;
    stack.quiesce().await;
    let mut report = BatchReport {
        batches: soak.batches as u64,
        agent_mode: match soak.agent_binary {
            Some(_) => "per-session-process",
            None => "in-process",
        },
        terminal_bound_secs: soak.terminal_bound().as_secs(),
        ..BatchReport::default()
    };
    let bound_ms = u64::try_from(soak.terminal_bound().as_millis()).unwrap_or(u64::MAX);
    let never_submitted = soak.batches.saturating_sub(tracked.len()) as u64;
    report.lost_batches = never_submitted;
    for (batch, t) in tracked {
        match rows.get(batch).map(|r| r.status) {
            Some(BatchStatus::Succeeded) => report.succeeded += 1,
            Some(BatchStatus::Failed) => report.failed += 1,
            status => {
                report.lost_batches += 1;
                report.findings.push(format!("lost: {batch} ({status:?})"));
            }
        }
        if let Some(terminal) = t.terminal_ms {
            let took = terminal.saturating_sub(t.submitted_ms);
            report.slowest_terminal_secs = report.slowest_terminal_secs.max(took as f64 / 1000.0);
            if took > bound_ms {
                report.late_terminal_batches += 1;
                report.findings.push(format!("late: {batch} terminal after {took} ms"));
            }
        }
    }
    let writes = result_writes(stack).await;
    let audit = audit::audit_writes(&writes, &rows, &prober.sessions);
    report.attempts_on_two_sessions = audit.attempts_on_two_sessions.len() as u64;
    report.foreign_result_writes = audit.foreign_result_writes.len() as u64;
    for (batch, attempt, tags) in &audit.attempts_on_two_sessions {
        report
            .findings
            .push(format!("two sessions: {batch} attempt {attempt}: {tags:?}"));
    }
    for write in &audit.foreign_result_writes {
        report.findings.push(format!("foreign {}: {write:?}", write.via));
    }
    let left = left_running(stack, prober, &rows).await;
    report.sessions_left_running = left.len() as u64;
    for session in left {
        report
            .findings
            .push(format!("left running: session {}", short(&session)));
    }
    report
}

/// Every result object under the results prefix and every notice on the results queue.
async fn result_writes(stack: &BatchStack) -> Vec<ResultWrite> {
    let s3 = warmpool_core::aws::s3_client(&crate::sdk_config(&crate::Moto::shared().endpoint), true);
    let mut writes = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&stack.resources.documents_bucket)
        .prefix(RESULTS_PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let Ok(page) = page else { break };
        writes.extend(
            page.contents()
                .iter()
                .filter_map(|o| audit::parse_result_key(RESULTS_PREFIX, o.key().unwrap_or_default())),
        );
    }
    let notices = crate::drain(&stack.sqs, &stack.resources.results_queue_url).await;
    writes.extend(
        notices
            .iter()
            .filter_map(|body| serde_json::from_str::<ResultNotice>(body).ok())
            .map(|n| audit::notice_write(&n)),
    );
    writes
}

async fn left_running(stack: &BatchStack, prober: &Prober, rows: &HashMap<BatchId, BatchRow>) -> Vec<String> {
    let pooled: HashSet<String> = crate::drain(&stack.sqs, stack.pool.queue_url())
        .await
        .iter()
        .filter_map(|body| warmpool_core::session::PooledSession::parse(body).ok())
        .map(|s| s.session_id.to_string())
        .collect();
    let active: Vec<String> = stack
        .emulator
        .sessions()
        .into_iter()
        .filter(|s| s.state == SessionState::Active)
        .map(|s| s.session_id)
        .collect();
    audit::sessions_left_running(&active, &pooled, &prober.sessions, rows)
}

fn faults_injected(stack: &BatchStack, injector: &FaultInjector) -> Map<String, Value> {
    let stats = stack.emulator.stats();
    let totals = injector.totals();
    let mut faults = Map::new();
    let pairs = [
        ("agent_crashes", stats.crashes),
        ("late_answers", stats.late_answers),
        ("stop_throttles", stats.stop_throttles),
        (
            "lost_acks_answer_replaced",
            totals.get(&Fault::LoseAnswer).copied().unwrap_or(0),
        ),
        (
            "lost_acks_connection_dropped",
            totals.get(&Fault::DropAnswer).copied().unwrap_or(0),
        ),
    ];
    faults.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), json!(v))));
    faults
}

/// A session ID is a bearer secret: the report shows only its result-key tag.
fn short(session: &str) -> String {
    warmpool_core::session::SessionId::parse(session)
        .map(|id| document_agent::run::session_tag(&id))
        .unwrap_or_else(|_| "<unparseable>".into())
}
