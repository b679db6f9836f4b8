//! The functions as Lambda would run them locally: `cargo lambda watch` serving the Invoke API
//! on 127.0.0.1, each function built (on its first invoke) and started from the workspace,
//! with the environment of an env file.

use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::workspace::Workspace;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// How long `cargo lambda watch` may take to listen.
const LISTEN_WITHIN: Duration = Duration::from_secs(120);
/// Bounds the build before the stack starts (a cold debug build of the workspace).
const BUILD_WITHIN: Duration = Duration::from_secs(1800);

/// The functions, built one binary at a time as `cargo lambda watch` builds them, so that
/// watch finds them up to date instead of rebuilding with another feature set on its first
/// invoke; then the other binaries the stack runs.
pub async fn build(workspace: &Workspace, batches: bool) -> Result<(), Error> {
    let mut builds: Vec<Vec<&str>> = vec![vec!["--bin", "get-session"], vec!["--bin", "replenish"]];
    if batches {
        builds.push(vec!["--bin", "invoker"]);
        builds.push(vec!["--bin", "stale-batch-detector"]);
        builds.push(vec!["-p", "document-agent"]);
    }
    for args in builds {
        let what = format!("cargo build {}", args.join(" "));
        let run = tokio::process::Command::new("cargo")
            .arg("build")
            .arg("--quiet")
            .args(&args)
            .current_dir(&workspace.root)
            .kill_on_drop(true)
            .status();
        let status = tokio::time::timeout(BUILD_WITHIN, run)
            .await
            .map_err(|_| Error::NotReady {
                what: what.clone(),
                after: BUILD_WITHIN,
            })?
            .map_err(|source| Error::Spawn {
                what: what.clone(),
                source,
            })?;
        if !status.success() {
            return Err(Error::Tool {
                what,
                reason: status.to_string(),
            });
        }
    }
    Ok(())
}

/// Starts `cargo lambda watch` as `name` on `port` with `env` (also written to
/// `<run dir>/<name>.env`) and `concurrency` instances per function; returns its Invoke API
/// base URL once it listens.
pub async fn start(
    supervisor: &Supervisor,
    workspace: &Workspace,
    name: &str,
    env: &[(String, String)],
    concurrency: u32,
    port: u16,
) -> Result<String, Error> {
    let cargo_lambda = workspace.venv_bin().join("cargo-lambda");
    if !cargo_lambda.exists() {
        return Err(Error::Missing { path: cargo_lambda });
    }
    let env_file = supervisor.run_dir().join(format!("{name}.env"));
    let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_file, lines).map_err(|source| Error::Write {
        path: env_file.clone(),
        source,
    })?;
    let mut command = Command::new("cargo");
    command
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        // Edits to the workspace while the stack runs must not restart the functions.
        .arg("--ignore-changes")
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--env-file")
        .arg(&env_file)
        .current_dir(&workspace.root)
        .env("PATH", workspace.path_with_venv())
        .envs(env.iter().map(|(k, v)| (k, v)));
    supervisor.spawn(name, command)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    crate::ready::wait_tcp(name, addr, LISTEN_WITHIN).await?;
    crate::ready::loopback_only(name, port)?;
    Ok(format!("http://{addr}"))
}
