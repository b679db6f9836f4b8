//! Alarms and dashboards watch metrics the functions emit, each under the Pool dimension the
//! template's functions count them in (crates/core/src/metrics.rs: one dimension set, Pool and
//! Function).

use crate::TEMPLATES;
use crate::stack::{Stack, items};
use std::collections::BTreeSet;
use yaml_serde::Value;

/// A watched series: (Pool, Function, metric name).
type Series = (String, String, String);

/// (Function dimension, metric name) pairs the functions emit, read from their source: the
/// `FUNCTION` constant and every `MetricSet` builder call.
fn emitted_metrics() -> BTreeSet<(String, String)> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut emitted = BTreeSet::new();
    for name in ["get-session", "replenish", "invoker", "stale-batch-detector"] {
        let source = crate::leases::rust_sources(&crates.join(name).join("src"));
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
            // PoolUtilisation (percent), should the lease sweep emit it through a builder of its own.
            ".percent(\"",
        ] {
            for rest in source.split(builder).skip(1) {
                let metric = rest.split('"').next().expect("metric name");
                emitted.insert((function.clone(), metric.to_string()));
            }
        }
    }
    emitted
}

/// The series of the dashboard's AgentCoreWarmPool widgets, with CloudWatch's `"."` (same as
/// the row above) and `"..."` (the row above, trailing values replaced) shorthands expanded.
fn dashboard_metrics(stack: &Stack) -> BTreeSet<Series> {
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
                let dimensions: Vec<&str> = expanded[2..].iter().map(String::as_str).collect();
                assert_eq!(
                    dimensions.iter().step_by(2).copied().collect::<Vec<_>>(),
                    ["Pool", "Function"],
                    "{}: a dashboard series not dimensioned (Pool, Function): {expanded:?}",
                    stack.file
                );
                found.insert((expanded[3].clone(), expanded[5].clone(), expanded[1].clone()));
            }
            previous = expanded;
        }
    }
    found
}

/// The series of the template's alarms on AgentCoreWarmPool metrics.
fn alarm_metrics(stack: &Stack) -> BTreeSet<Series> {
    let mut found = BTreeSet::new();
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
            let dimensions = items(&metric["Dimensions"]);
            let names: Vec<&str> = dimensions.iter().filter_map(|d| d["Name"].as_str()).collect();
            assert_eq!(
                names,
                ["Pool", "Function"],
                "{}: {id} watches an AgentCoreWarmPool metric not dimensioned (Pool, Function)",
                stack.file
            );
            let value = |i: usize| stack.string(&dimensions[i]["Value"]);
            found.insert((value(0), value(1), stack.string(&metric["MetricName"])));
        }
    }
    found
}

#[test]
fn alarms_and_dashboards_watch_metrics_the_functions_emit_in_this_pool() {
    let emitted = emitted_metrics();
    for template in TEMPLATES {
        template.each_scenario(|scenario, stack| {
            let watched: BTreeSet<Series> = dashboard_metrics(stack).union(&alarm_metrics(stack)).cloned().collect();
            assert!(!watched.is_empty(), "{scenario}: nothing watched");
            let pools: BTreeSet<String> = template
                .consumers_in(stack)
                .filter_map(|(id, _)| stack.environment(id).get("POOL_NAME").cloned())
                .collect();
            for (pool, function, metric) in &watched {
                assert!(
                    emitted.contains(&(function.clone(), metric.clone())),
                    "{scenario}: watches {function}/{metric}, which no function emits"
                );
                assert_eq!(
                    pools,
                    BTreeSet::from([pool.clone()]),
                    "{scenario}: {function}/{metric} is watched in pool {pool}, the functions count in {pools:?}"
                );
            }
        });
    }
}
