//! Fleet mode: agents of one `[fleet]` share its targets. Per target one
//! agent holds a lease (an item of the fleet's DynamoDB table) and writes
//! the canaries; the others stand by and take over when it stops renewing.
//!
//! `lease.rs` reads and writes the table (conditional writes only),
//! `decide.rs` is the pure rule book (renew, release, take, lost), `gate.rs`
//! is what the writers of one target see. This module runs the manager: one
//! task per agent that beats in the roster and reads every lease every
//! lease/4, then acts on the decision. It never writes a canary.
//!
//! Fail open: when the table has answered nothing for longer than a lease,
//! every gate says "write" (`rpo_fleet_degraded` 1): a lease table outage
//! must not blind the fleet. It converges back to one holder per target
//! once the table answers.

pub mod decide;
pub mod gate;
pub mod lease;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rpo_exporter::Metrics;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::aws::AwsPlumbing;
use crate::config::FleetConfig;
use crate::shutdown::Shutdown;
use decide::{decide, Free, Watch};
pub use gate::{Gate, Role};
use lease::{lease_key, roster_key, LeaseTable, CONDITION_FAILED};

/// How long shutdown waits for the leases to be released.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// This agent's place in a fleet: its gates (one per target) and the table.
pub struct Fleet {
    cfg: FleetConfig,
    me: String,
    table: LeaseTable,
    /// (lease key, gate), in a random order: agents that start together
    /// then try different targets first.
    gates: Vec<(String, Arc<Gate>)>,
    metrics: Metrics,
}

impl Fleet {
    /// A fleet member for `targets` (name, kind). No network call.
    pub async fn new(
        cfg: &FleetConfig,
        me: &str,
        targets: &[(String, &'static str)],
        aws: &AwsPlumbing,
    ) -> Fleet {
        let mut gates: Vec<(String, Arc<Gate>)> = targets
            .iter()
            .map(|(t, kind)| (lease_key(&cfg.name, t), Arc::new(Gate::new(t, kind))))
            .collect();
        {
            use rand::seq::SliceRandom;
            gates.shuffle(&mut rand::rng());
        }
        let metrics = aws.metrics().clone();
        for (_, g) in &gates {
            metrics.fleet_leader(&g.target, g.kind, false);
        }
        metrics.fleet_degraded(false);
        Fleet {
            table: LeaseTable {
                client: aws.dynamodb(&cfg.region, cfg.endpoint_url.as_deref()).await,
                table: cfg.table.clone(),
                count: aws.counter("", "dynamodb", &cfg.region),
            },
            cfg: cfg.clone(),
            me: me.to_string(),
            gates,
            metrics,
        }
    }

    /// The lease table (for `init` and `check`).
    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// The gates by target name, for the scheduler.
    pub fn gates(&self) -> HashMap<String, Arc<Gate>> {
        self.gates
            .iter()
            .map(|(_, g)| (g.target.clone(), g.clone()))
            .collect()
    }

    /// Runs the lease manager until `shutdown`, then releases every lease
    /// it holds so that a successor writes within one interval.
    pub async fn run(self, mut shutdown: Shutdown) {
        let lease = self.cfg.lease;
        let keys: Vec<String> = self.gates.iter().map(|(k, _)| k.clone()).collect();
        let roster = roster_key(&self.cfg.name);
        let mut watch = Watch::default();
        let mut last_ok = Instant::now();
        let mut degraded = false;
        let mut beat: u64 = rand::rng().random_range(1..1 << 40);
        let mut next = Instant::now();
        info!(fleet = %self.cfg.name, agent = %self.me, table = %self.cfg.table, region = %self.cfg.region,
            lease_seconds = lease.as_secs_f64(), targets = keys.len(), "fleet member: sharing the targets by lease");
        loop {
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = shutdown.recv() => break,
            }
            next = Instant::now() + (lease / 4).mul_f64(rand::rng().random_range(0.9..1.0));
            let sent = Instant::now();
            beat += 1;
            let read = async {
                self.table.beat(&roster, &self.me, beat).await?;
                self.table.read(&roster, &keys).await
            };
            let snap = tokio::select! {
                r = tokio::time::timeout(lease / 2, read) => r,
                _ = shutdown.recv() => break,
            };
            let snap = match snap {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.unreachable(&mut degraded, last_ok, lease, &format!("{e}"));
                    continue;
                }
                Err(_) => {
                    self.unreachable(
                        &mut degraded,
                        last_ok,
                        lease,
                        "no answer within half a lease",
                    );
                    continue;
                }
            };
            last_ok = sent;
            if std::mem::take(&mut degraded) {
                info!(fleet = %self.cfg.name, "the lease table answers again: back to one writer per target");
                self.metrics.fleet_degraded(false);
                for (_, g) in &self.gates {
                    g.set_degraded(false);
                }
            }
            let held: HashMap<String, u64> = self
                .gates
                .iter()
                .filter_map(|(k, g)| g.token().map(|t| (k.clone(), t)))
                .collect();
            let d = decide(&snap, &self.me, &keys, &held, lease, &mut watch, sent);
            if let Some(at) = d.next_expiry {
                next = next.min(at.max(Instant::now()));
            }
            debug!(fleet = %self.cfg.name, live = d.live, share = d.share, held = held.len(),
                take = d.take.len(), release = d.release.len(), "fleet tick");
            for (key, holder) in &d.lost {
                let g = self.gate(key);
                warn!(target = %g.target, holder = holder.as_deref().unwrap_or("?"), "lost the lease: another agent writes this target's canaries now");
                g.stand_by(holder.as_deref());
            }
            for key in &d.renew {
                let g = self.gate(key);
                let Some(token) = g.token() else { continue };
                let at = Instant::now();
                match self.table.renew(key, &self.me, token, &g.lags()).await {
                    Ok(()) => g.renewed(at + lease),
                    Err(e) if e.code == CONDITION_FAILED => {
                        warn!(target = %g.target, "lost the lease: it changed hands while we renewed it");
                        g.stand_by(None);
                    }
                    // The gate's deadline runs out by itself if this goes on.
                    Err(e) => debug!(target = %g.target, "lease renewal failed: {e}"),
                }
            }
            for key in &d.release {
                let g = self.gate(key);
                if let Some(token) = g.token() {
                    g.stand_by(None);
                    info!(target = %g.target, share = d.share, live_agents = d.live, "handing the target to another agent of the fleet (more than my share)");
                    if let Err(e) = self.table.release(key, &self.me, token).await {
                        debug!(target = %g.target, "lease release failed: {e}");
                    }
                }
            }
            for (key, why) in &d.take {
                let g = self.gate(key);
                let seen = snap.leases.get(key);
                let at = Instant::now();
                match self.table.grant(key, &self.me, seen).await {
                    Ok(token) => {
                        let previous = seen.and_then(|l| l.owner.clone());
                        g.granted(
                            token,
                            at + lease,
                            &self.me,
                            seen.map(|l| l.lags.clone()).unwrap_or_default(),
                        );
                        match why {
                            Free::Expired | Free::Released => {
                                self.metrics.fleet_takeover(&g.target, g.kind);
                                warn!(target = %g.target, previous = previous.as_deref().unwrap_or("(released)"), token,
                                    how = if *why == Free::Expired { "its lease expired" } else { "it was released" },
                                    "took over the target");
                            }
                            Free::New | Free::Orphaned => {
                                info!(target = %g.target, token, "holding the target's lease: writing its canaries")
                            }
                        }
                    }
                    Err(e) if e.code == CONDITION_FAILED => {
                        debug!(target = %g.target, "another agent took the lease first")
                    }
                    Err(e) => debug!(target = %g.target, "lease grant failed: {e}"),
                }
            }
            for (agent, b) in &d.dead_members {
                debug!(fleet = %self.cfg.name, agent = %agent, "dropping a silent agent from the roster");
                let _ = self.table.drop_member(&roster, agent, *b).await;
            }
            for (key, g) in &self.gates {
                if g.token().is_none() {
                    g.stand_by(snap.leases.get(key).and_then(|l| l.owner.as_deref()));
                }
                self.metrics
                    .fleet_leader(&g.target, g.kind, g.role().is_lead());
            }
        }
        self.release_all().await;
    }

