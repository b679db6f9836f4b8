//! Leases in pool.yaml (docs/architecture.md, "Leases"): off by default, and then nothing of
//! them exists (no table, no variable, no grant: get-session claims as without leases and
//! still cannot stop a session, docs/decisions/0205); on, both functions name the stack's lease
//! table, the table is the one the code reads and writes, each role gets exactly the lease calls
//! of its function, and the audit archive locks what it is given.

use crate::stack::{Evaluated, Stack, items};
use crate::{POOL, Parse, env_of, reads};
use std::collections::{BTreeMap, BTreeSet};
use yaml_serde::Value;

pub const ON: &[(&str, &str)] = &[("EnableLeases", "true")];
pub const WITH_ARCHIVE: &[(&str, &str)] = &[
    ("EnableLeases", "true"),
    ("AuditArchiveRetentionDays", "2555"),
    ("LeaseCorrelationWindowSecs", "120"),
    ("LeaseMaxConversationSecs", "1800"),
    ("LeaseAuditRetentionDays", "30"),
];

/// The lease variables of each function and the parameter each comes from (AGENT_RUNTIME_* are
/// get-session's only with leases: it stops released sessions).
const GET_SESSION_LEASE_VARIABLES: [(&str, &str); 6] = [
    ("LEASE_TABLE_NAME", "LeaseTable"),
    ("AGENT_RUNTIME_ARN", "AgentRuntimeArn"),
    ("AGENT_RUNTIME_QUALIFIER", "AgentRuntimeQualifier"),
    ("LEASE_CORRELATION_WINDOW_SECS", "LeaseCorrelationWindowSecs"),
    ("LEASE_MAX_CONVERSATION_SECS", "LeaseMaxConversationSecs"),
    ("LEASE_AUDIT_RETENTION_DAYS", "LeaseAuditRetentionDays"),
];
const REPLENISH_LEASE_VARIABLES: [(&str, &str); 3] = [
    ("LEASE_TABLE_NAME", "LeaseTable"),
    ("LEASE_MAX_CONVERSATION_SECS", "LeaseMaxConversationSecs"),
    ("LEASE_AUDIT_RETENTION_DAYS", "LeaseAuditRetentionDays"),
];

fn lease_variables(function: &str) -> &'static [(&'static str, &'static str)] {
    match function {
        "GetSessionFunction" => &GET_SESSION_LEASE_VARIABLES,
        "ReplenishFunction" => &REPLENISH_LEASE_VARIABLES,
        other => panic!("{other} is not a function of pool.yaml"),
    }
}

/// Every lease-related variable name of the spec, whichever function it belongs to.
const ALL_LEASE_VARIABLES: [&str; 6] = [
    "LEASE_TABLE_NAME",
    "LEASE_CORRELATION_WINDOW_SECS",
    "LEASE_MAX_CONVERSATION_SECS",
    "LEASE_AUDIT_RETENTION_DAYS",
    "AGENT_RUNTIME_ARN",
    "AGENT_RUNTIME_QUALIFIER",
];

fn strings(evaluated: Option<Evaluated>) -> Vec<String> {
    match evaluated {
        Some(Evaluated::Str(one)) => vec![one],
        Some(Evaluated::List(many)) => many.into_iter().map(Evaluated::into_string).collect(),
        None => Vec::new(),
    }
}

/// resource ARN -> the actions the role's Allow statements grant on it.
fn grants(stack: &Stack, role: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for policy in items(&stack.resource(role)["Properties"]["Policies"]) {
        for statement in stack.statements(&policy["PolicyDocument"]) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let actions = strings(stack.eval(&statement["Action"]));
            for resource in strings(stack.eval(&statement["Resource"])) {
                grants.entry(resource).or_default().extend(actions.iter().cloned());
            }
        }
    }
    grants
}

/// The actions of one service (`dynamodb:`, `bedrock-agentcore:`) a role is granted, anywhere.
fn service_actions(stack: &Stack, role: &str, service: &str) -> BTreeSet<String> {
    grants(stack, role)
        .into_values()
        .flatten()
        .filter(|action| action.starts_with(service))
        .collect()
}

fn set(actions: &[&str]) -> BTreeSet<String> {
    actions.iter().map(|a| a.to_string()).collect()
}

fn parameter(stack: &Stack, name: &str) -> String {
    stack.reference(name).expect("a parameter").into_string()
}

