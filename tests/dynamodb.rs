//! The DynamoDB global-table probe against the lab: accuracy against the
//! lab's ground truth, stalls, idle honesty, API faults, key schemas,
//! both directions, set-up problems. One lab serves every test here; each
//! test has its own table and scopes its faults to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rpo_integration_tests::monitoring::unix_now;
use rpo_integration_tests::{agent_bin, rt, Agent, Lab};

mod dynamodb_emf;

const SRC: &str = "ap-northeast-1";
const DST: &str = "ap-northeast-3";

fn lab() -> &'static Lab {
    Lab::shared("aws")
}

fn target(table: &str, interval: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{table}\"\nkind = \"dynamodb\"\ntable = \"{table}\"\nsource = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"{interval}\"\ntimeout = \"2m\"\n{extra}\n"
    )
}

fn config(targets: &[String]) -> String {
    format!(
        "[agent]\nid = \"it\"\nlisten = \"127.0.0.1:0\"\nobjective = \"10s\"\n\n{}",
        targets.join("\n")
    )
}

fn start(targets: &[String]) -> Agent {
    Agent::start(&config(targets), &lab().env)
}

fn table(name: &str, sort: Option<&str>) {
    rt().block_on(lab().create_global_table(name, SRC, DST, sort));
}

fn l<'a>(t: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("target", t)]
}

