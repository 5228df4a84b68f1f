//! The writer of one route: prepares the probe, then writes a canary every
//! interval (with a little jitter so a fleet of agents does not write in
//! lock-step) and tells each replica's reader about it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use tokio::sync::watch;

use super::{Readiness, RouteRun};
use crate::canary::{unix_micros, SeqSource};
use crate::fleet::{Gate, Role};
use crate::probe::{Canary, ErrorClass, ProbeError, Roles, LEASE_LOST};
use crate::shutdown::Shutdown;

/// Each tick moves by up to ±5 % of the interval.
fn jittered(interval: Duration) -> Duration {
    let f = rand::rng().random_range(0.95..1.05);
    interval.mul_f64(f)
}

/// The first tick of a route comes at a random phase within this (or its
/// interval, if shorter): every target has a first canary soon after start.
const MAX_START_PHASE: Duration = Duration::from_secs(5);

fn start_phase(interval: Duration) -> Duration {
    interval
        .min(MAX_START_PHASE)
        .mul_f64(rand::rng().random_range(0.0..1.0))
}

/// The second tick comes half to one interval after the first, so the
/// routes' cadences spread over the interval. Without it 1000 routes of a
/// 30 s interval all wrote (and read) within the same 5 s of every
/// interval: bursts that filled the call cap and held the SDK state of 64
/// calls at once. Not sooner than half an interval, so the second canary
/// does not share its reads with the first one's search.
fn cadence_phase(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// How often the writer keeps its lag estimates in the store for the next
/// agent on the target (`Probe::write_lag_hint`): one small write per target
/// every 10 minutes (≈ 4300 a month).
const LAG_HINT_EVERY: Duration = Duration::from_secs(600);

/// The longest the writer waits for the lag hint before its first canary.
const HINT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Seeds every pair's planner with the lag hint the store keeps, if any.
/// A failed read only means a cold start: logged at debug, never an error.
async fn seed_from_hint(run: &RouteRun) {
    let hint = async {
        let _permit = run.calls.acquire().await;
        run.route.probe.read_lag_hint().await
    };
    // A source that does not answer (its region is down) delays the first
    // canary by no more than this.
    let hint = tokio::time::timeout(HINT_READ_TIMEOUT, hint)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::transient(
                "GetItem",
                "timeout",
                "no answer within 2 s",
            ))
        });
    match hint {
        Ok(lags) => {
            for (p, lag) in run.pairs.iter().zip(lags) {
                if let Some(lag) = lag {
                    let mut p = p.lock().unwrap();
                    debug!(target = %p.labels.target, replica_region = %p.labels.replica_region,
                        lag_seconds = lag.as_secs_f64(), "starting from the lag hint in the store");
                    p.seed_lag(lag);
                }
            }
        }
        Err(e) => {
            debug!(target = %run.route.target, op = e.op, code = %e.code, "no lag hint: {}", e.message)
        }
    }
}

/// Writes the pairs' lag estimates as the target's hint, once every pair
/// has one; whether it tried (a failed write is logged at debug only).
async fn keep_hint(run: &RouteRun) -> bool {
    let lags: Option<Vec<Duration>> = run
        .pairs
        .iter()
        .map(|p| p.lock().unwrap().lag_estimate())
        .collect();
    let Some(lags) = lags else { return false };
    let _permit = run.calls.acquire().await;
    match run.route.probe.write_lag_hint(&lags).await {
        Ok(()) => debug!(target = %run.route.target, lags = ?lags, "lag hint kept"),
        Err(e) => {
            debug!(target = %run.route.target, op = e.op, code = %e.code, "could not keep the lag hint: {}", e.message)
        }
    }
    true
}

