//! infra/template.yaml against the functions' own config parsers: a variable a function
//! requires but the template does not set, or sets misspelled, fails here instead of at the
//! function's first cold start after a deploy. Also the values that two resources must agree
//! on (session lifecycle, shard count, concurrency, redrive count, schedule) do agree.
//!
//! The template is read as plain YAML. CloudFormation's short-form tags (`!Ref`, `!GetAtt`,
//! `!Sub`, ...) arrive as tagged values and are evaluated here: parameters take their defaults
//! (or a scenario's overrides), conditions are evaluated, and resource attributes get
//! plausible values of the right shape (a queue URL, a runtime ARN, ...).
//!
//! Whether a variable is read is decided by behaviour, not by name lists: a variable is read if
//! changing its value changes the parsed config (or makes it invalid).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use warmpool_core::config::Env;
use yaml_serde::Value;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const STACK: &str = "warmpool-test";

/// Every parameter without a default needs a value here.
const REQUIRED_PARAMETERS: [(&str, &str); 1] = [(
    "AgentContainerUri",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/warmpool/document-agent:v1",
)];

type Parse = fn(&Env) -> Result<String, String>;

fn debug<T: Debug, E: Display>(parsed: Result<T, E>) -> Result<String, String> {
    parsed.map(|config| format!("{config:?}")).map_err(|e| e.to_string())
}

/// The resource that receives an environment, and the parser of the code that runs in it.
const CONSUMERS: [(&str, Parse); 6] = [
    ("GetSessionFunction", |env| debug(get_session::Config::from_env(env))),
    ("ReplenishFunction", |env| debug(replenish::Config::from_env(env))),
    ("BatchReplenishFunction", |env| debug(replenish::Config::from_env(env))),
    ("InvokerFunction", |env| debug(invoker::Config::from_env(env))),
    ("StaleBatchDetectorFunction", |env| {
        debug(stale_batch_detector::Config::from_env(env))
    }),
    ("DocumentAgentRuntime", |env| {
        debug(document_agent::AgentConfig::from_env(env))
    }),
];

/// Settings several consumers read: whoever reads one must set it, and all to the same value.
const SHARED: [&str; 9] = [
    "BATCH_PENDING_TIMEOUT_SECS",
    "SESSION_LOG_KEY",
    "SESSION_IDLE_TIMEOUT_SECS",
    "SESSION_MAX_LIFETIME_SECS",
    "SESSION_SAFETY_MARGIN_SECS",
    "TRACKING_SHARDS",
    "TRACKING_RETENTION_DAYS",
    "BATCH_MAX_DOCUMENT_BYTES",
    "AGENT_RUNTIME_QUALIFIER",
];

/// Parameter sets the template is checked under: the defaults and each pool-target mode (the
/// mode decides which variables replenish gets).
const SCENARIOS: [(&str, &[(&str, &str)]); 7] = [
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
];

// ---------------------------------------------------------------------------------------------
// Evaluating the template
// ---------------------------------------------------------------------------------------------

/// The template with one parameter set.
struct Stack {
    template: Value,
    parameters: BTreeMap<String, String>,
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `!Ref x`, `!GetAtt x`, ... and their long forms `{Ref: x}`, `{Fn::GetAtt: x}`.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = if name == "Ref" {
                "Ref".to_string()
            } else {
                format!("Fn::{name}")
            };
            Some((name, &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key.starts_with("Fn::") || key == "Condition").then(|| (key.to_string(), arg))
        }
        _ => None,
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Sequence(items) => items,
        other => panic!("expected a list, got {other:?}"),
    }
}

impl Stack {
    fn new(overrides: &[(&str, &str)]) -> Self {
        let template: Value = yaml_serde::from_str(TEMPLATE).expect("infra/template.yaml is YAML");
        let mut parameters = BTreeMap::new();
        for (name, spec) in template["Parameters"].as_mapping().expect("Parameters") {
            let name = name.as_str().expect("parameter name").to_string();
            if let Some(default) = spec.get("Default").and_then(scalar) {
                parameters.insert(name, default);
            }
        }
        for (name, value) in REQUIRED_PARAMETERS.iter().chain(overrides) {
            assert!(
                template["Parameters"].get(*name).is_some(),
                "scenario sets {name}, which is not a parameter of the template"
            );
            parameters.insert(name.to_string(), value.to_string());
        }
        Self { template, parameters }
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.template["Resources"]
            .as_mapping()
            .expect("Resources")
            .iter()
            .map(|(id, resource)| (id.as_str().expect("logical ID"), resource))
    }

