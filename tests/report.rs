//! `rpo-agent report` against the lab's real Prometheus, which scraped a
//! real agent through a scripted drill. One lab ("aws,sql,monitoring",
//! owned by this binary: the PostgreSQL promote changes its pair for good)
//! and ONE agent (interval 1 s) with two targets:
//! - `rep-ddb` (DynamoDB, objective 5 s): stalled for 20 s;
//! - `rep-pg` (PostgreSQL, objective 10 min): promoted, then its old primary
//!   stopped, so the agent swaps the direction once. Its new replica is the
//!   stopped old primary, so its RPO rises until the test ends: the long
//!   objective keeps that from being an episode of its own.
//!
//! The script, inside one report window of whole minutes: healthy, the
//! DynamoDB stall, healthy, the agent stopped for a minute and started
//! again (same port, so Prometheus's `up` is 0 meanwhile), healthy, the
//! PostgreSQL failover, healthy. The report's figures are then checked
//! against what Prometheus's raw samples say, computed here on their own:
//! breached slices (within one), the one episode's start and end (±2 s)
//! and peak (±1 s), the direction change's time (±2 s), no-data slices for
//! the stop. The same window as Markdown must parse as CommonMark tables;
//! as HTML it must render in headless Chromium (a screenshot that is not
//! blank) without a single network request.
//!
//! Run: cargo build -p rpo-agent && cargo test -p rpo-integration-tests --test report -- --nocapture

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rpo_integration_tests::monitoring::{unix_now, Monitoring};
use rpo_integration_tests::sql::{lab_target, run_init, DST, SRC};
use rpo_integration_tests::{agent_bin, browser, Agent, Lab};
use serde_json::Value;

const DDB: &str = "rep-ddb";
const PG: &str = "rep-pg";
const OBJECTIVE: f64 = 5.0;
const STALL: Duration = Duration::from_secs(20);
const STOPPED: Duration = Duration::from_secs(62);

/// A port free now, for an agent that must come back on the same one.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(lab: &Lab, port: u16) -> String {
    format!(
        "[agent]\nid = \"rep\"\nlisten = \"127.0.0.1:{port}\"\nobjective = \"30s\"\n\n\
         [[target]]\nname = \"{DDB}\"\nkind = \"dynamodb\"\ntable = \"{DDB}\"\nsource = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\nobjective = \"{}s\"\n\n{}",
        OBJECTIVE as u64,
        lab_target(lab, PG, "postgres", "1s", "objective = \"10m\"")
    )
}

/// `rpo-agent report ARGS`; (exit code, stdout, stderr).
fn report(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(agent_bin())
        .arg("report")
        .args(args)
        .output()
        .expect("run rpo-agent report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sleep_until(unix: f64) {
    let d = unix - unix_now();
    if d > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(d));
    }
}

/// Raw samples of `rpo_seconds` of a target in `[from, to]`, merged over
/// its pairs (the highest per timestamp), from Prometheus itself.
fn raw_rpo(mon: &Monitoring, target: &str, from: f64, to: f64) -> Vec<(f64, f64)> {
    let range = (to - from).ceil() as u64;
    let r = mon
        .api(&format!(
            "query?query={}&time={to}",
            rpo_integration_tests::monitoring::url_encode(&format!(
                "rpo_seconds{{target=\"{target}\"}}[{range}s]"
            ))
        ))
        .expect("raw samples");
    let mut by_t: std::collections::BTreeMap<i64, f64> = Default::default();
    for s in r["result"].as_array().unwrap() {
        for p in s["values"].as_array().unwrap() {
            let t = p[0].as_f64().unwrap();
            let v: f64 = p[1].as_str().unwrap().parse().unwrap_or(f64::NAN);
            if t > from && v.is_finite() {
                let e = by_t.entry((t * 1000.0) as i64).or_insert(v);
                *e = e.max(v);
            }
        }
    }
    by_t.into_iter()
        .map(|(t, v)| (t as f64 / 1000.0, v))
        .collect()
}

