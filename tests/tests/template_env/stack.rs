//! The template evaluator: a template read as plain YAML, CloudFormation's short-form tags
//! (`!Ref`, `!GetAtt`, `!Sub`, ...) evaluated with one parameter set. Parameters take their
//! defaults (or a scenario's overrides), conditions are evaluated (a resource whose condition
//! is false does not exist), and resource attributes get plausible values of the right shape (a
//! queue URL, a runtime ARN, ...).

use std::collections::BTreeMap;
use yaml_serde::Value;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
pub const STACK: &str = "warmpool-test";

/// The template with one parameter set.
pub struct Stack {
    pub file: &'static str,
    pub template: Value,
    parameters: BTreeMap<String, String>,
}

pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `!Ref x`, `!GetAtt x`, ... and their long forms `{Ref: x}`, `{Fn::GetAtt: x}`.
pub fn intrinsic(value: &Value) -> Option<(String, &Value)> {
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

pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::Sequence(items) => items,
        other => panic!("expected a list, got {other:?}"),
    }
}

impl Stack {
    pub fn new(file: &'static str, source: &str, required: &[(&str, &str)], overrides: &[(&str, &str)]) -> Self {
        let template: Value = yaml_serde::from_str(source).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
        let mut parameters = BTreeMap::new();
        for (name, spec) in template["Parameters"].as_mapping().expect("Parameters") {
            let name = name.as_str().expect("parameter name").to_string();
            if let Some(default) = spec.get("Default").and_then(scalar) {
                parameters.insert(name, default);
            }
        }
        for (name, value) in required.iter().chain(overrides) {
            assert!(
                template["Parameters"].get(*name).is_some(),
                "scenario sets {name}, which is not a parameter of {file}"
            );
            parameters.insert(name.to_string(), value.to_string());
        }
        Self {
            file,
            template,
            parameters,
        }
    }