    fn resource(&self, id: &str) -> &Value {
        self.template["Resources"]
            .get(id)
            .unwrap_or_else(|| panic!("no resource {id}"))
    }

    fn kind(&self, id: &str) -> &str {
        self.resource(id)["Type"].as_str().expect("Type")
    }

    fn condition(&self, name: &str) -> bool {
        let definition = self.template["Conditions"]
            .get(name)
            .unwrap_or_else(|| panic!("no condition {name}"));
        self.truth(definition)
    }

    fn truth(&self, value: &Value) -> bool {
        let (function, arg) = intrinsic(value).unwrap_or_else(|| panic!("not a condition: {value:?}"));
        let args = || items(arg).iter();
        match function.as_str() {
            "Fn::Equals" => {
                let both: Vec<_> = args().map(|v| self.string(v)).collect();
                both[0] == both[1]
            }
            "Fn::Not" => !self.truth(&items(arg)[0]),
            "Fn::And" => args().all(|v| self.truth(v)),
            "Fn::Or" => args().any(|v| self.truth(v)),
            "Condition" => self.condition(arg.as_str().expect("condition name")),
            other => panic!("condition function {other} is not evaluated by this test"),
        }
    }

    /// A value that must be a string.
    fn string(&self, value: &Value) -> String {
        self.eval(value)
            .unwrap_or_else(|| panic!("{value:?} has no value (AWS::NoValue)"))
            .into_string()
    }

    /// `None`: `AWS::NoValue`, the property is left out.
    fn eval(&self, value: &Value) -> Option<Evaluated> {
        let Some((function, arg)) = intrinsic(value) else {
            return Some(match value {
                Value::Sequence(items) => Evaluated::List(items.iter().filter_map(|v| self.eval(v)).collect()),
                other => Evaluated::Str(scalar(other).unwrap_or_else(|| panic!("not a scalar: {other:?}"))),
            });
        };
        let args = || items(arg);
        Some(match function.as_str() {
            "Ref" => return self.reference(arg.as_str().expect("Ref name")),
            "Fn::GetAtt" => {
                let (id, attribute) = match arg {
                    Value::Sequence(parts) => (self.string(&parts[0]), self.string(&parts[1])),
                    other => {
                        let dotted = self.string(other);
                        let (id, attribute) = dotted.split_once('.').expect("GetAtt Resource.Attribute");
                        (id.to_string(), attribute.to_string())
                    }
                };
                Evaluated::Str(self.attribute(&id, &attribute))
            }
            "Fn::Sub" => {
                let (text, variables) = match arg {
                    Value::Sequence(parts) => (self.string(&parts[0]), Some(&parts[1])),
                    other => (self.string(other), None),
                };
                Evaluated::Str(self.substitute(&text, variables))
            }
            "Fn::If" => {
                let branch = if self.condition(args()[0].as_str().expect("condition name")) {
                    1
                } else {
                    2
                };
                return self.eval(&args()[branch]);
            }
            "Fn::Select" => {
                let index: usize = self.string(&args()[0]).parse().expect("Select index");
                match self.eval(&args()[1]) {
                    Some(Evaluated::List(list)) => list.into_iter().nth(index).expect("Select index in range"),
                    other => panic!("Select from {other:?}"),
                }
            }
            "Fn::Split" => {
                let delimiter = self.string(&args()[0]);
                let text = self.string(&args()[1]);
                Evaluated::List(
                    text.split(delimiter.as_str())
                        .map(|s| Evaluated::Str(s.to_string()))
                        .collect(),
                )
            }
            "Fn::Join" => {
                let delimiter = self.string(&args()[0]);
                match self.eval(&args()[1]) {
                    Some(Evaluated::List(list)) => Evaluated::Str(
                        list.into_iter()
                            .map(Evaluated::into_string)
                            .collect::<Vec<_>>()
                            .join(&delimiter),
                    ),
                    other => panic!("Join of {other:?}"),
                }
            }
            "Fn::FindInMap" => {
                let keys: Vec<String> = args().iter().map(|v| self.string(v)).collect();
                let found = &self.template["Mappings"][keys[0].as_str()][keys[1].as_str()][keys[2].as_str()];
                Evaluated::Str(scalar(found).unwrap_or_else(|| panic!("no mapping entry {keys:?}")))
            }
            other => panic!("{other} is not evaluated by this test; extend Stack::eval"),
        })
    }

