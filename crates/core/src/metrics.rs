//! CloudWatch Embedded Metric Format: one JSON line on stdout per event, which CloudWatch
//! Logs turns into metrics without a PutMetricData call on the hot path.

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "AgentCoreWarmPool";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Metrics of one event, all under the dimension `Function`.
#[derive(Debug, Clone)]
pub struct MetricSet {
    function: String,
    values: Vec<(&'static str, Unit, f64)>,
}

impl MetricSet {
    pub fn new(function: impl Into<String>) -> Self {
        Self { function: function.into(), values: Vec::new() }
    }

    pub fn count(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.values.push((name, Unit::Count, value.into()));
        self
    }

    pub fn millis(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.values.push((name, Unit::Milliseconds, value.into()));
        self
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _, _)| *n == name).map(|(_, _, v)| *v)
    }

    pub fn to_emf(&self, timestamp_ms: u64) -> Value {
        let definitions: Vec<Value> =
            self.values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert("Function".into(), Value::String(self.function.clone()));
        for (name, _, value) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the EMF line to stdout, where the Lambda log agent picks it up.
    pub fn emit(&self, timestamp_ms: u64) {
        println!("{}", self.to_emf(timestamp_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_and_carries_its_value() {
        let set = MetricSet::new("get-session").count("ClaimFromPool", 1).millis("ClaimLatency", 12.5);
        let emf = set.to_emf(42);
        assert_eq!(emf["_aws"]["Timestamp"], 42);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(emf["Function"], "get-session");
        assert_eq!(emf["ClaimFromPool"], 1.0);
        assert_eq!(emf["ClaimLatency"], 12.5);
    }
}
