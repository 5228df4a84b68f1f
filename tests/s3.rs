//! The S3 replication probe against the lab: accuracy against the lab's
//! ground truth (1 s and 30 s), FAILED replication, set-up problems, a
//! stall, SlowDown. One lab serves every test here; each test has its own
//! buckets and scopes its faults to its source (or destination) bucket.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rpo_integration_tests::monitoring::unix_now;
use rpo_integration_tests::{rt, Agent, Lab};

const SRC: &str = "ap-northeast-1";
const DST: &str = "ap-northeast-3";

fn lab() -> &'static Lab {
    Lab::shared("aws")
}

fn src(t: &str) -> String {
    format!("{t}-tokyo")
}

fn dst(t: &str) -> String {
    format!("{t}-osaka")
}

/// Source `<t>-tokyo` replicating `rule_prefix` to `<t>-osaka`, with the
/// canary lifecycle rule.
fn buckets(t: &str, rule_prefix: &str) {
    rt().block_on(lab().create_replicated_buckets(
        &src(t),
        SRC,
        &[(&dst(t), DST)],
        rule_prefix,
        true,
    ));
}

fn target(t: &str, interval: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{t}\"\nkind = \"s3\"\nsource = {{ region = \"{SRC}\", bucket = \"{}\" }}\nreplicas = [{{ region = \"{DST}\", bucket = \"{}\" }}]\ninterval = \"{interval}\"\ntimeout = \"2m\"\n{extra}\n",
        src(t),
        dst(t)
    )
}

fn start(targets: &[String]) -> Agent {
    let cfg = format!(
        "[agent]\nid = \"it\"\nlisten = \"127.0.0.1:0\"\nobjective = \"60s\"\n\n{}",
        targets.join("\n")
    );
    Agent::start(&cfg, &lab().env)
}

fn l(t: &str) -> Vec<(&'static str, &str)> {
    vec![("target", t)]
}

fn seq_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

/// Per-canary true lag (readable_at − committed_at) from the ground truth.
fn truth(t: &str) -> HashMap<u64, f64> {
    truth_since(t, 0.0).into_iter().collect()
}

/// As `truth`, for the canaries committed at or after unix time `since`.
fn truth_since(t: &str, since: f64) -> BTreeMap<u64, f64> {
    lab()
        .s3_ground_truth(&src(t))
        .iter()
        .filter(|v| v["status"] == "COMPLETED")
        .filter(|v| v["committed_at"].as_f64().is_some_and(|c| c >= since))
        .filter_map(|v| {
            Some((
                seq_of(v["key"].as_str()?)?,
                v["readable_at"].as_f64()? - v["committed_at"].as_f64()?,
            ))
        })
        .collect()
}

