//! The whole local stack, as `warmpool local up` and `warmpool demo` run it: moto, the
//! AgentCore emulator (in-process), the functions under `cargo lambda watch`, the Lambda relay
//! in front of them (the asynchronous `Event` path) and the pool queue; with batches also the
//! bucket, queues and tracking table, the document agent behind a second emulator, a second
//! watch and relay, the SQS event source feeding the invoker, and the detector's schedule.
//!
//! Everything is started under one [`Supervisor`]: if a step fails, or the stack is dropped
//! (an interrupted start too), all that was started so far stops.

mod batches;
mod exports;
mod pool;

pub use batches::BatchSide;
pub use exports::Exports;
pub use pool::PoolSide;

use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::workspace::Workspace;
use agentcore_emulator::AgentCommand;
use std::path::PathBuf;

/// The demo agent's runtime (the pool side).
pub const RUNTIME_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-agent";
/// The document agent's runtime (the batch side).
pub const DOCUMENT_RUNTIME_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/document-agent";

/// Which agent serves the pool side's sessions.
#[derive(Debug, Clone, Default)]
pub enum Agent {
    /// The emulator's built-in agent.
    #[default]
    BuiltIn,
    /// One agent at this URL for every session.
    Url(String),
    /// One agent process per session, from this command.
    Command(AgentCommand),
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub workspace: Workspace,
    /// Where logs and env files go.
    pub run_dir: PathBuf,
    pub with_batches: bool,
    /// A lease table for get-session and replenish (`LEASE_TABLE_NAME`): the leases feature.
    pub with_leases: bool,
    pub agent: Agent,
    /// Function instances `cargo lambda watch` runs at once, per function.
    pub concurrency: u32,
    /// Multiplies the emulator's cold and warm latencies (1.0: the published ones).
    pub latency_scale: f64,
    /// Build the binaries first (off when the caller just built them).
    pub build: bool,
}

impl StackOptions {
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            workspace: Workspace::default(),
            run_dir: run_dir.into(),
            with_batches: false,
            with_leases: false,
            agent: Agent::BuiltIn,
            concurrency: 4,
            latency_scale: 1.0,
            build: true,
        }
    }
}

/// A running local stack; stops when dropped, or with [`LocalStack::stop`] (which also lets
/// the emulators end their sessions' agents).
pub struct LocalStack {
    pub moto_url: String,
    pub pool: PoolSide,
    pub batches: Option<BatchSide>,
    supervisor: Supervisor,
}

impl LocalStack {
    /// Starts every part; `step` hears what is being started, for a progress line.
    pub async fn start(options: &StackOptions, step: &(dyn Fn(&str) + Sync)) -> Result<LocalStack, Error> {
        let supervisor = Supervisor::new(&options.run_dir)?;
        if options.build {
            step("building (debug; reuses target/)");
            crate::watch::build(&options.workspace, options.with_batches).await?;
        }
        step("starting moto");
        let (moto_url, moto) = crate::moto::Moto::start(&options.workspace).await?.into_process();
        supervisor.adopt(moto);
        step("starting the AgentCore emulator, the pool queue, cargo lambda watch and the relay");
        let pool = pool::start(&supervisor, options, &moto_url).await?;
        let batches = if options.with_batches {
            step("starting the batch side (resources, document agent, emulator, watch, relay, pump, schedule)");
            Some(batches::start(&supervisor, options, &moto_url).await?)
        } else {
            None
        };
        Ok(LocalStack {
            moto_url,
            pool,
            batches,
            supervisor,
        })
    }

    /// Every endpoint and resource, as `export NAME=value` lines describe them.
    pub fn exports(&self) -> Exports {
        Exports::of(self)
    }

    /// The processes it started that have ended on their own (a crashed watch, say).
    pub fn exited(&self) -> Vec<String> {
        self.supervisor.exited()
    }

    /// The pids of its child processes.
    pub fn pids(&self) -> Vec<u32> {
        self.supervisor.pids()
    }

    pub fn run_dir(&self) -> &std::path::Path {
        self.supervisor.run_dir()
    }

    /// Stops everything: the emulators first (each stops its per-session agents, bounded),
    /// then the rest, newest first.
    pub async fn stop(self) {
        let LocalStack {
            pool,
            batches,
            supervisor,
            ..
        } = self;
        if let Some(batches) = batches {
            batches.shutdown().await;
        }
        pool.shutdown().await;
        supervisor.stop();
    }
}
