//! The replenish trigger as an asynchronous (`Event`) Lambda invoke.

use super::sdk::describe;
use crate::error::TriggerError;
use crate::ports::ReplenishTrigger;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

#[derive(Debug, Clone)]
pub struct LambdaReplenishTrigger {
    client: Client,
    function_name: String,
}

impl LambdaReplenishTrigger {
    pub fn new(client: Client, function_name: impl Into<String>) -> Self {
        Self {
            client,
            function_name: function_name.into(),
        }
    }
}

impl ReplenishTrigger for LambdaReplenishTrigger {
    async fn request(&self, count: u32) -> Result<(), TriggerError> {
        let payload = serde_json::json!({ "count": count }).to_string();
        let output = self
            .client
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|error| TriggerError {
                message: describe(&error).message,
                source: Some(Box::new(error)),
            })?;
        // Lambda answers 202 once the event is queued; anything else was not accepted.
        match output.status_code {
            202 => Ok(()),
            status => Err(TriggerError {
                message: format!("Event invoke answered status {status}, not 202"),
                source: None,
            }),
        }
    }
}
