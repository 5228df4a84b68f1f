//! The `redis` probe against the lab's real Redis primary + replica (TLS with
//! the lab's CA; replication through the lab's delaying relay, which logs
//! when it received and forwarded every canary: the ground truth). Faults on
//! the pair disturb every test here, so they take `pair_lock`; the cluster
//! test has a lab of its own (`--components redis-cluster`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rpo_integration_tests::redis::*;
use rpo_integration_tests::sql::{dir, logs_with, measured_lags, sql_config, DST, SRC};
use rpo_integration_tests::{Agent, Lab};

fn lab() -> &'static Lab {
    // moto too: AWS's own figure comes from (the lab's) CloudWatch.
    Lab::shared("aws,redis")
}

fn start(targets: &[String]) -> Agent {
    Agent::start(&sql_config(targets), &lab().env)
}

fn l(t: &str) -> Vec<(&'static str, &str)> {
    vec![("target", t)]
}

/// Error codes a Redis target may report: a bounded set.
const CODES: &[&str] = &[
    "connect",
    "timeout",
    "io",
    "connection_lost",
    "loading",
    "read_only",
    "master_down",
    "source_read_only",
    "split_brain",
    "bad_reply",
    "error",
];

/// Every canary after warm-up is measured within 30 ms of how long the relay
/// held it, with at most 4 reads per canary.
fn accuracy(t: &str, delay: &str, expected: f64) {
    let _g = pair_lock();
    let delayed = lab().fault_until_drop(&["redis", "delay", delay], &["redis", "delay", "0"]);
    let agent = start(&[lab_redis_target(lab(), t, "1s", "")]);
    std::thread::sleep(Duration::from_secs(6));
    let reads0 = agent.value("rpo_replica_reads_total", &l(t)).unwrap_or(0.0);
    let seen0 = agent
        .value("rpo_canaries_observed_total", &l(t))
        .unwrap_or(0.0);
    let warm = measured_lags(&agent, t).len();
    std::thread::sleep(Duration::from_secs(14));
    // Taken while the delay holds: once it is undone, the canary in flight
    // arrives at once and is rightly measured below it.
    let reads = agent.value("rpo_replica_reads_total", &l(t)).unwrap() - reads0;
    let seen = agent.value("rpo_canaries_observed_total", &l(t)).unwrap() - seen0;
    let measured = measured_lags(&agent, t);
    delayed.undo();
    let truth: std::collections::HashMap<u64, f64> =
        relay_truth(lab(), "REDIS_GROUND_TRUTH", &format!("rpo-canary:it:{t}"))
            .into_iter()
            .map(|(seq, _, held)| (seq, held))
            .collect();
    let rows: Vec<(u64, f64, f64)> = measured[warm..]
        .iter()
        .filter_map(|(seq, lag)| truth.get(seq).map(|g| (*seq, *lag, *g)))
        .collect();
    assert!(
        rows.len() >= 8,
        "{t}: only {} canaries matched the relay's log ({} measured)",
        rows.len(),
        measured.len() - warm
    );
    let mut errors: Vec<f64> = rows.iter().map(|(_, m, g)| (m - g).abs()).collect();
    errors.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{t}: delay {delay}: {} canaries, |error| median {:.1} ms, p90 {:.1} ms, max {:.1} ms; reads/canary {:.2}",
        rows.len(),
        errors[errors.len() / 2] * 1e3,
        errors[errors.len() * 9 / 10] * 1e3,
        errors[errors.len() - 1] * 1e3,
        reads / seen
    );
    for (seq, m, g) in &rows {
        assert!(
            (m - g).abs() <= 0.030,
            "{t}: canary {seq}: measured {m:.4} s, the relay held it {g:.4} s ({rows:?})"
        );
        assert!(
            (g - expected).abs() <= 0.030,
            "{t}: the relay held canary {seq} {g:.4} s, not {expected} s"
        );
    }
    assert!(
        reads / seen <= 4.0,
        "{t}: {} reads per canary",
        reads / seen
    );
}

