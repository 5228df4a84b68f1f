//! Fleet mode against the lab: three agents of one fleet on one target
//! write as one agent would, exactly one exports the RPO series, and
//! another takes over when the holder dies (SIGKILL), leaves (SIGTERM) or
//! freezes past its lease (SIGSTOP: fenced); a lease table that stops
//! answering makes every agent measure on its own until it is back.
//! One lab serves every test; each test has its own tables and fleet.

use std::time::{Duration, Instant};

use rpo_integration_tests::{agent_bin, rt, Agent, Lab};

const SRC: &str = "ap-northeast-1";
const DST: &str = "ap-northeast-3";
const LEASE: Duration = Duration::from_secs(4);
const INTERVAL: Duration = Duration::from_secs(1);

fn lab() -> &'static Lab {
    Lab::shared("aws")
}

/// The config of agent `id` of fleet `name` on DynamoDB table `table`.
fn config(name: &str, id: &str, table: &str) -> String {
    format!(
        "[agent]\nid = \"{id}\"\nlisten = \"127.0.0.1:0\"\nobjective = \"10s\"\n\n\
         [fleet]\nname = \"{name}\"\ntable = \"leases-{name}\"\nregion = \"{DST}\"\nlease = \"{}s\"\n\n\
         [[target]]\nname = \"{table}\"\nkind = \"dynamodb\"\ntable = \"{table}\"\n\
         source = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"{}s\"\ntimeout = \"2m\"\n",
        LEASE.as_secs(),
        INTERVAL.as_secs()
    )
}

/// Creates the target's global table and (with `rpo-agent init`) the
/// fleet's lease table; starts `n` agents of the fleet.
fn fleet(name: &str, n: usize) -> (String, Vec<Agent>) {
    let table = format!("fleet-{name}");
    rt().block_on(lab().create_global_table(&table, SRC, DST, None));
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), config(name, "init", &table)).unwrap();
    let out = std::process::Command::new(agent_bin())
        .args(["init", "--config"])
        .arg(cfg.path())
        .envs(&lab().env)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "init: {said}");
    assert!(
        said.contains(&format!("lease table leases-{name} created")),
        "{said}"
    );
    let agents = (0..n)
        .map(|i| Agent::start(&config(name, &format!("{name}-a{i}"), &table), &lab().env))
        .collect();
    (table, agents)
}

fn leader(a: &Agent, t: &str) -> bool {
    a.value("rpo_fleet_leader", &[("target", t)]) == Some(1.0)
}

fn exports_rpo(a: &Agent, t: &str) -> bool {
    a.metrics()
        .iter()
        .any(|s| s.name == "rpo_seconds" && s.label("target") == Some(t))
}

fn written(a: &Agent, t: &str) -> f64 {
    a.value("rpo_canaries_written_total", &[("target", t)])
        .unwrap_or(0.0)
}

