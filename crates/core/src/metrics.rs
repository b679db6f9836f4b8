//! CloudWatch Embedded Metric Format: one JSON line on stdout per event, which CloudWatch
//! Logs turns into metrics without a PutMetricData call on the hot path; and the nearest-rank
//! percentile every reported figure is computed with.

use crate::config::Env;
use crate::error::ConfigError;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "AgentCoreWarmPool";

/// `POOL_NAME`: the pool every metric of this function is counted under (docs/decisions/0904).
pub const POOL_NAME: &str = "POOL_NAME";
/// The pool of a function whose environment names none.
pub const DEFAULT_POOL_NAME: &str = "default";
/// At most a CloudFormation stack name plus a suffix such as `-batch`; CloudWatch itself takes
/// dimension values of up to 1,024 characters.
const MAX_POOL_NAME_LEN: usize = 160;

/// The pool's name, the `Pool` dimension of every metric: two pools in one account and region
/// (two stacks, or the user pool and the batch pool of one) are counted apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolName(String);

impl PoolName {
    /// `POOL_NAME`, or [`DEFAULT_POOL_NAME`] when unset or blank. Letters, digits, `.`, `_`
    /// and `-` only: the name goes into dashboards' JSON and alarm dimensions verbatim.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some(value) = env.optional(POOL_NAME) else {
            return Ok(Self(DEFAULT_POOL_NAME.to_string()));
        };
        let invalid = |reason: String| ConfigError::Invalid {
            key: POOL_NAME,
            value: value.clone(),
            reason,
        };
        if value.len() > MAX_POOL_NAME_LEN {
            return Err(invalid(format!("at most {MAX_POOL_NAME_LEN} characters")));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid("letters, digits, '.', '_' and '-' only".into()));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PoolName {
    fn default() -> Self {
        Self(DEFAULT_POOL_NAME.to_string())
    }
}

impl std::fmt::Display for PoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    CountPerSecond,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// The `pct`-th percentile (0 < pct <= 100) of `values` by the nearest-rank method: the value at
/// rank `ceil(pct / 100 * n)` of the sorted values, so every figure is a value that was really
/// observed, which matters with small samples. `None` for an empty sample or a `pct` outside
/// (0, 100].
pub fn nearest_rank(values: &[u64], pct: f64) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    nearest_rank_of_sorted(&sorted, pct)
}

/// [`nearest_rank`] of a sample already sorted ascending.
pub fn nearest_rank_of_sorted(sorted: &[u64], pct: f64) -> Option<u64> {
    let rank = usize::try_from(rank_of(sorted.len() as u64, pct)?).ok()?;
    sorted.get(rank - 1).copied()
}

/// The 1-based nearest rank of `pct` in a sample of `n`: `None` for an empty sample or a `pct`
/// outside (0, 100].
pub fn rank_of(n: u64, pct: f64) -> Option<u64> {
    if n == 0 || !(pct > 0.0 && pct <= 100.0) {
        return None;
    }
    // pct / 100 * n in integer-friendly form; the tiny epsilon keeps 95% of 20 at rank 19
    // rather than 20 when floating point lands a hair above the integer.
    let exact = pct / 100.0 * n as f64;
    Some(crate::num::ceil_u64(exact - 1e-9).clamp(1, n))
}

/// Metrics of one event, under the one dimension set (`Pool`, `Function`): per pool and per
/// function, never summed across the pools of an account (docs/decisions/0904).
#[derive(Debug, Clone)]
pub struct MetricSet {
    function: String,
    pool: String,
    values: Vec<(&'static str, Unit, Vec<f64>)>,
}

impl MetricSet {
    pub fn new(function: impl Into<String>, pool: &PoolName) -> Self {
        Self {
            function: function.into(),
            pool: pool.as_str().to_string(),
            values: Vec::new(),
        }
    }

    pub fn count(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.values.push((name, Unit::Count, vec![value.into()]));
        self
    }

    pub fn millis(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.values.push((name, Unit::Milliseconds, vec![value.into()]));
        self
    }

    pub fn per_second(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.values.push((name, Unit::CountPerSecond, vec![value.into()]));
        self
    }