#[test]
fn without_leases_nothing_of_them_exists_and_get_session_still_cannot_stop_sessions() {
    POOL.each_scenario(|scenario, stack| {
        if stack.condition("LeasesOn") {
            return;
        }
        for id in [
            "LeaseTable",
            "AuditArchiveBucket",
            "AuditArchivePipe",
            "AuditArchiveDeliveryStream",
            "PoolUtilisationAlarm",
        ] {
            assert!(!stack.has(id), "{scenario}: {id} exists without leases");
        }
        assert!(
            !stack.has_output("LeaseTableName"),
            "{scenario}: a LeaseTableName output"
        );
        for function in ["GetSessionFunction", "ReplenishFunction"] {
            let environment = stack.environment(function);
            for (variable, _) in lease_variables(function) {
                // replenish always has its runtime: only lease-only variables must be absent.
                if function == "ReplenishFunction" && variable.starts_with("AGENT_RUNTIME_") {
                    continue;
                }
                assert!(
                    !environment.contains_key(*variable),
                    "{scenario}: {function} has {variable} without leases"
                );
            }
        }
        for role in ["GetSessionRole", "ReplenishRole"] {
            assert_eq!(
                service_actions(stack, role, "dynamodb:"),
                BTreeSet::new(),
                "{scenario}: {role}"
            );
        }
        assert_eq!(
            service_actions(stack, "GetSessionRole", "bedrock-agentcore:"),
            BTreeSet::new(),
            "{scenario}: get-session may call AgentCore without leases (decision 0205)"
        );
    });
}

#[test]
fn with_leases_both_functions_name_the_stacks_lease_table_and_its_settings() {
    POOL.each_scenario(|scenario, stack| {
        if !stack.condition("LeasesOn") {
            return;
        }
        assert!(
            stack.has_output("LeaseTableName"),
            "{scenario}: the CLI reads the table's name from it"
        );
        assert_eq!(
            stack.string(&stack.template["Outputs"]["LeaseTableName"]["Value"]),
            stack.resource_ref("LeaseTable"),
            "{scenario}"
        );
        for function in ["GetSessionFunction", "ReplenishFunction"] {
            let environment = stack.environment(function);
            for (variable, source) in lease_variables(function) {
                let expected = if *source == "LeaseTable" {
                    stack.resource_ref(source)
                } else {
                    parameter(stack, source)
                };
                assert_eq!(
                    environment.get(*variable),
                    Some(&expected),
                    "{scenario}: {function}'s {variable}"
                );
            }
        }
    });
}

/// Code side: a lease variable the function's config reads must be set by the template (its
/// parameter would otherwise silently not apply), and without leases get-session must read none
/// of them but LEASE_TABLE_NAME, which switches them on ("unset: exactly as today").
#[test]
fn every_lease_variable_a_function_reads_is_set_by_the_template() {
    POOL.each_scenario(|scenario, stack| {
        for (id, parse) in POOL.consumers_in(stack) {
            let full = stack.full_environment(id);
            if parse(&env_of(&full)).is_err() {
                continue; // reported by every_function_environment_parses_with_the_functions_own_config
            }
            for variable in ALL_LEASE_VARIABLES {
                if full.contains_key(variable) || variable == "LEASE_TABLE_NAME" {
                    continue;
                }
                assert!(
                    !reads_any(parse, &full, variable),
                    "{scenario}: {id} reads {variable}, which the template leaves unset here"
                );
            }
        }
    });
}

fn reads_any(parse: Parse, environment: &BTreeMap<String, String>, variable: &str) -> bool {
    let probes: &[&str] = match variable {
        "AGENT_RUNTIME_ARN" => &[
            crate::RUNTIME_ARN,
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/other-Ab12Cd34Ef",
        ],
        _ => &["7", "120", "prod"],
    };
    probes.iter().any(|probe| reads(parse, environment, variable, probe))
}