    fn gate(&self, key: &str) -> &Arc<Gate> {
        &self
            .gates
            .iter()
            .find(|(k, _)| k == key)
            .expect("a gate per key")
            .1
    }

    /// The table did not answer: after a whole lease of that, fail open.
    fn unreachable(&self, degraded: &mut bool, last_ok: Instant, lease: Duration, why: &str) {
        if *degraded || Instant::now() - last_ok < lease {
            debug!(fleet = %self.cfg.name, "lease table: {why}");
            return;
        }
        *degraded = true;
        warn!(fleet = %self.cfg.name, table = %self.cfg.table, region = %self.cfg.region,
            "the lease table has been unreachable for longer than a lease: measuring every target on my own until it is back ({why})");
        self.metrics.fleet_degraded(true);
        for (_, g) in &self.gates {
            g.set_degraded(true);
            self.metrics.fleet_leader(&g.target, g.kind, true);
        }
    }

    /// Gives every held lease up (at most `RELEASE_GRACE`).
    async fn release_all(&self) {
        let held: Vec<(String, u64, Arc<Gate>)> = self
            .gates
            .iter()
            .filter_map(|(k, g)| g.token().map(|t| (k.clone(), t, g.clone())))
            .collect();
        for (_, _, g) in &held {
            g.stand_by(None);
        }
        let release = async {
            for (key, token, g) in &held {
                match self.table.release(key, &self.me, *token).await {
                    Ok(()) => {
                        info!(target = %g.target, "released the lease: another agent of the fleet takes over")
                    }
                    Err(e) => {
                        warn!(target = %g.target, "could not release the lease (it expires by itself): {e}")
                    }
                }
            }
        };
        let _ = tokio::time::timeout(RELEASE_GRACE, release).await;
    }
}
