//! End to end alerting: the real agent, scraped by the lab's Prometheus
//! evaluating the shipped rules (dashboards/rules/), Alertmanager routing to
//! the lab's webhook receiver (ALERT_WEBHOOK_LOG).
//!
//! One lab ("aws,monitoring", owned by this binary) and ONE agent with two
//! DynamoDB targets, each on its own global table, canary interval 1 s:
//! - `healthy` (objective 30 s, the agent default) is never stalled;
//! - `stalled` (objective 10 s) is stalled and resumed in phase 2.
//!
//! Phase 1, healthy and idle for ≥ 2 minutes (replication delay 200 ms, no
//! application writes): no notification reaches the webhook and Prometheus
//! has nothing firing, checked every 2 s. A short burst of throttled reads
//! on `healthy` (a transient error, which must not page either) gives the
//! "Probe errors by code" panels real data. After ≥ 90 s of scraping,
//! dashboards/check_panels.py runs every panel query of every dashboard
//! against this Prometheus and must pass.
//!
//! Phase 2: `lab fault dynamodb stall --table stalled`: RPOAboveObjective
//! (severity warning) for `stalled` must reach the webhook within
//! objective + 15 s = 25 s of the stall; then `resume`: its resolved
//! notification must arrive within 60 s (the rule's keep_firing_for 30 s
//! delays it by design). `healthy` must never be notified.
//!
//! Run: cargo build -p rpo-agent && cargo test -p rpo-integration-tests --test monitoring -- --nocapture

use std::process::Command;
use std::time::{Duration, Instant};

use rpo_integration_tests::monitoring::{describe, unix_now, Monitoring};
use rpo_integration_tests::{repo_root, Agent, Lab};

const SRC: &str = "ap-northeast-1";
const DST: &str = "ap-northeast-3";
const HEALTHY: &str = "healthy";
const STALLED: &str = "stalled";
/// Objective of the stalled target, seconds.
const OBJECTIVE: f64 = 10.0;
/// Stall → page bound required by the design (objective + 15 s). Never loosen.
const PAGE_BOUND: f64 = OBJECTIVE + 15.0;
/// Resume → resolved bound: keep_firing_for 30 s + evaluation/routing slack.
const RESOLVE_BOUND: f64 = 60.0;
/// Phase 1 lasts at least this long (counted from the first good scrape).
const IDLE: Duration = Duration::from_secs(120);
/// check_panels.py runs once Prometheus has scraped the agent this long.
const PANELS_AFTER: Duration = Duration::from_secs(90);

fn config() -> String {
    let target = |name: &str, extra: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nkind = \"dynamodb\"\ntable = \"{name}\"\nsource = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n{extra}\n"
        )
    };
    format!(
        "[agent]\nid = \"mon\"\nlisten = \"127.0.0.1:0\"\nobjective = \"30s\"\n\n{}\n{}",
        target(HEALTHY, ""),
        target(STALLED, &format!("objective = \"{}s\"", OBJECTIVE as u64)),
    )
}

/// Fails the test if any notification reached the webhook or any alert is
/// firing in Prometheus. Returns the names of pending alerts (allowed: a
/// `for:` that has not elapsed pages nobody).
fn assert_quiet(mon: &Monitoring, when: &str) -> Vec<String> {
    let notes = mon.notifications();
    assert!(
        notes.is_empty(),
        "{when}: {} notification(s) reached the webhook while everything was healthy:\n{}",
        notes.len(),
        mon.webhook_log_text()
    );
    let alerts = mon
        .alerts()
        .unwrap_or_else(|e| panic!("{when}: Prometheus /api/v1/alerts: {e}"));
    let firing: Vec<String> = alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(describe)
        .collect();
    assert!(
        firing.is_empty(),
        "{when}: alerts firing while everything was healthy: {firing:?}\n{alerts:#?}"
    );
    alerts.iter().map(describe).collect()
}

