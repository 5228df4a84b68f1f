//! Helpers for the SQL (PostgreSQL / MariaDB) tests: target snippets, the
//! `init` command, per-canary lags from the agent's debug log.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{Agent, Lab};

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
    let (code, out) = super::run_command(&["init"], config, &HashMap::new());
    (code == Some(0), out)
}

/// Per-canary (seq, measured lag seconds, uncertainty seconds) from the
/// agent's debug log: the canary was missing at lag − uncertainty (or was
/// first read at that point), present by lag.
pub fn measured_windows(agent: &Agent, target: &str) -> Vec<(u64, f64, f64)> {
    let mut v: Vec<(u64, f64, f64)> = agent
        .logs()
        .iter()
        .filter(|v| v["message"] == "canary observed" && v["target"] == target)
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["lag_seconds"].as_f64().unwrap(),
                v["uncertainty_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|(s, _, _)| *s);
    v
}

/// Per-canary (seq → measured lag seconds) from the agent's debug log.
pub fn measured_lags(agent: &Agent, target: &str) -> Vec<(u64, f64)> {
    measured_windows(agent, target)
        .into_iter()
        .map(|(seq, lag, _)| (seq, lag))
        .collect()
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

/// Runs `sql` as root on the lab's MariaDB `role` ("primary"/"replica")
/// through its socket; returns the tab-separated rows.
pub fn mariadb_root(lab: &Lab, role: &str, sql: &str) -> String {
    let sock = lab.dir().join("mysql/run").join(format!("{role}.sock"));
    let out = std::process::Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "-N", "-B", "-S"])
        .arg(&sock)
        .args(["-e", sql])
        .output()
        .expect("run the mariadb client");
    assert!(
        out.status.success(),
        "mariadb {role}: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs replica-only triggers that log when the applier writes each
/// canary row (`SYSDATE(6)`, the real clock), the ground truth of a MariaDB
/// lag; returns a reader of (seq, true lag in seconds). The canary's `seq`
/// is its write time in µs since the epoch.
pub fn mariadb_apply_times(lab: &Lab) -> impl Fn() -> Vec<(u64, f64)> + '_ {
    mariadb_root(
        lab,
        "replica",
        "STOP SLAVE SQL_THREAD; SET GLOBAL slave_run_triggers_for_rbr = 'YES'; START SLAVE SQL_THREAD;",
    );
    let mut ddl = String::from(
        "SET SESSION sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS rpo_truth; \
         CREATE TABLE IF NOT EXISTS rpo_truth.applied (seq BIGINT UNSIGNED, applied_at DOUBLE); ",
    );
    for ev in ["INSERT", "UPDATE"] {
        ddl += &format!(
            "DROP TRIGGER IF EXISTS app.rpo_truth_{e}; CREATE TRIGGER app.rpo_truth_{e} AFTER {ev} ON app.rpo_canary \
             FOR EACH ROW INSERT INTO rpo_truth.applied VALUES (NEW.seq, UNIX_TIMESTAMP(SYSDATE(6))); ",
            e = ev.to_lowercase()
        );
    }
    mariadb_root(lab, "replica", &ddl);
    move || {
        mariadb_root(
            lab,
            "replica",
            "SELECT seq, applied_at FROM rpo_truth.applied",
        )
        .lines()
        .filter_map(|l| {
            let (seq, at) = l.split_once('\t')?;
            let seq: u64 = seq.parse().ok()?;
            Some((seq, at.parse::<f64>().ok()? - seq as f64 / 1e6))
        })
        .collect()
    }
}
