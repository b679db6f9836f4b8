//! Who may touch which queue: every pool queue admits exactly the roles that use it, the batch
//! pool is claimed by the invoker alone and filled by its replenish alone, the pool alone
//! creates nothing but the pool; and every checkov skip says why.

use crate::stack::{Evaluated, Stack, intrinsic, items};
use crate::{BATCH, POOL, TEMPLATES, composition};
use std::collections::BTreeSet;
use yaml_serde::Value;

/// The SQS actions each role's Allow statements grant on `queue_arn`.
fn sqs_actions_on(stack: &Stack, role: &str, queue_arn: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in items(&stack.resource(role)["Properties"]["Policies"]) {
        for statement in stack.statements(&policy["PolicyDocument"]) {
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
    BATCH.each_scenario(|scenario, stack| {
        let batch_pool = stack.attribute("BatchPoolQueue", "Arn");
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
            for statement in stack.statements(&policy["PolicyDocument"]) {
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
fn every_pool_queue_admits_exactly_the_roles_that_use_it() {
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            let pools: Vec<&str> = stack
                .resources()
                .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::Queue"))
                .filter(|(id, _)| stack.property(id, "FifoQueue").as_deref() == Some("true"))
                .map(|(id, _)| id)
                .collect();
            assert_eq!(pools.len(), 1, "{scenario}: one pool per template: {pools:?}");
            for pool in pools {
                let policies: Vec<&str> = stack
                    .resources()
                    .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::QueuePolicy"))
                    .filter(|(_, r)| {
                        items(&r["Properties"]["Queues"])
                            .iter()
                            .any(|q| matches!(intrinsic(q), Some((f, arg)) if f == "Ref" && arg.as_str() == Some(pool)))
                    })
                    .map(|(id, _)| id)
                    .collect();
                assert_eq!(policies.len(), 1, "{scenario}: {pool}'s policies: {policies:?}");
                assert_eq!(
                    excepted_roles(stack, policies[0]),
                    roles_using(stack, pool),
                    "{scenario}: roles {pool}'s policy lets through vs roles whose policies use it"
                );
            }
        });
    }
}

#[test]
fn the_pool_alone_is_claimed_by_get_session_and_filled_by_replenish_only() {
    POOL.each_scenario(|scenario, stack| {
        let pool = stack.attribute("PoolQueue", "Arn");
        let claims = sqs_actions_on(stack, "GetSessionRole", &pool);
        assert_eq!(
            claims,
            BTreeSet::from(["sqs:ReceiveMessage".to_string(), "sqs:DeleteMessage".to_string()]),
            "{scenario}: get-session claims, never fills"
        );
        assert!(
            sqs_actions_on(stack, "ReplenishRole", &pool).contains("sqs:SendMessage"),
            "{scenario}"
        );
        // Its only store is the lease table, with leases, and the audit archive's bucket with
        // an archive as well (crate::leases); never a runtime.
        let leases = stack.condition("LeasesOn");
        let archive = stack.condition("ArchiveAudit");
        for (kind, allowed) in [
            ("AWS::S3::Bucket", usize::from(archive)),
            ("AWS::DynamoDB::Table", usize::from(leases)),
            ("AWS::BedrockAgentCore::Runtime", 0),
        ] {
            let count = stack
                .resources()
                .filter(|(_, r)| r["Type"].as_str() == Some(kind))
                .count();
            assert_eq!(count, allowed, "{scenario}: how many {kind} the pool alone creates");
        }
    });
}

#[test]
fn every_checkov_skip_says_why() {
    // The pool's lease resources exist only with leases and an archive: checked in that stack.
    let stacks = TEMPLATES
        .iter()
        .map(|t| t.stack(&[]))
        .chain([composition::full(), POOL.stack(crate::leases::WITH_ARCHIVE)]);
    for stack in stacks {
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
}