/// Per-canary (seq → measured lag) from the agent's debug log.
fn measured(agent: &Agent, target: &str) -> HashMap<u64, f64> {
    agent
        .logs()
        .iter()
        .filter(|v| v["message"] == "canary observed" && v["target"] == target)
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["lag_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Per-canary (seq → true lag) from the lab's ground truth.
fn truth(table: &str) -> HashMap<u64, f64> {
    truth_since(table, 0.0)
}

/// As `truth`, for the canaries committed at or after unix time `since`.
fn truth_since(table: &str, since: f64) -> HashMap<u64, f64> {
    lab()
        .ground_truth()
        .iter()
        .filter(|v| v["table"] == table && v["replica_region"] == DST && v["dropped"] == false)
        .filter(|v| v["committed_at"].as_f64().is_some_and(|c| c >= since))
        .filter_map(|v| {
            Some((
                v["seq"].as_u64()?,
                v["readable_at"].as_f64()? - v["committed_at"].as_f64()?,
            ))
        })
        .collect()
}

#[test]
fn measured_lag_matches_the_ground_truth_within_50ms_at_few_reads_per_canary() {
    let cases = [("acc300", "300ms", 0.3), ("acc2000", "2s", 2.0)];
    for (t, d, _) in &cases {
        table(t, None);
        lab().fault(&["dynamodb", "delay", d, "--table", t]);
    }
    let agent = start(
        &cases
            .iter()
            .map(|(t, _, _)| target(t, "1s", ""))
            .collect::<Vec<_>>(),
    );
    // Warm-up: the first canaries have no lag history to aim reads with.
    std::thread::sleep(Duration::from_secs(8));
    let reads0: Vec<_> = cases
        .iter()
        .map(|(t, ..)| agent.value("rpo_replica_reads_total", &l(t)).unwrap())
        .collect();
    let seen0: Vec<_> = cases
        .iter()
        .map(|(t, ..)| agent.value("rpo_canaries_observed_total", &l(t)).unwrap())
        .collect();
    // Reads per canary are counted over a window, so the reads made for the
    // canaries still pending at its ends (a few, at most one canary's
    // search) count without their canary: 32 canaries keep that edge under
    // 0.15 reads per canary (16 put it at up to 0.25; a full run on a loaded
    // machine once measured 4.06 over 16).
    std::thread::sleep(Duration::from_secs(32));
    for (i, (t, _, delay)) in cases.iter().enumerate() {
        let reads = agent.value("rpo_replica_reads_total", &l(t)).unwrap() - reads0[i];
        let seen = agent.value("rpo_canaries_observed_total", &l(t)).unwrap() - seen0[i];
        assert!(seen >= 20.0, "{t}: only {seen} canaries observed");
        let per = reads / seen;
        let truth = truth(t);
        let mut errors: Vec<f64> = measured(&agent, t)
            .iter()
            .filter_map(|(seq, lag)| truth.get(seq).map(|g| (lag - g).abs()))
            .collect();
        errors.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!(
            errors.len() >= 12,
            "{t}: {} canaries matched the ground truth",
            errors.len()
        );
        // The first canaries are measured without history (cold start).
        let steady = &errors[..errors.len() - 3];
        let worst = steady.last().unwrap();
        println!(
            "{t}: delay {delay}s canaries {} median error {:.1} ms, p90 {:.1} ms, max after warm-up {:.1} ms; reads/canary {per:.2}",
            errors.len(),
            errors[errors.len() / 2] * 1e3,
            errors[errors.len() * 9 / 10] * 1e3,
            worst * 1e3
        );
        assert!(*worst <= 0.050, "{t}: error {worst}s > 50 ms ({errors:?})");
        assert!(per <= 4.0, "{t}: {per} reads per canary");
    }
}

/// Per-canary (seq → reads it took) from the agent's debug log.
fn reads_per_canary(agent: &Agent, target: &str) -> HashMap<u64, u64> {
    agent
        .logs()
        .iter()
        .filter(|v| v["message"] == "canary observed" && v["target"] == target)
        .map(|v| (v["seq"].as_u64().unwrap(), v["reads"].as_u64().unwrap()))
        .collect()
}

#[test]
fn a_new_agent_starts_from_the_lag_hint_and_measures_its_first_canaries_warm() {
    // A deploy replaces the task: a new agent id, so a new canary item, and
    // nothing learned. The target's lag hint (written by the agent before)
    // lets the first canaries be measured as warm ones are (issue 8's
    // cold-start goal: within 5 % or 50 ms, at most 8 reads). The interval
    // is longer than the lag, so no canary counts reads made for another.
    let t = "hinted";
    let lag = 2.6;
    table(t, None);
    lab().fault(&["dynamodb", "delay", "2600ms", "--table", t]);
    let with_id =
        |id: &str| config(&[target(t, "5s", "")]).replace("id = \"it\"", &format!("id = \"{id}\""));
    let mut before = Agent::start(&with_id("task-before"), &lab().env);
    // The hint is written once a canary was seen precisely.
    let kept = before.wait_log(Duration::from_secs(40), |v| {
        v["message"] == "lag hint kept" && v["target"] == t
    });
    assert!(kept.is_some(), "no lag hint kept within 40 s");
    before.terminate(Duration::from_secs(10));

    let after = Agent::start(&with_id("task-after"), &lab().env);
    after.wait_value(
        "rpo_canaries_observed_total",
        &l(t),
        Duration::from_secs(60),
        |v| v >= 3.0,
    );
    let seeded = after.logs().into_iter().find(|v| {
        v["target"] == t
            && (v["message"] == "starting from the lag hint in the store"
                || v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no lag hint")))
    });
    assert!(
        seeded
            .as_ref()
            .is_some_and(|v| v["message"] == "starting from the lag hint in the store"),
        "the new agent did not start from the hint: {seeded:?}"
    );
    let measured = measured(&after, t);
    let reads = reads_per_canary(&after, t);
    let truth = truth(t);
    let mut first: Vec<u64> = measured.keys().copied().collect();
    first.sort();
    assert!(first.len() >= 3, "{} canaries observed", first.len());
    let tolerance = (lag * 0.05_f64).max(0.050);
    for seq in &first[..3] {
        let err = measured[seq] - truth[seq];
        println!(
            "canary {seq}: measured {:.3} s, true {:.3} s, {} reads",
            measured[seq], truth[seq], reads[seq]
        );
        assert!(
            err.abs() <= tolerance,
            "canary {seq}: {err:+.3} s off (tolerance {tolerance} s)"
        );
        assert!(reads[seq] <= 8, "canary {seq}: {} reads", reads[seq]);
    }
}

#[test]
fn rpo_grows_one_second_per_second_during_a_stall_and_recovers_after_resume() {
    let t = "stalled";
    table(t, None);
    lab().fault(&["dynamodb", "delay", "100ms", "--table", t]);
    let agent = start(&[target(t, "1s", "")]);
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(15),
            |v| v >= 3.0,
        )
        .unwrap();
    lab().fault(&["dynamodb", "stall", "--table", t]);
    std::thread::sleep(Duration::from_secs(3));
    let (t1, r1) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    std::thread::sleep(Duration::from_secs(8));
    let (t2, r2) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    let rate = (r2 - r1) / (t2 - t1).as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&rate),
        "rpo grew {rate} s/s ({r1} → {r2})"
    );
    assert!(agent.value("rpo_canaries_pending", &l(t)).unwrap() >= 8.0);
    let observed_before = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();

    lab().fault(&["dynamodb", "resume", "--table", t]);
    let (resumed, resumed_unix) = (Instant::now(), unix_now());
    let r = agent
        .wait_value("rpo_seconds", &l(t), Duration::from_secs(3), |v| v < 0.5)
        .unwrap();
    assert!(
        r < 0.5,
        "rpo still {r}s {:?} after resume",
        resumed.elapsed()
    );
    // The backlog's lags measure the stall: the canaries written after the
    // resume are measured at their true lag again, within the usual 50 ms.
    std::thread::sleep(Duration::from_secs(5));
    let measured = measured(&agent, t);
    let after: Vec<(u64, f64, f64)> = truth_since(t, resumed_unix)
        .into_iter()
        .filter_map(|(seq, real)| Some((seq, *measured.get(&seq)?, real)))
        .collect();
    assert!(after.len() >= 3, "{after:?}");
    for (seq, m, real) in &after {
        assert!(
            (m - real).abs() <= 0.05,
            "canary {seq} measured {m:.3} s, true lag {real:.3} s: {after:.3?}"
        );
    }
    let written = agent.value("rpo_canaries_written_total", &l(t)).unwrap();
    let observed = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();
    let pending = agent.value("rpo_canaries_pending", &l(t)).unwrap();
    assert_eq!(
        observed + pending,
        written,
        "every canary counted exactly once"
    );
    assert!(observed - observed_before >= 8.0);
    assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
}

