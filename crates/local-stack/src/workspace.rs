//! Where the local stack's tools are: the repository's `.venv` (moto, cargo-lambda) and
//! `scripts/`, and the debug build in `target/`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
}

impl Default for Workspace {
    /// The repository this crate was built from: the local stack is a development tool, run
    /// from a checkout (`cargo run`, `cargo test`), never installed elsewhere.
    fn default() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Self {
            root: root.canonicalize().unwrap_or(root),
        }
    }
}

impl Workspace {
    pub fn python(&self) -> PathBuf {
        self.root.join(".venv/bin/python")
    }

    pub fn venv_bin(&self) -> PathBuf {
        self.root.join(".venv/bin")
    }

    /// A binary of the debug build.
    pub fn debug_binary(&self, name: &str) -> PathBuf {
        self.root.join("target/debug").join(name)
    }

    /// `PATH` with `.venv/bin` first (cargo-lambda and its zig).
    pub fn path_with_venv(&self) -> std::ffi::OsString {
        let mut paths = vec![self.venv_bin()];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(paths).unwrap_or_default()
    }
}