    fn reference(&self, name: &str) -> Option<Evaluated> {
        let value = match name {
            "AWS::NoValue" => return None,
            "AWS::Region" => REGION.to_string(),
            "AWS::AccountId" => ACCOUNT.to_string(),
            "AWS::StackName" => STACK.to_string(),
            "AWS::Partition" => "aws".to_string(),
            "AWS::URLSuffix" => "amazonaws.com".to_string(),
            "AWS::StackId" => {
                format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/6f1c2a40-8f7e-11ef-9a3b-0e5d3c1f2a11")
            }
            _ if self.template["Parameters"].get(name).is_some() => self
                .parameters
                .get(name)
                .unwrap_or_else(|| panic!("parameter {name} has no default: add it to REQUIRED_PARAMETERS"))
                .clone(),
            _ => self.resource_ref(name),
        };
        Some(Evaluated::Str(value))
    }

    fn property(&self, id: &str, name: &str) -> Option<String> {
        self.resource(id).get("Properties")?.get(name).map(|v| self.string(v))
    }

    /// What `!Ref` of a resource returns, by type.
    fn resource_ref(&self, id: &str) -> String {
        match self.kind(id) {
            "AWS::SQS::Queue" => format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{}", self.queue_name(id)),
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => self
                .property(id, "FunctionName")
                .unwrap_or_else(|| format!("{STACK}-{id}-Ab12Cd34")),
            "AWS::S3::Bucket" => self
                .property(id, "BucketName")
                .unwrap_or_else(|| format!("{STACK}-{}-ab12cd34", id.to_lowercase())),
            "AWS::Logs::LogGroup" => self.property(id, "LogGroupName").expect("LogGroupName"),
            _ => format!("{STACK}-{id}-AB12CD34EF56"),
        }
    }

    fn queue_name(&self, id: &str) -> String {
        let fifo = self.property(id, "FifoQueue").as_deref() == Some("true");
        format!("{STACK}-{id}-AB12CD34EF56{}", if fifo { ".fifo" } else { "" })
    }

    /// What `!GetAtt` returns, for the attributes the template uses.
    fn attribute(&self, id: &str, attribute: &str) -> String {
        let name = self.resource_ref(id);
        match (self.kind(id), attribute) {
            ("AWS::SQS::Queue", "Arn") => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", self.queue_name(id)),
            ("AWS::SQS::Queue", "QueueName") => self.queue_name(id),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => {
                format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
            }
            ("AWS::DynamoDB::Table", "Arn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{name}"),
            ("AWS::Logs::LogGroup", "Arn") => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"),
            ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            ("AWS::BedrockAgentCore::Runtime", "AgentRuntimeArn") => format!(
                "arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{}-Ab12Cd34Ef",
                self.property(id, "AgentRuntimeName").expect("AgentRuntimeName")
            ),
            (kind, attribute) => panic!("no plausible value for {kind} {id}.{attribute}; extend Stack::attribute"),
        }
    }

    fn substitute(&self, text: &str, variables: Option<&Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closing brace in Sub") + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.and_then(|v| v.get(name)) {
                out.push_str(&self.string(value));
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(id, attribute));
            } else {
                out.push_str(&self.reference(name).expect("Sub of AWS::NoValue").into_string());
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The environment the resource's code starts with (SAM Globals included).
    fn environment(&self, id: &str) -> BTreeMap<String, String> {
        let properties = &self.resource(id)["Properties"];
        let mut sources = Vec::new();
        match self.kind(id) {
            "AWS::Serverless::Function" => {
                if let Some(globals) = self.template.get("Globals").and_then(|g| g.get("Function")) {
                    sources.push(globals.get("Environment").and_then(|e| e.get("Variables")));
                }
                sources.push(properties.get("Environment").and_then(|e| e.get("Variables")));
            }
            "AWS::Lambda::Function" => sources.push(properties.get("Environment").and_then(|e| e.get("Variables"))),
            "AWS::BedrockAgentCore::Runtime" => sources.push(properties.get("EnvironmentVariables")),
            other => panic!("{id} is a {other}, which runs no code of ours"),
        }
        let mut environment = BTreeMap::new();
        for variables in sources.into_iter().flatten() {
            for (key, value) in variables.as_mapping().expect("variables are a map") {
                let key = key.as_str().expect("variable name").to_string();
                match self.eval(value) {
                    Some(value) => environment.insert(key, value.into_string()),
                    None => environment.remove(&key),
                };
            }
        }
        environment
    }

    /// What the platform adds at run time, which the template must not (and cannot) set.
    fn provided(&self, id: &str) -> BTreeMap<String, String> {
        let mut provided = BTreeMap::from([
            ("AWS_REGION".to_string(), REGION.to_string()),
            ("AWS_DEFAULT_REGION".to_string(), REGION.to_string()),
        ]);
        if matches!(self.kind(id), "AWS::Serverless::Function" | "AWS::Lambda::Function") {
            let properties = &self.resource(id)["Properties"];
            provided.insert("AWS_LAMBDA_FUNCTION_NAME".into(), self.resource_ref(id));
            provided.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
            provided.insert(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                properties.get("MemorySize").map_or("128".into(), |m| self.string(m)),
            );
            if let Some(format) = properties.get("LoggingConfig").and_then(|l| l.get("LogFormat")) {
                provided.insert("AWS_LAMBDA_LOG_FORMAT".into(), self.string(format));
            }
        }
        provided
    }

    /// The environment the code starts with: the platform's variables and the template's.
    fn full_environment(&self, id: &str) -> BTreeMap<String, String> {
        let mut full = self.provided(id);
        full.extend(self.environment(id));
        full
    }

    fn number(&self, value: &Value) -> u64 {
        let text = self.string(value);
        text.parse().unwrap_or_else(|_| panic!("{text} is not a whole number"))
    }
}