#[test]
fn aws_reported_lag_comes_from_cloudwatch_beside_ours() {
    let t = "cwlag";
    table(t, None);
    lab().fault(&["dynamodb", "delay", "300ms", "--table", t]);
    let agent = start(&[target(t, "1s", "")]);
    // The first CloudWatch read is 10 s after start (then once a minute):
    // the lab publishes ReplicationLatency (ms) per replicated write, and
    // the agent exports the minute's Average in seconds.
    let want = [("target", t), ("metric", "ReplicationLatency")];
    let aws = agent.wait_value(
        "rpo_aws_reported_lag_seconds",
        &want,
        Duration::from_secs(25),
        |_| true,
    );
    let ours = agent.value("rpo_seconds", &l(t)).unwrap();
    println!("AWS-reported ReplicationLatency {aws:?} s, rpo_seconds {ours:.3} s");
    assert!(
        aws.is_some_and(|v| (0.29..=0.40).contains(&v)),
        "AWS-reported lag {aws:?} for a 300 ms delay: {:?}",
        agent.logs()
    );
    let m = agent.metrics();
    let with = |k: &str| {
        m.iter()
            .find(|s| s.name == "rpo_aws_reported_lag_seconds" && s.label("target") == Some(t))
            .and_then(|s| s.label(k).map(str::to_string))
    };
    assert_eq!(with("replica_region").as_deref(), Some(DST));
    assert_eq!(with("source_region").as_deref(), Some(SRC));
    // The batched call serves every target: counted once, with an empty
    // target; the target's billable share is counted apart.
    assert!(
        agent
            .value(
                "rpo_api_requests_total",
                &[
                    ("target", ""),
                    ("service", "cloudwatch"),
                    ("op", "GetMetricData")
                ],
            )
            .unwrap_or(0.0)
            >= 1.0,
        "GetMetricData is counted"
    );
    assert!(
        agent
            .value("rpo_cloudwatch_metrics_requested_total", &[("target", t)])
            .unwrap_or(0.0)
            >= 1.0,
        "the target's metrics requested from CloudWatch are counted"
    );
}

#[test]
fn an_idle_healthy_replica_reports_its_real_lag_not_time_since_last_write() {
    let t = "idle";
    table(t, None);
    lab().fault(&["dynamodb", "delay", "200ms", "--table", t]);
    // No application writes at all, and canaries only every 3 s: a
    // "now - last replicated write" metric would saw-tooth up to 3 s.
    let agent = start(&[target(t, "3s", "")]);
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(15),
            |v| v >= 2.0,
        )
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..24 {
        seen.push(agent.value("rpo_seconds", &l(t)).unwrap());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        seen.iter().all(|r| (0.15..0.45).contains(r)),
        "rpo_seconds while idle: {seen:?}"
    );
    let upper = agent.value("rpo_upper_bound_seconds", &l(t)).unwrap();
    assert!(upper >= 0.15 && upper < 3.6, "upper bound {upper}");
}

