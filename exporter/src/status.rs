//! The agent's current view of every (target, replica) pair, shared with the
//! HTTP server for the status page and `/readyz`.
//!
//! The agent writes snapshots after each probe step; the server only reads.
//! Keeping this as plain data (no metric handles) lets the page render
//! without scraping our own `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::metrics::ReplicaLabels;

/// What the status page shows for one (target, replica) pair.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicaStatus {
    pub target: String,
    pub kind: String,
    pub source_region: String,
    pub replica_region: String,
    /// RPO now, seconds; `None` before the first canary was written.
    pub rpo_seconds: Option<f64>,
    /// Now minus the write time of the newest seen canary.
    pub upper_bound_seconds: Option<f64>,
    pub objective_seconds: f64,
    /// Lag of the newest observed canary.
    pub last_lag_seconds: Option<f64>,
    /// Uncertainty window of the newest observed canary.
    pub last_uncertainty_seconds: Option<f64>,
    pub pending: u64,
    pub written: u64,
    pub observed: u64,
    pub lost: u64,
    pub failed: u64,
    /// 1 if the last write and the last read both succeeded.
    pub up: bool,
    /// Last error, already free of secrets (the probe sanitises it).
    pub last_error: Option<String>,
    /// Human description of the direction, e.g. "ap-northeast-1 → ap-northeast-3".
    pub direction: String,
    /// Fleet mode: who writes this target's canaries (None: no fleet).
    pub fleet: Option<FleetSeat>,
}

/// A target's lease, as the status page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetSeat {
    /// True when this agent writes the canaries (it holds the lease, or the
    /// lease table is unreachable and it measures on its own).
    pub leader: bool,
    /// The agent that holds the lease, when known.
    pub holder: Option<String>,
}

impl ReplicaStatus {
    /// An empty status for a pair that has not run yet.
    pub fn new(labels: &ReplicaLabels, objective_seconds: f64) -> Self {
        ReplicaStatus {
            target: labels.target.clone(),
            kind: labels.kind.clone(),
            source_region: labels.source_region.clone(),
            replica_region: labels.replica_region.clone(),
            rpo_seconds: None,
            upper_bound_seconds: None,
            objective_seconds,
            last_lag_seconds: None,
            last_uncertainty_seconds: None,
            pending: 0,
            written: 0,
            observed: 0,
            lost: 0,
            failed: 0,
            up: false,
            last_error: None,
            direction: format!("{} → {}", labels.source_region, labels.replica_region),
            fleet: None,
        }
    }

    /// True while RPO is known and within the objective.
    pub fn within_objective(&self) -> bool {
        matches!(self.rpo_seconds, Some(r) if r <= self.objective_seconds)
    }
}

#[derive(Default)]
struct Inner {
    replicas: BTreeMap<ReplicaLabels, ReplicaStatus>,
    ready: bool,
    agent_id: String,
    version: String,
}

/// Shared, cheaply clonable board of every pair's status.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<Inner>>,
}

impl StatusBoard {
    pub fn new(agent_id: &str, version: &str) -> Self {
        let board = StatusBoard::default();
        {
            let mut i = board.inner.write().unwrap();
            i.agent_id = agent_id.to_string();
            i.version = version.to_string();
        }
        board
    }

    /// Replaces the status of one pair.
    pub fn update(&self, labels: &ReplicaLabels, status: ReplicaStatus) {
        self.inner
            .write()
            .unwrap()
            .replicas
            .insert(labels.clone(), status);
    }

    /// Updates one pair's status in place (inserting it the first time): the
    /// refresher calls this for every pair four times a second, so with
    /// 1000 targets it must not allocate (no label or status clones).
    pub fn update_with(&self, labels: &ReplicaLabels, f: impl FnOnce(&mut ReplicaStatus)) {
        let mut inner = self.inner.write().unwrap();
        if let Some(s) = inner.replicas.get_mut(labels) {
            f(s);
            return;
        }
        let mut s = ReplicaStatus::new(labels, 0.0);
        f(&mut s);
        inner.replicas.insert(labels.clone(), s);
    }

    /// Drops a pair (e.g. the old direction after a failover).
    pub fn remove(&self, labels: &ReplicaLabels) {
        self.inner.write().unwrap().replicas.remove(labels);
    }

    /// Marks the agent ready: every target finished its start-up checks.
    pub fn set_ready(&self, ready: bool) {
        self.inner.write().unwrap().ready = ready;
    }

    pub fn is_ready(&self) -> bool {
        self.inner.read().unwrap().ready
    }

    pub fn agent_id(&self) -> String {
        self.inner.read().unwrap().agent_id.clone()
    }

    pub fn version(&self) -> String {
        self.inner.read().unwrap().version.clone()
    }

    /// Every pair, ordered by target then replica region.
    pub fn snapshot(&self) -> Vec<ReplicaStatus> {
        self.inner
            .read()
            .unwrap()
            .replicas
            .values()
            .cloned()
            .collect()
    }
}