#[test]
fn lag_is_the_relays_300ms_delay_within_30ms() {
    accuracy("acc-300ms", "300ms", 0.300);
}

#[test]
fn lag_is_the_relays_2s_delay_within_30ms() {
    accuracy("acc-2s", "2s", 2.000);
}

#[test]
fn a_20s_stall_grows_rpo_one_second_per_second_and_recovers_within_two_intervals() {
    let _g = pair_lock();
    let t = "stall";
    let agent = start(&[lab_redis_target(lab(), t, "1s", "")]);
    // A warm model (past its 8 canaries of history): a first canary slowed by
    // connecting leaves a wide guess that the planner lowers by a tenth per
    // canary, which would still be draining after the stall (a known
    // cold-start cost, see the issue note).
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(20),
            |v| v >= 12.0,
        )
        .unwrap();
    let stall = lab().fault_until_drop(&["redis", "stall"], &["redis", "resume"]);
    let stalled = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (t1, r1) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    std::thread::sleep(Duration::from_secs(15));
    let (t2, r2) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    let rate = (r2 - r1) / (t2 - t1).as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&rate),
        "{t}: rpo grew {rate} s/s ({r1} → {r2})"
    );
    // The oldest unseen canary is the first written after the stall began (up
    // to one interval later); the gauge is refreshed every 250 ms.
    let age = (t2 - stalled).as_secs_f64();
    assert!(
        (age - 1.5..=age + 0.5).contains(&r2),
        "{t}: rpo {r2} after {age:.3} s of stall"
    );
    std::thread::sleep(Duration::from_secs(20).saturating_sub(stalled.elapsed()));
    stall.undo();
    let resumed = Instant::now();
    // Back to the store's own lag (≈ 2 ms): the youngest held canary (written
    // up to an interval before the resume) is measured as it was, then the
    // first canary written after the resume is aimed at its ack again.
    let r = agent
        .wait_value("rpo_seconds", &l(t), Duration::from_secs(2), |v| v < 0.05)
        .unwrap();
    assert!(
        r < 0.05,
        "{t}: rpo still {r} s {:?} after resume (two intervals); last canaries: {:?}",
        resumed.elapsed(),
        logs_with(&agent, t, "canary observed")
            .iter()
            .rev()
            .take(12)
            .map(|l| (
                l["timestamp"].clone(),
                l["lag_seconds"].clone(),
                l["uncertainty_seconds"].clone(),
                l["reads"].clone()
            ))
            .collect::<Vec<_>>()
    );
    println!(
        "{t}: stall 20 s: rpo grew {rate:.3} s/s, back to {r:.3} s {:?} after resume",
        resumed.elapsed()
    );
    assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
}

