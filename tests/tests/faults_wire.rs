//! The fault injector itself, against moto: each fault does to a real SDK call what its doc
//! says, so the tests that use it test what they claim.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use warmpool_tests::faults::{self, Fault, FaultInjector};
use warmpool_tests::{Moto, sdk_config};

async fn table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = format!("faults-{}", uuid::Uuid::new_v4().simple());
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create table");
    name
}

async fn put_once(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), String> {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S("row".into()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

async fn row_exists(client: &aws_sdk_dynamodb::Client, table: &str) -> bool {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("row".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .is_some()
}

#[tokio::test]
async fn a_lost_answer_on_a_conditional_write_lands_and_the_sdk_retry_fails_its_condition() {
    let injector = FaultInjector::default();
    let client = faults::dynamodb_client(&sdk_config(&Moto::shared().endpoint), &injector);
    let table = table(&client).await;
    injector.next("PutItem", Fault::LoseAnswer, 1);

    let outcome = put_once(&client, &table).await;

    let error = outcome.expect_err("the retry must fail its condition");
    assert!(error.contains("ConditionalCheckFailed"), "{error}");
    assert!(row_exists(&client, &table).await, "the first try landed");
    assert_eq!(injector.injected("PutItem", Fault::LoseAnswer), 1);
}

#[tokio::test]
async fn a_dropped_answer_lands_and_the_caller_hears_a_transport_error() {
    let injector = FaultInjector::default();
    let client = faults::dynamodb_client(&sdk_config(&Moto::shared().endpoint), &injector);
    let table = table(&client).await;
    injector.next("PutItem", Fault::DropAnswer, 1);

    let error = put_once(&client, &table).await.expect_err("the answer was dropped");

    assert!(
        !error.contains("ConditionalCheckFailed"),
        "not retried by the SDK: {error}"
    );
    assert!(error.contains("injected fault"), "{error}");
    assert!(row_exists(&client, &table).await, "the write landed");
}

#[tokio::test]
async fn a_throttled_call_takes_no_effect() {
    let injector = FaultInjector::default();
    let client = faults::dynamodb_client(&sdk_config(&Moto::shared().endpoint), &injector);
    let table = table(&client).await;
    injector.next("PutItem", Fault::Throttle, 10);

    let error = put_once(&client, &table)
        .await
        .expect_err("throttled through every SDK attempt");

    assert!(error.contains("ThrottlingException"), "{error}");
    assert!(
        !row_exists(&client, &table).await,
        "a throttled call must not be applied"
    );
    assert!(
        injector.injected("PutItem", Fault::Throttle) >= 2,
        "the SDK retried the throttle"
    );
}

#[tokio::test]
async fn a_throttled_sqs_send_takes_no_effect_and_other_operations_pass() {
    let injector = FaultInjector::default();
    let client = faults::sqs_client(&sdk_config(&Moto::shared().endpoint), &injector);
    let url = client
        .create_queue()
        .queue_name(format!("faults-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    injector.next("SendMessage", Fault::Throttle, 10);

    let sent = client.send_message().queue_url(&url).message_body("x").send().await;

    assert!(sent.is_err());
    let received = client
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .expect("receive passes");
    assert!(received.messages.unwrap_or_default().is_empty(), "nothing was sent");
}
