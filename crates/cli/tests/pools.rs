//! `warmpool pools` against moto's CloudFormation: pool stacks found by their tag, their
//! shares of the account's creation quota checked before a deploy.

mod support;

use aws_sdk_cloudformation::types::{Parameter, Tag};
use support::*;

/// What moto needs of a pool stack: the tag, the two parameters and the queue output the CLI
/// reads (the real templates have them under the same names).
const POOL_TEMPLATE: &str = r#"{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Parameters": {
    "CreationBudgetPerSec": {"Type": "Number"},
    "AgentRuntimeArn": {"Type": "String"}
  },
  "Resources": {"PoolQueue": {"Type": "AWS::SQS::Queue", "Properties": {"FifoQueue": true, "QueueName": "QUEUE_NAME.fifo"}}},
  "Outputs": {"PoolQueueUrl": {"Value": {"Ref": "PoolQueue"}}}
}"#;

fn cloudformation() -> aws_sdk_cloudformation::Client {
    use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_cloudformation::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto())
        .credentials_provider(Credentials::new("test", "test", None, None, "cli-tests"))
        .build();
    aws_sdk_cloudformation::Client::from_conf(config)
}

async fn deploy(stack: &str, pool: Option<&str>, share: u32) {
    let parameter = |key: &str, value: String| Parameter::builder().parameter_key(key).parameter_value(value).build();
    let mut create = cloudformation()
        .create_stack()
        .stack_name(stack)
        .template_body(POOL_TEMPLATE.replace("QUEUE_NAME", stack))
        .parameters(parameter("CreationBudgetPerSec", share.to_string()))
        .parameters(parameter("AgentRuntimeArn", RUNTIME_ARN.to_string()));
    if let Some(pool) = pool {
        create = create.tags(Tag::builder().key("warmpool:pool").value(pool).build());
    }
    create.send().await.expect("create the stack in moto");
}

fn pools(args: &str) -> std::process::Command {
    let mut command = warmpool(&[("AWS_ENDPOINT_URL", moto())]);
    command.arg("pools").args(args.split_whitespace());
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_are_listed_by_tag_and_a_share_that_oversubscribes_the_account_is_refused() {
    deploy("chat-pool", Some("chat"), 10).await;
    deploy("search-pool", Some("search"), 10).await;
    deploy("not-a-pool", None, 25).await;

    let (listing, _) = run_json(pools("list --output json")).await;
    let rows = listing.as_array().expect("a list");
    let names: Vec<_> = rows.iter().map(|r| r["pool"].as_str().unwrap_or_default()).collect();
    assert_eq!(names, ["chat", "search"], "{listing}");
    assert_eq!(rows[0]["budgetSharePerSec"], 10);
    assert_eq!(rows[0]["depth"], 0, "read from the stack's own queue");
    assert_eq!(rows[0]["runtimeArn"], RUNTIME_ARN);

    let refused = run(pools("check --pool docs --share 10 --quota 25")).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "30/s of a 25/s quota must be refused");
    assert!(
        stderr.contains("needs 30/s") && stderr.contains("chat 10/s"),
        "{stderr}"
    );

    let (fits, _) = run_json(pools("check --pool docs --share 5 --quota 25 --output json")).await;
    assert_eq!(fits["accountTotalPerSec"], 25);
    let (redeploy, _) = run_json(pools("check --pool chat --share 15 --quota 25 --output json")).await;
    assert_eq!(
        redeploy["accountTotalPerSec"], 25,
        "chat's own 10/s is replaced: {redeploy}"
    );
}
