//! The metric families of DESIGN.md, registered into an explicit `Registry`.
//!
//! Every per-replica series carries the same four labels (`target`, `kind`,
//! `source_region`, `replica_region`) so that one alert rule such as
//! `rpo_seconds > rpo_objective_seconds` matches series one-to-one across all
//! targets. The dense per-pair families live in `pairs.rs` (compact, written
//! at scrape time); the sparse and per-target ones on the `Registry`.

use std::sync::Arc;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::pairs::{PairCells, PairTable, PairText};

/// The four labels that identify one (target, replica) measurement.
pub const REPLICA_LABELS: [&str; 4] = ["target", "kind", "source_region", "replica_region"];

/// Buckets for lag and uncertainty: 10 ms up to 1 h (DESIGN.md).
pub const LAG_BUCKETS: [f64; 18] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
    1800.0, 3600.0,
];

/// Label values of one (target, replica) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaLabels {
    pub target: String,
    pub kind: String,
    pub source_region: String,
    pub replica_region: String,
}

impl ReplicaLabels {
    fn values(&self) -> [&str; 4] {
        [
            &self.target,
            &self.kind,
            &self.source_region,
            &self.replica_region,
        ]
    }
}

/// The values of `rpo_aws_reported_lag_seconds`'s `metric` label: the
/// CloudWatch metric names of the stores' own lag figures (Aurora's views
/// report the same two quantities under the same names).
pub const AWS_REPORTED_METRICS: &[&str] = &[
    "ReplicationLatency",
    "AuroraGlobalDBRPOLag",
    "AuroraGlobalDBReplicationLag",
    "GlobalDatastoreReplicationLag",
];

/// All metric families of the agent. Cloning is cheap (`Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The dense per-pair families (`pairs.rs`), written at scrape time.
    pairs: Arc<PairTable>,
    probe_errors: IntCounterVec,
    api_requests: IntCounterVec,
    cloudwatch_metrics: IntCounterVec,
    aws_reported: GaugeVec,
    direction_changes: IntCounterVec,
    fleet_leader: IntGaugeVec,
    fleet_takeovers: IntCounterVec,
    fleet_degraded: IntGaugeVec,
    emf_documents: IntCounterVec,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_gauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    REPLICA_LABELS.iter().chain(extra).copied().collect()
}