#[test]
fn restarts_of_either_node_reconnect_by_themselves_and_errors_are_counted_by_code() {
    let _g = pair_lock();
    let t = "restart";
    let mut agent = start(&[lab_redis_target(lab(), t, "500ms", "")]);
    let up = |agent: &Agent| {
        agent.wait_value("rpo_probe_up", &l(t), Duration::from_secs(20), |v| v == 1.0)
    };
    assert_eq!(up(&agent), Some(1.0));
    for role in ["primary", "replica"] {
        let before = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();
        let stopped = lab().fault_until_drop(&["redis", "stop", role], &["redis", "start", role]);
        std::thread::sleep(Duration::from_secs(3));
        stopped.undo();
        let t0 = Instant::now();
        assert_eq!(
            up(&agent),
            Some(1.0),
            "{t}: no recovery after the {role}'s restart"
        );
        let seen = agent
            .wait_value(
                "rpo_canaries_observed_total",
                &l(t),
                Duration::from_secs(20),
                |v| v >= before + 3.0,
            )
            .unwrap();
        assert!(
            seen >= before + 3.0,
            "{t}: no canaries after the {role} restarted"
        );
        println!(
            "{t}: {role} stopped 3 s: probe up again {:?} after its start",
            t0.elapsed()
        );
    }
    assert!(agent.is_running());
    let errors: Vec<(String, String, f64)> = agent
        .metrics()
        .into_iter()
        .filter(|s| s.name == "rpo_probe_errors_total" && s.label("target") == Some(t))
        .map(|s| {
            (
                s.label("op").unwrap().to_string(),
                s.label("code").unwrap().to_string(),
                s.value,
            )
        })
        .collect();
    println!("{t}: errors {errors:?}");
    assert!(
        errors.iter().any(|(op, ..)| op == "write" || op == "role"),
        "{errors:?}"
    );
    assert!(errors.iter().any(|(op, ..)| op == "read"), "{errors:?}");
    for (_, code, _) in &errors {
        assert!(
            CODES.contains(&code.as_str()),
            "{t}: unbounded error code {code}"
        );
    }
    assert_eq!(agent.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_promoted_replica_is_split_brain_until_the_old_primary_follows_it_then_the_direction_swaps() {
    let _g = pair_lock();
    let t = "failover";
    let agent = start(&[lab_redis_target(lab(), t, "1s", "")]);
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
    assert_eq!(agent.value("rpo_direction_changes_total", &l(t)), Some(0.0));

    // Both nodes masters: split brain, reported, no swap.
    lab().fault(&["redis", "promote", "--split-brain"]);
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
    assert!(logs_with(&agent, t, "SPLIT BRAIN")
        .iter()
        .all(|l| l["level"] == "ERROR"));
    assert_eq!(agent.value("rpo_probe_up", &fwd), Some(0.0));
    assert_eq!(agent.value("rpo_direction_changes_total", &l(t)), Some(0.0));

    // The old primary becomes the new one's replica (Global Datastore's
    // failover): the agent follows within two intervals.
    let t0 = Instant::now();
    lab().fault(&["redis", "promote"]);
    let swapped = agent.wait_log(Duration::from_secs(2), |l| {
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
        "{t}: direction changed {:?} after the promotion",
        t0.elapsed()
    );
    assert_eq!(agent.value("rpo_direction_changes_total", &l(t)), Some(1.0));
    let seen = agent.wait_value(
        "rpo_canaries_observed_total",
        &back,
        Duration::from_secs(20),
        |v| v >= 2.0,
    );
    assert!(
        seen.is_some_and(|v| v >= 2.0),
        "no canary measured in the new direction: {:?}",
        logs_with(&agent, t, "")
    );
    assert_eq!(agent.value("rpo_seconds", &fwd), None);

    // And back, so the pair is as the other tests expect it.
    lab().fault(&["redis", "promote"]);
    let back_again = agent.wait_value(
        "rpo_direction_changes_total",
        &l(t),
        Duration::from_secs(5),
        |v| v >= 2.0,
    );
    assert_eq!(back_again, Some(2.0));
    let seen = agent
        .value("rpo_canaries_observed_total", &fwd)
        .unwrap_or(0.0);
    assert!(agent
        .wait_value(
            "rpo_canaries_observed_total",
            &fwd,
            Duration::from_secs(20),
            |v| v >= seen + 2.0
        )
        .is_some_and(|v| v >= seen + 2.0));
}

#[test]
fn tls_is_verified_with_the_lab_ca_and_refusals_are_configuration_problems_without_secrets() {
    // Undisturbed pair needed: the good targets must see canaries.
    let _g = pair_lock();
    let lab = lab();
    let ca = lab.get("REDIS_CA");
    let user_pw = lab.get("REDIS_USER_PASSWORD");
    let with_user = |k: &str| {
        lab.get(k)
            .replace("rediss://", &format!("rediss://rpo:{user_pw}@"))
    };
    let targets = [
        lab_redis_target(lab, "tls-auth-token", "1s", ""),
        // An ACL user with its password in the URL.
        redis_target(
            "tls-acl-user",
            &with_user("REDIS_PRIMARY_URL"),
            &with_user("REDIS_REPLICA_URL"),
            "1s",
            &format!("ca_bundle = \"{ca}\""),
        ),
        // The system's public roots do not include the lab CA.
        redis_target(
            "tls-wrong-ca",
            lab.get("REDIS_PRIMARY_URL"),
            lab.get("REDIS_REPLICA_URL"),
            "1s",
            "ca_bundle = \"/etc/ssl/certs/ca-certificates.crt\"\nauth = { password_env = \"REDIS_PASSWORD\" }",
        ),
        redis_target(
            "wrong-password",
            &with_user("REDIS_PRIMARY_URL").replace(user_pw, "not-the-password"),
            &with_user("REDIS_REPLICA_URL"),
            "1s",
            &format!("ca_bundle = \"{ca}\""),
        ),
    ];
    let mut env = lab.env.clone();
    env.remove("REDIS_USER_PASSWORD");
    let agent = Agent::start(&sql_config(&targets), &env);
    for t in ["tls-auth-token", "tls-acl-user"] {
        let v = agent.wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(20),
            |v| v >= 2.0,
        );
        assert!(
            v.is_some_and(|v| v >= 2.0),
            "{t}: no canary observed over TLS; logs {:?}",
            logs_with(&agent, t, "")
        );
    }
    for (t, code, hint) in [
        ("tls-wrong-ca", "tls", "ca_bundle"),
        ("wrong-password", "auth", "password"),
    ] {
        let line = agent
            .wait_log(Duration::from_secs(20), |v| {
                v["target"] == t && v["code"] == code
            })
            .unwrap_or_else(|| panic!("{t}: no {code} error: {:?}", logs_with(&agent, t, "")));
        let msg = line["message"].as_str().unwrap();
        println!("{t}: {} {msg}", line["level"]);
        assert_eq!(line["level"], "ERROR", "{line}");
        assert!(
            msg.contains("configuration problem") && msg.contains(hint),
            "{msg}"
        );
        assert_eq!(
            agent
                .value("rpo_canaries_written_total", &l(t))
                .unwrap_or(0.0),
            0.0
        );
        assert!(
            agent
                .value("rpo_probe_errors_total", &[("target", t), ("code", code)])
                .unwrap()
                >= 1.0
        );
    }
    // No password anywhere the agent shows.
    let (_, status) = agent.get("/status.json").unwrap();
    let (_, metrics) = agent.get("/metrics").unwrap();
    let logs: String = agent.logs().iter().map(|l| l.to_string()).collect();
    for secret in [lab.get("REDIS_PASSWORD"), user_pw, "not-the-password"] {
        for (what, text) in [
            ("logs", &logs),
            ("/metrics", &metrics),
            ("/status.json", &status),
        ] {
            assert!(!text.contains(secret), "a password in {what}");
        }
    }
}

fn cluster_lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| Lab::start("redis-cluster"))
}

