//! The templates of infra/ against the functions' own config parsers: a variable a function
//! requires but a template does not set, or sets misspelled, fails here instead of at the
//! function's first cold start after a deploy. Also the values that two resources must agree
//! on (session lifecycle, shard count, concurrency, redrive count, schedule, pool name) do
//! agree, in every template that deploys code (pool.yaml, batch.yaml), and the full system
//! (template.yaml) passes each of its parameters unchanged to the nested stack that declares it.
//!
//! Whether a variable is read is decided by behaviour, not by name lists: a variable is read if
//! changing its value changes the parsed config (or makes it invalid).

mod access;
mod composition;
mod environment;
mod leases;
mod metrics;
mod stack;

use stack::Stack;
use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use warmpool_core::config::Env;

pub type Parse = fn(&Env) -> Result<String, String>;

fn debug<T: Debug, E: Display>(parsed: Result<T, E>) -> Result<String, String> {
    parsed.map(|config| format!("{config:?}")).map_err(|e| e.to_string())
}

/// A template that deploys code of ours, and the parameter sets it is checked under.
pub struct Template {
    pub file: &'static str,
    source: &'static str,
    /// Every parameter without a default needs a value here.
    required: &'static [(&'static str, &'static str)],
    /// The resources that receive an environment, and the parser of the code that runs in each.
    pub consumers: &'static [(&'static str, Parse)],
    scenarios: &'static [(&'static str, &'static [(&'static str, &'static str)])],
}

impl Template {
    pub fn stack(&self, overrides: &[(&str, &str)]) -> Stack {
        Stack::new(self.file, self.source, self.required, overrides)
    }

    /// Runs `check` once per scenario.
    pub fn each_scenario(&self, mut check: impl FnMut(&str, &Stack)) {
        for (name, overrides) in self.scenarios {
            check(&format!("{}, {name}", self.file), &self.stack(overrides));
        }
    }

    /// The consumers this parameter set creates (the runtime is optional in batch.yaml).
    pub fn consumers_in<'a>(&self, stack: &'a Stack) -> impl Iterator<Item = (&'static str, Parse)> + 'a {
        self.consumers.iter().copied().filter(|(id, _)| stack.has(id))
    }
}

const RUNTIME_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/team_agent-Zx9Yw8Vu7T";

pub const POOL: Template = Template {
    file: "infra/pool.yaml",
    source: include_str!("../../../infra/pool.yaml"),
    required: &[("AgentRuntimeArn", RUNTIME_ARN)],
    consumers: &[
        ("GetSessionFunction", |env| debug(get_session::Config::from_env(env))),
        ("ReplenishFunction", |env| debug(replenish::Config::from_env(env))),
    ],
    scenarios: &[
        ("defaults", &[]),
        (
            "scheduled target",
            &[
                ("PoolTargetMode", "scheduled"),
                ("PoolTargetSchedule", "Mon-Fri 08:00-18:00=50; * 00:00-06:00=2"),
            ],
        ),
        (
            "adaptive target",
            &[("PoolTargetMode", "adaptive"), ("PoolTargetMax", "200")],
        ),
        (
            "adaptive target with pre-warm windows",
            &[
                ("PoolTargetMode", "adaptive"),
                ("PoolTargetSchedule", "* *:09-*:30=9250; * *:39-*:60=9250"),
                ("MaxCreationsPerRun", "1200"),
            ],
        ),
        (
            "slow maintenance, longer idle timeout",
            &[("MaintenanceIntervalSecs", "300"), ("SessionIdleTimeoutSecs", "1200")],
        ),
        (
            "an operator's own session log key",
            &[("SessionLogKey", "0f4c1d7e9b2a4c88a1d3e5f7")],
        ),
        (
            "the longest claim wait in the shortest get-session timeout",
            &[("ClaimWaitSecs", "5"), ("GetSessionTimeoutSecs", "10")],
        ),
        (
            "a named pool on an endpoint of its own",
            &[("PoolName", "team-a.checkout"), ("AgentRuntimeQualifier", "prod")],
        ),
        // Leases (crate::leases): on, and on with the audit archive and windows of its own. (An
        // archive without leases is refused by the templates' rule ArchiveNeedsLeases.)
        ("leases", leases::ON),
        ("leases with the audit archive", leases::WITH_ARCHIVE),
        (
            "leases on an endpoint of their own",
            &[
                ("EnableLeases", "true"),
                ("AgentRuntimeQualifier", "prod"),
                ("PoolName", "team-b.chat"),
            ],
        ),
    ],
};

pub const BATCH: Template = Template {
    file: "infra/batch.yaml",
    source: include_str!("../../../infra/batch.yaml"),
    required: &[(
        "AgentContainerUri",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/warmpool/document-agent:v1",
    )],
    consumers: &[
        ("BatchReplenishFunction", |env| debug(replenish::Config::from_env(env))),
        ("InvokerFunction", |env| debug(invoker::Config::from_env(env))),
        ("StaleBatchDetectorFunction", |env| {
            debug(stale_batch_detector::Config::from_env(env))
        }),
        ("DocumentAgentRuntime", |env| {
            debug(document_agent::AgentConfig::from_env(env))
        }),
    ],
    scenarios: &[
        ("defaults", &[]),
        ("an existing runtime", &[("AgentRuntimeArn", RUNTIME_ARN)]),
        ("the reference agent on platform V1", &[("PlatformVersion", "V1")]),
        (
            "slow maintenance, longer idle timeout",
            &[("MaintenanceIntervalSecs", "300"), ("SessionIdleTimeoutSecs", "1200")],
        ),
        (
            "an operator's own session log key",
            &[("SessionLogKey", "0f4c1d7e9b2a4c88a1d3e5f7")],
        ),
        ("a named batch pool", &[("PoolName", "warmpool-batch")]),
    ],
};

/// The templates that deploy code; template.yaml only nests them (see `composition`).
pub const TEMPLATES: [&Template; 2] = [&POOL, &BATCH];

pub fn env_of(variables: &BTreeMap<String, String>) -> Env {
    Env::from_pairs(variables.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A different value of the same shape: a number plus one, a flipped boolean, a longer string.
pub fn perturbed(value: &str) -> String {
    if let Ok(n) = value.parse::<u64>() {
        (n + 1).to_string()
    } else if let Ok(x) = value.parse::<f64>() {
        (x * 1.1).to_string()
    } else if value == "true" {
        "false".into()
    } else if value == "false" {
        "true".into()
    } else {
        format!("{value}x")
    }
}

/// Whether the parser's result depends on `key` (given the rest of `environment`).
pub fn reads(parse: Parse, environment: &BTreeMap<String, String>, key: &str, probe: &str) -> bool {
    let baseline = parse(&env_of(environment));
    let mut changed = environment.clone();
    changed.insert(key.to_string(), probe.to_string());
    parse(&env_of(&changed)) != baseline
}
