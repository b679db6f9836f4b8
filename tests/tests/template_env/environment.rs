//! Each function's environment, per template and scenario: parsed by the function's own
//! config, every variable read, shared settings agreeing, and the values two resources of one
//! template must agree on.

use crate::stack::Stack;
use crate::{BATCH, POOL, TEMPLATES, env_of, perturbed, reads};
use std::collections::{BTreeMap, BTreeSet};

/// Settings several consumers read: whoever reads one must set it, and all to the same value.
const SHARED: [&str; 10] = [
    "BATCH_PENDING_TIMEOUT_SECS",
    "SESSION_LOG_KEY",
    "SESSION_IDLE_TIMEOUT_SECS",
    "SESSION_MAX_LIFETIME_SECS",
    "SESSION_SAFETY_MARGIN_SECS",
    "TRACKING_SHARDS",
    "TRACKING_RETENTION_DAYS",
    "BATCH_MAX_DOCUMENT_BYTES",
    "AGENT_RUNTIME_QUALIFIER",
    // One pool per template: its functions count their metrics under one Pool dimension.
    "POOL_NAME",
];

#[test]
fn every_resource_that_runs_our_code_has_its_parser_here() {
    for template in TEMPLATES {
        let stack = template.stack(&[]);
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
        let parsed: BTreeSet<&str> = template.consumers.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            running_code, parsed,
            "{}: resources vs its consumers in this test",
            template.file
        );
    }
}

#[test]
fn every_function_environment_parses_with_the_functions_own_config() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            for (id, parse) in template.consumers_in(stack) {
                let environment = stack.full_environment(id);
                if let Err(error) = parse(&env_of(&environment)) {
                    panic!(
                        "{scenario}: {id}'s environment from the template is refused by its config: {error}\n{environment:#?}"
                    );
                }
            }
        });
    }
}

#[test]
fn every_variable_the_template_sets_is_read_by_the_function() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            for (id, parse) in template.consumers_in(stack) {
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
}

#[test]
fn shared_settings_are_set_wherever_they_are_read_and_agree() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            for key in SHARED {
                let mut values = BTreeMap::new();
                for (id, parse) in template.consumers_in(stack) {
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
}

#[test]
fn every_function_of_a_template_counts_its_metrics_under_the_stacks_pool_name() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            let expected = match stack.template["Parameters"].get("PoolName") {
                Some(_) => match stack.reference("PoolName").map(|v| v.into_string()) {
                    Some(name) if !name.is_empty() => name,
                    _ => crate::stack::STACK.to_string(),
                },
                None => panic!("{scenario}: no PoolName parameter"),
            };
            for (id, _) in template.consumers_in(stack) {
                if stack.kind(id) == "AWS::BedrockAgentCore::Runtime" {
                    continue; // the agent emits no pool metrics
                }
                assert_eq!(
                    stack.environment(id).get("POOL_NAME"),
                    Some(&expected),
                    "{scenario}: {id}'s POOL_NAME"
                );
            }
        });
    }
}

/// One parameter's value in this scenario.
fn parameter(stack: &Stack, name: &str) -> String {
    stack
        .reference(name)
        .unwrap_or_else(|| panic!("{}: no parameter {name}", stack.file))
        .into_string()
}

#[test]
fn the_functions_session_lifecycle_is_the_runtimes() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            // The pool alone cannot read the runtime's limits: its parameters stand for them
            // (documented as "must equal"); where the runtime is this stack's, it takes the same ones.
            let (idle, lifetime) = if stack.has("DocumentAgentRuntime") {
                let lifecycle = &stack.resource("DocumentAgentRuntime")["Properties"]["LifecycleConfiguration"];
                (
                    stack.string(&lifecycle["IdleRuntimeSessionTimeout"]),
                    stack.string(&lifecycle["MaxLifetime"]),
                )
            } else {
                (
                    parameter(stack, "SessionIdleTimeoutSecs"),
                    parameter(stack, "SessionMaxLifetimeSecs"),
                )
            };
            for (id, _) in template.consumers_in(stack) {
                let environment = stack.environment(id);
                if let Some(value) = environment.get("SESSION_IDLE_TIMEOUT_SECS") {
                    assert_eq!(value, &idle, "{scenario}: {id} idle timeout vs the runtime's");
                }
                if let Some(value) = environment.get("SESSION_MAX_LIFETIME_SECS") {
                    assert_eq!(value, &lifetime, "{scenario}: {id} max lifetime vs the runtime's");
                }
            }
            for queue in ["PoolQueue", "BatchPoolQueue"].into_iter().filter(|q| stack.has(q)) {
                let retention = stack.number(&stack.resource(queue)["Properties"]["MessageRetentionPeriod"]);
                assert!(
                    retention >= lifetime.parse().unwrap(),
                    "{scenario}: {queue} messages expire before their sessions"
                );
            }
        });
    }
}