#[test]
fn in_cluster_mode_a_delay_on_one_shard_is_the_targets_lag() {
    let lab = cluster_lab();
    let t = "cluster";
    let target = redis_target(
        t,
        lab.get("REDIS_CLUSTER_PRIMARY_URL"),
        lab.get("REDIS_CLUSTER_REPLICA_URL"),
        "1s",
        &format!(
            "cluster = true\nca_bundle = \"{}\"\nauth = {{ password_env = \"REDIS_PASSWORD\" }}",
            lab.get("REDIS_CA")
        ),
    );
    let delayed = lab.fault_until_drop(
        &["redis-cluster", "delay", "700ms", "--shard", "1"],
        &["redis-cluster", "delay", "0", "--shard", "1"],
    );
    let agent = Agent::start(&sql_config(&[target]), &lab.env);
    std::thread::sleep(Duration::from_secs(6));
    let warm = measured_lags(&agent, t).len();
    std::thread::sleep(Duration::from_secs(10));
    let measured = measured_lags(&agent, t);
    delayed.undo();
    let truth = relay_truth(
        lab,
        "REDIS_CLUSTER_GROUND_TRUTH",
        &format!("rpo-canary:it:{t}:"),
    );
    // One key per shard, each through its own shard's relay.
    let keys: std::collections::BTreeSet<&str> = truth.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    // The target's lag is the worst shard's: per canary, the longest hold.
    let mut worst = std::collections::HashMap::<u64, f64>::new();
    for (seq, _, held) in &truth {
        let w = worst.entry(*seq).or_insert(0.0);
        *w = w.max(*held);
    }
    let rows: Vec<(f64, f64)> = measured[warm..]
        .iter()
        .filter_map(|(seq, lag)| worst.get(seq).map(|g| (*lag, *g)))
        .collect();
    assert!(rows.len() >= 6, "{t}: {} canaries matched", rows.len());
    println!("{t}: shard 1 delayed 700 ms: (measured, worst shard's truth) {rows:?}");
    for (m, g) in &rows {
        assert!(
            (g - 0.700).abs() <= 0.030,
            "{t}: shard 1's relay held {g} s"
        );
        assert!(
            (m - g).abs() <= 0.030,
            "{t}: measured {m} s, worst shard {g} s"
        );
    }
}