/// Per-canary (seq → (measured lag, reads)) from the agent's debug log.
fn measured(agent: &Agent, t: &str) -> HashMap<u64, (f64, u64)> {
    agent
        .logs()
        .iter()
        .filter(|v| v["message"] == "canary observed" && v["target"] == t)
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                (
                    v["lag_seconds"].as_f64().unwrap(),
                    v["reads"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Written, observed + failed, and pending canaries, from one scrape that
/// adds up (the pending gauge refreshes every 250 ms, the counters at once).
fn counts(agent: &Agent, t: &str) -> (f64, f64, f64) {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let m = agent.metrics();
        let v = |name: &str| rpo_integration_tests::metrics::sum(&m, name, &l(t)).unwrap();
        let c = (
            v("rpo_canaries_written_total"),
            v("rpo_canaries_observed_total") + v("rpo_canaries_failed_total"),
            v("rpo_canaries_pending"),
        );
        if c.1 + c.2 == c.0 || Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_observed(agent: &Agent, t: &str, n: f64, secs: u64) {
    let v = agent.wait_value(
        "rpo_canaries_observed_total",
        &l(t),
        Duration::from_secs(secs),
        |v| v >= n,
    );
    assert!(
        v.is_some_and(|v| v >= n),
        "{t}: {v:?} canaries observed; logs: {:?}",
        agent.logs().iter().rev().take(20).collect::<Vec<_>>()
    );
}

#[test]
fn measured_lag_matches_the_ground_truth_for_1s_and_30s_delays() {
    // (target, delay, interval, canaries of warm-up to skip)
    let cases = [("acc1s", "1s", "1s"), ("acc30s", "30s", "10s")];
    for (t, d, _) in &cases {
        buckets(t, "rpo-canary/");
        lab().fault(&["s3", "delay", d, "--bucket", &src(t)]);
    }
    let agent = start(
        &cases
            .iter()
            .map(|(t, _, i)| target(t, i, ""))
            .collect::<Vec<_>>(),
    );
    // The 30 s case: canaries written at 0, 10, … 60 s arrive by 90 s. The
    // ones written before the first arrival are timed without lag history
    // (cold start: reads a quarter of the age apart); they are reported
    // apart, the budget applies to the canaries written after it.
    // Seven: up to four are cold (written before 30 s, ± jitter), and one run
    // of the day matched only five of six to the ground truth (the rows are
    // printed on failure to find out why), which left one warm canary.
    wait_observed(&agent, "acc30s", 7.0, 110);
    for (t, d, _) in &cases {
        let delay: f64 = d.trim_end_matches('s').parse().unwrap();
        let truth = truth(t);
        let mut rows: Vec<(u64, f64, f64, u64)> = measured(&agent, t)
            .into_iter()
            .filter_map(|(seq, (lag, reads))| truth.get(&seq).map(|g| (seq, lag, *g, reads)))
            .collect();
        rows.sort_by_key(|r| r.0);
        // Canaries written before the first one arrived had no history to
        // aim reads with.
        let first_seen = rows[0].0 as f64 + rows[0].1 * 1e6;
        let cold = rows.iter().filter(|r| (r.0 as f64) < first_seen).count();
        let steady = &rows[cold..];
        let min = if delay > 5.0 { 2 } else { 20 };
        assert!(
            steady.len() >= min,
            "{t}: {} canaries matched after {cold} cold ones (seq, measured, true, reads): {rows:?}",
            steady.len()
        );
        let errors: Vec<f64> = steady.iter().map(|r| (r.1 - r.2).abs()).collect();
        let worst = errors.iter().cloned().fold(0.0, f64::max);
        let mean_err = errors.iter().sum::<f64>() / errors.len() as f64;
        // Destination reads per canary once the lag is known.
        let warm: Vec<u64> = steady
            .iter()
            .skip(if delay > 5.0 { 0 } else { 2 })
            .map(|r| r.3)
            .collect();
        let reads = warm.iter().sum::<u64>() as f64 / warm.len().max(1) as f64;
        let budget = (delay * 0.02).max(0.1);
        if delay > 5.0 {
            for r in &rows {
                println!(
                    "  seq {} measured {:.3} s, true {:.3} s, {} reads",
                    r.0, r.1, r.2, r.3
                );
            }
        }
        println!(
            "{t}: delay {delay}s, {} canaries: mean error {:.1} ms, max {:.1} ms (budget {:.0} ms); reads/canary {reads:.2} over {} warm canaries (cold: {cold} canaries, {:?} reads)",
            steady.len(),
            mean_err * 1e3,
            worst * 1e3,
            budget * 1e3,
            warm.len(),
            rows[..cold].iter().map(|r| r.3).collect::<Vec<_>>()
        );
        // Every HeadObject, source checks included, per observed canary.
        let m = agent.metrics();
        let heads = |region: &str| {
            rpo_integration_tests::metrics::sum(
                &m,
                "rpo_api_requests_total",
                &[("target", t), ("op", "HeadObject"), ("region", region)],
            )
            .unwrap_or(0.0)
        };
        let seen =
            rpo_integration_tests::metrics::sum(&m, "rpo_canaries_observed_total", &l(t)).unwrap();
        println!(
            "{t}: whole run incl. cold start: {:.2} destination + {:.2} source HeadObject per observed canary",
            heads(DST) / seen,
            heads(SRC) / seen
        );
        assert!(worst <= budget, "{t}: error {worst}s > {budget}s: {rows:?}");
        assert!(
            !warm.is_empty() && reads <= 5.0,
            "{t}: {reads} reads per canary"
        );
    }
    let requests = agent
        .value(
            "rpo_api_requests_total",
            &[("target", "acc1s"), ("op", "HeadObject")],
        )
        .unwrap();
    assert!(requests > 0.0, "HEAD requests are counted");
    // AWS's own figure beside ours: CloudWatch's ReplicationLatency (the
    // lab publishes one datapoint per replicated object; the agent reads the
    // minute's Maximum 10 s after start and then once a minute).
    for (t, d, _) in &cases {
        let delay: f64 = d.trim_end_matches('s').parse().unwrap();
        let want = [("target", *t), ("metric", "ReplicationLatency")];
        let aws = agent.value("rpo_aws_reported_lag_seconds", &want);
        println!("{t}: AWS-reported ReplicationLatency {aws:?} s (injected {delay} s)");
        assert!(
            aws.is_some_and(|v| v >= delay * 0.98 && v <= delay * 1.02 + 0.25),
            "{t}: AWS-reported lag {aws:?}, injected {delay} s"
        );
    }
    // One GetMetricData serves every target of the source region: it is
    // counted once with an empty target, and what each target asked for
    // (the billable unit) in rpo_cloudwatch_metrics_requested_total.
    let calls = agent
        .value(
            "rpo_api_requests_total",
            &[
                ("target", ""),
                ("service", "cloudwatch"),
                ("op", "GetMetricData"),
            ],
        )
        .unwrap_or(0.0);
    let mut requested = 0.0;
    for (t, _, _) in &cases {
        let r = agent
            .value("rpo_cloudwatch_metrics_requested_total", &[("target", *t)])
            .unwrap_or(0.0);
        assert!(
            r >= 1.0,
            "{t}: metrics requested from CloudWatch are counted ({r})"
        );
        requested += r;
    }
    assert!(calls >= 1.0, "GetMetricData is counted ({calls})");
    assert!(
        calls < requested,
        "{} targets share GetMetricData calls: {calls} calls for {requested} metrics",
        cases.len()
    );
}

#[test]
fn failed_replication_is_counted_at_once_and_not_as_lost() {
    let t = "failing";
    buckets(t, "rpo-canary/");
    lab().fault(&["s3", "delay", "500ms", "--bucket", &src(t)]);
    let agent = start(&[target(t, "1s", "")]);
    wait_observed(&agent, t, 3.0, 20);
    lab().fault(&["s3", "fail", "2", "--bucket", &src(t)]);
    // Record when the counter moves.
    let mut seen_at = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = 0.0;
    while Instant::now() < end && last < 2.0 {
        let v = agent
            .value("rpo_canaries_failed_total", &l(t))
            .unwrap_or(0.0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        for _ in (last as usize)..(v as usize) {
            seen_at.push(now.as_secs_f64());
        }
        last = v;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last, 2.0, "failed canaries counted");
    let mut failed_at: Vec<f64> = lab()
        .s3_ground_truth(&src(t))
        .iter()
        .filter(|v| v["status"] == "FAILED")
        .map(|v| v["committed_at"].as_f64().unwrap() + 0.5)
        .collect();
    failed_at.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(failed_at.len(), 2);
    let delays: Vec<f64> = seen_at.iter().zip(&failed_at).map(|(s, f)| s - f).collect();
    println!(
        "time from FAILED at the source to rpo_canaries_failed_total: {delays:?} s (interval 1 s)"
    );
    assert!(
        delays.iter().all(|d| *d < 1.5),
        "FAILED noticed within one poll: {delays:?}"
    );
    wait_observed(
        &agent,
        t,
        agent.value("rpo_canaries_observed_total", &l(t)).unwrap() + 2.0,
        10,
    );
    let (written, observed, pending) = counts(&agent, t);
    assert_eq!(observed + pending, written, "each canary counted once");
    assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
    assert!(agent
        .logs()
        .iter()
        .any(|v| v["message"] == "canary replication FAILED (reported by the store)"));
    // RPO does not keep growing with the failed canaries.
    let rpo = agent.value("rpo_seconds", &l(t)).unwrap();
    assert!(rpo < 2.0, "rpo {rpo}");
}

#[test]
fn a_rule_missing_the_prefix_or_versioning_off_is_a_configuration_problem_not_lag() {
    let (narrow, unversioned, nolc) = ("narrowrule", "unversioned", "nolifecycle");
    buckets(narrow, "invoices/");
    buckets(unversioned, "rpo-canary/");
    rt().block_on(async {
        lab().set_versioning(&dst(unversioned), DST, false).await;
        lab()
            .create_replicated_buckets(&src(nolc), SRC, &[(&dst(nolc), DST)], "", false)
            .await;
    });
    let agent = start(&[
        target(narrow, "500ms", ""),
        target(unversioned, "500ms", ""),
        target(nolc, "500ms", ""),
    ]);
    for (t, code, words) in [
        (narrow, "replication_rule_missing", "prefix `invoices/`"),
        (unversioned, "versioning_not_enabled", "Suspended"),
    ] {
        let line = agent
            .wait_log(Duration::from_secs(10), |v| {
                v["target"] == t
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("configuration problem"))
            })
            .unwrap_or_else(|| {
                let logs: Vec<_> = agent
                    .logs()
                    .into_iter()
                    .filter(|v| v["target"] == t)
                    .take(5)
                    .collect();
                panic!("{t}: no configuration problem logged: {logs:?}")
            });
        assert_eq!(line["code"], code, "{line}");
        let msg = line["message"].as_str().unwrap();
        assert!(msg.contains(words), "{msg}");
        let mut want = l(t);
        want.push(("code", code));
        assert!(agent.value("rpo_probe_errors_total", &want).unwrap() >= 1.0);
        assert_eq!(agent.value("rpo_probe_up", &l(t)), Some(0.0));
        assert_eq!(agent.value("rpo_canaries_written_total", &l(t)), Some(0.0));
        assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
    }
    // A missing lifecycle rule is a warning, once per bucket, not an error.
    wait_observed(&agent, nolc, 2.0, 15);
    assert_eq!(agent.value("rpo_probe_up", &l(nolc)), Some(1.0));
    let warnings: Vec<_> = agent
        .logs()
        .into_iter()
        .filter(|v| {
            v["target"] == nolc
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no lifecycle rule"))
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn rpo_grows_one_second_per_second_during_a_stall_and_falls_back_after_resume() {
    let t = "stalls3";
    buckets(t, "rpo-canary/");
    lab().fault(&["s3", "delay", "200ms", "--bucket", &src(t)]);
    let agent = start(&[target(t, "2s", "")]);
    wait_observed(&agent, t, 3.0, 20);
    lab().fault(&["s3", "stall", "--bucket", &src(t)]);
    std::thread::sleep(Duration::from_secs(4));
    let (t1, r1) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    std::thread::sleep(Duration::from_secs(24));
    let (t2, r2) = (Instant::now(), agent.value("rpo_seconds", &l(t)).unwrap());
    let rate = (r2 - r1) / (t2 - t1).as_secs_f64();
    println!("stall: rpo {r1:.2} → {r2:.2} s, {rate:.3} s/s");
    assert!(
        (0.9..=1.1).contains(&rate),
        "rpo grew {rate} s/s ({r1} → {r2})"
    );
    assert!(agent.value("rpo_canaries_pending", &l(t)).unwrap() >= 12.0);
    let observed_before = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();

    lab().fault(&["s3", "resume", "--bucket", &src(t)]);
    let (resumed, resumed_unix) = (Instant::now(), unix_now());
    // Within two intervals every stalled canary is seen and RPO no longer
    // shows the stall (each stalled canary is read at least once per
    // interval).
    let r = agent
        .wait_value("rpo_seconds", &l(t), Duration::from_secs(4), |v| v < 3.0)
        .unwrap();
    println!("rpo {r:.2} s {:?} after resume", resumed.elapsed());
    assert!(
        r < 3.0,
        "rpo still {r}s {:?} after resume",
        resumed.elapsed()
    );
    // The backlog's lags must not skew the poll planner: the canaries
    // written after the resume are measured at their true lag, not
    // over-measured for a while. The true lag comes from the ground truth,
    // not the injected 200 ms: on a loaded CI machine the lab's replication
    // itself runs late.
    std::thread::sleep(Duration::from_secs(8));
    let truth = truth_since(t, resumed_unix);
    let measured = measured(&agent, t);
    let after: Vec<(u64, f64, f64)> = truth
        .iter()
        .filter_map(|(seq, real)| Some((*seq, measured.get(seq)?.0, *real)))
        .collect();
    println!("after resume (seq, measured, true): {after:.3?}");
    assert!(after.len() >= 3, "{after:?}");
    for (seq, m, real) in &after {
        assert!(
            (m - real).abs() <= 0.1_f64.max(real * 0.02),
            "canary {seq} measured {m:.3} s, true lag {real:.3} s"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let (written, observed, pending) = counts(&agent, t);
    assert_eq!(observed + pending, written, "every canary counted once");
    assert!(observed - observed_before >= 12.0);
    assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
    assert_eq!(agent.value("rpo_canaries_failed_total", &l(t)), Some(0.0));
}

#[test]
fn slowdown_errors_are_counted_by_code_and_the_probe_recovers() {
    let t = "slowdown";
    buckets(t, "rpo-canary/");
    let agent = start(&[target(t, "300ms", "")]);
    assert_eq!(
        agent.wait_value("rpo_probe_up", &l(t), Duration::from_secs(20), |v| v == 1.0),
        Some(1.0)
    );
    lab().fault(&["s3", "error", "slowdown", "0.3", "--bucket", &src(t)]);
    lab().fault(&["s3", "error", "slowdown", "0.3", "--bucket", &dst(t)]);
    let observed = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();
    for op in ["PutObject", "HeadObject"] {
        let mut want = l(t);
        want.extend([("op", op), ("code", "SlowDown")]);
        let v = agent.wait_value(
            "rpo_probe_errors_total",
            &want,
            Duration::from_secs(25),
            |v| v > 0.0,
        );
        assert!(v.is_some_and(|v| v > 0.0), "no {op}/SlowDown counted");
    }
    // Canaries keep flowing through the errors (SDK retry + next round).
    wait_observed(&agent, t, observed + 5.0, 20);
    lab().fault(&["s3", "error", "clear", "--bucket", &src(t)]);
    lab().fault(&["s3", "error", "clear", "--bucket", &dst(t)]);
    assert_eq!(
        agent.wait_value("rpo_probe_up", &l(t), Duration::from_secs(10), |v| v == 1.0),
        Some(1.0)
    );
    let m = agent.metrics();
    let other: Vec<_> = m
        .iter()
        .filter(|s| {
            s.name == "rpo_probe_errors_total"
                && s.label("target") == Some(t)
                && s.label("code") != Some("SlowDown")
        })
        .collect();
    assert!(other.is_empty(), "only SlowDown errors: {other:?}");
}

#[test]
fn delete_seen_removes_replicated_source_canaries_and_keeps_the_dr_copies() {
    let t = "delseen";
    buckets(t, "rpo-canary/");
    let agent = start(&[target(t, "500ms", "delete_seen = true")]);
    wait_observed(&agent, t, 6.0, 20);
    // Deletions run after the sighting, in the background.
    std::thread::sleep(Duration::from_secs(1));
    let keys = |bucket: &str, region: &str| -> Vec<String> {
        rt().block_on(async {
            lab()
                .s3(region)
                .await
                .list_objects_v2()
                .bucket(bucket)
                .prefix("rpo-canary/")
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    };
    let observed = agent.value("rpo_canaries_observed_total", &l(t)).unwrap();
    let left = keys(&src(t), SRC);
    let kept = keys(&dst(t), DST);
    println!(
        "{t}: {observed} observed; {} source canaries left, {} DR copies kept",
        left.len(),
        kept.len()
    );
    // Only canaries not yet seen (about one interval's worth) remain.
    assert!(left.len() <= 3, "source canaries not deleted: {left:?}");
    // The DR side is never touched (no delete permission needed there).
    assert!(kept.len() as f64 >= observed, "{} < {observed}", kept.len());
    assert!(
        !agent.logs().iter().any(|v| v["target"] == t
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("could not delete"))),
        "DeleteObject failed"
    );
    assert_eq!(agent.value("rpo_canaries_lost_total", &l(t)), Some(0.0));
}