#[test]
fn the_reference_runtime_pins_the_platform_version_it_is_given() {
    BATCH.each_scenario(|scenario, stack| {
        if !stack.has("DocumentAgentRuntime") {
            return;
        }
        assert_eq!(
            stack.property("DocumentAgentRuntime", "PlatformVersion"),
            Some(parameter(stack, "PlatformVersion")),
            "{scenario}"
        );
    });
    assert_eq!(parameter(&BATCH.stack(&[]), "PlatformVersion"), "V2", "V2 by default");
}

#[test]
fn every_function_uses_the_runtime_the_template_names() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            let runtime = if stack.has("DocumentAgentRuntime") {
                stack.attribute("DocumentAgentRuntime", "AgentRuntimeArn")
            } else {
                parameter(stack, "AgentRuntimeArn")
            };
            for (id, _) in template.consumers_in(stack) {
                if let Some(arn) = stack.environment(id).get("AGENT_RUNTIME_ARN") {
                    assert_eq!(arn, &runtime, "{scenario}: {id}");
                }
            }
        });
    }
}

#[test]
fn replenish_paces_for_exactly_its_reserved_concurrency() {
    for (template, function) in [(&POOL, "ReplenishFunction"), (&BATCH, "BatchReplenishFunction")] {
        template.each_scenario(|scenario, stack| {
            let environment = stack.environment(function);
            let reserved = stack.string(&stack.resource(function)["Properties"]["ReservedConcurrentExecutions"]);
            assert_eq!(
                environment["MAX_CONCURRENT_RUNS"], reserved,
                "{scenario}: {function}'s pacing vs reserved concurrency"
            );
        });
    }
}

#[test]
fn the_maintenance_schedule_runs_at_the_interval_the_sweep_assumes() {
    for (template, function) in [(&POOL, "ReplenishFunction"), (&BATCH, "BatchReplenishFunction")] {
        template.each_scenario(|scenario, stack| {
            let events = &stack.resource(function)["Properties"]["Events"];
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
            let environment = stack.environment(function);
            assert_eq!(
                environment["MAINTENANCE_INTERVAL_SECS"],
                seconds.to_string(),
                "{scenario}: {function}'s sweep interval vs the schedule"
            );
        });
    }
}

#[test]
fn the_batch_queue_redrives_after_the_count_the_invoker_expects_and_outwaits_it() {
    BATCH.each_scenario(|scenario, stack| {
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
    POOL.each_scenario(|scenario, stack| {
        let properties = &stack.resource("GetSessionFunction")["Properties"];
        let environment = stack.environment("GetSessionFunction");
        assert_eq!(
            environment.get("GET_SESSION_TIMEOUT_SECS").map(String::as_str),
            Some(stack.string(&properties["Timeout"]).as_str()),
            "{scenario}: get-session's GET_SESSION_TIMEOUT_SECS vs its Timeout"
        );
    });
    // CloudFormation rules cannot compare numbers: the ranges must make every pair safe. The
    // extremes are a scenario of POOL, so get-session's own check accepts them too.
    let stack = POOL.stack(&[]);
    let longest_wait = bound(&stack, "ClaimWaitSecs", "MaxValue");
    let shortest_timeout = bound(&stack, "GetSessionTimeoutSecs", "MinValue");
    assert!(
        longest_wait + 1 < shortest_timeout,
        "a {longest_wait} s claim wait does not fit in a {shortest_timeout} s timeout"
    );
    assert!(longest_wait <= 20, "SQS long polls wait at most 20 s");
}

#[test]
fn counts_that_must_be_positive_cannot_be_deployed_as_zero() {
    for template in TEMPLATES {
        let stack = template.stack(&[]);
        for parameter in [
            "ClaimMaxDiscards",
            "MaxCreationsPerRun",
            "MaxCountPerTrigger",
            "WarmupConcurrency",
        ] {
            if stack.template["Parameters"].get(parameter).is_none() {
                continue;
            }
            assert!(
                bound(&stack, parameter, "MinValue") >= 1,
                "{}: {parameter} accepts 0, which the functions refuse at init",
                template.file
            );
        }
    }
}