/// Waits until exactly one of `agents` (skipping `skip`) leads `t` and
/// exports its RPO; returns its index.
fn one_holder(agents: &[Agent], t: &str, skip: Option<usize>, within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let live = |i: &usize| Some(*i) != skip;
        let leaders: Vec<usize> = (0..agents.len())
            .filter(live)
            .filter(|&i| leader(&agents[i], t))
            .collect();
        let exporting: Vec<usize> = (0..agents.len())
            .filter(live)
            .filter(|&i| exports_rpo(&agents[i], t))
            .collect();
        if leaders.len() == 1 && exporting == leaders {
            return leaders[0];
        }
        assert!(
            Instant::now() < end,
            "{t}: leaders {leaders:?}, exporting rpo_seconds {exporting:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until agent `i` writes a canary of `t` (its written count grows
/// past `from`); how long that took.
fn writes_within(a: &Agent, t: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let from = written(a, t);
    while written(a, t) <= from {
        assert!(start.elapsed() < within, "{t}: no canary within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn three_agents_write_as_one_and_a_successor_writes_within_a_lease_and_an_interval_of_a_sigkill() {
    let (t, mut agents) = fleet("kill", 3);
    let holder = one_holder(&agents, &t, None, Duration::from_secs(20));
    // Writes of the whole fleet over a window = one agent's.
    let before: f64 = agents.iter().map(|a| written(a, &t)).sum();
    let window = Duration::from_secs(12);
    std::thread::sleep(window);
    let fleet_writes: f64 = agents.iter().map(|a| written(a, &t)).sum::<f64>() - before;
    let one = window.as_secs_f64() / INTERVAL.as_secs_f64();
    println!("{t}: the fleet wrote {fleet_writes} canaries in {window:?} (one agent: {one:.0})");
    assert!(
        (fleet_writes - one).abs() <= 2.0,
        "{t}: the fleet wrote {fleet_writes} canaries in {window:?}; one agent writes {one:.0}"
    );
    assert_eq!(
        one_holder(&agents, &t, None, Duration::from_secs(1)),
        holder
    );
    // The status page of a standby names the holder.
    let standby = (holder + 1) % 3;
    let (_, page) = agents[standby].get("/").unwrap();

    assert!(page.contains("STANDBY"), "{page}");
    assert!(page.contains(&format!("held by kill-a{holder}")), "{page}");

    let killed = Instant::now();
    agents[holder].signal(libc::SIGKILL);
    let bound = LEASE + INTERVAL + Duration::from_millis(1500);
    let next = loop {
        if let Some(i) = (0..3).find(|&i| i != holder && leader(&agents[i], &t)) {
            break i;
        }
        assert!(
            killed.elapsed() < bound,
            "{t}: nobody took over within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    writes_within(
        &agents[next],
        &t,
        bound.saturating_sub(killed.elapsed()) + Duration::from_millis(300),
    );
    let took = killed.elapsed();
    println!("{t}: SIGKILL of the holder -> the successor's first canary in {took:?} (lease {LEASE:?}, interval {INTERVAL:?})");
    assert_eq!(
        one_holder(&agents, &t, Some(holder), Duration::from_secs(3)),
        next
    );
    assert_eq!(
        agents[next].value("rpo_fleet_takeovers_total", &[("target", &t)]),
        Some(1.0)
    );
    // The successor measures: its canaries are observed.
    assert!(
        agents[next]
            .wait_value(
                "rpo_canaries_observed_total",
                &[("target", &t)],
                Duration::from_secs(5),
                |v| v >= 1.0
            )
            .is_some_and(|v| v >= 1.0),
        "{t}: the successor observed no canary"
    );
    for a in agents.iter_mut() {
        if a.is_running() {
            a.terminate(Duration::from_secs(10));
        }
    }
}

#[test]
fn a_holder_stopped_with_sigterm_hands_over_within_an_interval() {
    let (t, mut agents) = fleet("term", 2);
    let holder = one_holder(&agents, &t, None, Duration::from_secs(20));
    let other = 1 - holder;
    let stopped = Instant::now();
    assert_eq!(agents[holder].terminate(Duration::from_secs(15)), Some(0));
    assert!(
        agents[holder]
            .logs()
            .iter()
            .any(|l| l["message"] == "released the lease: another agent of the fleet takes over"),
        "{:?}",
        agents[holder].logs()
    );
    // Released, not expired: no lease to wait out; the standby reads the
    // table every lease/4 and writes at once.
    let bound = INTERVAL + LEASE / 4 + Duration::from_millis(1000);
    writes_within(&agents[other], &t, bound);
    println!(
        "{t}: SIGTERM of the holder -> the successor's first canary {:?} after the stop began",
        stopped.elapsed()
    );
    assert!(leader(&agents[other], &t));
}

#[test]
fn a_holder_frozen_past_its_lease_writes_nothing_that_counts_when_it_wakes_and_steps_down() {
    let (t, agents) = fleet("freeze", 2);
    let holder = one_holder(&agents, &t, None, Duration::from_secs(20));
    let other = 1 - holder;
    let before = written(&agents[holder], &t);
    agents[holder].signal(libc::SIGSTOP);
    writes_within(
        &agents[other],
        &t,
        LEASE + INTERVAL + Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_secs(1));
    agents[holder].signal(libc::SIGCONT);
    // Awake, its deadline long past: it stands by before the manager runs.
    std::thread::sleep(LEASE / 2 + Duration::from_secs(1));
    // At most the one write in flight when it froze (already in the store
    // then) completes; nothing new is written.
    let after = written(&agents[holder], &t);
    assert!(
        after - before <= 1.0,
        "the frozen holder wrote {} canaries after it woke",
        after - before
    );
    assert!(!leader(&agents[holder], &t));
    assert!(!exports_rpo(&agents[holder], &t));
    assert_eq!(one_holder(&agents, &t, None, Duration::from_secs(2)), other);
}

#[test]
fn without_its_lease_table_every_agent_measures_and_one_holder_returns_when_it_is_back() {
    let (t, agents) = fleet("failopen", 2);
    one_holder(&agents, &t, None, Duration::from_secs(20));
    let leases = "leases-failopen";
    let broken = lab().fault_until_drop(
        &["dynamodb", "error", "503", "1.0", "--table", leases],
        &["dynamodb", "error", "clear", "--table", leases],
    );
    let end = Instant::now() + LEASE * 3;
    while !agents
        .iter()
        .all(|a| leader(a, &t) && a.value("rpo_fleet_degraded", &[]) == Some(1.0))
    {
        assert!(Instant::now() < end, "not every agent measures alone");
        std::thread::sleep(Duration::from_millis(100));
    }
    for a in &agents {
        writes_within(a, &t, INTERVAL * 2 + Duration::from_secs(1));
        assert!(exports_rpo(a, &t));
    }
    broken.undo();
    let back = Instant::now();
    one_holder(&agents, &t, None, LEASE * 2 + Duration::from_secs(1));
    println!(
        "{t}: one holder again {:?} after the lease table came back",
        back.elapsed()
    );
    assert!(agents
        .iter()
        .all(|a| a.value("rpo_fleet_degraded", &[]) == Some(0.0)));
}

fn rpo(a: &Agent, t: &str) -> Option<f64> {
    a.value("rpo_seconds", &[("target", t)])
}

#[test]
fn a_stall_that_spans_a_takeover_keeps_rising_on_the_new_holder_from_when_it_began() {
    let (t, agents) = fleet("stall", 2);
    let holder = one_holder(&agents, &t, None, Duration::from_secs(20));
    let other = 1 - holder;
    agents[holder]
        .wait_value(
            "rpo_canaries_observed_total",
            &[("target", &t)],
            Duration::from_secs(10),
            |v| v >= 3.0,
        )
        .expect("the holder measures");
    let stalled = lab().fault_until_drop(
        &["dynamodb", "stall", "--table", &t],
        &["dynamodb", "resume", "--table", &t],
    );
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    agents[holder].signal(libc::SIGKILL);
    writes_within(
        &agents[other],
        &t,
        LEASE + INTERVAL + Duration::from_secs(2),
    );
    let took_over = began.elapsed();
    std::thread::sleep(Duration::from_secs(15).saturating_sub(began.elapsed()));
    let at = began.elapsed().as_secs_f64();
    let r = rpo(&agents[other], &t).expect("the new holder exports rpo_seconds");
    println!("{t}: stall began {at:.1} s ago, taken over after {:.1} s: the new holder's RPO is {r:.1} s", took_over.as_secs_f64());
    assert!(
        r >= 12.0 && r <= at + 0.5,
        "{t}: RPO {r} s after a {at:.1} s stall"
    );
    let upper = agents[other]
        .value("rpo_upper_bound_seconds", &[("target", &t)])
        .unwrap();
    assert!(upper >= r - 0.1, "{t}: upper bound {upper} below RPO {r}");
    stalled.undo();
    let back = agents[other].wait_value(
        "rpo_seconds",
        &[("target", &t)],
        Duration::from_secs(10),
        |v| v < 2.0,
    );
    assert!(
        back.is_some_and(|v| v < 2.0),
        "{t}: RPO {back:?} after the stall cleared"
    );
}

#[test]
fn a_successor_measures_its_first_canary_as_warm_from_the_lags_kept_in_the_lease() {
    let (t, agents) = fleet("warm", 2);
    let _delay = lab().fault_until_drop(
        &["dynamodb", "delay", "1500ms", "--table", &t],
        &["dynamodb", "delay", "0", "--table", &t],
    );
    let holder = one_holder(&agents, &t, None, Duration::from_secs(20));
    let other = 1 - holder;
    // Long enough for its estimate to reach the lease (kept every 5 s).
    agents[holder]
        .wait_value(
            "rpo_canaries_observed_total",
            &[("target", &t)],
            Duration::from_secs(20),
            |v| v >= 8.0,
        )
        .expect("the holder measures");
    std::thread::sleep(Duration::from_secs(2));
    // Reads of the holder's warm canaries: with a lag longer than the
    // interval, every read counts for each canary it finds pending.
    let mut warm: Vec<u64> = agents[holder]
        .logs()
        .iter()
        .filter(|l| l["message"] == "canary observed" && l["target"] == t.as_str())
        .filter_map(|l| l["reads"].as_u64())
        .skip(3)
        .collect();
    warm.sort();
    agents[holder].signal(libc::SIGKILL);
    let first = agents[other]
        .wait_log(LEASE + Duration::from_secs(10), |l| {
            l["message"] == "canary observed" && l["target"] == t.as_str()
        })
        .expect("the successor observes a canary");
    let seq = first["seq"].as_u64().unwrap();
    let lag = first["lag_seconds"].as_f64().unwrap();
    let reads = first["reads"].as_u64().unwrap();
    let truth = lab()
        .ground_truth()
        .iter()
        .find(|v| {
            v["table"] == t.as_str() && v["seq"].as_u64() == Some(seq) && v["replica_region"] == DST
        })
        .map(|v| v["readable_at"].as_f64().unwrap() - v["committed_at"].as_f64().unwrap())
        .expect("ground truth of the first canary");
    let took = agents[other]
        .logs()
        .iter()
        .find(|l| l["message"] == "writing this target's canaries (fleet lease)")
        .map(|l| l["inherited_lags"].clone());
    let warm_max = *warm.last().expect("warm canaries");
    println!("{t}: the successor's first canary: lag {lag:.3} s (true {truth:.3} s) in {reads} reads (the holder's warm canaries: {warm:?}); inherited lags {took:?}");
    assert_eq!(
        took,
        Some(serde_json::json!(1)),
        "the successor found no lags in the lease"
    );
    assert!(
        (lag - truth).abs() <= 0.05,
        "{t}: first canary {lag} s, true {truth} s"
    );
    assert!(
        reads <= warm_max,
        "{t}: {reads} reads for the first canary; warm ones took {warm:?}"
    );
}