#[test]
fn api_errors_are_counted_by_code_and_the_probe_recovers_by_itself() {
    let t = "faulty";
    table(t, None);
    let agent = start(&[target(t, "300ms", "")]);
    let up = |want: f64| {
        agent.wait_value("rpo_probe_up", &l(t), Duration::from_secs(20), |v| {
            v == want
        })
    };
    assert_eq!(up(1.0), Some(1.0));
    let code = |op: &str, code: &str| {
        let mut want = l(t);
        want.extend([("op", op), ("code", code)]);
        agent.wait_value(
            "rpo_probe_errors_total",
            &want,
            Duration::from_secs(25),
            |v| v > 0.0,
        )
    };
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["error", "throttle", "0.5", "PutItem"],
            "PutItem",
            "ProvisionedThroughputExceededException",
        ),
        (
            &["error", "throttle", "0.5", "GetItem"],
            "GetItem",
            "ProvisionedThroughputExceededException",
        ),
        (
            &["error", "503", "0.7", "GetItem"],
            "GetItem",
            "ServiceUnavailable",
        ),
        (&["error", "latency", "6s", "GetItem"], "GetItem", "timeout"),
    ];
    for (fault, op, c) in cases {
        let mut args = vec!["dynamodb"];
        args.extend(fault);
        args.extend(["--table", t]);
        lab().fault(&args);
        assert!(
            code(op, c).is_some_and(|v| v > 0.0),
            "no {op}/{c} error counted for {fault:?}"
        );
        lab().fault(&["dynamodb", "error", "clear", "--table", t]);
        assert_eq!(up(1.0), Some(1.0), "probe did not recover after {fault:?}");
    }
    let (status, _) = agent.get("/metrics").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn the_key_schema_is_discovered_including_a_numeric_sort_key() {
    let t = "sorted";
    table(t, Some("N"));
    let agent = start(&[target(t, "500ms", "")]);
    assert!(
        agent
            .wait_value(
                "rpo_canaries_observed_total",
                &l(t),
                Duration::from_secs(15),
                |v| v >= 2.0
            )
            .unwrap()
            >= 2.0
    );
}

#[test]
fn direction_both_measures_each_way() {
    let t = "multiactive";
    table(t, None);
    let agent = start(&[target(t, "500ms", "direction = \"both\"")]);
    for (s, r) in [(SRC, DST), (DST, SRC)] {
        let want = [("target", t), ("source_region", s), ("replica_region", r)];
        let v = agent.wait_value(
            "rpo_canaries_observed_total",
            &want,
            Duration::from_secs(15),
            |v| v >= 2.0,
        );
        assert!(v.is_some_and(|v| v >= 2.0), "{s} → {r}: {v:?}");
    }
}

#[test]
fn a_table_without_the_replica_is_a_configuration_problem_not_lag() {
    let t = "lonely";
    rt().block_on(async {
        use aws_sdk_dynamodb::types::*;
        let c = aws_sdk_dynamodb::Client::new(&lab().sdk(SRC).await);
        c.create_table()
            .table_name(t)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let agent = start(&[target(t, "500ms", "")]);
    let line = agent
        .wait_log(Duration::from_secs(10), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("configuration problem"))
        })
        .expect("a configuration problem is logged");
    assert_eq!(line["code"], "replica_not_in_global_table", "{line}");
    let mut want = l(t);
    want.push(("code", "replica_not_in_global_table"));
    assert!(agent.value("rpo_probe_errors_total", &want).unwrap() >= 1.0);
    assert_eq!(agent.value("rpo_probe_up", &l(t)), Some(0.0));
    assert_eq!(agent.value("rpo_canaries_written_total", &l(t)), Some(0.0));
    let (status, _) = agent.get("/readyz").unwrap();
    assert_eq!(status, 503, "not ready while a target cannot be prepared");
}

#[test]
fn once_prints_a_table_and_fails_on_a_missing_table() {
    let t = "oncetable";
    table(t, None);
    let run = |tbl: &str| {
        let cfg = config(&[target(tbl, "1s", "")])
            .replace(&format!("table = \"{tbl}\""), &format!("table = \"{tbl}\""));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), cfg).unwrap();
        std::process::Command::new(agent_bin())
            .args(["once", "--wait", "10s", "--config"])
            .arg(f.path())
            .envs(&lab().env)
            .output()
            .unwrap()
    };
    let ok = run(t);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.lines().next().unwrap().starts_with("TARGET"), "{out}");
    assert!(
        out.contains(&format!("{SRC} → {DST}")) && out.trim_end().ends_with("ok"),
        "{out}"
    );
    let bad = run("no-such-table");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("ResourceNotFoundException") && out.contains("does not exist"),
        "{out}"
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let t = "drain";
    table(t, None);
    let mut agent = start(&[target(t, "500ms", "")]);
    agent
        .wait_value(
            "rpo_canaries_observed_total",
            &l(t),
            Duration::from_secs(10),
            |v| v >= 1.0,
        )
        .unwrap();
    assert_eq!(agent.get("/healthz").unwrap().0, 200);
    assert_eq!(agent.get("/readyz").unwrap().0, 200);
    let started = Instant::now();
    assert_eq!(agent.terminate(Duration::from_secs(15)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(12));
    assert!(!agent.is_running());
    assert!(agent.logs().iter().any(|v| v["message"] == "stopped"));
}
