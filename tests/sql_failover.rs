//! Switchover / failover on the lab's SQL pairs. Promotions change the pairs
//! for good, so this binary has its own lab; the PostgreSQL and MariaDB tests
//! use different pairs and run side by side.

use std::time::{Duration, Instant};

use rpo_integration_tests::sql::*;
use rpo_integration_tests::{Agent, Lab};

fn lab() -> &'static Lab {
    let lab = Lab::shared("sql");
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let cfg = sql_config(&[
            lab_target(lab, "init-pg", "postgres", "1s", ""),
            lab_target(lab, "init-my", "mysql", "1s", ""),
        ]);
        let (ok, out) = run_init(&cfg);
        assert!(ok, "rpo-agent init failed: {out}");
    });
    lab
}

fn count(agent: &Agent, name: &str, labels: &[(&str, &str)]) -> f64 {
    agent.value(name, labels).unwrap_or(0.0)
}

/// Errors of writes refused because the node is read-only.
fn read_only_write_errors(agent: &Agent, t: &str) -> f64 {
    agent
        .metrics()
        .into_iter()
        .filter(|s| {
            s.name == "rpo_probe_errors_total"
                && s.label("target") == Some(t)
                && s.label("op") == Some("write")
                && ["25006", "HY000:1290", "HY000:1836"].contains(&s.label("code").unwrap_or(""))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn postgres_promote_is_split_brain_then_losing_the_primary_swaps_the_direction() {
    let t = "fo-pg";
    let agent = Agent::start(
        &sql_config(&[lab_target(lab(), t, "postgres", "1s", "")]),
        &lab().env,
    );
    let fwd = dir(t, SRC, DST);
    let back = dir(t, DST, SRC);
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &fwd,
            Duration::from_secs(20),
            |v| v >= 3.0,
        )
        .unwrap();
    // The counter exists from start-up, so increase() sees the first swap.
    assert_eq!(
        agent.value("rpo_direction_changes_total", &[("target", t)]),
        Some(0.0)
    );

    // The lab's promote leaves the old primary writable: split brain.
    lab().fault(&["postgres", "promote"]);
    let mut split = fwd.clone();
    split.push(("code", "split_brain"));
    let v = agent.wait_value(
        "rpo_probe_errors_total",
        &split,
        Duration::from_secs(5),
        |v| v >= 2.0,
    );
    assert!(
        v.is_some_and(|v| v >= 2.0),
        "split brain not reported: {:?}",
        logs_with(&agent, t, "")
    );
    let errors = logs_with(&agent, t, "SPLIT BRAIN");
    assert!(
        errors.len() >= 2 && errors.iter().all(|l| l["level"] == "ERROR"),
        "{errors:?}"
    );

    // The old primary's region is lost: the agent follows the new writer.
    lab().fault(&["postgres", "stop", "primary"]);
    let stopped = Instant::now();
    let swapped = agent.wait_log(Duration::from_secs(4), |l| {
        l["target"] == t
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("replication direction changed"))
    });
    assert!(
        swapped.is_some(),
        "no direction change within two intervals: {:?}",
        logs_with(&agent, t, "")
    );
    println!(
        "{t}: direction changed {:?} after the primary stopped",
        stopped.elapsed()
    );
    assert_eq!(
        agent.value("rpo_direction_changes_total", &[("target", t)]),
        Some(1.0)
    );
    let w = agent.wait_value(
        "rpo_canaries_written_total",
        &back,
        Duration::from_secs(5),
        |v| v >= 2.0,
    );
    assert!(
        w.is_some_and(|v| v >= 2.0),
        "no canaries written to the new primary"
    );
    // The old direction's gauges are gone; the new replica (old primary) is
    // reported down, by code.
    assert_eq!(agent.value("rpo_seconds", &fwd), None);
    assert_eq!(agent.value("rpo_probe_up", &back), Some(0.0));
    let mut read_err = back.clone();
    read_err.push(("op", "read"));
    assert!(agent
        .wait_value(
            "rpo_probe_errors_total",
            &read_err,
            Duration::from_secs(10),
            |v| v > 0.0
        )
        .is_some());

    // The old primary comes back, still writable: split brain again, reported
    // in the new direction; no second swap.
    lab().fault(&["postgres", "start", "primary"]);
    let mut split_back = back.clone();
    split_back.push(("code", "split_brain"));
    assert!(agent
        .wait_value(
            "rpo_probe_errors_total",
            &split_back,
            Duration::from_secs(10),
            |v| v >= 1.0
        )
        .is_some());
    assert_eq!(
        agent.value("rpo_direction_changes_total", &[("target", t)]),
        Some(1.0)
    );
    assert_eq!(read_only_write_errors(&agent, t), 0.0);
    let mut agent = agent;
    assert!(agent.is_running());
}

#[test]
fn mariadb_read_only_source_writes_nothing_and_a_switchover_swaps_the_direction() {
    let t = "fo-my";
    let agent = Agent::start(
        &sql_config(&[lab_target(lab(), t, "mysql", "1s", "")]),
        &lab().env,
    );
    let fwd = dir(t, SRC, DST);
    let back = dir(t, DST, SRC);
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &fwd,
            Duration::from_secs(20),
            |v| v >= 3.0,
        )
        .unwrap();

    // Source read-only, replica still read-only: report, write nothing.
    let sock = lab().dir().join("mysql/run/primary.sock");
    let out = std::process::Command::new("mariadb")
        .args(["-uroot", "-S"])
        .arg(&sock)
        .args(["-e", "SET GLOBAL read_only=1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ro = fwd.clone();
    ro.push(("code", "source_read_only"));
    assert!(agent
        .wait_value("rpo_probe_errors_total", &ro, Duration::from_secs(5), |v| v
            >= 2.0)
        .is_some_and(|v| v >= 2.0));
    let written = count(&agent, "rpo_canaries_written_total", &fwd);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&agent, "rpo_canaries_written_total", &fwd),
        written,
        "canaries written to a read-only source"
    );
    assert_eq!(read_only_write_errors(&agent, t), 0.0);

    // Managed switchover: the replica becomes the writer.
    lab().fault(&["mysql", "promote"]);
    let promoted = Instant::now();
    let swapped = agent.wait_log(Duration::from_secs(4), |l| {
        l["target"] == t
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("replication direction changed"))
    });
    assert!(
        swapped.is_some(),
        "no direction change within two intervals: {:?}",
        logs_with(&agent, t, "")
    );
    println!(
        "{t}: direction changed {:?} after promote",
        promoted.elapsed()
    );
    assert_eq!(
        agent.value("rpo_direction_changes_total", &[("target", t)]),
        Some(1.0)
    );
    let w = agent.wait_value(
        "rpo_canaries_written_total",
        &back,
        Duration::from_secs(5),
        |v| v >= 3.0,
    );
    assert!(
        w.is_some_and(|v| v >= 3.0),
        "no canaries written to the new primary"
    );
    assert_eq!(
        agent.value("rpo_seconds", &fwd),
        None,
        "old direction still exported"
    );
    // Nothing replicates back to the old primary in the lab: RPO grows
    // honestly in the new direction.
    std::thread::sleep(Duration::from_secs(3));
    let r = agent.value("rpo_seconds", &back).unwrap();
    assert!(r >= 2.0, "rpo {r} in the new direction without replication");
    assert_eq!(read_only_write_errors(&agent, t), 0.0);
    let mut agent = agent;
    assert!(agent.is_running());
}