#[test]
fn with_leases_each_role_gets_exactly_the_lease_calls_of_its_function() {
    POOL.each_scenario(|scenario, stack| {
        if !stack.condition("LeasesOn") {
            return;
        }
        let table = stack.attribute("LeaseTable", "Arn");
        let due_index = format!("{table}/index/leases-due");
        let runtime = parameter(stack, "AgentRuntimeArn");
        let endpoint = format!(
            "{runtime}/runtime-endpoint/{}",
            parameter(stack, "AgentRuntimeQualifier")
        );

        let get_session = grants(stack, "GetSessionRole");
        assert_eq!(
            get_session.get(&table).cloned().unwrap_or_default(),
            set(&[
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:TransactWriteItems",
                "dynamodb:ConditionCheckItem",
            ]),
            "{scenario}: get-session on the lease table"
        );
        for resource in [&runtime, &endpoint] {
            assert_eq!(
                get_session.get(resource).cloned().unwrap_or_default(),
                set(&["bedrock-agentcore:StopRuntimeSession"]),
                "{scenario}: get-session stops released sessions on {resource}, and does nothing else there"
            );
        }
        assert_eq!(
            service_actions(stack, "GetSessionRole", "dynamodb:").len(),
            5,
            "{scenario}: get-session's DynamoDB calls reach only the table itself (no Query, no index)"
        );

        let replenish = grants(stack, "ReplenishRole");
        assert_eq!(
            replenish.get(&table).cloned().unwrap_or_default(),
            set(&["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:TransactWriteItems"]),
            "{scenario}: replenish on the lease table"
        );
        assert_eq!(
            replenish.get(&due_index).cloned().unwrap_or_default(),
            set(&["dynamodb:Query"]),
            "{scenario}: replenish's sweep queries the leases-due index"
        );
        for resource in [&runtime, &endpoint] {
            assert!(
                replenish
                    .get(resource)
                    .is_some_and(|actions| actions.contains("bedrock-agentcore:StopRuntimeSession")),
                "{scenario}: replenish stops abandoned leases' sessions on {resource}"
            );
        }
    });
}

fn attribute_types(table: &Value) -> BTreeMap<String, String> {
    items(&table["AttributeDefinitions"])
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().expect("name").to_string(),
                a["AttributeType"].as_str().expect("type").to_string(),
            )
        })
        .collect()
}

/// (partition, sort) of a key schema.
fn key(schema: &Value) -> (String, String) {
    let part = |kind: &str| {
        items(schema)
            .iter()
            .find(|k| k["KeyType"].as_str() == Some(kind))
            .and_then(|k| k["AttributeName"].as_str())
            .unwrap_or_else(|| panic!("no {kind} key in {schema:?}"))
            .to_string()
    };
    (part("HASH"), part("RANGE"))
}

