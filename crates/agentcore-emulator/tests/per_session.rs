//! The per-session-process mode with a real agent nobody here wrote: AWS's `bedrock-agentcore`
//! Python SDK running the warm-pool reference handler (`tests/agents/warmup_agent.py`), one
//! process per session, driven through the real `aws-sdk-bedrockagentcore` client. The agent
//! answers each turn with its in-memory turn count and its process id, which is what makes
//! isolation and restarts observable.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentcore_emulator::lifecycle::{LifecycleConfig, Platform, SessionState};
use agentcore_emulator::{AgentCommand, Emulator, EmulatorConfig, RunningEmulator};
use aws_sdk_bedrockagentcore::operation::invoke_agent_runtime::InvokeAgentRuntimeError;
use serde_json::{Value, json};
use support::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python with `bedrock-agentcore`, as `scripts/bootstrap.sh` installs it.
fn python() -> PathBuf {
    let venv = workspace().join(".venv");
    let has_sdk = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|python| python.path().join("site-packages/bedrock_agentcore").is_dir());
    assert!(
        has_sdk,
        "{} has no bedrock-agentcore: run scripts/bootstrap.sh to install the pinned SDK",
        venv.display()
    );
    venv.join("bin/python")
}

fn warmup_agent() -> AgentCommand {
    let script = workspace().join("tests/agents/warmup_agent.py");
    AgentCommand::new(python().to_string_lossy(), [script.to_string_lossy()])
}

fn per_session(command: AgentCommand, lifecycle: LifecycleConfig) -> EmulatorConfig {
    EmulatorConfig {
        agent_command: Some(command),
        agent_timeout: Duration::from_secs(10),
        agent_start_timeout: Duration::from_secs(20),
        ..fast(lifecycle)
    }
}

/// One turn: the agent's answer as (turns, pid).
async fn turn(client: &aws_sdk_bedrockagentcore::Client, id: &str, extra: Value) -> (u64, u32) {
    let mut payload = json!({"prompt": "count"});
    if let (Some(payload), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
        payload.extend(extra.clone());
    }
    let answer = invoke_json(client, id, &payload).await;
    assert_eq!(
        answer["sessionId"],
        json!(id),
        "the agent saw another session header: {answer}"
    );
    let turns = answer["turns"]
        .as_u64()
        .unwrap_or_else(|| panic!("no turns in {answer}"));
    let pid = answer["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {answer}"));
    (turns, u32::try_from(pid).unwrap())
}

/// The processes of a process group, read from /proc (zombies count as gone).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let pgrp: u32 = fields.nth(1)?.parse().ok()?;
            (pgrp == pgid && state != "Z").then_some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    !group_members(pid).is_empty()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
}

/// Polls until `gone` holds, for at most `within`.
async fn eventually(within: Duration, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if gone() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gone()
}