#[derive(Debug)]
enum Evaluated {
    Str(String),
    List(Vec<Evaluated>),
}

impl Evaluated {
    fn into_string(self) -> String {
        match self {
            Evaluated::Str(s) => s,
            Evaluated::List(list) => panic!("expected a string, got the list {list:?}"),
        }
    }
}

fn env_of(variables: &BTreeMap<String, String>) -> Env {
    Env::from_pairs(variables.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A different value of the same shape: a number plus one, a flipped boolean, a longer string.
fn perturbed(value: &str) -> String {
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
fn reads(parse: Parse, environment: &BTreeMap<String, String>, key: &str, probe: &str) -> bool {
    let baseline = parse(&env_of(environment));
    let mut changed = environment.clone();
    changed.insert(key.to_string(), probe.to_string());
    parse(&env_of(&changed)) != baseline
}

fn each_scenario(mut check: impl FnMut(&str, &Stack)) {
    for (name, overrides) in SCENARIOS {
        check(name, &Stack::new(overrides));
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_resource_that_runs_our_code_has_its_parser_here() {
    let stack = Stack::new(&[]);
    let running_code: BTreeSet<&str> = stack
        .resources()
        .filter(|(_, r)| {
            matches!(
                r["Type"].as_str(),
                Some("AWS::Serverless::Function" | "AWS::Lambda::Function" | "AWS::BedrockAgentCore::Runtime")
            )
        })
        .map(|(id, _)| id)
        .collect();
    let parsed: BTreeSet<&str> = CONSUMERS.iter().map(|(id, _)| *id).collect();
    assert_eq!(running_code, parsed, "template resources vs CONSUMERS in this test");
}

#[test]
fn every_function_environment_parses_with_the_functions_own_config() {
    each_scenario(|scenario, stack| {
        for (id, parse) in CONSUMERS {
            let environment = stack.full_environment(id);
            if let Err(error) = parse(&env_of(&environment)) {
                panic!(
                    "{scenario}: {id}'s environment from the template is refused by its config: {error}\n{environment:#?}"
                );
            }
        }
    });
}

#[test]
fn every_variable_the_template_sets_is_read_by_the_function() {
    each_scenario(|scenario, stack| {
        for (id, parse) in CONSUMERS {
            let full = stack.full_environment(id);
            if parse(&env_of(&full)).is_err() {
                continue; // reported by every_function_environment_parses_with_the_functions_own_config
            }
            for (key, value) in stack.environment(id) {
                assert!(
                    !stack.provided(id).contains_key(&key) && !key.starts_with("AWS_"),
                    "{scenario}: {id} sets {key}, a name the platform reserves"
                );
                assert!(
                    reads(parse, &full, &key, &perturbed(&value)),
                    "{scenario}: the template sets {key} on {id}, but its config never reads it (misspelled?)"
                );
            }
        }
    });
}

#[test]
fn shared_settings_are_set_wherever_they_are_read_and_agree() {
    each_scenario(|scenario, stack| {
        for key in SHARED {
            let mut values = BTreeMap::new();
            for (id, parse) in CONSUMERS {
                let environment = stack.full_environment(id);
                match environment.get(key) {
                    Some(value) => {
                        values.insert(id, value.clone());
                    }
                    None => {
                        // Unset here: it must not matter to this consumer either.
                        let probe = values.values().next().cloned().unwrap_or_else(|| "7".into());
                        for candidate in [probe.clone(), perturbed(&probe)] {
                            assert!(
                                !reads(parse, &environment, key, &candidate),
                                "{scenario}: {id} reads {key} but the template leaves it to the code's default"
                            );
                        }
                    }
                }
            }
            let distinct: BTreeSet<_> = values.values().collect();
            assert!(
                distinct.len() <= 1,
                "{scenario}: {key} differs between resources: {values:?}"
            );
        }
    });
}

#[test]
fn the_functions_session_lifecycle_is_the_runtimes() {
    each_scenario(|scenario, stack| {
        let lifecycle = &stack.resource("DocumentAgentRuntime")["Properties"]["LifecycleConfiguration"];
        let idle = stack.string(&lifecycle["IdleRuntimeSessionTimeout"]);
        let lifetime = stack.string(&lifecycle["MaxLifetime"]);
        for (id, _) in CONSUMERS {
            let environment = stack.environment(id);
            if let Some(value) = environment.get("SESSION_IDLE_TIMEOUT_SECS") {
                assert_eq!(value, &idle, "{scenario}: {id} idle timeout vs the runtime's");
            }
            if let Some(value) = environment.get("SESSION_MAX_LIFETIME_SECS") {
                assert_eq!(value, &lifetime, "{scenario}: {id} max lifetime vs the runtime's");
            }
        }
        for queue in ["PoolQueue", "BatchPoolQueue"] {
            let retention = stack.number(&stack.resource(queue)["Properties"]["MessageRetentionPeriod"]);
            assert!(
                retention >= lifetime.parse().unwrap(),
                "{scenario}: {queue} messages expire before their sessions"
            );
        }
    });
}

#[test]
fn replenish_paces_for_exactly_its_reserved_concurrency() {
    each_scenario(|scenario, stack| {
        for function in ["ReplenishFunction", "BatchReplenishFunction"] {
            let environment = stack.environment(function);
            let reserved = stack.string(&stack.resource(function)["Properties"]["ReservedConcurrentExecutions"]);
            assert_eq!(
                environment["MAX_CONCURRENT_RUNS"], reserved,
                "{scenario}: {function}'s pacing vs reserved concurrency"
            );
        }
    });
}

/// The SQS actions each role's Allow statements grant on `queue_arn`.
fn sqs_actions_on(stack: &Stack, role: &str, queue_arn: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in items(&stack.resource(role)["Properties"]["Policies"]) {
        for statement in items(&policy["PolicyDocument"]["Statement"]) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let resources = match stack.eval(&statement["Resource"]) {
                Some(Evaluated::Str(one)) => vec![one],
                Some(Evaluated::List(many)) => many.into_iter().map(Evaluated::into_string).collect(),
                None => Vec::new(),
            };
            if resources.iter().any(|r| r == queue_arn) {
                let granted = match stack.eval(&statement["Action"]) {
                    Some(Evaluated::Str(one)) => vec![one],
                    Some(Evaluated::List(many)) => many.into_iter().map(Evaluated::into_string).collect(),
                    None => Vec::new(),
                };
                actions.extend(granted);
            }
        }
    }
    actions
}

#[test]
fn the_batch_pool_is_claimed_only_by_the_invoker_and_filled_only_by_its_replenish() {
    each_scenario(|scenario, stack| {
        let batch_pool = stack.attribute("BatchPoolQueue", "Arn");
        let user_pool = stack.attribute("PoolQueue", "Arn");
        let invoker = stack.environment("InvokerFunction");
        assert_eq!(
            invoker["POOL_QUEUE_URL"],
            stack.resource_ref("BatchPoolQueue"),
            "{scenario}"
        );
        assert_eq!(
            invoker["REPLENISH_FUNCTION_NAME"],
            stack.resource_ref("BatchReplenishFunction"),
            "{scenario}"
        );
        assert_eq!(
            stack.environment("BatchReplenishFunction")["POOL_QUEUE_URL"],
            stack.resource_ref("BatchPoolQueue"),
            "{scenario}"
        );
        let roles: Vec<&str> = stack
            .resources()
            .filter(|(_, r)| r["Type"].as_str() == Some("AWS::IAM::Role"))
            .map(|(id, _)| id)
            .collect();
        for role in roles {
            let on_batch_pool = sqs_actions_on(stack, role, &batch_pool);
            let claims = on_batch_pool.contains("sqs:ReceiveMessage") || on_batch_pool.contains("sqs:DeleteMessage");
            let fills = on_batch_pool.contains("sqs:SendMessage");
            match role {
                "InvokerRole" => {
                    assert!(
                        claims && !fills,
                        "{scenario}: the invoker claims, never fills: {on_batch_pool:?}"
                    );
                    assert!(
                        sqs_actions_on(stack, role, &user_pool).is_empty(),
                        "{scenario}: the invoker must not reach get-session's pool"
                    );
                }
                "BatchReplenishRole" => assert!(fills, "{scenario}: its replenish fills it"),
                other => assert!(
                    on_batch_pool.is_empty(),
                    "{scenario}: {other} may use the batch pool: {on_batch_pool:?}"
                ),
            }
        }
        // And the queue itself refuses every other principal, whatever their own policies say.
        let policy = &stack.resource("BatchPoolQueuePolicy")["Properties"]["PolicyDocument"];
        let denies: Vec<&Value> = items(&policy["Statement"])
            .iter()
            .filter(|s| s["Effect"].as_str() == Some("Deny") && !s["Condition"]["ArnNotEquals"].is_null())
            .collect();
        assert_eq!(denies.len(), 2, "{scenario}: the claim and the fill denies: {policy:?}");
        for deny in denies {
            assert_eq!(stack.string(&deny["Resource"]), batch_pool, "{scenario}");
            assert_eq!(deny["Principal"].as_str(), Some("*"), "{scenario}");
        }
    });
}

#[test]
fn the_maintenance_schedule_runs_at_the_interval_the_sweep_assumes() {
    each_scenario(|scenario, stack| {
        let events = &stack.resource("ReplenishFunction")["Properties"]["Events"];
        let schedule = stack.string(&events["Maintenance"]["Properties"]["Schedule"]);
        let inner = schedule
            .strip_prefix("rate(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{schedule} is not a rate expression"));
        let (count, unit) = inner.split_once(' ').expect("rate(<n> <unit>)");
        let count: u64 = count.parse().unwrap();
        let seconds = match unit {
            "minute" if count == 1 => 60,
            "minutes" if count > 1 => count * 60,
            "hour" if count == 1 => 3_600,
            "hours" if count > 1 => count * 3_600,
            other => panic!("{schedule}: EventBridge refuses the unit {other} here"),
        };
        let environment = stack.environment("ReplenishFunction");
        assert_eq!(
            environment["MAINTENANCE_INTERVAL_SECS"],
            seconds.to_string(),
            "{scenario}: the sweep's interval vs the schedule"
        );
    });
}

#[test]
fn the_batch_queue_redrives_after_the_count_the_invoker_expects_and_outwaits_it() {
    each_scenario(|scenario, stack| {
        let queue = &stack.resource("BatchQueue")["Properties"];
        let invoker = &stack.resource("InvokerFunction")["Properties"];
        let environment = stack.environment("InvokerFunction");
        assert_eq!(
            environment["MAX_RECEIVE_COUNT"],
            stack.string(&queue["RedrivePolicy"]["maxReceiveCount"]),
            "{scenario}: the invoker's MAX_RECEIVE_COUNT vs the batch queue's redrive count"
        );
        let timeout = stack.number(&invoker["Timeout"]);
        assert!(
            stack.number(&queue["VisibilityTimeout"]) >= 6 * timeout,
            "{scenario}: the batch queue's visibility must be at least 6x the invoker's timeout"
        );
        let invoke_timeout: u64 = environment["INVOKE_TIMEOUT_SECS"].parse().unwrap();
        assert!(
            invoke_timeout + 10 <= timeout,
            "{scenario}: the hand-over may outlast the invoker"
        );
        let batch_size = stack.string(&invoker["Events"]["Batches"]["Properties"]["BatchSize"]);
        assert_eq!(
            environment["RECORD_CONCURRENCY"], batch_size,
            "{scenario}: records at once vs batch size"
        );
    });
}

/// A parameter's numeric bound (`MinValue` / `MaxValue`).
fn bound(stack: &Stack, parameter: &str, which: &str) -> u64 {
    let spec = &stack.template["Parameters"][parameter];
    let value = spec.get(which).unwrap_or_else(|| panic!("{parameter} has no {which}"));
    stack.number(value)
}

#[test]
fn get_session_is_told_its_own_timeout_and_every_accepted_claim_wait_fits_inside_it() {
    each_scenario(|scenario, stack| {
        let properties = &stack.resource("GetSessionFunction")["Properties"];
        let environment = stack.environment("GetSessionFunction");
        assert_eq!(
            environment.get("GET_SESSION_TIMEOUT_SECS").map(String::as_str),
            Some(stack.string(&properties["Timeout"]).as_str()),
            "{scenario}: get-session's GET_SESSION_TIMEOUT_SECS vs its Timeout"
        );
    });
    // CloudFormation rules cannot compare numbers: the ranges must make every pair safe. The
    // extremes are a scenario above, so get-session's own check accepts them too.
    let stack = Stack::new(&[]);
    let longest_wait = bound(&stack, "ClaimWaitSecs", "MaxValue");
    let shortest_timeout = bound(&stack, "GetSessionTimeoutSecs", "MinValue");
    assert!(
        longest_wait + 1 < shortest_timeout,
        "a {longest_wait} s claim wait does not fit in a {shortest_timeout} s timeout"
    );
    assert!(
        bound(&stack, "ClaimWaitSecs", "MaxValue") <= 20,
        "SQS long polls wait at most 20 s"
    );
}

#[test]
fn counts_that_must_be_positive_cannot_be_deployed_as_zero() {
    let stack = Stack::new(&[]);
    for parameter in [
        "ClaimMaxDiscards",
        "MaxCreationsPerRun",
        "MaxCountPerTrigger",
        "WarmupConcurrency",
    ] {
        assert!(
            bound(&stack, parameter, "MinValue") >= 1,
            "{parameter} accepts 0, which the functions refuse at init"
        );
    }
}

/// The role ARNs a queue policy's Deny leaves out, as logical IDs of `!GetAtt <Role>.Arn`.
fn excepted_roles(stack: &Stack, policy: &str) -> BTreeSet<String> {
    let statements = &stack.resource(policy)["Properties"]["PolicyDocument"]["Statement"];
    let mut roles = BTreeSet::new();
    for statement in items(statements) {
        if statement["Effect"].as_str() != Some("Deny") {
            continue;
        }
        let Some(arns) = statement
            .get("Condition")
            .and_then(|c| c.get("ArnNotEquals"))
            .and_then(|c| c.get("aws:PrincipalArn"))
        else {
            continue;
        };
        for arn in items(arns) {
            let (function, target) = intrinsic(arn).expect("a role named by !GetAtt");
            assert_eq!(function, "Fn::GetAtt", "{policy}: {arn:?}");
            let dotted = match target {
                Value::Sequence(parts) => format!("{}.{}", stack.string(&parts[0]), stack.string(&parts[1])),
                other => stack.string(other),
            };
            let (role, attribute) = dotted.split_once('.').expect("Role.Arn");
            assert_eq!((stack.kind(role), attribute), ("AWS::IAM::Role", "Arn"), "{policy}");
            roles.insert(role.to_string());
        }
    }
    roles
}

/// Roles with any statement on the pool queue's ARN.
fn roles_using(stack: &Stack, queue: &str) -> BTreeSet<String> {
    let arn = stack.attribute(queue, "Arn");
    let mut roles = BTreeSet::new();
    for (id, resource) in stack.resources() {
        if resource["Type"].as_str() != Some("AWS::IAM::Role") {
            continue;
        }
        for policy in items(&resource["Properties"]["Policies"]) {
            for statement in items(&policy["PolicyDocument"]["Statement"]) {
                let resources = match stack.eval(&statement["Resource"]) {
                    Some(Evaluated::List(list)) => list.into_iter().map(Evaluated::into_string).collect(),
                    Some(Evaluated::Str(one)) => vec![one],
                    None => Vec::new(),
                };
                if resources.contains(&arn) {
                    roles.insert(id.to_string());
                }
            }
        }
    }
    roles
}

#[test]
fn the_pool_queue_admits_exactly_the_roles_that_use_it() {
    each_scenario(|scenario, stack| {
        let policies: Vec<&str> = stack
            .resources()
            .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::QueuePolicy"))
            .filter(|(_, r)| {
                items(&r["Properties"]["Queues"])
                    .iter()
                    .any(|q| matches!(intrinsic(q), Some((f, arg)) if f == "Ref" && arg.as_str() == Some("PoolQueue")))
            })
            .map(|(id, _)| id)
            .collect();
        assert_eq!(policies.len(), 1, "{scenario}: the pool queue's policies: {policies:?}");
        assert_eq!(
            excepted_roles(stack, policies[0]),
            roles_using(stack, "PoolQueue"),
            "{scenario}: roles the pool queue's policy lets through vs roles whose policies use the queue"
        );
    });
}

#[test]
fn every_checkov_skip_says_why() {
    let stack = Stack::new(&[]);
    for (id, resource) in stack.resources() {
        let Some(skips) = resource
            .get("Metadata")
            .and_then(|m| m.get("checkov"))
            .and_then(|c| c.get("skip"))
        else {
            continue;
        };
        for skip in items(skips) {
            let check = skip["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: a checkov skip without id"));
            let reason = skip.get("comment").and_then(Value::as_str).unwrap_or("");
            assert!(
                reason.split_whitespace().count() >= 8,
                "{id}: skipping {check} needs its reason in `comment`"
            );
        }
    }
}

/// (Function dimension, metric name) pairs the functions emit, read from their source: the
/// `FUNCTION` constant and every `MetricSet` builder call.
fn emitted_metrics() -> BTreeSet<(String, String)> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut emitted = BTreeSet::new();
    for name in ["get-session", "replenish", "invoker", "stale-batch-detector"] {
        let mut source = String::new();
        for entry in std::fs::read_dir(crates.join(name).join("src")).expect("crate sources") {
            let path = entry.expect("source file").path();
            if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).expect("readable source"));
            }
        }
        let function = source
            .split("pub const FUNCTION: &str = \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{name} declares no FUNCTION dimension"))
            .to_string();
        for builder in [
            ".count(\"",
            ".millis(\"",
            ".millis_if(\"",
            ".millis_each(\"",
            ".per_second(\"",
        ] {
            for rest in source.split(builder).skip(1) {
                let metric = rest.split('"').next().expect("metric name");
                emitted.insert((function.clone(), metric.to_string()));
            }
        }
    }
    emitted
}