/// Runs dashboards/check_panels.py against the lab's Prometheus; returns
/// (number of queries checked, output). Panics (with the output) on failure.
fn check_panels(mon: &Monitoring) -> (usize, String) {
    let script = repo_root().join("dashboards/check_panels.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--prometheus", &mon.prometheus])
        // The agent has scraped data for < 3 minutes; a 10 m dashboard
        // range covers all of it (range queries span [now-10m, now]).
        .args(["--range", "10m"])
        // A loaded machine may lag a rule evaluation or two behind.
        .args(["--retry-for", "30"])
        // Every panel must have data, "Probe errors by code" included: the
        // throttling burst of phase 1 gave it some. So no default exclusion.
        .arg("--no-default-allow-empty")
        // "AWS-reported vs observed" has data too: the lab publishes
        // CloudWatch's ReplicationLatency and the agent reads it.
        // Excluded, because this lab run cannot produce the data at all:
        // - rpo_direction_changes_total exists only for SQL targets (DynamoDB
        //   global tables are multi-active: no direction to swap); this test
        //   runs DynamoDB targets only (the SQL failover tests cover swaps).
        .args([
            "--allow-empty",
            r"^RPO DR drill / Direction changes( in range)? \[A\]$",
        ])
        // Lost / failed canaries are NOT excluded: their counters exist at 0
        // from start-up, so increase()/rate() return 0, which is data.
        .output()
        .expect("run python3 dashboards/check_panels.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or("");
    let counts: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        out.status.success() && counts.len() == 2 && counts[1] == 0,
        "check_panels.py failed ({}):\n{text}",
        out.status
    );
    (counts[0] + counts[1], text)
}

