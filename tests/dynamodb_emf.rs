//! `[emf]` end to end: the agent's stdout goes through the lab's awslogs
//! forwarder into the lab's CloudWatch Logs, which extracts the metrics as
//! AWS does. Every stdout line is checked against the EMF specification
//! (`tests/emf/`), a 15 s DynamoDB stall must show as RPO rising one second
//! per second, and GetMetricData must return the very figures the documents
//! carry. Part of the `dynamodb` test binary (it shares that lab, on a table
//! of its own), so it runs beside the other DynamoDB tests.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use rpo_integration_tests::monitoring::unix_now;
use rpo_integration_tests::{repo_root, rt, Agent};
use serde_json::Value;

use super::{config, lab, table, target, DST};

const TABLE: &str = "emf";
const STALL: Duration = Duration::from_secs(15);

/// Units the agent must give each metric.
const UNITS: [(&str, &str); 6] = [
    ("RPO", "Seconds"),
    ("RPOUpperBound", "Seconds"),
    ("ReplicationLag", "Seconds"),
    ("CanariesLost", "Count"),
    ("CanariesFailed", "Count"),
    ("ProbeUp", "None"),
];

#[test]
fn emf_documents_follow_the_spec_rise_with_a_stall_and_come_back_from_cloudwatch() {
    table(TABLE, None);
    let dir = tempfile::tempdir().unwrap();
    let tee = dir.path().join("stdout.jsonl");
    let mut forwarder = Command::new(repo_root().join("tests/lab/lab"))
        .args(["awslogs", "--dir"])
        .arg(lab().dir())
        .args([
            "--group",
            "/ecs/rpo-agent",
            "--stream",
            "emf-it",
            "--region",
            DST,
            "--tee",
        ])
        .arg(&tee)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the lab's awslogs forwarder");
    let stdin = forwarder.stdin.take().unwrap();
    let cfg = format!(
        "{}\n[emf]\nto = \"stdout\"\nevery = \"1s\"\nstorage_resolution = 1\n",
        config(&[target(TABLE, "500ms", "objective = \"5s\"")])
    );
    let mut agent = Agent::start_with_stdout(&cfg, &lab().env, Stdio::from(stdin));
    let l = [("target", TABLE)];
    let seen = agent.wait_value(
        "rpo_canaries_observed_total",
        &l,
        Duration::from_secs(20),
        |v| v >= 6.0,
    );
    assert!(seen.is_some(), "canaries flow before the stall");

    let stall_from = unix_now();
    let guard = lab().fault_until_drop(
        &["dynamodb", "stall", "--table", TABLE],
        &["dynamodb", "resume", "--table", TABLE],
    );
    std::thread::sleep(STALL);
    let stall_to = unix_now();
    guard.undo();
    let healed = agent.wait_value("rpo_seconds", &l, Duration::from_secs(15), |v| v < 5.0);
    assert!(
        healed.is_some(),
        "RPO back within the objective after the stall"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.terminate(Duration::from_secs(20)), Some(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = forwarder.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the forwarder did not exit at EOF"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "forwarder: {status}");

    // ---- every stdout line is an EMF document --------------------------------------------
    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(&tee).unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(
        lines.len() >= 18,
        "one document a second: {} lines",
        lines.len()
    );
    let schema = Command::new(repo_root().join("tests/emf/check"))
        .arg(&tee)
        .output()
        .expect("run tests/emf/check");
    assert!(
        schema.status.success(),
        "tests/emf/check (EMF schema + cross-member rules):\n{}{}",
        String::from_utf8_lossy(&schema.stdout),
        String::from_utf8_lossy(&schema.stderr)
    );
    let docs: Vec<Value> = lines.iter().map(|l| check_document(l)).collect();
    let bytes: Vec<usize> = lines.iter().map(|l| l.len() + 1).collect();
    eprintln!(
        "EMF lines: {} documents, mean {} bytes, max {} bytes; first: {}",
        lines.len(),
        bytes.iter().sum::<usize>() / bytes.len(),
        bytes.iter().max().unwrap(),
        lines[0]
    );

    // One document per second for the pair, on whole seconds, none twice.
    let mut by_ts: BTreeMap<u64, &Value> = BTreeMap::new();
    for d in &docs {
        let ts = d["_aws"]["Timestamp"].as_u64().unwrap();
        assert_eq!(ts % 1000, 0, "periods start on whole seconds: {ts}");
        assert!(by_ts.insert(ts, d).is_none(), "two documents for {ts}");
    }
    let (first, last) = (*by_ts.keys().next().unwrap(), *by_ts.keys().last().unwrap());
    let span = (last - first) / 1000 + 1;
    assert!(
        by_ts.len() as u64 >= span - 1,
        "{} documents over {span} s: periods went missing",
        by_ts.len()
    );

    // ---- the stall: RPO rises one second per second --------------------------------------
    let during: Vec<(f64, f64)> = by_ts
        .iter()
        .map(|(ts, d)| (*ts as f64 / 1000.0, d["RPO"].as_f64()))
        .filter(|(t, _)| *t >= stall_from + 2.0 && *t + 1.0 <= stall_to - 0.5)
        .map(|(t, r)| (t, r.expect("RPO in every document of the stall")))
        .collect();
    assert!(during.len() >= 10, "stall documents: {during:?}");
    for w in during.windows(2) {
        let rise = (w[1].1 - w[0].1) / (w[1].0 - w[0].0);
        assert!(
            (0.8..=1.2).contains(&rise),
            "RPO rose {rise:.2} s/s between {w:?} (all: {during:?})"
        );
    }
    let (a, b) = (during[0], during[during.len() - 1]);
    let slope = (b.1 - a.1) / (b.0 - a.0);
    eprintln!(
        "EMF during the stall: RPO rose {slope:.4} s/s over {} documents",
        during.len()
    );
    assert!(
        slope >= 0.98,
        "RPO rose {slope:.3} s per second of stall: {during:?}"
    );
    let peak = docs
        .iter()
        .filter_map(|d| d["RPO"].as_f64())
        .fold(0.0, f64::max);
    assert!(
        peak >= STALL.as_secs_f64() - 2.0,
        "the documents' peak RPO {peak} shows the {STALL:?} stall"
    );

    // ---- CloudWatch extracted the same figures --------------------------------------------
    let start = first as f64 / 1000.0;
    let end = last as f64 / 1000.0 + 1.0;
    let rpo = get_metric(TABLE, "RPO", "Maximum", start, end);
    let lag_count = get_metric(TABLE, "ReplicationLag", "SampleCount", start, end);
    let lost = get_metric(TABLE, "CanariesLost", "Sum", start, end);
    let up = get_metric(TABLE, "ProbeUp", "Minimum", start, end);
    for (ts, d) in &by_ts {
        let t = ts / 1000;
        let same = |cw: &BTreeMap<u64, f64>, doc: Option<f64>, what: &str| {
            let got = cw.get(&t).copied();
            let close = match (got, doc) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                (a, b) => a == b,
            };
            assert!(
                close,
                "{what} at {t}: GetMetricData {got:?}, the document {doc:?}"
            );
        };
        same(&rpo, d["RPO"].as_f64(), "RPO");
        same(
            &lag_count,
            d["ReplicationLag"]["Count"].as_f64(),
            "ReplicationLag samples",
        );
        same(&lost, d["CanariesLost"].as_f64(), "CanariesLost");
        same(&up, d["ProbeUp"].as_f64(), "ProbeUp");
    }
    assert_eq!(
        rpo.len(),
        by_ts.values().filter(|d| d.get("RPO").is_some()).count()
    );
    let p99 = get_metric(TABLE, "ReplicationLag", "p99", start, end);
    let stalled_lag = p99.values().copied().fold(0.0, f64::max);
    assert!(
        stalled_lag >= STALL.as_secs_f64() - 3.0,
        "the canaries held by the stall show in ReplicationLag p99: {stalled_lag}"
    );
}

/// The rules a JSON schema cannot state, on one line; returns the document.
fn check_document(line: &str) -> Value {
    assert!(
        line.len() < 16 * 1024,
        "a line over awslogs' 16 KiB split: {} bytes",
        line.len()
    );
    let d: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let directive = &d["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "RPOAgent", "{line}");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Target", "ReplicaRegion"]]),
        "{line}"
    );
    assert_eq!(d["Target"], TABLE);
    assert_eq!(d["ReplicaRegion"], DST);
    assert_eq!(d["SourceRegion"], super::SRC);
    assert_eq!(d["Kind"], "dynamodb");
    assert_eq!(d["Objective"], 5.0);
    let metrics = directive["Metrics"].as_array().unwrap();
    assert!(metrics.len() <= 100);
    for m in metrics {
        let name = m["Name"].as_str().unwrap();
        let unit = UNITS.iter().find(|(n, _)| *n == name).map(|(_, u)| *u);
        assert_eq!(m["Unit"].as_str(), unit, "unit of {name}: {line}");
        assert_eq!(m["StorageResolution"], 1, "{line}");
        assert!(d.get(name).is_some(), "{name} has no value member: {line}");
    }
    for always in ["CanariesLost", "CanariesFailed", "ProbeUp"] {
        assert!(
            metrics.iter().any(|m| m["Name"] == always),
            "{always} missing: {line}"
        );
    }
    if let Some(h) = d.get("ReplicationLag") {
        let values = h["Values"].as_array().unwrap();
        let counts = h["Counts"].as_array().unwrap();
        assert!(
            !values.is_empty() && values.len() <= 100 && values.len() == counts.len(),
            "{line}"
        );
        let n: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(Some(n), h["Count"].as_u64(), "{line}");
    }
    d
}

/// Datapoints (unix second → value) of one metric of the pair at 1 s.
fn get_metric(target: &str, name: &str, stat: &str, start: f64, end: f64) -> BTreeMap<u64, f64> {
    rt().block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&lab().sdk(DST).await);
        let metric = Metric::builder()
            .namespace("RPOAgent")
            .metric_name(name)
            .dimensions(Dimension::builder().name("Target").value(target).build())
            .dimensions(
                Dimension::builder()
                    .name("ReplicaRegion")
                    .value(DST)
                    .build(),
            )
            .build();
        let q = MetricDataQuery::builder()
            .id("m")
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(1)
                    .stat(stat)
                    .build(),
            )
            .build();
        let out = cw
            .get_metric_data()
            .metric_data_queries(q)
            .start_time(DateTime::from_secs_f64(start))
            .end_time(DateTime::from_secs_f64(end))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetMetricData {name}: {e:?}"));
        let r = &out.metric_data_results()[0];
        r.timestamps()
            .iter()
            .zip(r.values())
            .map(|(t, v)| (t.secs() as u64, *v))
            .collect()
    })
}
