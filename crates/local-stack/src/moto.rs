//! moto (SQS, S3, DynamoDB, Lambda) as a child process, through `scripts/moto_server.py` (moto
//! with the patches described there) under `.venv/bin/python`, on 127.0.0.1.
//!
//! Before it starts, the moto in `.venv` must be the version `scripts/bootstrap.sh` pins: the
//! patches and the wire behaviour the tests rely on are only known for that one.
//!
//! moto runs under a shell that waits on its stdin, a pipe this process holds: when this
//! process ends, even by a panic or a signal, the pipe closes and the shell stops moto. So a
//! moto shared by a whole test binary (held in a static, never dropped) leaves no orphan.

use crate::error::Error;
use crate::process::Process;
use crate::workspace::Workspace;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// How long moto may take to accept connections.
const START_WITHIN: Duration = Duration::from_secs(60);
/// Bounds reading moto's version (a Python start and one import).
const VERSION_WITHIN: Duration = Duration::from_secs(30);

pub struct Moto {
    pub endpoint: String,
    process: Process,
}

impl Moto {
    /// Checks the version, starts moto on a free loopback port, waits for it and configures it.
    pub async fn start(workspace: &Workspace) -> Result<Moto, Error> {
        check_version(workspace).await?;
        let port = crate::free_loopback_port()?;
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#""$0" "$1" -H 127.0.0.1 -p "$2" >/dev/null 2>&1 & pid=$!; trap 'kill $pid 2>/dev/null' EXIT; cat >/dev/null"#)
            .arg(workspace.python())
            .arg(workspace.root.join("scripts/moto_server.py"))
            .arg(port.to_string());
        let process = Process::spawn("moto", command, None)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::ready::wait_tcp("moto", addr, START_WITHIN).await?;
        let endpoint = format!("http://{addr}");
        configure(&endpoint).await?;
        Ok(Moto { endpoint, process })
    }

    /// [`Moto::start`] from synchronous code, even inside an async runtime (a test's shared
    /// moto): the start runs on a thread of its own, with a runtime of its own.
    pub fn start_blocking(workspace: &Workspace) -> Result<Moto, Error> {
        let workspace = workspace.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| Error::Spawn {
                    what: "a runtime to start moto on".into(),
                    source,
                })?;
            runtime.block_on(Moto::start(&workspace))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Tool {
                what: "starting moto".into(),
                reason: "the starting thread panicked".into(),
            })
        })
    }

    /// The process, for a supervisor to own (the endpoint stays valid while it runs).
    pub fn into_process(self) -> (String, Process) {
        (self.endpoint, self.process)
    }
}

/// Lambda without Docker: moto accepts invokes and answers `Event` with 202.
async fn configure(endpoint: &str) -> Result<(), Error> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::MotoConfig(e.to_string()))?;
    let answer = http
        .post(format!("{endpoint}/moto-api/config"))
        .json(&serde_json::json!({"lambda": {"use_docker": false}}))
        .send()
        .await
        .map_err(|e| Error::MotoConfig(warmpool_core::process::error_chain(&e)))?;
    if !answer.status().is_success() {
        return Err(Error::MotoConfig(format!("moto answered {}", answer.status())));
    }
    Ok(())
}

/// Compares the moto `.venv` holds with the pin in `scripts/bootstrap.sh`.
async fn check_version(workspace: &Workspace) -> Result<(), Error> {
    let python = workspace.python();
    if !python.exists() {
        return Err(Error::Missing { path: python });
    }
    let bootstrap = workspace.root.join("scripts/bootstrap.sh");
    let script = std::fs::read_to_string(&bootstrap).map_err(|e| Error::Tool {
        what: format!("reading {}", bootstrap.display()),
        reason: e.to_string(),
    })?;
    let pinned = pinned_version(&script).ok_or_else(|| Error::Tool {
        what: "reading the moto pin".into(),
        reason: format!("no MOTO_VERSION=... line in {}", bootstrap.display()),
    })?;
    let found = installed_version(&python).await?;
    same_version(&found, &pinned)
}

/// The version `MOTO_VERSION=x.y.z` sets in a shell script.
pub fn pinned_version(script: &str) -> Option<String> {
    script.lines().find_map(|line| {
        let value = line.trim().strip_prefix("MOTO_VERSION=")?;
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// Refuses any difference: a patch release of moto can change what the patches of
/// `scripts/moto_server.py` replace.
pub fn same_version(found: &str, pinned: &str) -> Result<(), Error> {
    if found.trim() == pinned.trim() {
        Ok(())
    } else {
        Err(Error::MotoVersion {
            found: found.trim().to_string(),
            pinned: pinned.trim().to_string(),
        })
    }
}

/// What the installed moto says its version is.
async fn installed_version(python: &std::path::Path) -> Result<String, Error> {
    let what = || format!("{} -c 'import moto'", python.display());
    let run = tokio::process::Command::new(python)
        .args(["-c", "import moto; print(moto.__version__)"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VERSION_WITHIN, run)
        .await
        .map_err(|_| Error::NotReady {
            what: what(),
            after: VERSION_WITHIN,
        })?
        .map_err(|source| Error::Spawn { what: what(), source })?;
    if !output.status.success() {
        return Err(Error::Tool {
            what: what(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_read_from_the_bootstrap_script() {
        let script = "set -euo pipefail\nMOTO_VERSION=5.2.5\nCARGO_LAMBDA_VERSION=1.9.2\n";
        assert_eq!(pinned_version(script).as_deref(), Some("5.2.5"));
        assert_eq!(pinned_version("MOTO_VERSION=\"5.1.0\"").as_deref(), Some("5.1.0"));
        assert_eq!(pinned_version("echo no pin here"), None);
    }

    #[test]
    fn when_moto_is_not_the_pinned_version_then_the_error_names_both() {
        let error = same_version("5.1.22\n", "5.2.5").unwrap_err();
        assert!(matches!(error, Error::MotoVersion { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("moto 5.1.22 is installed"), "{text}");
        assert!(text.contains("pins 5.2.5"), "{text}");
        assert!(!error.is_retryable());
    }

    #[test]
    fn the_pinned_version_passes() {
        assert!(same_version("5.2.5\n", "5.2.5").is_ok());
    }

    #[test]
    fn the_real_pin_is_readable() {
        let script = std::fs::read_to_string(Workspace::default().root.join("scripts/bootstrap.sh")).unwrap();
        assert!(pinned_version(&script).is_some_and(|v| v.starts_with('5')));
    }
}
