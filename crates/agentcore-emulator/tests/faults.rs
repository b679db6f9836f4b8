//! Faults after admission and on StopRuntimeSession, injected through `POST /admin/faults` and
//! seen through the real `aws-sdk-bedrockagentcore` client: the agent acted but the answer was
//! lost or came too late; a stop was throttled or failed and did not take effect.

mod support;

use std::time::{Duration, Instant};

use agentcore_emulator::EmulatorConfig;
use agentcore_emulator::lifecycle::{LifecycleConfig, SessionState};
use aws_sdk_bedrockagentcore::error::SdkError;
use aws_sdk_bedrockagentcore::operation::stop_runtime_session::StopRuntimeSessionError;
use serde_json::json;
use support::*;

async fn with_recording_agent() -> (
    agentcore_emulator::RunningEmulator,
    aws_sdk_bedrockagentcore::Client,
    std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
) {
    let (agent_url, seen) = recording_agent(200).await;
    let (emulator, client) = start(EmulatorConfig {
        agent_url: Some(agent_url),
        agent_timeout: Duration::from_secs(5),
        ..fast(LifecycleConfig::default())
    })
    .await;
    (emulator, client, seen)
}

fn state_of(emulator: &agentcore_emulator::RunningEmulator, id: &str) -> SessionState {
    emulator
        .sessions()
        .into_iter()
        .find(|v| v.session_id == id)
        .map(|v| v.state)
        .expect("the emulator knows the session")
}

#[tokio::test]
async fn when_an_answer_is_lost_after_admission_the_agent_acted_and_the_client_sees_no_answer() {
    let (emulator, client, seen) = with_recording_agent().await;
    let id = session(1);
    set_faults(&emulator, json!({"nextLostAnswers": 1})).await;

    let err = invoke_raw(&client, &id, &json!({"doc": 1})).await.unwrap_err();

    // No service error: the connection closed without an HTTP answer.
    assert!(
        matches!(err, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)),
        "{err:?}"
    );
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 1, "the agent must have received the invocation");
    assert_eq!(seen_now[0].session_header.as_deref(), Some(id.as_str()));
    assert_eq!(
        state_of(&emulator, &id),
        SessionState::Active,
        "the session was created"
    );

    // The count is spent: the next call is answered, on the same warm microVM.
    invoke(&client, &id, &json!({"doc": 2})).await.unwrap();
    let view = emulator.sessions().into_iter().find(|v| v.session_id == id).unwrap();
    assert_eq!((view.generation, view.invocation_count), (1, 2));
    let stats = admin_get(&emulator, "stats").await;
    assert_eq!(stats["lostAnswers"], json!(1), "{stats}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_an_answer_is_late_the_client_gives_up_while_the_agent_has_acted() {
    let (emulator, _, seen) = with_recording_agent().await;
    let impatient = client(&emulator, Some(Duration::from_millis(300))).await;
    let id = session(2);
    set_faults(&emulator, json!({"lateAnswerMs": 2_000, "nextLateAnswers": 1})).await;

    let started = Instant::now();
    let err = invoke_raw(&impatient, &id, &json!({"doc": 1})).await.unwrap_err();

    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the agent must have acted before the timeout"
    );
    // Only the next one was late.
    invoke(&impatient, &id, &json!({"doc": 2})).await.unwrap();
    let stats = admin_get(&emulator, "stats").await;
    assert_eq!(stats["lateAnswers"], json!(1), "{stats}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_late_answer_reaches_a_patient_client_after_the_delay() {
    let (emulator, client, _) = with_recording_agent().await;
    set_faults(&emulator, json!({"lateAnswerMs": 400, "lateAnswerRate": 1.0})).await;

    let started = Instant::now();
    invoke(&client, &session(3), &json!({})).await.unwrap();

    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_a_stop_is_throttled_it_does_not_take_effect_and_a_retry_succeeds() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(4);
    invoke(&client, &id, &json!({})).await.unwrap();
    set_faults(&emulator, json!({"nextStopThrottles": 1})).await;

    let err = stop(&client, &id).await.unwrap_err();
    assert!(
        matches!(err, StopRuntimeSessionError::ThrottlingException(_)),
        "{err:?}"
    );
    assert_eq!(
        state_of(&emulator, &id),
        SessionState::Active,
        "a throttled stop must not stop"
    );

    stop(&client, &id).await.unwrap();
    assert_eq!(state_of(&emulator, &id), SessionState::Stopped);
    let stats = admin_get(&emulator, "stats").await;
    assert_eq!(
        (stats["stopThrottles"].clone(), stats["stops"].clone()),
        (json!(1), json!(1)),
        "{stats}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_a_stop_fails_with_an_internal_error_the_session_keeps_running() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(5);
    invoke(&client, &id, &json!({})).await.unwrap();
    set_faults(&emulator, json!({"nextStopErrors": 1})).await;

    let err = stop(&client, &id).await.unwrap_err();
    assert!(
        matches!(err, StopRuntimeSessionError::InternalServerException(_)),
        "{err:?}"
    );
    assert_eq!(state_of(&emulator, &id), SessionState::Active);
    let warm = invoke(&client, &id, &json!({})).await;
    assert!(warm.is_ok(), "{warm:?}");
    assert_eq!(emulator.sessions()[0].generation, 1, "still the same microVM");

    // At rate 1 every stop fails until the rate is lowered again.
    set_faults(&emulator, json!({"stopErrorRate": 1.0})).await;
    for _ in 0..3 {
        assert!(stop(&client, &id).await.is_err());
    }
    set_faults(&emulator, json!({"stopErrorRate": 0.0})).await;
    stop(&client, &id).await.unwrap();
    let stats = admin_get(&emulator, "stats").await;
    assert_eq!(
        (stats["stopErrors"].clone(), stats["stops"].clone()),
        (json!(4), json!(1)),
        "{stats}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn fault_updates_that_make_no_sense_are_refused_with_a_reason() {
    let (emulator, _) = start(fast(LifecycleConfig::default())).await;
    for bad in [
        json!({"lostAnswerRate": 1.5}),
        json!({"nextLateAnswers": 1}),
        json!({"stopThrottleRate": -0.1}),
        json!({"nextLostAnswers": -1}),
    ] {
        let response = http()
            .post(format!("{}/admin/faults", emulator.endpoint_url()))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad} was accepted");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{bad}: no reason given");
    }
    emulator.shutdown().await.unwrap();
}