#[test]
fn aws_reported_lag_is_the_secondarys_global_datastore_replication_lag() {
    let lab = lab();
    let t = "cw";
    // ElastiCache publishes the figure per cache cluster (CacheClusterId),
    // in the secondary's region; the agent finds the secondary group's
    // member clusters with DescribeReplicationGroups and takes their
    // maximum. (moto 5.2.5 lists one member for NumCacheClusters = 2, and
    // `<group>-001`, `<group>-002` for two shards of one replica each.) A datum of
    // another group, or under a ReplicationGroupId dimension (which AWS
    // does not publish), must not be taken.
    lab_query(
        lab,
        DST,
        "elasticache",
        "Action=CreateReplicationGroup&Version=2015-02-02&ReplicationGroupId=sessions-apne3\
         &ReplicationGroupDescription=lab&Engine=redis&CacheNodeType=cache.t3.micro&NumNodeGroups=2&ReplicasPerNodeGroup=1",
    );
    for (dim, value) in [
        (("CacheClusterId", "sessions-apne3-001"), "0.4"),
        (("CacheClusterId", "sessions-apne3-002"), "0.7"),
        (("CacheClusterId", "someone-else-001"), "9"),
        (("ReplicationGroupId", "sessions-apne3"), "5"),
    ] {
        put_metric_datum(
            lab,
            DST,
            "AWS/ElastiCache",
            "GlobalDatastoreReplicationLag",
            dim,
            value,
        );
    }
    let grouped = |k: &str, g: &str| format!("{}\", replication_group = \"{g}", lab.get(k));
    let target = redis_target(
        t,
        &grouped("REDIS_PRIMARY_URL", "sessions-apne1"),
        &grouped("REDIS_REPLICA_URL", "sessions-apne3"),
        "1s",
        &format!(
            "ca_bundle = \"{}\"\nauth = {{ password_env = \"REDIS_PASSWORD\" }}",
            lab.get("REDIS_CA")
        ),
    );
    let agent = start(&[target]);
    // The first CloudWatch read is 10 s after the start.
    let want = [("target", t), ("metric", "GlobalDatastoreReplicationLag")];
    let aws = agent.wait_value(
        "rpo_aws_reported_lag_seconds",
        &want,
        Duration::from_secs(25),
        |_| true,
    );
    println!("{t}: AWS-reported GlobalDatastoreReplicationLag {aws:?} s");
    assert_eq!(aws, Some(0.7), "{:?}", logs_with(&agent, t, ""));
    // DescribeReplicationGroups is counted as the target's request.
    assert!(
        agent
            .value(
                "rpo_api_requests_total",
                &[
                    ("target", t),
                    ("service", "elasticache"),
                    ("op", "DescribeReplicationGroups")
                ],
            )
            .is_some_and(|v| v >= 1.0),
        "{t}: no DescribeReplicationGroups counted"
    );
    let mut labels = dir(t, SRC, DST);
    labels.push(("metric", "GlobalDatastoreReplicationLag"));
    assert_eq!(
        agent.value("rpo_aws_reported_lag_seconds", &labels),
        Some(0.7)
    );
}

