//! Wire-level tests: the real `aws-sdk-bedrockagentcore` client against the emulator over
//! HTTP on 127.0.0.1, plus a tiny agent behind it for forwarding.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcore_emulator::lifecycle::{LifecycleConfig, SessionState};
use agentcore_emulator::{Emulator, EmulatorConfig, FaultsUpdate};
use aws_sdk_bedrockagentcore::operation::invoke_agent_runtime::InvokeAgentRuntimeError;
use aws_sdk_bedrockagentcore::operation::stop_runtime_session::StopRuntimeSessionError;
use aws_sdk_bedrockagentcore::primitives::Blob;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn invoke_returns_the_agent_payload_and_echoes_the_session_id() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(1);

    let output = invoke(&client, &id, &json!({"prompt": "hello"})).await.unwrap();

    assert_eq!(output.runtime_session_id(), Some(id.as_str()));
    assert_eq!(output.content_type(), "application/json");
    assert_eq!(
        body_json(output).await,
        json!({"echo": {"prompt": "hello"}, "sessionId": id})
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_invocation_lands_on_the_same_warm_microvm_as_the_admin_api_shows() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(2);

    let warmup = invoke(&client, &id, &json!({"type": "warmup"})).await.unwrap();
    assert_eq!(body_json(warmup).await, json!({"status": "warm"}));
    invoke(&client, &id, &json!({"n": 2})).await.unwrap();

    let sessions: Value = http()
        .get(format!("{}/admin/sessions", emulator.endpoint_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions[0]["sessionId"], json!(id));
    assert_eq!(sessions[0]["state"], json!("active"));
    assert_eq!(sessions[0]["generation"], json!(1));
    let cold: Vec<&Value> = sessions[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["cold"])
        .collect();
    assert_eq!(cold, [&json!(true), &json!(false)]);

    let stats: Value = http()
        .get(format!("{}/admin/stats", emulator.endpoint_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["creations"], json!(1));
    assert_eq!(stats["warm"], json!(1));
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn creations_beyond_the_rate_are_a_typed_throttling_exception() {
    let (emulator, client) = start(fast(LifecycleConfig {
        creation_rate_per_sec: 1.0,
        ..LifecycleConfig::default()
    }))
    .await;

    invoke(&client, &session(1), &json!({})).await.unwrap();
    let err = invoke(&client, &session(2), &json!({})).await.unwrap_err();

    assert!(
        matches!(err, InvokeAgentRuntimeError::ThrottlingException(_)),
        "{err:?}"
    );
    assert_eq!(emulator.stats().throttled, 1);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn throttle_all_set_over_http_throttles_new_sessions_until_cleared() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let http = http();
    let faults_url = format!("{}/admin/faults", emulator.endpoint_url());

    let report: Value = http
        .post(&faults_url)
        .json(&json!({"throttleAll": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["throttleAll"], json!(true));
    let err = invoke(&client, &session(1), &json!({})).await.unwrap_err();
    assert!(
        matches!(err, InvokeAgentRuntimeError::ThrottlingException(_)),
        "{err:?}"
    );

    http.post(&faults_url)
        .json(&json!({"throttleAll": false}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    invoke(&client, &session(1), &json!({})).await.unwrap();
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn creations_beyond_the_active_cap_are_a_service_quota_exceeded_exception() {
    let (emulator, client) = start(fast(LifecycleConfig {
        max_active_sessions: 1,
        ..LifecycleConfig::default()
    }))
    .await;

    invoke(&client, &session(1), &json!({})).await.unwrap();
    let err = invoke(&client, &session(2), &json!({})).await.unwrap_err();

    assert!(
        matches!(err, InvokeAgentRuntimeError::ServiceQuotaExceededException(_)),
        "{err:?}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_session_is_gone_and_its_id_cold_starts_again() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(3);
    let stop = || {
        client
            .stop_runtime_session()
            .agent_runtime_arn(ARN)
            .qualifier("DEFAULT")
            .runtime_session_id(&id)
            .send()
    };

    invoke(&client, &id, &json!({})).await.unwrap();
    let stopped = stop().await.unwrap();
    assert_eq!(stopped.runtime_session_id(), Some(id.as_str()));
    assert_eq!(stopped.status_code(), Some(200));

    let again = stop().await.unwrap_err().into_service_error();
    assert!(
        matches!(again, StopRuntimeSessionError::ResourceNotFoundException(_)),
        "{again:?}"
    );

    invoke(&client, &id, &json!({})).await.unwrap();
    let view = &emulator.sessions()[0];
    assert_eq!(view.generation, 2);
    assert_eq!(view.state, SessionState::Active);
    assert!(view.history.iter().all(|h| h.cold));
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_requests_are_validation_exceptions() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;

    let short = invoke(&client, "too-short", &json!({})).await.unwrap_err();
    assert!(
        matches!(short, InvokeAgentRuntimeError::ValidationException(_)),
        "{short:?}"
    );

    let bad_arn = client
        .invoke_agent_runtime()
        .agent_runtime_arn("not-an-arn")
        .runtime_session_id(session(1))
        .payload(Blob::new("{}"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(bad_arn, InvokeAgentRuntimeError::ValidationException(_)),
        "{bad_arn:?}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unconfigured_runtime_is_a_resource_not_found_exception() {
    let (emulator, client) = start(EmulatorConfig {
        runtime_arns: vec!["arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/other".into()],
        ..fast(LifecycleConfig::default())
    })
    .await;

    let err = invoke(&client, &session(1), &json!({})).await.unwrap_err();

    assert!(
        matches!(err, InvokeAgentRuntimeError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn injected_faults_surface_as_internal_server_and_runtime_client_errors() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;

    emulator
        .set_faults(FaultsUpdate {
            error_rate: Some(1.0),
            ..FaultsUpdate::default()
        })
        .unwrap();
    let err = invoke(&client, &session(1), &json!({})).await.unwrap_err();
    assert!(
        matches!(err, InvokeAgentRuntimeError::InternalServerException(_)),
        "{err:?}"
    );

    emulator
        .set_faults(FaultsUpdate {
            error_rate: Some(0.0),
            crash_rate: Some(1.0),
            ..FaultsUpdate::default()
        })
        .unwrap();
    let err = invoke(&client, &session(1), &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeAgentRuntimeError::RuntimeClientError(_)), "{err:?}");
    assert_eq!(emulator.sessions()[0].state, SessionState::Crashed);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn crashing_a_session_over_http_makes_its_next_invocation_cold() {
    let (emulator, client) = start(fast(LifecycleConfig::default())).await;
    let id = session(4);
    invoke(&client, &id, &json!({})).await.unwrap();

    let report: Value = http()
        .post(format!("{}/admin/faults", emulator.endpoint_url()))
        .json(&json!({"crashSessions": [id, session(99)]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["crashedSessions"], json!([id]));

    invoke(&client, &id, &json!({})).await.unwrap();
    assert_eq!(emulator.sessions()[0].generation, 2);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn latency_is_slept_before_the_answer() {
    let (emulator, client) = start(EmulatorConfig {
        lifecycle: LifecycleConfig {
            latency_scale: 0.1,
            ..LifecycleConfig::default()
        },
        seed: Some(1),
        ..EmulatorConfig::default()
    })
    .await;

    let started = std::time::Instant::now();
    invoke(&client, &session(1), &json!({})).await.unwrap();

    // A cold start at 0.1 scale is ~290 ms; far below that means no latency was applied.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn forwarding_passes_the_session_header_payload_and_content_type_to_the_agent() {
    let (agent_url, seen) = recording_agent(200).await;
    let (emulator, client) = start(EmulatorConfig {
        agent_url: Some(agent_url),
        agent_timeout: Duration::from_secs(5),
        ..fast(LifecycleConfig::default())
    })
    .await;
    let id = session(5);

    let output = invoke(&client, &id, &json!({"doc": 1})).await.unwrap();

    assert_eq!(output.content_type(), "text/plain");
    let body = output.response.collect().await.unwrap().into_bytes();
    assert_eq!(body.as_ref(), b"from the agent");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].session_header.as_deref(), Some(id.as_str()));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].body, br#"{"doc":1}"#);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn forwarding_passes_the_contract_headers_and_not_the_callers_credentials() {
    let (agent_url, seen) = recording_agent(200).await;
    let (emulator, client) = start(EmulatorConfig {
        agent_url: Some(agent_url),
        agent_timeout: Duration::from_secs(5),
        ..fast(LifecycleConfig::default())
    })
    .await;

    client
        .invoke_agent_runtime()
        .agent_runtime_arn(ARN)
        .runtime_session_id(session(5))
        .content_type("application/json")
        .accept("application/json")
        .trace_id("Root=1-00000000-000000000000000000000001")
        .runtime_user_id("user-1")
        .payload(Blob::new("{}"))
        .customize()
        .mutate_request(|request| {
            request
                .headers_mut()
                .insert("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tenant", "tenant-1");
        })
        .send()
        .await
        .unwrap();

    let headers = seen.lock().unwrap()[0].headers.clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("accept"), "application/json");
    assert_eq!(header("x-amzn-trace-id"), "Root=1-00000000-000000000000000000000001");
    assert_eq!(header("x-amzn-bedrock-agentcore-runtime-user-id"), "user-1");
    assert_eq!(header("x-amzn-bedrock-agentcore-runtime-custom-tenant"), "tenant-1");
    assert_eq!(header("x-amzn-bedrock-agentcore-runtime-request-id").len(), 36);
    for absent in ["authorization", "x-amz-date", "x-amz-user-agent"] {
        assert!(!headers.contains_key(absent), "{absent} reached the agent");
    }
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_or_unreachable_agent_is_a_runtime_client_error() {
    let (failing_url, _) = recording_agent(500).await;
    // Bound and dropped at once: nothing listens there any more.
    let unreachable_url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };

    for agent_url in [failing_url, unreachable_url] {
        let (emulator, client) = start(EmulatorConfig {
            agent_url: Some(agent_url.clone()),
            agent_timeout: Duration::from_secs(5),
            ..fast(LifecycleConfig::default())
        })
        .await;
        let err = invoke(&client, &session(6), &json!({})).await.unwrap_err();
        assert!(
            matches!(err, InvokeAgentRuntimeError::RuntimeClientError(_)),
            "{agent_url}: {err:?}"
        );
        emulator.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn spawn_refuses_a_non_loopback_listen_address() {
    let err = Emulator::spawn(EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, agentcore_emulator::Error::NonLoopbackListen(_)));
}

/// An agent that records the session-ended notices it receives.
async fn terminate_recording_agent() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let recorded = notices.clone();
    let app = axum::Router::new()
        .route("/invocations", axum::routing::post(|| async { "ok" }))
        .route(
            "/emulator/terminate",
            axum::routing::post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let session = headers
                    .get(warmpool_core::session::SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                recorded.lock().unwrap().push((session, body));
                async { "{}" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, notices)
}

#[tokio::test]
async fn the_agent_is_told_when_a_session_crashes_or_is_stopped() {
    let (agent_url, notices) = terminate_recording_agent().await;
    let (emulator, client) = start(EmulatorConfig {
        agent_url: Some(agent_url),
        agent_timeout: Duration::from_secs(5),
        ..fast(LifecycleConfig::default())
    })
    .await;
    let (crashed, stopped) = (session(6), session(7));
    invoke(&client, &crashed, &json!({})).await.unwrap();
    invoke(&client, &stopped, &json!({})).await.unwrap();

    http()
        .post(format!("{}/admin/faults", emulator.endpoint_url()))
        .json(&json!({"crashSessions": [crashed]}))
        .send()
        .await
        .unwrap();
    client
        .stop_runtime_session()
        .agent_runtime_arn(ARN)
        .qualifier("DEFAULT")
        .runtime_session_id(&stopped)
        .client_token("stop-7-token-000000000000000000000")
        .send()
        .await
        .unwrap();

    assert_eq!(
        notices.lock().unwrap().clone(),
        vec![
            (crashed, json!({"reason": "crashed"})),
            (stopped, json!({"reason": "stopped"}))
        ]
    );
    emulator.shutdown().await.unwrap();
}
