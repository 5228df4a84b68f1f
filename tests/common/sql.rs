//! Helpers for the SQL (PostgreSQL / MariaDB) tests: target snippets, the
//! `init` command, per-canary lags from the agent's debug log.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{agent_bin, Agent, Lab};

pub const SRC: &str = "ap-northeast-1";
pub const DST: &str = "ap-northeast-3";

/// A `[[target]]` of `kind` ("postgres"/"mysql") between two URLs.
pub fn sql_target(
    name: &str,
    kind: &str,
    src: &str,
    dst: &str,
    interval: &str,
    extra: &str,
) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nkind = \"{kind}\"\nsource = {{ region = \"{SRC}\", url = \"{src}\" }}\nreplicas = [{{ region = \"{DST}\", url = \"{dst}\" }}]\ninterval = \"{interval}\"\ntimeout = \"2m\"\n{extra}\n"
    )
}

/// The lab's plain-TCP target of `kind` ("postgres" → PG_*, "mysql" → MYSQL_*).
pub fn lab_target(lab: &Lab, name: &str, kind: &str, interval: &str, extra: &str) -> String {
    let p = if kind == "postgres" { "PG" } else { "MYSQL" };
    sql_target(
        name,
        kind,
        lab.get(&format!("{p}_PRIMARY_URL")),
        lab.get(&format!("{p}_REPLICA_URL")),
        interval,
        extra,
    )
}

pub fn sql_config(targets: &[String]) -> String {
    format!(
        "[agent]\nid = \"it\"\nlisten = \"127.0.0.1:0\"\nobjective = \"10s\"\n\n{}",
        targets.join("\n")
    )
}

/// Runs `rpo-agent init` on `config`; returns (success, stdout+stderr).
pub fn run_init(config: &str) -> (bool, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, config.as_bytes()).unwrap();
    let out = std::process::Command::new(agent_bin())
        .args(["init", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Per-canary (seq → measured lag seconds) from the agent's debug log.
pub fn measured_lags(agent: &Agent, target: &str) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> = agent
        .logs()
        .iter()
        .filter(|v| v["message"] == "canary observed" && v["target"] == target)
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["lag_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|(s, _)| *s);
    v
}

/// One lock per engine: faults on a pair disturb every test using it.
pub fn engine_lock(kind: &str) -> MutexGuard<'static, ()> {
    static PG: Mutex<()> = Mutex::new(());
    static MY: Mutex<()> = Mutex::new(());
    let m = if kind == "postgres" { &PG } else { &MY };
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label filter for a target in one direction.
pub fn dir<'a>(target: &'a str, src: &'a str, dst: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("target", target),
        ("source_region", src),
        ("replica_region", dst),
    ]
}

/// Log lines whose message contains `needle`, for `target`.
pub fn logs_with(agent: &Agent, target: &str, needle: &str) -> Vec<serde_json::Value> {
    agent
        .logs()
        .into_iter()
        .filter(|l| {
            l["target"] == target && l["message"].as_str().is_some_and(|m| m.contains(needle))
        })
        .collect()
}

#[allow(dead_code)]
pub fn env_of(lab: &Lab) -> HashMap<String, String> {
    lab.env.clone()
}
