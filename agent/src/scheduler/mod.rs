//! The scheduler owns all timing: when canaries are written, when replicas
//! are read, when gauges refresh, and how shutdown drains.
//!
//! Per route it runs one writer task and one reader task per replica; one
//! task per source region (and period) reads AWS's own lag figures for all
//! its routes in batched calls; one refresher task updates every route's
//! gauges. The backend probe only implements a single write and read.

mod aws_lag;
mod emf;
mod pair;
mod reader;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpo_exporter::{Metrics, StatusBoard};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use emf::EmfPlan;
pub use pair::PairState;

use crate::fleet::Gate;
use crate::route::{AwsReported, Route};
use crate::shutdown::Shutdown;

/// How often gauges (which grow with time during a stall) are refreshed.
const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// What the tasks of one route share.
pub struct RouteRun {
    pub route: Route,
    pub pairs: Vec<Arc<Mutex<PairState>>>,
    pub wake_readers: Vec<Arc<Notify>>,
    /// For re-labelling pairs after a direction swap (SQL failover).
    pub metrics: Metrics,
    /// Shared by every route: a canary write or replica read holds one
    /// permit while it runs (`MAX_CALLS`).
    pub calls: Arc<Semaphore>,
    pub board: StatusBoard,
    /// Fleet mode: the target's lease, as this agent holds it or not.
    pub gate: Option<Arc<Gate>>,
    /// `[emf]`: pairs keep an EMF window.
    pub emf: bool,
}

/// Canary writes and replica reads running at once, for the whole process.
/// A call's SDK state (tens of KiB) exists from the moment it starts, so
/// the HTTP layer's cap on requests (`aws/bounded.rs`) bounds connections
/// but not this: with 1000 routes calling in a burst, memory grew with the
/// burst. A read waits for its permit before its span starts, so waiting
/// widens no measurement.
const MAX_CALLS: usize = 64;

/// Routes that run `prepare` at the same time, at most.
const SETUP_CONCURRENCY: usize = 16;

/// Counts routes that have not prepared yet; the agent is ready at zero.
/// Also hands out the permits that bound concurrent set-up calls.
#[derive(Clone)]
pub struct Readiness {
    unprepared: Arc<AtomicUsize>,
    board: StatusBoard,
    setup: Arc<Semaphore>,
}

impl Readiness {
    /// Waits for a turn to run set-up calls (held while they run).
    pub async fn setup_permit(&self) -> Option<SemaphorePermit<'_>> {
        self.setup.acquire().await.ok()
    }

    pub fn route_prepared(&self) {
        if self.unprepared.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.board.set_ready(true);
        }
    }
}

/// Runs every route until `shutdown`, then lets readers drain in-flight
/// canaries for at most `grace`. `gates` (fleet mode; empty otherwise) say
/// per target whether this agent writes its canaries. `emf`: write EMF
/// documents (`[emf]`); the last period is written after the readers drained.
pub async fn run(
    routes: Vec<Route>,
    metrics: Metrics,
    board: StatusBoard,
    shutdown: Shutdown,
    grace: Duration,
    gates: HashMap<String, Arc<Gate>>,
    emf: Option<EmfPlan>,
) {
    let readiness = Readiness {
        unprepared: Arc::new(AtomicUsize::new(routes.len())),
        board: board.clone(),
        setup: Arc::new(Semaphore::new(SETUP_CONCURRENCY)),
    };
    if routes.is_empty() {
        board.set_ready(true);
    }
    let mut tasks = JoinSet::new();
    let mut runs = Vec::new();
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    for route in routes {
        if route.kind.single_writer() {
            metrics.can_change_direction(&route.target, route.kind.as_str());
        }
        let pairs = (0..route.replica_regions.len())
            .map(|i| {
                let p = PairState::for_route(&route, route.labels(i), &metrics, emf.is_some());
                Arc::new(Mutex::new(p))
            })
            .collect();
        let wake_readers = (0..route.replica_regions.len())
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let gate = gates.get(&route.target).cloned();
        runs.push(Arc::new(RouteRun {
            route,
            gate,
            pairs,
            wake_readers,
            metrics: metrics.clone(),
            calls: calls.clone(),
            board: board.clone(),
            emf: emf.is_some(),
        }));
    }
    for run in &runs {
        tasks.spawn(writer::run(
            run.clone(),
            shutdown.clone(),
            readiness.clone(),
        ));
        for i in 0..run.pairs.len() {
            tasks.spawn(reader::run(run.clone(), i, shutdown.clone(), grace));
        }
    }
    for (cw, group) in aws_lag_groups(&runs) {
        tasks.spawn(aws_lag::run(group, cw, metrics.clone(), shutdown.clone()));
    }
    let refresher = tokio::spawn(refresh_loop(runs.clone(), board.clone()));
    let (flush_emf, flush) = tokio::sync::oneshot::channel();
    let emf_task =
        emf.map(|plan| tokio::spawn(emf::run(runs.clone(), plan, metrics.clone(), flush)));
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!("a probe task failed: {e}");
        }
    }
    refresher.abort();
    refresh_once(&runs, &board);
    if let Some(t) = emf_task {
        let _ = flush_emf.send(());
        if let Err(e) = t.await {
            tracing::error!("the EMF task failed: {e}");
        }
    }
}

/// Routes that read AWS's figures from the same CloudWatch (region,
/// endpoint) with the same period share one batched reader.
fn aws_lag_groups(runs: &[Arc<RouteRun>]) -> Vec<(AwsReported, Vec<Arc<RouteRun>>)> {
    let mut groups: Vec<(AwsReported, Vec<Arc<RouteRun>>)> = Vec::new();
    for run in runs {
        let Some(cw) = &run.route.aws_reported else {
            continue;
        };
        match groups
            .iter_mut()
            .find(|(g, _)| g.batch_key() == cw.batch_key())
        {
            Some((_, members)) => members.push(run.clone()),
            None => groups.push((cw.clone(), vec![run.clone()])),
        }
    }
    groups
}

fn refresh_once(runs: &[Arc<RouteRun>], board: &StatusBoard) {
    let now = Instant::now();
    for run in runs {
        for p in &run.pairs {
            p.lock().unwrap().refresh(now, board);
        }
    }
}

async fn refresh_loop(runs: Vec<Arc<RouteRun>>, board: StatusBoard) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        refresh_once(&runs, &board);
    }
}
