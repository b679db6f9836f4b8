//! The full system (infra/template.yaml): only the two nested stacks, each given every one of
//! its parameters, each parameter declared exactly as the child declares it, and the user pool
//! in front of the runtime the batch stack creates (docs/decisions/0902).

use crate::stack::{Stack, intrinsic, scalar};
use crate::{BATCH, POOL, Template};
use std::collections::BTreeSet;
use yaml_serde::Value;

const FULL_FILE: &str = "infra/template.yaml";
const FULL_SOURCE: &str = include_str!("../../../infra/template.yaml");

pub fn full() -> Stack {
    full_with(&[])
}

pub fn full_with(overrides: &[(&str, &str)]) -> Stack {
    Stack::new(FULL_FILE, FULL_SOURCE, BATCH.required, overrides)
}

/// The nested stacks: logical ID, the template it deploys, and the parameters the parent wires
/// itself rather than passing its own of the same name.
const CHILDREN: [(&str, &Template, &[&str]); 2] = [
    ("Batch", &BATCH, &["PoolName"]),
    ("Pool", &POOL, &["PoolName", "AgentRuntimeArn"]),
];

/// What of a parameter's declaration must be the same in parent and child (not the
/// description, which may say which stack uses it).
fn declaration(stack: &Stack, name: &str) -> Vec<(String, Option<String>)> {
    let spec = &stack.template["Parameters"][name];
    [
        "Type",
        "Default",
        "AllowedValues",
        "AllowedPattern",
        "MinValue",
        "MaxValue",
        "NoEcho",
    ]
    .into_iter()
    .map(|key| {
        let value = spec.get(key).map(|v| match v {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect::<Vec<_>>().join(","),
            other => scalar(other).unwrap_or_default(),
        });
        (key.to_string(), value)
    })
    .collect()
}

fn parameter_names(stack: &Stack) -> BTreeSet<String> {
    stack.template["Parameters"]
        .as_mapping()
        .expect("Parameters")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect()
}

/// Child parameters the parent leaves at their defaults on purpose: the full system always
/// creates the reference runtime (batch.yaml's AgentRuntimeArn empty).
const LEFT_AT_DEFAULT: [(&str, &str); 1] = [("Batch", "AgentRuntimeArn")];

#[test]
fn the_full_system_is_the_two_nested_templates_and_nothing_else() {
    let stack = full();
    let resources: Vec<(&str, &str)> = stack
        .resources()
        .map(|(id, r)| (id, r["Type"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        resources,
        [
            ("Batch", "AWS::Serverless::Application"),
            ("Pool", "AWS::Serverless::Application")
        ]
    );
    for (id, child, _) in CHILDREN {
        let location = stack.property(id, "Location").expect("Location");
        assert_eq!(format!("infra/{location}"), child.file, "{id}'s template");
    }
}

#[test]
fn every_parameter_of_the_full_system_is_declared_as_its_child_declares_it_and_passed_unchanged() {
    let parent = full();
    let mut used = BTreeSet::new();
    for (id, child, wired) in CHILDREN {
        let child_stack = child.stack(&[]);
        let passed = &parent.resource(id)["Properties"]["Parameters"];
        for name in parameter_names(&child_stack) {
            let value = passed.get(name.as_str());
            if LEFT_AT_DEFAULT.contains(&(id, name.as_str())) {
                assert!(value.is_none(), "{id}: {name} is meant to stay at its default");
                continue;
            }
            if wired.contains(&name.as_str()) {
                assert!(value.is_some(), "{id}: {name} is wired by the parent but not passed");
                continue;
            }
            assert!(
                parameter_names(&parent).contains(&name),
                "{}'s {name} is not a parameter of the full system: its default would silently apply",
                child.file
            );
            let refers = value
                .and_then(intrinsic)
                .map(|(f, arg)| (f, arg.as_str().map(str::to_string)));
            assert_eq!(
                refers,
                Some(("Ref".to_string(), Some(name.clone()))),
                "{id}: {name} must be passed as !Ref {name}"
            );
            let (mut parents, childs) = (declaration(&parent, &name), declaration(&child_stack, &name));
            if name == "AgentContainerUri" {
                // Required in the full system (it always creates the runtime), optional in
                // batch.yaml (which can take an existing one): the child's pattern is the
                // parent's plus the empty value, its default that empty value.
                for (key, value) in &mut parents {
                    match key.as_str() {
                        "Default" => *value = Some(String::new()),
                        "AllowedPattern" => *value = value.as_ref().map(|p| format!("^$|{p}")),
                        _ => {}
                    }
                }
            }
            assert_eq!(
                parents, childs,
                "{name}: declared differently in {FULL_FILE} and {}",
                child.file
            );
            used.insert(name);
        }
        let extra: Vec<String> = passed
            .as_mapping()
            .expect("Parameters")
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .filter(|k| !parameter_names(&child_stack).contains(k))
            .collect();
        assert!(
            extra.is_empty(),
            "{id} is passed parameters {} does not declare: {extra:?}",
            child.file
        );
    }
    let unused: Vec<_> = parameter_names(&parent).difference(&used).cloned().collect();
    assert!(
        unused.is_empty(),
        "parameters of {FULL_FILE} no child reads: {unused:?}"
    );
}

#[test]
fn the_user_pool_warms_the_runtime_the_batch_stack_creates_and_the_two_pools_are_named_apart() {
    let parent = full();
    let pool = &parent.resource("Pool")["Properties"]["Parameters"];
    let batch = &parent.resource("Batch")["Properties"]["Parameters"];
    assert_eq!(
        parent.string(&pool["AgentRuntimeArn"]),
        "<Batch.Outputs.AgentRuntimeArn>"
    );
    let names = [parent.string(&pool["PoolName"]), parent.string(&batch["PoolName"])];
    assert_ne!(names[0], names[1], "the two pools would add up in one series");
    // The full system always creates the reference runtime: batch.yaml's AgentRuntimeArn is not passed.
    assert!(batch.get("AgentRuntimeArn").is_none());
}

#[test]
fn the_full_systems_outputs_name_outputs_its_children_have() {
    let parent = full();
    for (output, spec) in parent.template["Outputs"].as_mapping().expect("Outputs") {
        let value = parent.string(&spec["Value"]);
        let inner = value
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or_else(|| panic!("{output:?}: not a child's output: {value}"));
        let (id, child_output) = inner.split_once(".Outputs.").expect("<Child.Outputs.Name>");
        let (_, child, _) = CHILDREN.iter().find(|(c, _, _)| *c == id).expect("a nested stack");
        assert!(
            child.stack(&[]).template["Outputs"].get(child_output).is_some(),
            "{output:?}: {} has no output {child_output}",
            child.file
        );
    }
}