impl Metrics {
    /// Registers every family in `registry` and sets `rpo_agent_build_info`.
    pub fn new(registry: &Registry, version: &str) -> prometheus::Result<Self> {
        let m = Metrics {
            registry: registry.clone(),
            pairs: Arc::new(PairTable::default()),
            probe_errors: counter(registry, "rpo_probe_errors_total", "Errors of the probe's API or database calls, by operation and error code.", &with(&["op", "code"]))?,
            api_requests: counter(registry, "rpo_api_requests_total", "Every billable AWS API call the agent made (DynamoDB, S3, Secrets Manager, CloudWatch), retries included; a call that serves every target (a batched GetMetricData) has an empty target.", &["target", "service", "op", "region"])?,
            cloudwatch_metrics: counter(registry, "rpo_cloudwatch_metrics_requested_total", "Metrics requested from CloudWatch GetMetricData for the target (GetMetricData is billed per metric requested).", &["target"])?,
            aws_reported: gauge(registry, "rpo_aws_reported_lag_seconds", "The store's own replication lag figure, beside ours.", &with(&["metric"]))?,
            direction_changes: counter(registry, "rpo_direction_changes_total", "Times the agent swapped source and replica after a switchover or failover.", &["target", "kind"])?,
            fleet_leader: int_gauge(registry, "rpo_fleet_leader", "1 if this agent writes the target's canaries (it holds the fleet's lease, or the lease table is unreachable), 0 if it stands by.", &["target", "kind"])?,
            fleet_takeovers: counter(registry, "rpo_fleet_takeovers_total", "Times this agent took the target's lease from another agent (dead, frozen, or one that released it).", &["target", "kind"])?,
            fleet_degraded: int_gauge(registry, "rpo_fleet_degraded", "1 while the fleet's lease table has been unreachable for longer than a lease: every agent then measures on its own.", &[])?,
            emf_documents: counter(registry, "rpo_emf_documents_total", "CloudWatch EMF documents ([emf]) by outcome: written to the destination, or dropped (destination failing beyond the backlog, or a document over the line limit).", &["outcome"])?,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "rpo_agent_build_info",
                "Always 1; the version label tells the build.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[version]).set(1);
        Ok(m)
    }

    /// What `/metrics` serves: the registry and the per-pair families.
    pub fn exposition(&self) -> Exposition {
        Exposition {
            registry: self.registry.clone(),
            pairs: Some(self.pairs.clone()),
        }
    }

    /// The series of one (target, replica) pair, created at zero the first
    /// time (asking again for the same labels gives the same series).
    pub fn replica(&self, labels: &ReplicaLabels) -> ReplicaMetrics {
        ReplicaMetrics {
            labels: labels.clone(),
            cells: self.pairs.cells(labels),
            probe_errors: self.probe_errors.clone(),
            aws_reported: self.aws_reported.clone(),
        }
    }

    /// Counts one billable call (`service` e.g. `dynamodb`, `op` e.g. `PutItem`).
    pub fn api_request(&self, target: &str, service: &str, op: &str, region: &str) {
        self.api_requests
            .with_label_values(&[target, service, op, region])
            .inc();
    }

    /// Counts `n` metrics requested for `target` by a (batched) GetMetricData.
    pub fn cloudwatch_metrics_requested(&self, target: &str, n: u64) {
        self.cloudwatch_metrics
            .with_label_values(&[target])
            .inc_by(n);
    }

    /// Creates `rpo_direction_changes_total` at 0 for a target that can
    /// fail over, so `increase()` sees its first swap.
    pub fn can_change_direction(&self, target: &str, kind: &str) {
        let _ = self.direction_changes.with_label_values(&[target, kind]);
    }

    /// Counts a swap of source and replica on `target`.
    pub fn direction_changed(&self, target: &str, kind: &str) {
        self.direction_changes
            .with_label_values(&[target, kind])
            .inc();
    }

    /// Says whether this agent writes `target`'s canaries (fleet mode);
    /// the first call also creates `rpo_fleet_takeovers_total` at 0.
    pub fn fleet_leader(&self, target: &str, kind: &str, leader: bool) {
        self.fleet_leader
            .with_label_values(&[target, kind])
            .set(leader as i64);
        let _ = self.fleet_takeovers.with_label_values(&[target, kind]);
    }

    /// Counts a lease of `target` taken from another agent.
    pub fn fleet_takeover(&self, target: &str, kind: &str) {
        self.fleet_takeovers
            .with_label_values(&[target, kind])
            .inc();
    }

    /// Counts EMF documents by outcome (`written`, `dropped`); both
    /// series exist from the first call so `rate()` sees the zero.
    pub fn emf_documents(&self, written: u64, dropped: u64) {
        self.emf_documents
            .with_label_values(&["written"])
            .inc_by(written);
        self.emf_documents
            .with_label_values(&["dropped"])
            .inc_by(dropped);
    }

    /// Whether the fleet is measuring without its lease table.
    pub fn fleet_degraded(&self, degraded: bool) {
        self.fleet_degraded
            .with_label_values::<&str>(&[])
            .set(degraded as i64);
    }

    /// Removes every per-replica gauge of `labels` (after a direction swap
    /// the old direction's gauges would otherwise stay frozen on `/metrics`);
    /// counters and histograms stay, so `rate()` over a failover is right.
    pub fn forget(&self, labels: &ReplicaLabels) {
        self.pairs.hide_gauges(labels);
        let v = labels.values();
        for metric in AWS_REPORTED_METRICS {
            let mut with_metric = v.to_vec();
            with_metric.push(metric);
            let _ = self.aws_reported.remove_label_values(&with_metric);
        }
    }
}

/// What `/metrics` serves: a registry, and the per-pair families of the
/// agent's `Metrics` when there are any. A bare `Registry` converts into
/// one (the exporter's own tests serve plain registries).
#[derive(Clone)]
pub struct Exposition {
    registry: Registry,
    pairs: Option<Arc<PairTable>>,
}

impl From<Registry> for Exposition {
    fn from(registry: Registry) -> Self {
        Exposition {
            registry,
            pairs: None,
        }
    }
}

/// The size of the pieces `/metrics` is sent in.
pub const CHUNK: usize = 64 * 1024;

impl Exposition {
    /// The whole text exposition (format 0.0.4) in one string.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut chunks = self.chunks()?;
        let mut out = String::new();
        while let Some(c) = chunks.next_chunk() {
            out.push_str(&c);
        }
        Ok(out)
    }

    /// The text exposition in pieces of about [`CHUNK`] bytes: the
    /// registry's families first, then the per-pair ones, each written when
    /// it is asked for (so a scrape of 1000 targets holds one piece, not
    /// 8 MiB).
    pub fn chunks(&self) -> Result<Chunks, prometheus::Error> {
        let mut head = String::with_capacity(CHUNK);
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut head)?;
        Ok(Chunks {
            head: Some(head),
            pairs: self.pairs.as_ref().map(|p| p.text()),
        })
    }
}

/// What is left of one scrape's text (see [`Exposition::chunks`]).
pub struct Chunks {
    head: Option<String>,
    pairs: Option<PairText>,
}

