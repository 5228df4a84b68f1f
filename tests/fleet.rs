//! Fleet mode against the lab: three agents of one fleet on one target
//! write as one agent would, exactly one exports the RPO series, and
//! another takes over when the holder dies (SIGKILL), leaves (SIGTERM) or
//! freezes past its lease (SIGSTOP: fenced); a lease table that stops
//! answering makes every agent measure on its own until it is back.
//! One lab serves every test; each test has its own tables and fleet.

use std::time::{Duration, Instant};

use rpo_integration_tests::{agent_bin, rt, run_command, Agent, Lab};

const SRC: &str = "ap-northeast-1";
const DST: &str = "ap-northeast-3";
const LEASE: Duration = Duration::from_secs(4);
const INTERVAL: Duration = Duration::from_secs(1);

fn lab() -> &'static Lab {
    Lab::shared("aws,sql")
}

/// The config of agent `id` of fleet `name` measuring `target` (TOML).
fn config(name: &str, id: &str, target: &str) -> String {
    config_in(name, id, target, DST)
}

/// As `config`, with the lease table in `lease_region`.
fn config_in(name: &str, id: &str, target: &str, lease_region: &str) -> String {
    format!(
        "[agent]\nid = \"{id}\"\nlisten = \"127.0.0.1:0\"\nobjective = \"10s\"\n\n\
         [fleet]\nname = \"{name}\"\ntable = \"leases-{name}\"\nregion = \"{lease_region}\"\nlease = \"{}s\"\n\n{target}",
        LEASE.as_secs(),
    )
}

fn dynamodb_target(table: &str) -> String {
    format!(
        "[[target]]\nname = \"{table}\"\nkind = \"dynamodb\"\ntable = \"{table}\"\n\
         source = {{ region = \"{SRC}\" }}\nreplicas = [{{ region = \"{DST}\" }}]\ninterval = \"{}s\"\ntimeout = \"2m\"\n",
        INTERVAL.as_secs()
    )
}

/// A fleet of `n` agents on one DynamoDB target (its global table created).
fn fleet(name: &str, n: usize) -> (String, Vec<Agent>) {
    let table = format!("fleet-{name}");
    rt().block_on(lab().create_global_table(&table, SRC, DST, None));
    let agents = fleet_on(name, n, &dynamodb_target(&table));
    (table, agents)
}

/// Creates (with `rpo-agent init`) the fleet's lease table, and the SQL
/// canary table if `target` is SQL; starts `n` agents of the fleet.
fn fleet_on(name: &str, n: usize, target: &str) -> Vec<Agent> {
    fleet_on_in(name, n, target, DST)
}

fn fleet_on_in(name: &str, n: usize, target: &str, lease_region: &str) -> Vec<Agent> {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), config_in(name, "init", target, lease_region)).unwrap();
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
    (0..n)
        .map(|i| {
            Agent::start(
                &config_in(name, &format!("{name}-a{i}"), target, lease_region),
                &lab().env,
            )
        })
        .collect()
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
        (fleet_writes - one).abs() <= 1.0,
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

