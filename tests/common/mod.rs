//! Test support: start the lab, start the agent binary, read its metrics and
//! logs. Everything runs for real on 127.0.0.1; nothing is mocked.
//!
//! One lab is shared by all tests of a test binary (`Lab::shared`); tests keep
//! out of each other's way by using their own tables and scoped faults.

pub mod agent;
pub mod browser;
pub mod https;
pub mod lab;
pub mod metrics;
pub mod monitoring;
pub mod redis;
pub mod sql;

pub use agent::Agent;
pub use lab::Lab;
pub use metrics::Sample;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A single-threaded runtime for the SDK calls a test makes to set up the
/// lab (tables, buckets, secrets); the tests themselves are synchronous.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The agent binary built by `cargo build` (the README's test command builds
/// it before the tests run).
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RPO_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let bin = target.join("debug").join("rpo-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rpo-agent` first (the README's test command does)",
        bin.display()
    );
    bin
}

/// Runs `rpo-agent ARGS --config <config>` (a one-shot command: `init`,
/// `check`, `once`) with `env` added; returns (exit code, stdout + stderr).
pub fn run_command(
    args: &[&str],
    config: &str,
    env: &std::collections::HashMap<String, String>,
) -> (Option<i32>, String) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), config).unwrap();
    let out = std::process::Command::new(agent_bin())
        .args(args)
        .arg("--config")
        .arg(f.path())
        .envs(env)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
