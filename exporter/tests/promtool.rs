//! `/metrics` as served must pass `promtool check metrics` with no lint
//! finding: naming, units, HELP text, counter suffixes. Prometheus' own
//! linter is the reference, so it runs here rather than a re-implementation.

mod common;

use std::process::Stdio;

use common::{labels, request, start};
use prometheus::Registry;
use rpo_exporter::{Metrics, StatusBoard};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const INSTALL_HINT: &str = "promtool is required for this test and was not found on PATH. \
Install it with: apt-get update && apt-get install -y prometheus \
(then stop the prometheus service it starts, e.g. `systemctl stop prometheus` or kill its pid)";

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let registry = Registry::new();
    let m = Metrics::new(&registry, "0.1.0").unwrap();
    for (target, kind) in [("orders", "dynamodb"), ("invoices", "s3")] {
        let r = m.replica(&labels(target, kind));
        r.rpo.set(1.5);
        r.upper_bound.set(2.0);
        r.objective.set(60.0);
        r.interval.set(5.0);
        r.lag.observe(0.3);
        r.uncertainty.observe(0.05);
        r.written.inc_by(10);
        r.observed.inc_by(9);
        r.lost.inc();
        r.failed.inc();
        r.pending.set(1);
        r.probe_up.set(1);
        r.last_success.set(1.7e9);
        r.reads.inc_by(20);
        r.probe_error("PutItem", "ThrottlingException");
        r.aws_reported_lag("ReplicationLatency", 0.2);
        m.api_request(target, kind, "PutItem", "ap-northeast-1");
    }
    m.direction_changed("orders", "dynamodb");

    let srv = start(m.exposition(), StatusBoard::new("a", "0.1.0")).await;
    let r = request(srv.addr, "GET", "/metrics").await;
    srv.stop().await;
    assert_eq!(r.status, 200);

    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(r.body.as_bytes()).await.unwrap();
    drop(stdin); // EOF: promtool reads until then
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{stdout}{stderr}\n--- body ---\n{}",
        out.status,
        r.body
    );
    assert!(
        stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool lint findings:\n{stdout}{stderr}"
    );
}