/// The (Function, metric) pairs of the dashboard's AgentCoreWarmPool widgets, with
/// CloudWatch's `"."` (same as the row above) and `"..."` (the row above, trailing values
/// replaced) shorthands expanded.
fn dashboard_metrics(stack: &Stack) -> BTreeSet<(String, String)> {
    let body = stack.string(&stack.resource("Dashboard")["Properties"]["DashboardBody"]);
    let body: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut found = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let mut previous: Vec<String> = Vec::new();
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let values: Vec<&str> = row
                .as_array()
                .expect("metric row")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            if values.is_empty() {
                continue; // an expression row
            }
            let expanded: Vec<String> = if values[0] == "..." {
                let replaced = values.len() - 1;
                let keep = previous.len().checked_sub(replaced).expect("'...' after a shorter row");
                previous[..keep]
                    .iter()
                    .cloned()
                    .chain(values[1..].iter().map(|v| v.to_string()))
                    .collect()
            } else {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if *v == "." { previous[i].clone() } else { v.to_string() })
                    .collect()
            };
            if expanded[0] == "AgentCoreWarmPool" {
                assert_eq!(expanded.get(2).map(String::as_str), Some("Function"), "{expanded:?}");
                found.insert((expanded[3].clone(), expanded[1].clone()));
            }
            previous = expanded;
        }
    }
    found
}

#[test]
fn alarms_and_dashboard_watch_metrics_the_functions_emit() {
    let stack = Stack::new(&[]);
    let emitted = emitted_metrics();
    let mut watched = dashboard_metrics(&stack);
    for (id, resource) in stack.resources() {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let properties = &resource["Properties"];
        let mut metrics: Vec<&Value> = vec![properties];
        if let Some(Value::Sequence(queries)) = properties.get("Metrics") {
            metrics.extend(queries.iter().filter_map(|q| q.get("MetricStat").map(|s| &s["Metric"])));
        }
        for metric in metrics {
            if metric.get("Namespace").and_then(Value::as_str) != Some("AgentCoreWarmPool") {
                continue;
            }
            let function = items(&metric["Dimensions"])
                .iter()
                .find(|d| d["Name"].as_str() == Some("Function"))
                .map(|d| stack.string(&d["Value"]))
                .unwrap_or_else(|| panic!("{id}: an AgentCoreWarmPool metric without the Function dimension"));
            watched.insert((function, stack.string(&metric["MetricName"])));
        }
    }
    let missing: Vec<_> = watched.difference(&emitted).collect();
    assert!(
        missing.is_empty(),
        "alarms or dashboard watch metrics no function emits: {missing:?}"
    );
}