/// The episodes the raw samples show: (first above, first back, peak).
fn raw_episodes(samples: &[(f64, f64)]) -> Vec<(f64, f64, f64)> {
    let mut out = Vec::new();
    let mut cur: Option<(f64, f64)> = None;
    for &(t, v) in samples {
        match (cur, v > OBJECTIVE) {
            (None, true) => cur = Some((t, v)),
            (Some((s, p)), true) => cur = Some((s, p.max(v))),
            (Some((s, p)), false) => {
                out.push((s, t, p));
                cur = None;
            }
            (None, false) => {}
        }
    }
    out
}

fn target<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == name)
        .unwrap_or_else(|| panic!("no target {name} in the report: {r:#}"))
}

#[test]
fn a_scripted_drill_is_reported_as_the_metrics_say() {
    let t0 = Instant::now();
    let lab = Lab::start("aws,sql,monitoring");
    let mon = Monitoring::of(&lab);
    let prom = mon.prometheus.clone();
    rpo_integration_tests::rt().block_on(lab.create_global_table(DDB, SRC, DST, None));
    lab.fault(&["dynamodb", "delay", "200ms", "--table", DDB]);
    let port = free_port();
    let cfg = config(&lab, port);
    let (ok, out) = run_init(&cfg);
    assert!(ok, "rpo-agent init: {out}");
    let mut agent = Agent::start(&cfg, &lab.env);
    lab.fault(&["monitoring", "scrape", &agent.addr]);
    let scraped = Instant::now() + Duration::from_secs(30);
    while mon.query_value("count(rpo_seconds == rpo_seconds)") != Some(2.0) {
        assert!(
            Instant::now() < scraped,
            "Prometheus does not scrape the agent: {:?}",
            mon.api("targets")
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The window starts on the first whole minute with ≥ 15 s of data before it.
    let from = ((unix_now() + 15.0) / 60.0).ceil() * 60.0;
    sleep_until(from + 20.0);

    // The DynamoDB stall.
    let stall_at = unix_now();
    lab.fault(&["dynamodb", "stall", "--table", DDB]);
    std::thread::sleep(STALL);
    lab.fault(&["dynamodb", "resume", "--table", DDB]);
    let resumed_at = unix_now();
    std::thread::sleep(Duration::from_secs(20));

    // The agent stopped for a minute, back on the same port.
    assert_eq!(agent.terminate(Duration::from_secs(10)), Some(0));
    let stopped_at = unix_now();
    std::thread::sleep(STOPPED);
    let agent = Agent::start(&cfg, &lab.env);
    let restarted_at = unix_now();
    std::thread::sleep(Duration::from_secs(20));

    // The PostgreSQL failover: promote (split brain), then the old primary
    // is lost and the agent swaps the direction.
    lab.fault(&["postgres", "promote"]);
    std::thread::sleep(Duration::from_secs(2));
    lab.fault(&["postgres", "stop", "primary"]);
    let swapped = agent.wait_log(Duration::from_secs(10), |l| {
        l["target"] == PG
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("replication direction changed"))
    });
    let swapped_at = unix_now();
    assert!(swapped.is_some(), "no direction change: {:?}", agent.logs());
    std::thread::sleep(Duration::from_secs(15));
    // The window ends on a whole minute, scraped and evaluated.
    let to = (unix_now() / 60.0).ceil() * 60.0;
    sleep_until(to + 3.0);
    println!(
        "script done after {:?}: window {from}..{to}, stall {stall_at:.1}..{resumed_at:.1}, stopped {stopped_at:.1}..{restarted_at:.1}, swap {swapped_at:.1}",
        t0.elapsed()
    );

    let (from_s, to_s) = (format!("{from}"), format!("{to}"));
    let window = ["--prometheus", &prom, "--from", &from_s, "--to", &to_s];
    let json_report = |extra: &[&str]| {
        let (code, json, err) =
            report(&[&window[..], &["--format", "json", "--drill"], extra].concat());
        assert_eq!(code, Some(0), "report failed: {err}");
        let r: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        r
    };
    // The raw path first (every figure below is checked on it), then the
    // recording rules the lab's Prometheus evaluates (dashboards/rules/).
    let r = json_report(&["--raw"]);
    let ruled = json_report(&[]);
    assert_eq!(r["path"], "raw_queries", "{}", r["path_note"]);
    assert_eq!(ruled["path"], "recording_rules", "{}", ruled["path_note"]);
    let slices = ((to - from) / 60.0) as u64;
    for name in [DDB, PG] {
        let (a, b) = (
            &target(&r, name)["attainment"],
            &target(&ruled, name)["attainment"],
        );
        println!("{name}: raw {a}, rules {b} ({})", ruled["path_note"]);
        for k in ["met", "breached", "no_data"] {
            assert!(
                a[k].as_u64().unwrap().abs_diff(b[k].as_u64().unwrap()) <= 1,
                "{name} {k}: raw {a} vs rules {b}"
            );
        }
        assert_eq!(b["slices"].as_u64(), Some(slices));
        assert_eq!(
            target(&r, name)["episodes"].as_array().unwrap().len(),
            target(&ruled, name)["episodes"].as_array().unwrap().len(),
            "{name}: the two paths found different episodes"
        );
    }

    // DynamoDB: attainment and the one episode, as the raw samples say.
    let ddb = target(&r, DDB);
    let samples = raw_rpo(&mon, DDB, from, to);
    let raw = raw_episodes(&samples);
    assert_eq!(raw.len(), 1, "the raw samples show {raw:?}");
    let (raw_start, raw_end, raw_peak) = raw[0];
    let episodes = ddb["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 1, "{episodes:#?}");
    let e = &episodes[0];
    let (start, end, peak) = (
        e["start"].as_f64().unwrap(),
        e["end"].as_f64().unwrap(),
        e["peak_rpo_seconds"].as_f64().unwrap(),
    );
    println!("episode: report {start:.1}..{end:.1} peak {peak:.2}; raw {raw_start:.1}..{raw_end:.1} peak {raw_peak:.2}; stall {stall_at:.1}..{resumed_at:.1}");
    assert!(
        (start - raw_start).abs() <= 2.0,
        "start {start} vs {raw_start}"
    );
    assert!((end - raw_end).abs() <= 2.0, "end {end} vs {raw_end}");
    assert!((peak - raw_peak).abs() <= 1.0, "peak {peak} vs {raw_peak}");
    // The rules path refines the same episode to the same samples.
    let re = &target(&ruled, DDB)["episodes"][0];
    assert!(
        (re["start"].as_f64().unwrap() - start).abs() <= 2.0
            && (re["end"].as_f64().unwrap() - end).abs() <= 2.0,
        "rules path episode {re} vs raw path {e}"
    );
    // And the samples themselves follow the stall (RPO ≈ stall length at its peak).
    assert!(
        start > stall_at && start < stall_at + OBJECTIVE + 4.0,
        "{start} vs stall at {stall_at}"
    );
    assert!(
        peak >= STALL.as_secs_f64() - 2.0 && peak <= STALL.as_secs_f64() + 5.0,
        "peak {peak}"
    );
    let a = &ddb["attainment"];
    let n = |k: &str| a[k].as_u64().unwrap();
    assert_eq!(n("slices"), slices);
    assert_eq!(n("met") + n("breached") + n("no_data"), slices);
    let raw_breached: std::collections::BTreeSet<i64> = samples
        .iter()
        .filter(|(_, v)| *v > OBJECTIVE)
        .map(|(t, _)| ((t - 1e-3) / 60.0).floor() as i64)
        .collect();
    assert!(
        n("breached").abs_diff(raw_breached.len() as u64) <= 1,
        "breached {} vs {} minutes above in the raw samples",
        n("breached"),
        raw_breached.len()
    );
    // The minute the agent was stopped: no data, never met.
    assert!((1..=2).contains(&n("no_data")), "no-data slices: {a}");
    assert_eq!(
        r["fleet"]["no_data"].as_u64().unwrap(),
        n("no_data") + target(&r, PG)["attainment"]["no_data"].as_u64().unwrap()
    );
    assert_eq!(ddb["verdict"], "breached");
    let ddb_pair = &ddb["pairs"][0];
    assert!(
        ddb_pair["canaries"]["observed"].as_f64().unwrap() > 100.0,
        "{ddb_pair}"
    );
    let p50 = ddb_pair["lag_p50_seconds"].as_f64().unwrap();
    assert!(
        p50 > 0.15 && p50 < 1.0,
        "lag p50 {p50} with a 200 ms replication delay"
    );
    assert!(ddb_pair["reads_per_canary"].as_f64().unwrap() >= 1.0);

    // PostgreSQL: one direction change, at the time the agent logged it.
    let pg = target(&r, PG);
    let f = pg["failovers"].as_array().unwrap();
    assert_eq!(f.len(), 1, "{f:#?}");
    let at = f[0]["at"].as_f64().unwrap();
    assert!(
        (at - swapped_at).abs() <= 2.0,
        "direction change at {at}, logged at ≈{swapped_at}"
    );
    assert_eq!(f[0]["from_source"], SRC, "{f:?}");
    assert_eq!(f[0]["to_source"], DST, "{f:?}");
    assert!(f[0]["rpo_seconds"].as_f64().is_some(), "{f:?}");
    let drill = &r["drill"];
    let sw = &drill["switches"][0];
    assert_eq!(sw["target"], PG, "{drill:#}");
    assert!(
        sw["time_to_detect_seconds"]
            .as_f64()
            .is_some_and(|d| (0.0..=30.0).contains(&d)),
        "{sw}"
    );
    // The new direction's replica is the old primary, which the lab stopped:
    // no canary can arrive there, and the report must not claim one did.
    assert!(sw["first_canary_new_direction_at"].is_null(), "{sw}");
    assert!(sw["rpo_at_switch_seconds"].as_f64().is_some(), "{sw}");
    assert!(
        drill["timeline"].as_array().unwrap().len() >= 3,
        "{drill:#}"
    );

    // A window Prometheus holds nothing of: said so, exit 1, no report.
    let (code, out, err) = report(&[
        "--prometheus",
        &prom,
        "--from",
        "2020-01-01T00:00:00Z",
        "--to",
        "2020-01-02T00:00:00Z",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        out.is_empty()
            && err.contains("no rpo-agent series")
            && err.contains("2020-01-01T00:00:00Z"),
        "{err}"
    );

    // An unknown target is named, with the ones that exist.
    let (code, _, err) = report(&[&window[..], &["--target", "nope"]].concat());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("\"nope\"") && err.contains(DDB) && err.contains(PG),
        "{err}"
    );

    // Markdown: CommonMark with GFM tables, one per section.
    let (code, md, err) = report(&[&window[..], &["--format", "markdown", "--drill"]].concat());
    assert_eq!(code, Some(0), "{err}");
    check_markdown(&md);

    // HTML: self-contained, rendered by Chromium, no network request.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    std::fs::create_dir_all(&work).unwrap();
    let page = work.join("report.html");
    let out = page.to_string_lossy().to_string();
    let (code, _, err) =
        report(&[&window[..], &["--format", "html", "--drill", "--out", &out]].concat());
    assert_eq!(code, Some(0), "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    for banned in [
        "<script",
        "@import",
        "url(",
        "src=\"http",
        "href=\"http",
        "<link",
        "<img",
    ] {
        assert!(!html.contains(banned), "the HTML holds {banned:?}");
    }
    assert!(html.contains("<svg") && html.contains(DDB) && html.contains(PG));
    let shot = browser::render(&page, &work, 1000, 1600);
    assert!(
        browser::looks_drawn(&shot.png, 40_000),
        "screenshot looks blank: {} bytes",
        shot.png.len()
    );
    assert!(shot.netlog_events > 0, "Chromium wrote no net log");
    assert!(
        shot.requested.is_empty(),
        "the report asked for {:?}",
        shot.requested
    );
    // The same check catches a page that does ask (so the empty list above
    // is not merely a blind net log).
    let control = work.join("control.html");
    std::fs::write(
        &control,
        "<!doctype html><p>x<img src=\"http://127.0.0.1:9/pixel.png\">",
    )
    .unwrap();
    let seen = browser::render(&control, &work.join("control"), 400, 300);
    assert!(
        seen.requested
            .iter()
            .any(|u| u.contains("127.0.0.1:9/pixel.png")),
        "the net log check did not see the control page's request: {:?}",
        seen.requested
    );
    std::fs::write(work.join("report.md"), &md).unwrap();
    println!(
        "report: {} ({} bytes), screenshot {} bytes, total {:?}",
        page.display(),
        html.len(),
        shot.png.len(),
        t0.elapsed()
    );
}

/// The Markdown parses as CommonMark with GFM tables: the summary and every
/// per-target section are real tables (a broken row would turn into a
/// paragraph), with the same number of cells on every row.
fn check_markdown(md: &str) {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let mut tables = 0;
    let mut headings = Vec::new();
    let mut in_heading = false;
    let mut cells_per_row: Vec<usize> = Vec::new();
    let mut cells = 0;
    let mut widths: Vec<usize> = Vec::new();
    for ev in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match ev {
            Event::Start(Tag::Table(aligns)) => {
                tables += 1;
                widths.push(aligns.len());
                cells_per_row.clear();
            }
            Event::Start(Tag::TableCell) => cells += 1,
            Event::End(TagEnd::TableRow) | Event::End(TagEnd::TableHead) => {
                cells_per_row.push(cells);
                cells = 0;
            }
            Event::End(TagEnd::Table) => {
                let w = *widths.last().unwrap();
                assert!(
                    cells_per_row.iter().all(|c| *c == w),
                    "a table row has the wrong number of cells: {cells_per_row:?} vs {w}\n{md}"
                );
            }
            Event::Start(Tag::Heading { .. }) => in_heading = true,
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Text(t) if in_heading => headings.push(t.to_string()),
            Event::Html(h) | Event::InlineHtml(h) => panic!("raw HTML in the Markdown: {h}"),
            _ => {}
        }
    }
    assert!(headings.iter().any(|h| h == "Summary"), "{headings:?}");
    assert!(
        headings.iter().any(|h| h.contains(DDB)) && headings.iter().any(|h| h.contains(PG)),
        "{headings:?}"
    );
    assert!(headings.iter().any(|h| h == "Drill record"), "{headings:?}");
    // Summary + per target (episodes or none, per pair) + drill timeline + switches.
    assert!(tables >= 6, "{tables} tables in\n{md}");
}

#[test]
fn bad_input_gets_a_message_that_names_the_thing() {
    // Nothing listens: unreachable, exit 1, the URL named.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, err) = report(&["--prometheus", &url, "--last", "1h"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&url) && err.contains("cannot reach"), "{err}");
    // Bad flags: exit 2.
    let (code, _, err) = report(&["--prometheus", "prometheus:9090"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http://"), "{err}");
    let (code, _, err) = report(&["--prometheus", &url, "--from", "yesterday"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--from") && err.contains("RFC 3339"), "{err}");
    let (code, _, _) = report(&["--prometheus", &url, "--format", "pdf"]);
    assert_eq!(code, Some(2));
    // Something that is not Prometheus (404 on /api/v1): named as such.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found");
        }
    });
    let (code, _, err) = report(&["--prometheus", &other, "--last", "1h"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no Prometheus API") && err.contains("base URL"),
        "{err}"
    );
}

/// The rules group's evaluation offset past each minute, seconds (the
/// timestamp of its latest sample).
fn rules_offset(mon: &Monitoring) -> Option<f64> {
    mon.query_value("max(timestamp(rpo:rpo_objective_seconds:max1m))")
        .map(|t| t % 60.0)
}

/// The edges of a slice (issue 20): an episode straddling a clock minute
/// and a breach in the last minute before `--to`. Whatever offset the
/// rules group evaluates at, the rules path must judge exactly the clock
/// minutes the raw path judges, and never call the last slice met because
/// its evaluation has not happened yet. Own lab and agent: its target must
/// not show up in the drill's fleet figures.
///
/// Script (B a clock minute): RPO above the objective over ≈ B−5 … B+5.5
/// (straddles B), healthy, above again over ≈ B+169 … B+177.5; the window
/// B−60 … B+180 (four slices: breached, breached, met, breached) and its
/// last two minutes (`--last 2m`: met, breached), reported at B+182.
#[test]
fn slice_edges_are_judged_alike_on_both_paths() {
    const EDGE: &str = "edge-ddb";
    let t0 = Instant::now();
    let lab = Lab::start("aws,monitoring");
    let mon = Monitoring::of(&lab);
    let prom = mon.prometheus.clone();
    rpo_integration_tests::rt().block_on(lab.create_global_table(EDGE, SRC, DST, None));
    lab.fault(&["dynamodb", "delay", "200ms", "--table", EDGE]);
    let cfg = format!(
        "[agent]\nid = \"edge\"\nlisten = \"127.0.0.1:{}\"\n\n\
         [[target]]\nname = \"{EDGE}\"\nkind = \"dynamodb\"\ntable = \"{EDGE}\"\nsource = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\nobjective = \"{}s\"\n",
        free_port(),
        OBJECTIVE as u64
    );
    let agent = Agent::start(&cfg, &lab.env);
    lab.fault(&["monitoring", "scrape", &agent.addr]);
    let scraped = Instant::now() + Duration::from_secs(30);
    while mon.query_value("count(rpo_seconds == rpo_seconds)") != Some(1.0) {
        assert!(
            Instant::now() < scraped,
            "Prometheus does not scrape the agent"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let b = ((unix_now() + 12.0) / 60.0).ceil() * 60.0;
    let stall = |start: f64, end: f64| {
        sleep_until(start);
        lab.fault(&["dynamodb", "stall", "--table", EDGE]);
        sleep_until(end);
        lab.fault(&["dynamodb", "resume", "--table", EDGE]);
    };
    stall(b - 10.0, b + 5.0);
    stall(b + 164.0, b + 177.0);
    let (from, to) = (b - 60.0, b + 180.0);
    sleep_until(to + 2.0);
    let offset = rules_offset(&mon);
    println!(
        "script done after {:?}: B = {b}, rules evaluate at {offset:?} s past each minute",
        t0.elapsed()
    );

    // The clock minutes with a raw sample above the objective.
    let above: std::collections::BTreeSet<i64> = raw_rpo(&mon, EDGE, from, to)
        .iter()
        .filter(|(_, v)| *v > OBJECTIVE)
        .map(|(t, _)| ((t - 1e-3) / 60.0).floor() as i64 * 60 + 60)
        .collect();
    let want: Vec<i64> = [b, b + 60.0, b + 180.0].iter().map(|t| *t as i64).collect();
    assert_eq!(
        above.iter().copied().collect::<Vec<_>>(),
        want,
        "the script did not breach the minutes it meant to (slice ends)"
    );

    let (from_s, to_s) = (format!("{from}"), format!("{to}"));
    let json = |args: &[&str]| {
        let (code, out, err) = report(
            &[
                &["--prometheus", &prom, "--format", "json", "--target", EDGE][..],
                args,
            ]
            .concat(),
        );
        assert_eq!(code, Some(0), "report failed: {err}");
        serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let full = ["--from", &from_s, "--to", &to_s];
    let tail = ["--last", "2m"];
    for (window, breached, met) in [(&full[..], 3, 1), (&tail[..], 1, 1)] {
        let raw = json(&[window, &["--raw"]].concat());
        let ruled = json(window);
        assert_eq!(raw["path"], "raw_queries", "{}", raw["path_note"]);
        assert_eq!(ruled["path"], "recording_rules", "{}", ruled["path_note"]);
        let (a, r) = (
            &target(&raw, EDGE)["attainment"],
            &target(&ruled, EDGE)["attainment"],
        );
        println!(
            "{window:?}: raw {a}, rules {r}\n  rules path: {}",
            ruled["path_note"]
        );
        assert_eq!(a, r, "{window:?}: the two paths judged different slices");
        assert_eq!(
            (
                a["breached"].as_u64(),
                a["met"].as_u64(),
                a["no_data"].as_u64()
            ),
            (Some(breached), Some(met), Some(0)),
            "{window:?}: {a}"
        );
        assert_eq!(target(&ruled, EDGE)["verdict"], "breached");
        // The last slice's breach is an episode on both paths.
        for rep in [&raw, &ruled] {
            let eps = target(rep, EDGE)["episodes"].as_array().unwrap();
            assert!(
                eps.iter().any(|e| e["end"].as_f64().unwrap() >= to - 20.0),
                "{window:?} {}: no episode in the last minute: {eps:#?}",
                rep["path"]
            );
        }
        // It says which path judged the tail.
        let note = ruled["path_note"].as_str().unwrap();
        assert!(
            note.contains("raw samples") && note.contains("last"),
            "the rules path does not say who judged the tail: {note}"
        );
    }
    println!("slice edges: {:?}", t0.elapsed());
}