/// Waits for the fleet gate to change (never, without a fleet).
async fn gate_changed(rx: &mut Option<watch::Receiver<u64>>) {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub async fn run(run: Arc<RouteRun>, mut shutdown: Shutdown, readiness: Readiness) {
    let route = &run.route;
    let mut seqs = SeqSource::default();
    let mut prepared = false;
    // Readiness counts a route once, however often it re-prepares.
    let mut announced = false;
    let mut next = Instant::now() + start_phase(route.interval);
    let mut first = true;
    // When the lag hint was last written (None: not yet by this process).
    let mut hint_kept: Option<Instant> = None;
    // Fleet mode: whether this agent writes the target now. Until the
    // lease manager says so, it stands by.
    let mut gate_rx = run.gate.as_ref().map(|g| g.subscribe());
    let mut leading = run.gate.is_none();
    if let Some(gate) = &run.gate {
        stand_by(&run, gate.role());
    }
    // When the lags were last handed to the gate (kept in the lease).
    let mut lags_kept: Option<Instant> = None;
    // A takeover before the probe was prepared resumes once it is.
    let mut resume_due = false;
    loop {
        let woken = tokio::select! {
            _ = sleep_until(next) => false,
            _ = gate_changed(&mut gate_rx) => true,
            _ = shutdown.recv() => break,
        };
        if let Some(gate) = &run.gate {
            let role = gate.role();
            if role.is_lead() != leading {
                leading = role.is_lead();
                if leading {
                    take_lead(&run, gate, &role);
                    // First what the store says (on a task of its own),
                    // then the hint, which waits for the source.
                    resume_due = true;
                    if prepared {
                        resume_from_store(&run).await;
                        resume_due = false;
                    }
                    if gate_lags_missing(&run, gate) {
                        seed_from_hint(&run).await;
                    }
                    // Write the first canary now: a takeover should not
                    // wait for the old holder's cadence.
                    if woken && prepared {
                        next = Instant::now();
                        first = true;
                        continue;
                    }
                } else {
                    stand_by(&run, role);
                }
            } else if woken && !leading {
                // Still standing by; the holder may have changed.
                stand_by(&run, role);
            }
            if woken {
                continue;
            }
        }
        next += if std::mem::take(&mut first) {
            cadence_phase(route.interval)
        } else {
            jittered(route.interval)
        };
        let now = Instant::now();
        if next < now {
            next = now + route.interval;
        }
        if !prepared {
            // Set-up calls against an unreachable store can take a whole
            // timeout; shutdown abandons them (they write nothing).
            // At most `SETUP_CONCURRENCY` routes prepare at once: set-up
            // calls (DescribeTable…) have low API rate limits, and a burst
            // of them would open a connection each.
            let result = tokio::select! {
                r = async {
                    let _permit = readiness.setup_permit().await;
                    route.probe.prepare().await
                } => r,
                _ = shutdown.recv() => break,
            };
            match result {
                Ok(()) => {
                    info!(target = %route.target, source_region = %route.source_region,
                        replicas = ?route.replica_regions, key = %route.canary_key, "target ready");
                    prepared = true;
                    if std::mem::take(&mut resume_due) && leading {
                        resume_from_store(&run).await;
                    }
                    if !announced {
                        announced = true;
                        readiness.route_prepared();
                        if leading {
                            seed_from_hint(&run).await;
                        }
                    }
                }
                Err(e) => {
                    for p in &run.pairs {
                        p.lock().unwrap().on_error(&e, false);
                    }
                    continue;
                }
            }
        }
        // A standby prepares (so `check` and readiness see the store) but
        // writes nothing.
        let token = match run.gate.as_ref().map(|g| g.role()) {
            None => None,
            Some(Role::Lead { token }) => token,
            Some(Role::Standby { .. }) => continue,
        };
        let roles = tokio::select! {
            r = route.probe.roles() => r,
            _ = shutdown.recv() => break,
        };
        for f in route.probe.take_store_figures() {
            if let Some(p) = run.pairs.get(f.replica) {
                p.lock().unwrap().on_aws_lag(f.metric, Some(f.seconds));
            }
        }
        let split: &[usize] = match &roles {
            Ok(Roles::SplitBrain { replicas }) => replicas,
            _ => &[],
        };
        if matches!(
            roles,
            Ok(Roles::AsConfigured | Roles::Swapped { .. } | Roles::SplitBrain { .. })
        ) {
            for (i, p) in run.pairs.iter().enumerate() {
                p.lock().unwrap().set_split_brain(split.contains(&i));
            }
        }
        match roles {
            Ok(Roles::AsConfigured) => {}
            Ok(Roles::Swapped { replica }) => swap_direction(&run, replica),
            Ok(Roles::SplitBrain { replicas }) => {
                for i in replicas {
                    let mut p = run.pairs[i].lock().unwrap();
                    let l = &p.labels;
                    error!(target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                        "SPLIT BRAIN: the replica accepts writes while the source does too");
                    let e = ProbeError::transient(
                        "role",
                        "split_brain",
                        format!(
                            "{} and {} both accept writes",
                            l.source_region, l.replica_region
                        ),
                    );
                    p.on_error(&e, false);
                }
            }
            Ok(Roles::NoWriter(e)) | Err(e) => {
                for p in &run.pairs {
                    p.lock().unwrap().on_error(&e, false);
                }
                if e.class == ErrorClass::Config {
                    prepared = false;
                }
                continue;
            }
        }
        let permit = run.calls.acquire().await;
        let canary = Canary {
            seq: seqs.next(),
            written_at_us: unix_micros(),
            lease: token,
        };
        let sent = Instant::now();
        let res = route.probe.write(canary).await;
        let acked = Instant::now();
        drop(permit);
        match res {
            Ok(()) => {
                for (p, wake) in run.pairs.iter().zip(&run.wake_readers) {
                    p.lock().unwrap().on_write(canary.seq, sent, acked);
                    wake.notify_one();
                }
                // The time test first: estimates are computed only when due.
                if hint_kept.is_none_or(|t| acked >= t + LAG_HINT_EVERY) && keep_hint(&run).await {
                    hint_kept = Some(acked);
                }
                if let Some(gate) = &run.gate {
                    if lags_kept.is_none_or(|t| acked >= t + KEEP_LAGS_EVERY) {
                        lags_kept = Some(acked);
                        for p in &run.pairs {
                            let p = p.lock().unwrap();
                            if let Some(lag) = p.lag_estimate() {
                                gate.keep_lag(&p.labels.replica_region, lag);
                            }
                        }
                    }
                }
            }
            Err(e) if e.code == LEASE_LOST => {
                // Fenced: a newer holder wrote the item. Not a store error.
                if let (Some(gate), Some(token)) = (&run.gate, token) {
                    warn!(target = %route.target, token, "canary refused: another agent of the fleet holds the lease now; standing by");
                    gate.fenced(token);
                }
            }
            Err(e) => {
                for p in &run.pairs {
                    p.lock().unwrap().on_error(&e, false);
                }
                if e.class == ErrorClass::Config {
                    prepared = false;
                }
            }
        }
    }
    // A deploy stops the task with SIGTERM, often within minutes of its
    // start: keep what it learned for the task that replaces it.
    // At most 2 s: shutdown must not wait on a store that stopped answering.
    if prepared && leading {
        let _ = tokio::time::timeout(Duration::from_secs(2), keep_hint(&run)).await;
    }
}

/// How often (at most) the writer hands its lag estimates to the fleet
/// gate, which keeps them in the lease at the next renewal: soon after the
/// first precise canary, so even a short-lived holder leaves them behind.
const KEEP_LAGS_EVERY: Duration = Duration::from_secs(1);

/// Fleet mode: another agent writes this target (or nobody yet). Every pair
/// hides its gauges and forgets its canaries.
fn stand_by(run: &RouteRun, role: Role) {
    let holder = match role {
        Role::Standby { holder } => holder,
        Role::Lead { .. } => None,
    };
    for p in &run.pairs {
        p.lock().unwrap().stand_by(holder.clone(), &run.metrics);
    }
}

/// Fleet mode: this agent now writes the target. Every pair starts afresh
/// (its series shown again) and its planner starts from the lags the last
/// holder kept in the lease, else from the target's lag hint.
fn take_lead(run: &RouteRun, gate: &Gate, role: &Role) {
    let me = match role {
        Role::Lead { token: Some(_) } => Some(run.board.agent_id()),
        _ => None,
    };
    let mut inherited = 0;
    for p in &run.pairs {
        let mut p = p.lock().unwrap();
        let labels = p.labels.clone();
        *p = new_pair(run, labels);
        p.set_leader(me.clone());
        if let Some(lag) = gate.inherited_lag(&p.labels.replica_region) {
            p.seed_lag(lag);
            inherited += 1;
        }
    }
    info!(target = %run.route.target, inherited_lags = inherited, "writing this target's canaries (fleet lease)");
}

/// Whether some pair found no lag in the lease (then the hint may have one).
fn gate_lags_missing(run: &RouteRun, gate: &Gate) -> bool {
    run.pairs.iter().any(|p| {
        gate.inherited_lag(&p.lock().unwrap().labels.replica_region)
            .is_none()
    })
}

/// Fleet takeover: carry on from the canaries the last holder left in the
/// store (needs a prepared probe).
///
/// The first canary waits for that read, at most `RESUME_WAIT`: written
/// before it, our canary replaces the last holder's in the source (one item
/// per target), and a replica that lagged since before the takeover (a
/// stall spanning it) would look up to date. The read runs on a task of its
/// own, so a side whose region is down (it answers only at its timeout)
/// delays the first canary by `RESUME_WAIT` at most, and is still applied
/// when it comes.
async fn resume_from_store(run: &Arc<RouteRun>) {
    let task = tokio::spawn(resume_task(run.clone()));
    let _ = tokio::time::timeout(RESUME_WAIT, task).await;
}

/// How long a takeover's first canary waits for the stored canaries: the
/// DynamoDB read's own bound per side (3 s) and a little more.
const RESUME_WAIT: Duration = Duration::from_millis(3500);

async fn resume_task(run: Arc<RouteRun>) {
    let token = match run.gate.as_ref().map(|g| g.role()) {
        Some(Role::Lead { token }) => token,
        _ => None,
    };
    let stored = {
        let _permit = run.calls.acquire().await;
        run.route.probe.stored_canaries().await
    };
    match stored {
        Ok(s) => {
            for (i, p) in run.pairs.iter().enumerate() {
                let replica = s.replicas.get(i).copied().flatten();
                let mut p = p.lock().unwrap();
                if (s.source.is_some() || replica.is_some()) && !p.is_standby() {
                    p.inherit(s.source, replica, run.route.interval, token);
                }
            }
        }
        Err(e) => {
            debug!(target = %run.route.target, op = e.op, code = %e.code, "could not read the last holder's canaries: {}", e.message)
        }
    }
}

fn new_pair(run: &RouteRun, labels: rpo_exporter::ReplicaLabels) -> super::PairState {
    super::PairState::for_route(&run.route, labels, &run.metrics, run.emf)
}

/// The probe found that replica `i` is now the writer (and has swapped its
/// endpoints): re-label every pair of the route in the new direction, drop
/// the old direction's series and status, count and log the change.
fn swap_direction(run: &RouteRun, i: usize) {
    let route = &run.route;
    let old_source = run.pairs[i].lock().unwrap().labels.source_region.clone();
    let new_source = run.pairs[i].lock().unwrap().labels.replica_region.clone();
    for (j, p) in run.pairs.iter().enumerate() {
        let mut p = p.lock().unwrap();
        let old = p.labels.clone();
        let mut labels = old.clone();
        labels.source_region = new_source.clone();
        if j == i {
            labels.replica_region = old_source.clone();
        }
        run.metrics.forget(&old);
        run.board.remove(&old);
        *p = new_pair(run, labels);
    }
    run.metrics
        .direction_changed(&route.target, route.kind.as_str());
    warn!(target = %route.target, kind = route.kind.as_str(), old_source_region = %old_source,
        new_source_region = %new_source, "replication direction changed: now measuring {new_source} -> {old_source}");
}