/// SIGKILL of the holder of `t`: another agent leads, exports the RPO and
/// writes within lease + interval (+ the time to read the table).
fn takeover_after_sigkill(agents: &[Agent], t: &str) {
    let holder = one_holder(agents, t, None, Duration::from_secs(20));
    agents[holder]
        .wait_value(
            "rpo_canaries_observed_total",
            &[("target", t)],
            Duration::from_secs(15),
            |v| v >= 2.0,
        )
        .expect("the holder measures");
    let killed = Instant::now();
    agents[holder].signal(libc::SIGKILL);
    let bound = LEASE + INTERVAL + Duration::from_millis(1500);
    let next = one_holder(agents, t, Some(holder), bound);
    writes_within(
        &agents[next],
        t,
        bound.saturating_sub(killed.elapsed()) + Duration::from_millis(300),
    );
    let observed = agents[next].wait_value(
        "rpo_canaries_observed_total",
        &[("target", t)],
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    println!(
        "{t}: SIGKILL of the holder -> the successor writes and observes after {:?}",
        killed.elapsed()
    );
    assert!(
        observed.is_some_and(|v| v >= 1.0),
        "{t}: the successor observed no canary"
    );
}

#[test]
fn an_s3_target_is_taken_over_after_a_sigkill() {
    let t = "fleet-s3";
    rt().block_on(lab().create_replicated_buckets(
        &format!("{t}-tokyo"),
        SRC,
        &[(&format!("{t}-osaka"), DST)],
        "rpo-canary/",
        true,
    ));
    let target = format!(
        "[[target]]\nname = \"{t}\"\nkind = \"s3\"\nsource = {{ region = \"{SRC}\", bucket = \"{t}-tokyo\" }}\nreplicas = [{{ region = \"{DST}\", bucket = \"{t}-osaka\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n"
    );
    let agents = fleet_on("s3", 2, &target);
    takeover_after_sigkill(&agents, t);
}

#[test]
fn a_postgres_target_is_taken_over_after_a_sigkill() {
    let t = "fleet-pg";
    let target = format!(
        "[[target]]\nname = \"{t}\"\nkind = \"postgres\"\nsource = {{ region = \"{SRC}\", url = \"{}\" }}\nreplicas = [{{ region = \"{DST}\", url = \"{}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n",
        lab().get("PG_PRIMARY_URL"),
        lab().get("PG_REPLICA_URL")
    );
    let _pg = pg_lock();
    let agents = fleet_on("pg", 2, &target);
    takeover_after_sigkill(&agents, t);
}

#[test]
fn a_postgres_stall_that_spans_a_takeover_keeps_rising_on_the_new_holder() {
    let t = "fleet-pg-stall";
    let target = format!(
        "[[target]]\nname = \"{t}\"\nkind = \"postgres\"\nsource = {{ region = \"{SRC}\", url = \"{}\" }}\nreplicas = [{{ region = \"{DST}\", url = \"{}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n",
        lab().get("PG_PRIMARY_URL"),
        lab().get("PG_REPLICA_URL")
    );
    let _pg = pg_lock();
    let agents = fleet_on("pgstall", 2, &target);
    let holder = one_holder(&agents, t, None, Duration::from_secs(20));
    agents[holder]
        .wait_value(
            "rpo_canaries_observed_total",
            &[("target", t)],
            Duration::from_secs(15),
            |v| v >= 2.0,
        )
        .expect("the holder measures");
    let stalled = lab().fault_until_drop(&["postgres", "stall"], &["postgres", "resume"]);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    agents[holder].signal(libc::SIGKILL);
    let next = one_holder(
        &agents,
        t,
        Some(holder),
        LEASE + INTERVAL + Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_secs(12).saturating_sub(began.elapsed()));
    let at = began.elapsed().as_secs_f64();
    let r = rpo(&agents[next], t).expect("the new holder exports rpo_seconds");
    println!("{t}: replay paused {at:.1} s ago, the holder killed at 3 s: the new holder's RPO is {r:.1} s");
    assert!(
        r >= at - 2.5 && r <= at + 0.5,
        "{t}: RPO {r} s after a {at:.1} s stall"
    );
    stalled.undo();
    let back = agents[next].wait_value(
        "rpo_seconds",
        &[("target", t)],
        Duration::from_secs(10),
        |v| v < 2.0,
    );
    assert!(
        back.is_some_and(|v| v < 2.0),
        "{t}: RPO {back:?} after replay resumed"
    );
}

/// The PostgreSQL pair is shared: its stall must not overlap the other
/// PostgreSQL test of this binary.
fn pg_lock() -> std::sync::MutexGuard<'static, ()> {
    static PG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PG.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn leases_spread_over_the_live_agents() {
    let table = "fleet-spread";
    rt().block_on(lab().create_global_table(table, SRC, DST, None));
    let n: usize = 7;
    let targets: Vec<String> = (0..n)
        .map(|i| {
            dynamodb_target(table).replacen(
                &format!("name = \"{table}\""),
                &format!("name = \"spread-{i}\""),
                1,
            )
        })
        .collect();
    let agents = fleet_on("spread", 3, &targets.join("\n"));
    // Every agent has started; then two lease periods.
    std::thread::sleep(LEASE * 2 + Duration::from_secs(1));
    let held: Vec<usize> = agents
        .iter()
        .map(|a| (0..n).filter(|i| leader(a, &format!("spread-{i}"))).count())
        .collect();
    println!("fleet-spread: {n} targets over 3 agents: {held:?}");
    let most = n.div_ceil(3) + 1;
    assert!(
        held.iter().all(|&h| h <= most),
        "{held:?}: more than {most} on one agent"
    );
    assert_eq!(
        held.iter().sum::<usize>(),
        n,
        "{held:?}: every target has exactly one holder"
    );
    for i in 0..n {
        one_holder(
            &agents,
            &format!("spread-{i}"),
            None,
            Duration::from_secs(2),
        );
    }
}

/// The region outage of the lab: requests signed for `region` hang.
/// Only this test takes a region down, and only regions no other test uses.
#[test]
fn with_the_source_region_down_the_agent_reports_it_and_a_standby_carries_the_data_at_risk() {
    const DOWN: &str = "us-west-2";
    const UP: &str = "eu-west-1";
    let ddb = "outage-ddb";
    let s3 = "outage-s3";
    let healthy = "outage-healthy";
    rt().block_on(lab().create_global_table(ddb, DOWN, UP, None));
    rt().block_on(lab().create_global_table(healthy, UP, DOWN, None));
    rt().block_on(lab().create_replicated_buckets(
        &format!("{s3}-src"),
        DOWN,
        &[(&format!("{s3}-dst"), UP)],
        "rpo-canary/",
        true,
    ));
    let dyn_target = |name: &str, src: &str, dst: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nkind = \"dynamodb\"\ntable = \"{name}\"\nsource = {{ region = \"{src}\" }}\nreplicas = [{{ region = \"{dst}\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n"
        )
    };
    let targets = [
        dyn_target(ddb, DOWN, UP),
        // Written in the healthy region, read in the one that goes down.
        dyn_target(healthy, UP, DOWN),
        format!(
            "[[target]]\nname = \"{s3}\"\nkind = \"s3\"\nsource = {{ region = \"{DOWN}\", bucket = \"{s3}-src\" }}\nreplicas = [{{ region = \"{UP}\", bucket = \"{s3}-dst\" }}]\ninterval = \"1s\"\ntimeout = \"2m\"\n"
        ),
    ]
    .join("\n");
    let agents = fleet_on_in("outage", 2, &targets, UP);
    for t in [ddb, s3, healthy] {
        let h = one_holder(&agents, t, None, Duration::from_secs(20));
        agents[h]
            .wait_value(
                "rpo_canaries_observed_total",
                &[("target", t)],
                Duration::from_secs(15),
                |v| v >= 2.0,
            )
            .unwrap_or_else(|| panic!("{t} measures"));
    }
    let holder = one_holder(&agents, ddb, None, Duration::from_secs(1));
    let down = lab().fault_until_drop(&["aws", "region-down", DOWN], &["aws", "region-up", DOWN]);
    let began = Instant::now();
    // The holder keeps answering and says the source is unreachable.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let t0 = Instant::now();
        let up = agents[holder].value("rpo_probe_up", &[("target", ddb)]);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "/metrics took {:?}",
            t0.elapsed()
        );
        if up == Some(0.0) {
            break;
        }
        assert!(Instant::now() < end, "{ddb}: the probe never went down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let errors = agents[holder].value(
        "rpo_probe_errors_total",
        &[("target", ddb), ("op", "PutItem")],
    );
    assert!(
        errors.is_some_and(|e| e >= 1.0),
        "{ddb}: no PutItem error counted"
    );
    let (code, _) = agents[holder].get("/").unwrap();
    assert_eq!(code, 200);
    // Data at risk keeps rising, one second per second.
    let u1 = agents[holder]
        .value("rpo_upper_bound_seconds", &[("target", ddb)])
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let u2 = agents[holder]
        .value("rpo_upper_bound_seconds", &[("target", ddb)])
        .unwrap();
    assert!(
        (u2 - u1 - 3.0).abs() < 0.6,
        "{ddb}: upper bound {u1} -> {u2} over 3 s"
    );
    // The target written in the healthy region still writes every interval.
    let h = one_holder(&agents, healthy, None, Duration::from_secs(1));
    writes_within(&agents[h], healthy, Duration::from_secs(3));
    // The holder dies with the region: the standby takes over and reports
    // the data at risk from the replica's canary (the old holder's clock).
    agents[holder].signal(libc::SIGKILL);
    let killed = Instant::now();
    let next = one_holder(
        &agents,
        ddb,
        Some(holder),
        LEASE + INTERVAL + Duration::from_secs(2),
    );
    let took = killed.elapsed();
    let at_risk = agents[next]
        .wait_value(
            "rpo_upper_bound_seconds",
            &[("target", ddb)],
            // The successor reads the replica's canary at once; the dead
            // source answers nothing (3 s at most).
            Duration::from_secs(10),
            |v| v >= began.elapsed().as_secs_f64() - 1.5,
        )
        .unwrap_or(0.0);
    let outage = began.elapsed().as_secs_f64();
    println!("{ddb}: region down {outage:.1} s; takeover {took:?} after the SIGKILL; the successor's data at risk {at_risk:.1} s");
    assert!(
        at_risk >= outage - 1.5 && at_risk <= outage + 2.5,
        "{ddb}: data at risk {at_risk} s after {outage:.1} s of outage"
    );
    down.undo();
    let back = agents[next].wait_value(
        "rpo_probe_up",
        &[("target", ddb)],
        Duration::from_secs(30),
        |v| v == 1.0,
    );
    assert_eq!(
        back,
        Some(1.0),
        "{ddb}: the probe did not recover after region-up"
    );
    let s3_back = (0..2).filter(|&i| i != holder).any(|i| {
        agents[i].wait_value(
            "rpo_probe_up",
            &[("target", s3)],
            Duration::from_secs(30),
            |v| v == 1.0,
        ) == Some(1.0)
    });
    assert!(s3_back, "{s3}: the probe did not recover after region-up");
}

#[test]
fn check_reports_a_missing_lease_table_with_its_fix_and_init_creates_it() {
    let table = "fleet-check";
    rt().block_on(lab().create_global_table(table, SRC, DST, None));
    let cfg = config("check", "c1", &dynamodb_target(table));
    let (code, out) = run_command(&["check"], &cfg, &lab().env);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("✗ [fleet]: fleet check: lease table leases-check in ap-northeast-3"),
        "{out}"
    );
    assert!(
        out.contains("does not exist: run `rpo-agent init`"),
        "{out}"
    );
    let (code, out) = run_command(&["init"], &cfg, &lab().env);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("✓ fleet check: lease table leases-check created in ap-northeast-3"),
        "{out}"
    );
    let (code, out) = run_command(&["init"], &cfg, &lab().env);
    assert!(
        code == Some(0) && out.contains("lease table leases-check exists"),
        "{out}"
    );
    // (The canary table's TTL is off in this lab table: those lines are ✗.)
    let (_, out) = run_command(&["check"], &cfg, &lab().env);
    assert!(
        out.contains("✓ [fleet]: fleet check: lease table leases-check in ap-northeast-3"),
        "{out}"
    );
}