#[test]
fn alerts_stay_quiet_while_healthy_and_page_within_objective_plus_15s_on_a_stall() {
    let t0 = Instant::now();
    let lab = Lab::start("aws,monitoring");
    let mon = Monitoring::of(&lab);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for t in [HEALTHY, STALLED] {
        rt.block_on(lab.create_global_table(t, SRC, DST, None));
        lab.fault(&["dynamodb", "delay", "200ms", "--table", t]);
    }
    let agent = Agent::start(&config(), &lab.env);
    lab.fault(&["monitoring", "scrape", &agent.addr]);

    // Prometheus scrapes the agent: both targets' RPO series are in.
    let up = format!("up{{job=\"rpo-agent\",instance=\"{}\"}} == 1", agent.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = mon
            .query(&format!(
                "count(rpo_seconds{{instance=\"{}\"}}) and on() ({up})",
                agent.addr
            ))
            .ok()
            .and_then(|r| r.first().cloned())
            .and_then(|s| s["value"][1].as_str().map(str::to_string));
        if n.as_deref() == Some("2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not scrape the agent at {} (targets: {:?})",
            agent.addr,
            mon.api("targets")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let scraping = Instant::now();
    println!(
        "lab + agent up, Prometheus scraping after {:.1}s",
        (scraping - t0).as_secs_f64()
    );

    // ---- phase 1: healthy and idle ---------------------------------------------------------
    let mut burst: Option<Instant> = None;
    let mut burst_done = false;
    let mut panels: Option<(usize, f64)> = None;
    let mut pending_seen = std::collections::BTreeSet::new();
    while scraping.elapsed() < IDLE || panels.is_none() {
        let since = scraping.elapsed();
        let when = format!(
            "phase 1, {:.0}s after the first scrape",
            since.as_secs_f64()
        );
        pending_seen.extend(assert_quiet(&mon, &when));

        // A transient throttling burst on `healthy` reads (the SDK retries
        // once, so ~25% of reads fail): errors are counted by op and code,
        // the probe recovers, and nothing may page (RPOProbeDown has for: 1m).
        if burst.is_none() && since >= Duration::from_secs(10) {
            lab.fault(&[
                "dynamodb", "error", "throttle", "0.5", "GetItem", "--table", HEALTHY,
            ]);
            burst = Some(Instant::now());
        }
        if let (Some(b), false) = (burst, burst_done) {
            let errors = agent
                .value("rpo_probe_errors_total", &[("target", HEALTHY)])
                .unwrap_or(0.0);
            if errors >= 3.0 || b.elapsed() >= Duration::from_secs(30) {
                lab.fault(&["dynamodb", "error", "clear", "--table", HEALTHY]);
                burst_done = true;
                println!(
                    "throttling burst on {HEALTHY}: {:.1}s, {errors} probe errors",
                    b.elapsed().as_secs_f64()
                );
                assert!(
                    errors >= 1.0,
                    "a 30 s throttling burst caused no probe error"
                );
            }
        }

        if panels.is_none() && since >= PANELS_AFTER {
            let started = Instant::now();
            let (n, text) = check_panels(&mon);
            let took = started.elapsed().as_secs_f64();
            println!("check_panels.py ({took:.1}s):\n{text}");
            panels = Some((n, took));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    pending_seen.extend(assert_quiet(&mon, "end of phase 1"));
    let idle = scraping.elapsed().as_secs_f64();
    println!(
        "phase 1: {idle:.0}s healthy, no notification, nothing firing (pending at some point: {pending_seen:?})"
    );
    // Both targets measured all along: no canary lost or failed.
    for t in [HEALTHY, STALLED] {
        assert_eq!(
            agent.value("rpo_canaries_lost_total", &[("target", t)]),
            Some(0.0)
        );
        assert!(
            agent
                .value("rpo_canaries_observed_total", &[("target", t)])
                .unwrap()
                >= 60.0
        );
    }

    // ---- phase 2: stall → page → resume → resolved ---------------------------------------
    let page_labels = [
        ("alertname", "RPOAboveObjective"),
        ("severity", "warning"),
        ("target", STALLED),
    ];
    let stall_at = unix_now();
    lab.fault(&["dynamodb", "stall", "--table", STALLED]);
    let stall_cmd = unix_now() - stall_at;
    // Wait past the bound (to report the real figure if it is late).
    let deadline = Instant::now() + Duration::from_secs_f64(PAGE_BOUND + 20.0);
    let page = loop {
        if let Some((at, alert)) = mon.notified(&page_labels, "firing").into_iter().next() {
            break Some((at, alert));
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some((paged_at, alert)) = page else {
        panic!(
            "no RPOAboveObjective warning for {STALLED} within {:.0}s of the stall; Prometheus alerts: {:?}\nwebhook log:\n{}",
            PAGE_BOUND + 20.0,
            mon.alerts().map(|a| a.iter().map(describe).collect::<Vec<_>>()),
            mon.webhook_log_text()
        );
    };
    let stall_to_page = paged_at - stall_at;
    println!(
        "stall → page: {stall_to_page:.1}s (bound {PAGE_BOUND:.0}s; `lab fault stall` itself took {stall_cmd:.2}s, counted in)"
    );
    println!("  summary: {}", alert["annotations"]["summary"]);
    println!("  description: {}", alert["annotations"]["description"]);
    assert!(
        stall_to_page <= PAGE_BOUND,
        "RPOAboveObjective reached the webhook {stall_to_page:.1}s after the stall, more than objective + 15 s = {PAGE_BOUND}s"
    );
    for k in ["summary", "description", "runbook_url"] {
        assert!(
            alert["annotations"][k]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "the page has no {k}: {alert:#}"
        );
    }
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("objective 10s"),
        "the description does not name the objective: {description}"
    );

    let resume_at = unix_now();
    lab.fault(&["dynamodb", "resume", "--table", STALLED]);
    let deadline = Instant::now() + Duration::from_secs_f64(RESOLVE_BOUND + 15.0);
    let resolved = loop {
        let r = mon
            .notified(&page_labels, "resolved")
            .into_iter()
            .find(|(at, _)| *at >= resume_at);
        if r.is_some() || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let Some((resolved_at, _)) = resolved else {
        panic!(
            "no resolved RPOAboveObjective for {STALLED} within {:.0}s of the resume; Prometheus alerts: {:?}\nwebhook log:\n{}",
            RESOLVE_BOUND + 15.0,
            mon.alerts().map(|a| a.iter().map(describe).collect::<Vec<_>>()),
            mon.webhook_log_text()
        );
    };
    let resume_to_resolved = resolved_at - resume_at;
    println!("resume → resolved: {resume_to_resolved:.1}s (bound {RESOLVE_BOUND:.0}s; keep_firing_for 30s)");
    assert!(
        resume_to_resolved <= RESOLVE_BOUND,
        "resolved arrived {resume_to_resolved:.1}s after the resume (> {RESOLVE_BOUND}s)"
    );
    let rpo = agent
        .wait_value(
            "rpo_seconds",
            &[("target", STALLED)],
            Duration::from_secs(5),
            |v| v < 1.0,
        )
        .unwrap();
    assert!(rpo < 1.0, "{STALLED}: RPO still {rpo}s after the resume");

    // Every notification of the run: the healthy target never paged.
    let all = mon.notifications();
    let mut seen = Vec::new();
    for n in &all {
        for a in n["alerts"].as_array().into_iter().flatten() {
            let d = format!(
                "{} at +{:.1}s",
                describe(a),
                n["lab_received_at"].as_f64().unwrap_or(0.0) - stall_at
            );
            assert_ne!(
                a["labels"]["target"], HEALTHY,
                "the healthy target was notified: {d}\n{n:#}"
            );
            seen.push(d);
        }
    }
    println!("notifications (time after the stall): {seen:#?}");
    assert_eq!(
        agent.value("rpo_canaries_lost_total", &[("target", STALLED)]),
        Some(0.0)
    );

    let (n, took) = panels.unwrap();
    println!(
        "FIGURES: stall→page {stall_to_page:.1}s (≤ {PAGE_BOUND:.0}s), resume→resolved {resume_to_resolved:.1}s (≤ {RESOLVE_BOUND:.0}s), panel queries checked {n} (check_panels.py {took:.1}s), healthy idle {idle:.0}s, test {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    drop(agent);
    lab.stop();
}