    /// The resources this parameter set creates (a resource whose `Condition` is false is not).
    pub fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.template["Resources"]
            .as_mapping()
            .expect("Resources")
            .iter()
            .map(|(id, resource)| (id.as_str().expect("logical ID"), resource))
            .filter(|(_, resource)| {
                resource
                    .get("Condition")
                    .and_then(Value::as_str)
                    .is_none_or(|condition| self.condition(condition))
            })
    }

    /// A list element or property with its conditions applied: `!If` takes its branch,
    /// `None` where that branch is `AWS::NoValue` (the element is left out).
    pub fn resolved<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match intrinsic(value) {
            Some((function, arg)) if function == "Fn::If" => {
                let branches = items(arg);
                let condition = branches[0].as_str().expect("condition name");
                self.resolved(&branches[if self.condition(condition) { 1 } else { 2 }])
            }
            Some((function, arg)) if function == "Ref" && arg.as_str() == Some("AWS::NoValue") => None,
            _ => Some(value),
        }
    }

    /// The statements of a policy document that this parameter set grants.
    pub fn statements<'a>(&self, document: &'a Value) -> Vec<&'a Value> {
        items(&document["Statement"])
            .iter()
            .filter_map(|statement| self.resolved(statement))
            .collect()
    }

    /// Whether the output exists in this parameter set (an output's `Condition`).
    pub fn has_output(&self, name: &str) -> bool {
        self.template["Outputs"].get(name).is_some_and(|output| {
            output
                .get("Condition")
                .and_then(Value::as_str)
                .is_none_or(|condition| self.condition(condition))
        })
    }

    pub fn has(&self, id: &str) -> bool {
        self.resources().any(|(found, _)| found == id)
    }

    pub fn resource(&self, id: &str) -> &Value {
        self.template["Resources"]
            .get(id)
            .unwrap_or_else(|| panic!("{}: no resource {id}", self.file))
    }

    pub fn kind(&self, id: &str) -> &str {
        self.resource(id)["Type"].as_str().expect("Type")
    }

    pub fn condition(&self, name: &str) -> bool {
        let definition = self.template["Conditions"]
            .get(name)
            .unwrap_or_else(|| panic!("no condition {name}"));
        self.truth(definition)
    }

    pub fn truth(&self, value: &Value) -> bool {
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
            // `{Condition: X}` in long form, `!Condition X` as a tag.
            "Condition" | "Fn::Condition" => self.condition(arg.as_str().expect("condition name")),
            other => panic!("condition function {other} is not evaluated by this test"),
        }
    }

    /// A value that must be a string.
    pub fn string(&self, value: &Value) -> String {
        self.eval(value)
            .unwrap_or_else(|| panic!("{value:?} has no value (AWS::NoValue)"))
            .into_string()
    }

    /// `None`: `AWS::NoValue`, the property is left out.
    pub fn eval(&self, value: &Value) -> Option<Evaluated> {
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

    pub fn reference(&self, name: &str) -> Option<Evaluated> {
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
                .unwrap_or_else(|| {
                    panic!(
                        "{}: parameter {name} has no default: add it to the template's required parameters",
                        self.file
                    )
                })
                .clone(),
            _ => self.resource_ref(name),
        };
        Some(Evaluated::Str(value))
    }

    pub fn property(&self, id: &str, name: &str) -> Option<String> {
        self.resource(id).get("Properties")?.get(name).map(|v| self.string(v))
    }

    /// What `!Ref` of a resource returns, by type.
    pub fn resource_ref(&self, id: &str) -> String {
        match self.kind(id) {
            "AWS::SQS::Queue" => format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{}", self.queue_name(id)),
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => self
                .property(id, "FunctionName")
                .unwrap_or_else(|| format!("{STACK}-{id}-Ab12Cd34")),
            "AWS::S3::Bucket" => self
                .property(id, "BucketName")
                .unwrap_or_else(|| format!("{STACK}-{}-ab12cd34", id.to_lowercase())),
            "AWS::Logs::LogGroup" => self.property(id, "LogGroupName").expect("LogGroupName"),
            "AWS::KinesisFirehose::DeliveryStream" => self
                .property(id, "DeliveryStreamName")
                .unwrap_or_else(|| format!("{STACK}-{id}-AB12CD34EF56")),
            "AWS::Pipes::Pipe" => self
                .property(id, "Name")
                .unwrap_or_else(|| format!("{STACK}-{id}-AB12CD34EF56")),
            _ => format!("{STACK}-{id}-AB12CD34EF56"),
        }
    }

    pub fn queue_name(&self, id: &str) -> String {
        let fifo = self.property(id, "FifoQueue").as_deref() == Some("true");
        format!("{STACK}-{id}-AB12CD34EF56{}", if fifo { ".fifo" } else { "" })
    }

    /// What `!GetAtt` returns, for the attributes the template uses.
    pub fn attribute(&self, id: &str, attribute: &str) -> String {
        let name = self.resource_ref(id);
        match (self.kind(id), attribute) {
            ("AWS::SQS::Queue", "Arn") => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", self.queue_name(id)),
            ("AWS::SQS::Queue", "QueueName") => self.queue_name(id),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => {
                format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
            }
            ("AWS::DynamoDB::Table", "Arn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
            ("AWS::DynamoDB::Table", "StreamArn") => {
                format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}/stream/2026-12-01T00:00:00.000")
            }
            ("AWS::KinesisFirehose::DeliveryStream", "Arn") => {
                format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}")
            }
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{name}"),
            ("AWS::Logs::LogGroup", "Arn") => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"),
            ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            ("AWS::BedrockAgentCore::Runtime", "AgentRuntimeArn") => format!(
                "arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/{}-Ab12Cd34Ef",
                self.property(id, "AgentRuntimeName").expect("AgentRuntimeName")
            ),
            // A nested stack's output: named, since its value is the child's business.
            ("AWS::Serverless::Application" | "AWS::CloudFormation::Stack", output)
                if output.starts_with("Outputs.") =>
            {
                format!("<{id}.{output}>")
            }
            (kind, attribute) => panic!("no plausible value for {kind} {id}.{attribute}; extend Stack::attribute"),
        }
    }

    pub fn substitute(&self, text: &str, variables: Option<&Value>) -> String {
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
    pub fn environment(&self, id: &str) -> BTreeMap<String, String> {
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
    pub fn provided(&self, id: &str) -> BTreeMap<String, String> {
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
    pub fn full_environment(&self, id: &str) -> BTreeMap<String, String> {
        let mut full = self.provided(id);
        full.extend(self.environment(id));
        full
    }

    pub fn number(&self, value: &Value) -> u64 {
        let text = self.string(value);
        text.parse().unwrap_or_else(|_| panic!("{text} is not a whole number"))
    }
}

#[derive(Debug)]
pub enum Evaluated {
    Str(String),
    List(Vec<Evaluated>),
}

impl Evaluated {
    pub fn into_string(self) -> String {
        match self {
            Evaluated::Str(s) => s,
            Evaluated::List(list) => panic!("expected a string, got the list {list:?}"),
        }
    }
}