#[test]
fn the_lease_table_has_the_keys_indexes_and_expiry_of_the_spec() {
    POOL.each_scenario(|scenario, stack| {
        if !stack.condition("LeasesOn") {
            return;
        }
        let table = &stack.resource("LeaseTable")["Properties"];
        let types = attribute_types(table);
        let expected_types = [
            ("pk", "S"),
            ("sk", "S"),
            ("dueShard", "N"),
            ("dueAt", "N"),
            ("auditSession", "S"),
        ];
        assert_eq!(
            types,
            expected_types
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            "{scenario}: attribute types"
        );
        assert_eq!(key(&table["KeySchema"]), ("pk".into(), "sk".into()), "{scenario}");
        let indexes: BTreeMap<String, ((String, String), String)> = items(&table["GlobalSecondaryIndexes"])
            .iter()
            .map(|index| {
                (
                    index["IndexName"].as_str().expect("IndexName").to_string(),
                    (
                        key(&index["KeySchema"]),
                        index["Projection"]["ProjectionType"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect();
        let expected_indexes = BTreeMap::from([
            (
                "leases-due".to_string(),
                (("dueShard".into(), "dueAt".into()), "ALL".to_string()),
            ),
            (
                "audit-by-session".to_string(),
                (("auditSession".into(), "sk".into()), "ALL".to_string()),
            ),
        ]);
        assert_eq!(indexes, expected_indexes, "{scenario}: indexes");
        assert_eq!(stack.string(&table["BillingMode"]), "PAY_PER_REQUEST", "{scenario}");
        assert_eq!(
            stack.string(&table["TimeToLiveSpecification"]["AttributeName"]),
            "expiresAt",
            "{scenario}"
        );
        assert_eq!(
            stack.string(&table["TimeToLiveSpecification"]["Enabled"]),
            "true",
            "{scenario}"
        );
        assert_eq!(
            stack.string(&table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]),
            "true",
            "{scenario}"
        );
        assert_eq!(
            stack.string(&table["SSESpecification"]["SSEEnabled"]),
            "true",
            "{scenario}"
        );
        // A stream costs reads and holds full session IDs for 24 hours: only for the archive.
        let stream = stack
            .resolved(&table["StreamSpecification"])
            .map(|s| stack.string(&s["StreamViewType"]));
        let archive = stack.condition("ArchiveAudit");
        assert_eq!(
            stream,
            archive.then(|| "NEW_IMAGE".to_string()),
            "{scenario}: the table's stream (archive: {archive})"
        );
    });
}

/// Code side: every name the table declares (attributes, indexes, the TTL attribute, the audit
/// partition prefix the archive filters on) is a string the lease code uses.
#[test]
fn the_lease_tables_names_are_the_ones_the_lease_code_uses() {
    let source = rust_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/core/src"));
    let stack = POOL.stack(WITH_ARCHIVE);
    let table = &stack.resource("LeaseTable")["Properties"];
    let mut names: BTreeSet<String> = attribute_types(table).into_keys().collect();
    for index in items(&table["GlobalSecondaryIndexes"]) {
        names.insert(stack.string(&index["IndexName"]));
    }
    names.insert(stack.string(&table["TimeToLiveSpecification"]["AttributeName"]));
    for name in &names {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "pool.yaml's lease table declares {name:?}, which crates/core/src never spells out"
        );
    }
    assert!(
        source.contains("\"audit#"),
        "the archive's pipe keeps items whose pk starts with audit#, which crates/core/src never writes"
    );
}

/// Every `.rs` file under `root`, concatenated (modules may live in folders).
pub fn rust_sources(root: &std::path::Path) -> String {
    let mut source = String::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("a source folder")
            .map(|entry| entry.expect("source entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).expect("readable source"));
            }
        }
    }
    source
}

/// The template's rules, evaluated like conditions: whether this parameter set deploys.
fn rules_pass(stack: &Stack) -> Result<(), String> {
    for (name, rule) in stack.template["Rules"].as_mapping().expect("Rules") {
        let applies = rule.get("RuleCondition").is_none_or(|condition| stack.truth(condition));
        if !applies {
            continue;
        }
        for assertion in items(&rule["Assertions"]) {
            if !stack.truth(&assertion["Assert"]) {
                return Err(format!(
                    "{}: {}",
                    name.as_str().unwrap_or("?"),
                    stack.string(&assertion["AssertDescription"])
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn an_archive_without_leases_is_refused_at_deploy_time_in_both_templates() {
    let full = crate::composition::full_with;
    for (overrides, deploys) in [
        (&[][..], true),
        (ON, true),
        (WITH_ARCHIVE, true),
        (&[("AuditArchiveRetentionDays", "365")][..], false),
        (
            &[("AuditArchiveRetentionDays", "365"), ("EnableLeases", "false")][..],
            false,
        ),
    ] {
        for stack in [POOL.stack(overrides), full(overrides)] {
            let verdict = rules_pass(&stack);
            assert_eq!(
                verdict.is_ok(),
                deploys,
                "{} with {overrides:?}: {verdict:?}",
                stack.file
            );
        }
    }
}

#[test]
fn the_audit_archive_exists_only_with_leases_and_a_retention_and_locks_in_compliance_mode() {
    POOL.each_scenario(|scenario, stack| {
        let archive = stack.condition("ArchiveAudit");
        let expected = stack.condition("LeasesOn") && parameter(stack, "AuditArchiveRetentionDays") != "0";
        assert_eq!(archive, expected, "{scenario}: ArchiveAudit");
        for id in [
            "AuditArchiveBucket",
            "AuditArchiveBucketPolicy",
            "AuditArchiveDeliveryStream",
            "AuditArchivePipe",
            "AuditArchivePipeRole",
            "AuditArchiveDeliveryRole",
        ] {
            assert_eq!(stack.has(id), archive, "{scenario}: {id}");
        }
        if !archive {
            return;
        }
        let bucket = &stack.resource("AuditArchiveBucket")["Properties"];
        let lock = &bucket["ObjectLockConfiguration"];
        assert_eq!(stack.string(&bucket["ObjectLockEnabled"]), "true", "{scenario}");
        assert_eq!(stack.string(&lock["ObjectLockEnabled"]), "Enabled", "{scenario}");
        assert_eq!(
            stack.string(&lock["Rule"]["DefaultRetention"]["Mode"]),
            "COMPLIANCE",
            "{scenario}"
        );
        assert_eq!(
            stack.string(&lock["Rule"]["DefaultRetention"]["Days"]),
            parameter(stack, "AuditArchiveRetentionDays"),
            "{scenario}: each object locked for the retention asked for"
        );
        assert_eq!(
            stack.string(&bucket["VersioningConfiguration"]["Status"]),
            "Enabled",
            "{scenario}"
        );

        // Fed from the table's stream, audit inserts only, into the stream that writes the bucket.
        let pipe = &stack.resource("AuditArchivePipe")["Properties"];
        assert_eq!(
            stack.string(&pipe["Source"]),
            stack.attribute("LeaseTable", "StreamArn"),
            "{scenario}"
        );
        assert_eq!(
            stack.string(&pipe["Target"]),
            stack.attribute("AuditArchiveDeliveryStream", "Arn"),
            "{scenario}"
        );
        let filters = items(&pipe["SourceParameters"]["FilterCriteria"]["Filters"]);
        assert_eq!(filters.len(), 1, "{scenario}: one filter");
        let pattern: serde_json::Value =
            serde_json::from_str(&stack.string(&filters[0]["Pattern"])).expect("the filter is JSON");
        assert_eq!(pattern["eventName"], serde_json::json!(["INSERT"]), "{scenario}");
        assert_eq!(
            pattern["dynamodb"]["Keys"]["pk"]["S"],
            serde_json::json!([{"prefix": "audit#"}]),
            "{scenario}: only audit records leave the table (lease items hold full session IDs)"
        );
        let delivery =
            &stack.resource("AuditArchiveDeliveryStream")["Properties"]["ExtendedS3DestinationConfiguration"];
        assert_eq!(
            stack.string(&delivery["BucketARN"]),
            stack.attribute("AuditArchiveBucket", "Arn"),
            "{scenario}"
        );

        // The application's roles cannot touch it; only the delivery stream's role writes.
        let bucket_arn = stack.attribute("AuditArchiveBucket", "Arn");
        for role in ["GetSessionRole", "ReplenishRole"] {
            let s3 = service_actions(stack, role, "s3:");
            assert!(s3.is_empty(), "{scenario}: {role} may call S3: {s3:?}");
        }
        let delivery_grants = grants(stack, "AuditArchiveDeliveryRole");
        let on_objects = delivery_grants
            .get(&format!("{bucket_arn}/*"))
            .cloned()
            .unwrap_or_default();
        assert!(on_objects.contains("s3:PutObject"), "{scenario}");
        for forbidden in [
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:PutObjectRetention",
            "s3:BypassGovernanceRetention",
        ] {
            assert!(
                delivery_grants.values().all(|actions| !actions.contains(forbidden)),
                "{scenario}: the delivery role may {forbidden}"
            );
        }
        let policy = &stack.resource("AuditArchiveBucketPolicy")["Properties"]["PolicyDocument"];
        let denies: Vec<&Value> = stack
            .statements(policy)
            .into_iter()
            .filter(|s| s["Effect"].as_str() == Some("Deny"))
            .collect();
        assert!(
            denies
                .iter()
                .any(|s| s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")),
            "{scenario}: TLS only"
        );
        assert!(
            denies.iter().any(|s| {
                stack.string(&s["Action"]) == "s3:PutObject"
                    && stack.string(&s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
                        == stack.attribute("AuditArchiveDeliveryRole", "Arn")
            }),
            "{scenario}: only the delivery stream's role adds records"
        );
    });
}

#[test]
fn the_lease_alarms_watch_utilisation_with_leases_and_claim_latency_always() {
    POOL.each_scenario(|scenario, stack| {
        assert_eq!(
            stack.has("PoolUtilisationAlarm"),
            stack.condition("LeasesOn"),
            "{scenario}: utilisation is only measured with leases"
        );
        let latency = &stack.resource("ClaimLatencyP99Alarm")["Properties"];
        assert!(stack.has("ClaimLatencyP99Alarm"), "{scenario}");
        assert_eq!(stack.string(&latency["ExtendedStatistic"]), "p99", "{scenario}");
        assert_eq!(stack.string(&latency["Threshold"]), "500", "{scenario}");
        assert_eq!(
            stack.string(&latency["ComparisonOperator"]),
            "GreaterThanThreshold",
            "{scenario}"
        );
        let mut alarms = vec![latency];
        if stack.has("PoolUtilisationAlarm") {
            let utilisation = &stack.resource("PoolUtilisationAlarm")["Properties"];
            assert_eq!(
                stack.string(&utilisation["MetricName"]),
                "PoolUtilisation",
                "{scenario}"
            );
            assert_eq!(stack.string(&utilisation["Threshold"]), "80", "{scenario}");
            assert_eq!(
                stack.string(&utilisation["ComparisonOperator"]),
                "GreaterThanOrEqualToThreshold",
                "{scenario}"
            );
            alarms.push(utilisation);
        }
        // Notified like every other alarm of the pool.
        let reference = &stack.resource("WarmHitRateAlarm")["Properties"];
        for alarm in alarms {
            for actions in ["AlarmActions", "OKActions"] {
                assert_eq!(alarm.get(actions), reference.get(actions), "{scenario}: {actions}");
            }
        }
    });
}