    /// Adds the metric only when there is a value.
    pub fn millis_if(self, name: &'static str, value: Option<u64>) -> Self {
        match value {
            Some(v) => self.millis(name, v as f64),
            None => self,
        }
    }

    /// Several samples of one metric in one line (EMF value arrays); none means no metric.
    pub fn millis_each(mut self, name: &'static str, samples: impl IntoIterator<Item = u64>) -> Self {
        let samples: Vec<f64> = samples.into_iter().map(|v| v as f64).collect();
        if !samples.is_empty() {
            self.values.push((name, Unit::Milliseconds, samples));
        }
        self
    }

    pub fn to_emf(&self, timestamp_ms: u64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Pool", "Function"]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert("Pool".into(), Value::String(self.pool.clone()));
        root.insert("Function".into(), Value::String(self.function.clone()));
        for (name, _, samples) in &self.values {
            let value = match samples.as_slice() {
                [single] => json!(single),
                many => json!(many),
            };
            root.insert((*name).into(), value);
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
        let set = MetricSet::new("get-session", &PoolName::default())
            .count("ClaimFromPool", 1)
            .millis("ClaimLatency", 12.5)
            .millis_each("WarmupLatency", [3, 4])
            .millis_each("Nothing", []);
        let emf = set.to_emf(42);
        assert_eq!(emf["_aws"]["Timestamp"], 42);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Milliseconds"
        );
        assert_eq!(emf["Function"], "get-session");
        assert_eq!(emf["ClaimFromPool"], 1.0);
        assert_eq!(emf["ClaimLatency"], 12.5);
        assert_eq!(emf["WarmupLatency"], json!([3.0, 4.0]));
        assert!(emf.get("Nothing").is_none());
    }

    #[test]
    fn when_a_metric_is_emitted_then_it_is_dimensioned_by_pool_and_function() {
        let pool = PoolName::from_env(&Env::from_pairs([(POOL_NAME, "team-a")])).unwrap();
        let emf = MetricSet::new("replenish", &pool).count("PoolVisible", 3).to_emf(1);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Pool", "Function"]])
        );
        assert_eq!(emf["Pool"], "team-a");
        assert_eq!(emf["Function"], "replenish");
    }

    #[test]
    fn when_pool_name_is_unset_or_blank_then_it_is_the_default() {
        for env in [Env::default(), Env::from_pairs([(POOL_NAME, "  ")])] {
            assert_eq!(PoolName::from_env(&env).unwrap().as_str(), DEFAULT_POOL_NAME);
        }
    }

    #[test]
    fn when_pool_name_has_other_characters_or_is_too_long_then_init_fails_with_its_name() {
        let long = "p".repeat(MAX_POOL_NAME_LEN + 1);
        for bad in ["team a", "team/a", "pool\"", "pööl", long.as_str()] {
            let error = PoolName::from_env(&Env::from_pairs([(POOL_NAME, bad)])).unwrap_err();
            assert!(error.to_string().contains(POOL_NAME), "{bad}: {error}");
        }
        let longest = "p".repeat(MAX_POOL_NAME_LEN);
        assert!(PoolName::from_env(&Env::from_pairs([(POOL_NAME, longest.as_str())])).is_ok());
        assert!(PoolName::from_env(&Env::from_pairs([(POOL_NAME, "warmpool-prod_1.batch")])).is_ok());
    }

    #[test]
    fn percentiles_outside_zero_to_hundred_are_refused() {
        assert_eq!(nearest_rank(&[1, 2, 3], 0.0), None);
        assert_eq!(nearest_rank(&[1, 2, 3], 100.1), None);
        assert_eq!(nearest_rank(&[1, 2, 3], f64::NAN), None);
    }

    #[test]
    fn nearest_rank_picks_an_observed_value_not_an_interpolation() {
        // Ranks: 50% of 4 is 2 -> 20; never the midpoint 25.
        assert_eq!(nearest_rank(&[40, 10, 30, 20], 50.0), Some(20));
    }

    #[test]
    fn the_hundredth_percentile_is_the_maximum() {
        assert_eq!(nearest_rank(&[3, 9, 1], 100.0), Some(9));
    }

    #[test]
    fn a_tiny_percentile_is_the_minimum() {
        assert_eq!(nearest_rank(&[3, 9, 1], 0.1), Some(1));
    }
}