/// PutMetricData into the lab's CloudWatch (moto), in the query protocol:
/// the Rust SDK speaks only RPC v2 CBOR, which the lab serves for
/// GetMetricData alone.
fn put_metric_datum(
    lab: &Lab,
    region: &str,
    namespace: &str,
    metric: &str,
    dim: (&str, &str),
    value: &str,
) {
    let body = format!(
        "Action=PutMetricData&Version=2010-08-01&Namespace={}&MetricData.member.1.MetricName={metric}\
         &MetricData.member.1.Dimensions.member.1.Name={}&MetricData.member.1.Dimensions.member.1.Value={}\
         &MetricData.member.1.Value={value}&MetricData.member.1.Unit=Seconds",
        namespace.replace('/', "%2F"),
        dim.0,
        dim.1
    );
    lab_query(lab, region, "monitoring", &body);
}

/// One query-protocol request to the lab's AWS stand-in for `service` (its
/// signing name) in `region`; moto takes the region from the credential
/// scope and checks no signature.
fn lab_query(lab: &Lab, region: &str, service: &str, body: &str) {
    use std::io::{Read, Write};
    let endpoint = lab.get("AWS_ENDPOINT_URL");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261203/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{service} {body}: {reply}"
    );
}

#[test]
fn check_shows_tls_auth_roles_and_the_canary_ttl_with_fixes() {
    let _g = pair_lock();
    let lab = lab();
    let good = lab_redis_target(lab, "chk-good", "1s", "");
    let swapped = redis_target(
        "chk-swapped",
        lab.get("REDIS_REPLICA_URL"),
        lab.get("REDIS_PRIMARY_URL"),
        "1s",
        &format!(
            "ca_bundle = \"{}\"\nauth = {{ password_env = \"REDIS_PASSWORD\" }}",
            lab.get("REDIS_CA")
        ),
    );
    let wrong_ca = redis_target(
        "chk-wrong-ca",
        lab.get("REDIS_PRIMARY_URL"),
        lab.get("REDIS_REPLICA_URL"),
        "1s",
        "ca_bundle = \"/etc/ssl/certs/ca-certificates.crt\"\nauth = { password_env = \"REDIS_PASSWORD\" }",
    );
    let (code, out) = rpo_integration_tests::run_command(
        &["check"],
        &sql_config(std::slice::from_ref(&good)),
        &lab.env,
    );
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "✓ chk-good: redis ap-northeast-1 → ap-northeast-3: reachable",
        "✓ chk-good: role of ap-northeast-1 (rediss://127.0.0.1:",
        "✓ chk-good: TTL of rpo-canary:it:chk-good on ap-northeast-1",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let (code, out) =
        rpo_integration_tests::run_command(&["check"], &sql_config(&[swapped, wrong_ca]), &lab.env);
    println!("{out}");
    assert_ne!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let fix_of = |target: &str, what: &str| -> String {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("✗ {target}:")) && l.contains(what))
            .unwrap_or_else(|| panic!("no ✗ {target}: {what} in:\n{out}"));
        format!("{} {}", lines[i], lines.get(i + 1).copied().unwrap_or(""))
    };
    assert!(
        fix_of("chk-swapped", "is the writer").contains("swap source and replicas"),
        "{out}"
    );
    assert!(fix_of("chk-wrong-ca", "").contains("ca_bundle"), "{out}");
    assert!(
        !out.contains(lab.get("REDIS_PASSWORD")),
        "a password in:\n{out}"
    );
}
