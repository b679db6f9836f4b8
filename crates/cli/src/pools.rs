//! The pools of an account and region: every CloudFormation stack tagged [`POOL_TAG`], with
//! what it was deployed with (runtime, creation share) and how it is doing (depth from its
//! queue, target in force and warm-hit rate from its metrics).

use crate::error::{CliError, sdk_message};
use crate::table::Table;
use aws_sdk_cloudformation::types::Stack;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde::Serialize;
use std::time::{Duration, SystemTime};
use warmpool_core::metrics::NAMESPACE;
use warmpool_core::pool::quota::{DEFAULT_BUDGET_PER_SEC, PoolShare};

/// The stack tag that names a pool; its value is the pool's name (the `Pool` dimension).
pub const POOL_TAG: &str = "warmpool:pool";
/// The template parameters that hold a stack's shares of the account's creation quota: the
/// pool's and, in a stack with the batch pipeline, the batch pool's.
pub const SHARE_PARAMETERS: [&str; 2] = ["CreationBudgetPerSec", "BatchCreationBudgetPerSec"];
const RUNTIME_PARAMETER: &str = "AgentRuntimeArn";
const QUEUE_OUTPUT: &str = "PoolQueueUrl";
/// Stacks read at most (DescribeStacks pages of up to 100): bounds a listing in a busy account.
const MAX_PAGES: usize = 50;
/// How far back the warm-hit rate and the target in force are read.
const LOOKBACK: Duration = Duration::from_secs(3600);

/// A pool as its stack describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedPool {
    pub pool: String,
    pub stack: String,
    pub runtime_arn: Option<String>,
    pub share_per_sec: Option<u32>,
    pub queue_url: Option<String>,
}

impl DeployedPool {
    /// `None` for a stack that is not a pool's (no [`POOL_TAG`]), and for a nested stack: its
    /// parent carries the tag (tags propagate) and the shares of all its pools.
    pub fn from_stack(stack: &Stack) -> Option<Self> {
        if stack.parent_id().is_some() {
            return None;
        }
        let pool = stack
            .tags()
            .iter()
            .find(|t| t.key() == Some(POOL_TAG))?
            .value()?
            .to_string();
        let parameter = |key: &str| {
            stack
                .parameters()
                .iter()
                .find(|p| p.parameter_key() == Some(key))
                .and_then(|p| p.parameter_value())
                .map(str::to_string)
        };
        let output = |key: &str| {
            stack
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_string)
        };
        Some(Self {
            pool,
            stack: stack.stack_name().unwrap_or_default().to_string(),
            runtime_arn: parameter(RUNTIME_PARAMETER),
            share_per_sec: SHARE_PARAMETERS
                .iter()
                .filter_map(|key| parameter(key).and_then(|v| v.parse::<u32>().ok()))
                .reduce(u32::saturating_add),
            queue_url: output(QUEUE_OUTPUT),
        })
    }

    /// The share the quota check counts; a pool deployed without the parameter runs at the
    /// functions' default.
    pub fn share(&self) -> PoolShare {
        PoolShare {
            pool: self.pool.clone(),
            per_second: self.share_per_sec.unwrap_or(DEFAULT_BUDGET_PER_SEC),
        }
    }
}

/// Every pool stack of the account and region.
pub async fn discover(cloudformation: &aws_sdk_cloudformation::Client) -> Result<Vec<DeployedPool>, CliError> {
    let mut pools = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = cloudformation
            .describe_stacks()
            .set_next_token(token)
            .send()
            .await
            .map_err(|error| CliError::Aws {
                operation: "cloudformation:DescribeStacks",
                message: sdk_message(&error),
                source: Some(Box::new(error)),
            })?;
        pools.extend(page.stacks().iter().filter_map(DeployedPool::from_stack));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    pools.sort_by(|a, b| a.pool.cmp(&b.pool));
    Ok(pools)
}

/// One row of `warmpool pools`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRow {
    pub pool: String,
    pub stack: String,
    pub runtime_arn: Option<String>,
    pub budget_share_per_sec: u32,
    /// Visible plus in-flight pool messages, now.
    pub depth: Option<u64>,
    /// The latest `PoolTarget` replenish reported within the last hour.
    pub target: Option<f64>,
    /// `ClaimFromPool / (ClaimFromPool + ClaimFresh)` over the last hour.
    pub warm_hit_rate: Option<f64>,
}

/// What the pool's queue and metrics say now; what cannot be read stays `None` (a listing
/// of many pools should not fail for one pool's queue).
pub async fn status(
    pool: &DeployedPool,
    sqs: &aws_sdk_sqs::Client,
    cloudwatch: &aws_sdk_cloudwatch::Client,
) -> PoolRow {
    let depth = match &pool.queue_url {
        Some(url) => queue_depth(sqs, url).await,
        None => None,
    };
    let from_pool = metric(cloudwatch, &pool.pool, "get-session", "ClaimFromPool", Statistic::Sum).await;
    let fresh = metric(cloudwatch, &pool.pool, "get-session", "ClaimFresh", Statistic::Sum).await;
    let warm_hit_rate = match (from_pool, fresh) {
        (Some(warm), Some(cold)) if warm + cold > 0.0 => Some(warm / (warm + cold)),
        _ => None,
    };
    PoolRow {
        pool: pool.pool.clone(),
        stack: pool.stack.clone(),
        runtime_arn: pool.runtime_arn.clone(),
        budget_share_per_sec: pool.share().per_second,
        depth,
        target: metric(cloudwatch, &pool.pool, "replenish", "PoolTarget", Statistic::Maximum).await,
        warm_hit_rate,
    }
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<u64> {
    use aws_sdk_sqs::types::QueueAttributeName::{ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible};
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()?;
    let attributes = answer.attributes()?;
    let count = |name| attributes.get(&name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible))
}

/// The one statistic of a pool's metric over the last hour, as one period.
async fn metric(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    pool: &str,
    function: &str,
    name: &str,
    statistic: Statistic,
) -> Option<f64> {
    let now = SystemTime::now();
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    let answer = cloudwatch
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name(name)
        .dimensions(dimension("Pool", pool))
        .dimensions(dimension("Function", function))
        .start_time((now - LOOKBACK).into())
        .end_time(now.into())
        .period(i32::try_from(LOOKBACK.as_secs()).unwrap_or(i32::MAX))
        .statistics(statistic.clone())
        .send()
        .await
        .ok()?;
    let points = answer.datapoints();
    let value = |p: &aws_sdk_cloudwatch::types::Datapoint| match statistic {
        Statistic::Sum => p.sum(),
        _ => p.maximum(),
    };
    points.iter().filter_map(value).reduce(f64::max)
}

/// The listing as a table.
pub fn render(rows: &[PoolRow]) -> String {
    if rows.is_empty() {
        return format!("no pools in this account and region (no stack tagged {POOL_TAG})\n");
    }
    let optional = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut table = Table::with_header(["pool", "stack", "share/s", "depth", "target", "warm-hit", "runtime"]);
    for row in rows {
        table.row([
            row.pool.clone(),
            row.stack.clone(),
            row.budget_share_per_sec.to_string(),
            optional(row.depth.map(|d| d.to_string())),
            optional(row.target.map(|t| format!("{t:.0}"))),
            optional(row.warm_hit_rate.map(|r| format!("{:.1}%", r * 100.0))),
            optional(row.runtime_arn.clone()),
        ]);
    }
    table.render()
}