impl Chunks {
    /// The next piece (at least [`CHUNK`] bytes unless it is the last one),
    /// `None` once everything was given.
    pub fn next_chunk(&mut self) -> Option<String> {
        let mut out = self
            .head
            .take()
            .unwrap_or_else(|| String::with_capacity(CHUNK + 4096));
        if let Some(p) = &mut self.pairs {
            if !p.write_chunk(&mut out, CHUNK) {
                self.pairs = None;
            }
        }
        if out.is_empty() && self.pairs.is_none() {
            return None;
        }
        Some(out)
    }

    /// Whether every piece was given.
    pub fn is_done(&self) -> bool {
        self.head.is_none() && self.pairs.is_none()
    }
}

/// The series of one (target, replica) pair. Derefs to its `PairCells`,
/// so `m.rpo.set(..)`, `m.written.inc()`, `m.lag.observe(..)` read as
/// they would on `prometheus` types.
#[derive(Clone)]
pub struct ReplicaMetrics {
    pub labels: ReplicaLabels,
    cells: Arc<PairCells>,
    probe_errors: IntCounterVec,
    aws_reported: GaugeVec,
}

impl std::ops::Deref for ReplicaMetrics {
    type Target = PairCells;

    fn deref(&self) -> &PairCells {
        &self.cells
    }
}

impl ReplicaMetrics {
    /// Counts one probe error. `code` must come from a bounded set (an AWS
    /// error code, a SQLSTATE, or one of the agent's own codes such as
    /// `timeout`, `connect`), never from free text.
    pub fn probe_error(&self, op: &str, code: &str) {
        let l = &self.labels;
        self.probe_errors
            .with_label_values(&[
                &l.target,
                &l.kind,
                &l.source_region,
                &l.replica_region,
                op,
                code,
            ])
            .inc();
    }

    /// Removes the store's own lag figure: the store reports none now (AWS
    /// stops publishing while nothing replicates), and a stale value would
    /// look healthy.
    pub fn clear_aws_reported_lag(&self, metric: &str) {
        let l = &self.labels;
        let _ = self.aws_reported.remove_label_values(&[
            &l.target,
            &l.kind,
            &l.source_region,
            &l.replica_region,
            metric,
        ]);
    }

    /// Sets the store's own lag figure. `metric` must be one of
    /// [`AWS_REPORTED_METRICS`] (the label stays bounded, and `forget` can
    /// remove every series); other names are ignored.
    pub fn aws_reported_lag(&self, metric: &str, seconds: f64) {
        if !AWS_REPORTED_METRICS.contains(&metric) {
            debug_assert!(false, "unknown AWS-reported metric {metric}");
            return;
        }
        let l = &self.labels;
        self.aws_reported
            .with_label_values(&[
                &l.target,
                &l.kind,
                &l.source_region,
                &l.replica_region,
                metric,
            ])
            .set(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_with_base_units() {
        let r = Registry::new();
        let m = Metrics::new(&r, "1.2.3").unwrap();
        let rm = m.replica(&ReplicaLabels {
            target: "orders".into(),
            kind: "dynamodb".into(),
            source_region: "ap-northeast-1".into(),
            replica_region: "ap-northeast-3".into(),
        });
        rm.rpo.set(1.5);
        rm.lag.observe(0.3);
        rm.probe_error("PutItem", "ThrottlingException");
        rm.aws_reported_lag("ReplicationLatency", 0.2);
        m.api_request("orders", "dynamodb", "PutItem", "ap-northeast-1");
        m.direction_changed("orders", "dynamodb");
        let text = m.exposition().encode().unwrap();
        assert!(text.contains("rpo_seconds{kind=\"dynamodb\",replica_region=\"ap-northeast-3\",source_region=\"ap-northeast-1\",target=\"orders\"} 1.5"), "{text}");
        assert!(text.contains("rpo_agent_build_info{version=\"1.2.3\"} 1"));
        assert!(text.contains("rpo_replication_lag_seconds_bucket"));
        assert!(text.contains("code=\"ThrottlingException\""));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("rpo_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }

    #[test]
    fn forget_removes_the_gauges_of_a_swapped_direction_but_keeps_counters() {
        let r = Registry::new();
        let m = Metrics::new(&r, "1.2.3").unwrap();
        let labels = ReplicaLabels {
            target: "core-db".into(),
            kind: "postgres".into(),
            source_region: "ap-northeast-1".into(),
            replica_region: "ap-northeast-3".into(),
        };
        let rm = m.replica(&labels);
        rm.rpo.set(2.0);
        rm.written.inc();
        rm.aws_reported_lag("AuroraGlobalDBRPOLag", 0.9);
        rm.aws_reported_lag("AuroraGlobalDBReplicationLag", 0.4);
        m.forget(&labels);
        let text = m.exposition().encode().unwrap();
        let series = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count()
        };
        assert_eq!(series("rpo_seconds"), 0, "{text}");
        assert_eq!(series("rpo_aws_reported_lag_seconds"), 0, "{text}");
        // Counters keep their history: rate() over a failover stays right.
        assert_eq!(series("rpo_canaries_written_total"), 1, "{text}");
    }
}
