//! Faults injected into real SDK clients at the wire, through the smithy runtime's interceptor
//! API: the request is serialized, signed and sent by the SDK as usual, and the interceptor
//! decides per attempt what the server sees and what the caller hears.
//!
//! - [`Fault::LoseAnswer`]: the request reaches moto and takes effect; its answer is replaced
//!   with a 500. The SDK's standard retry then sends it again, as it would on AWS, so a
//!   conditional write that landed comes back as a failed condition on the retry.
//! - [`Fault::DropAnswer`]: the request takes effect and the caller gets a transport error
//!   instead of its answer (what a reset connection after the write gives). The SDK does not
//!   retry it: the caller alone must find out whether its write landed.
//! - [`Fault::Throttle`]: the request never takes effect; the caller hears a
//!   `ThrottlingException`. Only for the AWS JSON protocols (SQS, DynamoDB): the request is
//!   sent to moto under an operation name it does not know, so nothing is applied.
//!
//! Rules match an operation by name (`PutItem`, `SendMessage`, ...) and fire for the next N
//! attempts, or at a rate from a seeded generator (the soak). Every injection is counted.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    LoseAnswer,
    DropAnswer,
    Throttle,
}

#[derive(Debug)]
struct Rule {
    operation: String,
    fault: Fault,
    /// `Some(n)`: fires for the next n matching attempts; `None`: fires at `rate`.
    remaining: Option<u64>,
    rate: f64,
}

#[derive(Debug)]
struct State {
    rules: Vec<Rule>,
    injected: BTreeMap<(String, Fault), u64>,
    rng: StdRng,
}

/// A handle shared by the test and every client it is attached to.
#[derive(Clone, Debug)]
pub struct FaultInjector {
    state: Arc<Mutex<State>>,
}

/// The decision for one attempt, kept in the attempt's config bag between hooks.
#[derive(Debug, Clone, Copy)]
struct Decision(Option<Fault>);

impl Storable for Decision {
    type Storer = StoreReplace<Self>;
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self::seeded(0)
    }
}

impl FaultInjector {
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rules: Vec::new(),
                injected: BTreeMap::new(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next `count` attempts of `operation` get `fault`.
    pub fn next(&self, operation: &str, fault: Fault, count: u64) -> &Self {
        self.state().rules.push(Rule {
            operation: operation.to_string(),
            fault,
            remaining: Some(count),
            rate: 1.0,
        });
        self
    }

    /// Every attempt of `operation` gets `fault` with probability `rate`.
    pub fn rate(&self, operation: &str, fault: Fault, rate: f64) -> &Self {
        self.state().rules.push(Rule {
            operation: operation.to_string(),
            fault,
            remaining: None,
            rate,
        });
        self
    }

    /// Removes every rule; the counts stay.
    pub fn clear(&self) {
        self.state().rules.clear();
    }

    /// How many attempts of `operation` got `fault`.
    pub fn injected(&self, operation: &str, fault: Fault) -> u64 {
        self.state()
            .injected
            .get(&(operation.to_string(), fault))
            .copied()
            .unwrap_or(0)
    }

    /// Injections per fault kind, over all operations.
    pub fn totals(&self) -> BTreeMap<Fault, u64> {
        let mut totals = BTreeMap::new();
        for ((_, fault), n) in &self.state().injected {
            *totals.entry(*fault).or_insert(0) += n;
        }
        totals
    }

    fn decide(&self, operation: &str) -> Option<Fault> {
        let mut state = self.state();
        let State { rules, injected, rng } = &mut *state;
        let fault =
            rules
                .iter_mut()
                .filter(|r| r.operation == operation)
                .find_map(|rule| match &mut rule.remaining {
                    Some(0) => None,
                    Some(n) => {
                        *n -= 1;
                        Some(rule.fault)
                    }
                    None => (rng.random::<f64>() < rule.rate).then_some(rule.fault),
                })?;
        *injected.entry((operation.to_string(), fault)).or_insert(0) += 1;
        Some(fault)
    }
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_default()
}

fn json_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    let mut response = Response::new(
        StatusCode::try_from(status).unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is a status")),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response.headers_mut().insert("x-amzn-errortype", code.to_string());
    response
        .headers_mut()
        .insert("x-amzn-query-error", format!("{code};Sender"));
    response
}

impl Intercept for FaultInjector {
    fn name(&self) -> &'static str {
        "warmpool-fault-injector"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let fault = self.decide(&operation(cfg));
        if fault == Some(Fault::Throttle) {
            // An operation moto does not know: it answers an error and changes nothing.
            let request = context.request_mut();
            if let Some(target) = request.headers().get("x-amz-target").map(str::to_string) {
                let service = target.split('.').next().unwrap_or_default().to_string();
                request
                    .headers_mut()
                    .insert("x-amz-target", format!("{service}.WarmpoolInjectedThrottle"));
            }
            *request.body_mut() = SdkBody::from("{}");
            request.headers_mut().insert("content-length", "2");
        }
        cfg.interceptor_state().store_put(Decision(fault));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match cfg.load::<Decision>() {
            Some(Decision(Some(Fault::DropAnswer))) => {
                cfg.interceptor_state().store_put(Decision(None));
                Err("injected fault: the connection closed before the answer arrived".into())
            }
            _ => Ok(()),
        }
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let replacement = match cfg.load::<Decision>() {
            Some(Decision(Some(Fault::LoseAnswer))) => {
                json_error(500, "InternalServerError", "injected fault: the answer was lost")
            }
            Some(Decision(Some(Fault::Throttle))) => {
                json_error(400, "ThrottlingException", "injected fault: rate exceeded")
            }
            _ => return Ok(()),
        };
        *context.response_mut() = replacement;
        cfg.interceptor_state().store_put(Decision(None));
        Ok(())
    }
}

/// A DynamoDB client for the local stack with `faults` attached.
pub fn dynamodb_client(sdk: &aws_config::SdkConfig, faults: &FaultInjector) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .interceptor(faults.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client for the local stack with `faults` attached.
pub fn sqs_client(sdk: &aws_config::SdkConfig, faults: &FaultInjector) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk)
        .interceptor(faults.clone())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}