fn ended(emulator: &RunningEmulator, reason: &str) -> u64 {
    let stats = emulator.agent_processes().expect("per-session mode");
    stats.ended.get(reason).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_pooled_session_lands_warm_on_its_own_process() {
    let (emulator, client) = start(per_session(warmup_agent(), LifecycleConfig::default())).await;
    let id = session(1);

    let cold_started = Instant::now();
    let warmup = invoke_json(&client, &id, &json!({"type": "warmup"})).await;
    let cold = cold_started.elapsed();
    assert_eq!(warmup, json!({"status": "warm"}));

    let warm_started = Instant::now();
    let (turns, pid) = turn(&client, &id, json!({})).await;
    let warm = warm_started.elapsed();

    assert_eq!(turns, 1, "the warmup must not count as a turn");
    assert!(alive(pid));
    assert!(warm < cold, "warm {warm:?} is not faster than the cold start {cold:?}");
    let view = &emulator.sessions()[0];
    let cold_flags: Vec<bool> = view.history.iter().map(|h| h.cold).collect();
    assert_eq!(cold_flags, [true, false]);
    assert_eq!(
        emulator.agent_processes().unwrap().started,
        1,
        "one process for the session"
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_sessions_never_see_each_others_turns() {
    let (emulator, client) = start(per_session(warmup_agent(), LifecycleConfig::default())).await;
    let (a, b) = (session(2), session(3));

    let (a1, pid_a) = turn(&client, &a, json!({})).await;
    let (a2, _) = turn(&client, &a, json!({})).await;
    let (b1, pid_b) = turn(&client, &b, json!({})).await;
    let (a3, pid_a_again) = turn(&client, &a, json!({})).await;

    assert_eq!((a1, a2, b1, a3), (1, 2, 1, 3), "turn counts leaked between sessions");
    assert_ne!(pid_a, pid_b, "two sessions shared one agent process");
    assert_eq!(pid_a, pid_a_again);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_or_crashed_session_comes_back_as_a_new_process() {
    let (emulator, client) = start(per_session(warmup_agent(), LifecycleConfig::default())).await;
    let (stopped, crashed) = (session(4), session(5));
    turn(&client, &stopped, json!({})).await;
    let (_, stopped_pid) = turn(&client, &stopped, json!({})).await;
    let (_, crashed_pid) = turn(&client, &crashed, json!({})).await;

    stop(&client, &stopped).await.unwrap();
    assert!(
        !alive(stopped_pid),
        "the stop answered while its agent process still runs"
    );
    let report = set_faults(&emulator, json!({"crashSessions": [crashed]})).await;
    assert_eq!(report["crashedSessions"], json!([crashed]));
    assert!(
        eventually(Duration::from_secs(3), || !alive(crashed_pid)).await,
        "crashed agent still runs"
    );

    let (turns, pid) = turn(&client, &stopped, json!({})).await;
    assert_eq!(turns, 1, "the stopped session's memory survived");
    assert_ne!(pid, stopped_pid);
    let (turns, pid) = turn(&client, &crashed, json!({})).await;
    assert_eq!(turns, 1, "the crashed session's memory survived");
    assert_ne!(pid, crashed_pid);
    assert_eq!((ended(&emulator, "stopped"), ended(&emulator, "crashed")), (1, 1));
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idle_expired_session_is_stopped_and_comes_back_as_a_new_process() {
    let lifecycle = LifecycleConfig {
        idle_timeout: Duration::from_secs(1),
        ..LifecycleConfig::default()
    };
    let (emulator, client) = start(per_session(warmup_agent(), lifecycle)).await;
    let id = session(6);
    let (_, pid) = turn(&client, &id, json!({})).await;

    // The reaper ends the process soon after the idle timeout, with no invocation needed.
    assert!(
        eventually(Duration::from_secs(4), || ended(&emulator, "idleExpired") == 1).await,
        "the agent outlived its session's idle timeout"
    );
    assert!(!alive(pid));
    assert_eq!(emulator.sessions()[0].state, SessionState::IdleExpired);

    let (turns, new_pid) = turn(&client, &id, json!({})).await;
    assert_eq!(turns, 1);
    assert_ne!(new_pid, pid);
    assert_eq!(emulator.sessions()[0].generation, 2);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_max_lifetime_ends_the_process_even_of_a_busy_session() {
    let lifecycle = LifecycleConfig {
        idle_timeout: Duration::from_secs(60),
        // Longer than any cold start, so the lifetime cannot end mid-start on a loaded machine.
        max_lifetime: Duration::from_secs(5),
        ..LifecycleConfig::default()
    };
    let (emulator, client) = start(per_session(warmup_agent(), lifecycle)).await;
    let id = session(7);
    let (_, pid) = turn(&client, &id, json!({"backgroundSeconds": 30})).await;

    assert!(alive(pid));
    assert!(
        eventually(Duration::from_secs(8), || ended(&emulator, "lifetimeExpired") == 1).await,
        "outlived max lifetime"
    );
    assert!(!alive(pid));
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn healthy_busy_keeps_a_session_past_its_idle_timeout_until_the_work_ends() {
    let lifecycle = LifecycleConfig {
        idle_timeout: Duration::from_secs(1),
        ..LifecycleConfig::default()
    };
    let (emulator, client) = start(per_session(warmup_agent(), lifecycle)).await;
    let id = session(8);
    let (_, pid) = turn(&client, &id, json!({"backgroundSeconds": 2.5})).await;

    // Twice the idle timeout later, the background task still runs: /ping says HealthyBusy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = emulator.sessions().remove(0);
    assert_eq!(view.state, SessionState::Active, "{view:?}");
    assert!(view.busy, "{view:?}");
    assert!(alive(pid), "the busy session's agent was stopped");

    // Once Healthy again the idle clock runs from then, and the session ends after it.
    assert!(
        eventually(Duration::from_secs(4), || ended(&emulator, "idleExpired") == 1).await,
        "the session never idled out after its work ended"
    );
    assert!(!alive(pid));
    let view = emulator.sessions().remove(0);
    assert_eq!(view.state, SessionState::IdleExpired, "{view:?}");
    assert!(view.idle_since_ms >= 2_000, "idle clock did not restart: {view:?}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_invocation_in_flight_holds_the_idle_timeout_even_after_its_caller_gave_up() {
    let lifecycle = LifecycleConfig {
        idle_timeout: Duration::from_secs(1),
        ..LifecycleConfig::default()
    };
    let (emulator, client) = start(per_session(warmup_agent(), lifecycle)).await;
    let impatient = support::client(&emulator, Some(Duration::from_millis(300))).await;
    let id = session(13);
    let (_, pid) = turn(&client, &id, json!({})).await;

    let gave_up = invoke_raw(&impatient, &id, &json!({"workSeconds": 1.5})).await;
    assert!(gave_up.is_err(), "{gave_up:?}");

    // Past the idle timeout counted from admission, the agent is still working on it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(emulator.sessions()[0].state, SessionState::Active);
    assert!(alive(pid));
    // After the agent answered (to nobody), the idle clock runs and the session ends.
    assert!(
        eventually(Duration::from_secs(4), || ended(&emulator, "idleExpired") == 1).await,
        "the session never idled out after its invocation ended"
    );
    assert!(!alive(pid));
    let (turns, _) = turn(&client, &id, json!({})).await;
    assert_eq!(turns, 1);
    emulator.shutdown().await.unwrap();
}

/// `sh` execs into the agent, so the agent leads the group; the `sleep` it leaves behind is in
/// the same group, as a wrapper's children would be.
fn agent_with_a_child() -> AgentCommand {
    let script = workspace().join("tests/agents/warmup_agent.py");
    AgentCommand::new(
        "/bin/sh",
        [
            "-c".into(),
            r#"sleep 300 & exec "$0" "$1""#.into(),
            python().to_string_lossy().into_owned(),
            script.to_string_lossy().into_owned(),
        ],
    )
}

#[tokio::test]
async fn no_agent_process_survives_the_emulators_shutdown() {
    let (emulator, client) = start(per_session(agent_with_a_child(), LifecycleConfig::default())).await;
    let (_, a) = turn(&client, &session(9), json!({})).await;
    let (_, b) = turn(&client, &session(10), json!({})).await;
    for pgid in [a, b] {
        assert!(
            group_members(pgid).len() >= 2,
            "expected the agent and its child in group {pgid}"
        );
    }

    emulator.shutdown().await.unwrap();

    for pgid in [a, b] {
        assert!(
            eventually(Duration::from_secs(1), || group_members(pgid).is_empty()).await,
            "left running in group {pgid}: {:?}",
            group_members(pgid)
        );
    }
}

#[tokio::test]
async fn dropping_the_emulator_without_a_shutdown_stops_its_agents_too() {
    let (emulator, client) = start(per_session(agent_with_a_child(), LifecycleConfig::default())).await;
    let (_, pgid) = turn(&client, &session(11), json!({})).await;

    drop(emulator);

    assert!(
        eventually(Duration::from_secs(5), || group_members(pgid).is_empty()).await,
        "left running in group {pgid}: {:?}",
        group_members(pgid)
    );
}

#[tokio::test]
async fn an_agent_that_never_becomes_healthy_fails_the_invocation_as_a_broken_container_does() {
    let exits = AgentCommand::new("/bin/sh", ["-c", "exit 3"]);
    let never_serves = AgentCommand::new("/bin/sh", ["-c", "exec sleep 30"]);
    for (command, start_timeout) in [
        (exits, Duration::from_secs(5)),
        (never_serves, Duration::from_millis(500)),
    ] {
        let (emulator, client) = start(EmulatorConfig {
            agent_start_timeout: start_timeout,
            ..per_session(command.clone(), LifecycleConfig::default())
        })
        .await;
        let started = Instant::now();

        let err = invoke(&client, &session(12), &json!({})).await.unwrap_err();

        assert!(
            matches!(err, InvokeAgentRuntimeError::RuntimeClientError(_)),
            "{command:?}: {err:?}"
        );
        assert!(
            started.elapsed() < start_timeout + Duration::from_secs(3),
            "{command:?}"
        );
        assert_eq!(emulator.sessions()[0].state, SessionState::Crashed, "{command:?}");
        let stats = emulator.agent_processes().unwrap();
        assert_eq!(
            (stats.started, stats.failed_starts, stats.live),
            (0, 1, 0),
            "{command:?}"
        );
        emulator.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn when_v2_calls_the_python_agents_build_hook_then_every_session_still_gets_its_own_instance() {
    let lifecycle = LifecycleConfig {
        platform: Platform::V2,
        ..LifecycleConfig::default()
    };
    let cfg = EmulatorConfig {
        build_hook: Some("/warmup".into()),
        ..per_session(warmup_agent(), lifecycle)
    };
    let (emulator, client) = start(cfg).await;
    let (a, b) = (session(40), session(41));

    let first_a = invoke_json(&client, &a, &json!({"prompt": "count"})).await;
    let first_b = invoke_json(&client, &b, &json!({"prompt": "count"})).await;
    let again_a = invoke_json(&client, &a, &json!({"prompt": "count"})).await;

    assert_eq!(first_a["builtWithHook"], json!(true), "{first_a}");
    assert_eq!(first_b["builtWithHook"], json!(true), "{first_b}");
    let instance = |answer: &Value| answer["instance"].as_str().map(str::to_owned);
    assert!(instance(&first_a).is_some(), "{first_a}");
    assert_ne!(
        instance(&first_a),
        instance(&first_b),
        "two sessions share start-up randomness"
    );
    assert_eq!(instance(&first_a), instance(&again_a), "one session keeps its instance");
    assert_eq!(emulator.agent_processes().unwrap().build_hooks, 2);
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn when_a_build_hook_is_asked_for_on_v1_or_on_a_reserved_path_then_the_emulator_refuses_to_start() {
    let hooked = |platform, path: &str| EmulatorConfig {
        build_hook: Some(path.into()),
        ..per_session(
            warmup_agent(),
            LifecycleConfig {
                platform,
                ..LifecycleConfig::default()
            },
        )
    };
    let v1 = Emulator::spawn(hooked(Platform::V1, "/warmup")).await.err().unwrap();
    assert!(v1.to_string().contains("platform V2"), "{v1}");
    let reserved = Emulator::spawn(hooked(Platform::V2, "/ping")).await.err().unwrap();
    assert!(
        reserved.to_string().contains("other than /invocations and /ping"),
        "{reserved}"
    );
}
