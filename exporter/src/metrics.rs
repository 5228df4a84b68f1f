//! The metric families of DESIGN.md, registered into an explicit `Registry`.
//!
//! Every per-replica series carries the same four labels (`target`, `kind`,
//! `source_region`, `replica_region`) so that one alert rule such as
//! `rpo_seconds > rpo_objective_seconds` matches series one-to-one across all
//! targets. Label values are resolved once per replica (`ReplicaMetrics`), so
//! the hot path never hashes label strings.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

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
];

/// All metric families of the agent.
#[derive(Clone)]
pub struct Metrics {
    rpo: GaugeVec,
    upper_bound: GaugeVec,
    objective: GaugeVec,
    interval: GaugeVec,
    lag: HistogramVec,
    uncertainty: HistogramVec,
    written: IntCounterVec,
    observed: IntCounterVec,
    lost: IntCounterVec,
    failed: IntCounterVec,
    pending: IntGaugeVec,
    pending_limit_hits: IntCounterVec,
    probe_errors: IntCounterVec,
    api_requests: IntCounterVec,
    cloudwatch_metrics: IntCounterVec,
    probe_up: IntGaugeVec,
    last_success: GaugeVec,
    aws_reported: GaugeVec,
    direction_changes: IntCounterVec,
    reads: IntCounterVec,
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

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LAG_BUCKETS.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    REPLICA_LABELS.iter().chain(extra).copied().collect()
}

impl Metrics {
    /// Registers every family in `registry` and sets `rpo_agent_build_info`.
    pub fn new(registry: &Registry, version: &str) -> prometheus::Result<Self> {
        let l = &REPLICA_LABELS;
        let m = Metrics {
            rpo: gauge(registry, "rpo_seconds", "RPO now: max(lag of the newest observed canary, age of the oldest canary written but not yet seen).", l)?,
            upper_bound: gauge(registry, "rpo_upper_bound_seconds", "Now minus the write time of the newest canary seen in the replica; never under-reports.", l)?,
            objective: gauge(registry, "rpo_objective_seconds", "The configured RPO objective of the target.", l)?,
            interval: gauge(registry, "rpo_interval_seconds", "The configured canary interval of the target.", l)?,
            lag: histogram(registry, "rpo_replication_lag_seconds", "Replication lag per canary: first read that saw it minus the source's write acknowledgement.", l)?,
            uncertainty: histogram(registry, "rpo_measurement_uncertainty_seconds", "Width of the window between the last read that missed a canary and the first that saw it.", l)?,
            written: counter(registry, "rpo_canaries_written_total", "Canaries written to the source (counted once per replica they are expected in).", l)?,
            observed: counter(registry, "rpo_canaries_observed_total", "Canaries seen in the replica.", l)?,
            lost: counter(registry, "rpo_canaries_lost_total", "Canaries not seen in the replica within the target's timeout.", l)?,
            failed: counter(registry, "rpo_canaries_failed_total", "Canaries whose replication the store reported as FAILED.", l)?,
            pending: int_gauge(registry, "rpo_canaries_pending", "Canaries written but not yet seen in the replica.", l)?,
            pending_limit_hits: counter(registry, "rpo_canaries_pending_limit_total", "Canaries dropped from tracking because the bound on pending canaries was reached.", l)?,
            probe_errors: counter(registry, "rpo_probe_errors_total", "Errors of the probe's API or database calls, by operation and error code.", &with(&["op", "code"]))?,
            api_requests: counter(registry, "rpo_api_requests_total", "Every billable AWS API call the agent made (DynamoDB, S3, Secrets Manager, CloudWatch), retries included; a call that serves every target (a batched GetMetricData) has an empty target.", &["target", "service", "op", "region"])?,
            cloudwatch_metrics: counter(registry, "rpo_cloudwatch_metrics_requested_total", "Metrics requested from CloudWatch GetMetricData for the target (GetMetricData is billed per metric requested).", &["target"])?,
            probe_up: int_gauge(registry, "rpo_probe_up", "1 if the last canary write and the last replica read both succeeded.", l)?,
            last_success: gauge(registry, "rpo_last_canary_success_timestamp_seconds", "Unix time at which a canary was last seen in the replica.", l)?,
            aws_reported: gauge(registry, "rpo_aws_reported_lag_seconds", "The store's own replication lag figure, beside ours.", &with(&["metric"]))?,
            direction_changes: counter(registry, "rpo_direction_changes_total", "Times the agent swapped source and replica after a switchover or failover.", &["target", "kind"])?,
            reads: counter(registry, "rpo_replica_reads_total", "Reads of the replica made to look for canaries.", l)?,
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

    /// Resolves the children of one (target, replica) pair.
    pub fn replica(&self, labels: &ReplicaLabels) -> ReplicaMetrics {
        let v = labels.values();
        ReplicaMetrics {
            labels: labels.clone(),
            rpo: self.rpo.with_label_values(&v),
            upper_bound: self.upper_bound.with_label_values(&v),
            objective: self.objective.with_label_values(&v),
            interval: self.interval.with_label_values(&v),
            lag: self.lag.with_label_values(&v),
            uncertainty: self.uncertainty.with_label_values(&v),
            written: self.written.with_label_values(&v),
            observed: self.observed.with_label_values(&v),
            lost: self.lost.with_label_values(&v),
            failed: self.failed.with_label_values(&v),
            pending: self.pending.with_label_values(&v),
            pending_limit_hits: self.pending_limit_hits.with_label_values(&v),
            probe_up: self.probe_up.with_label_values(&v),
            last_success: self.last_success.with_label_values(&v),
            reads: self.reads.with_label_values(&v),
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

    /// Removes every per-replica series of `labels` (after a direction swap the
    /// old direction's series would otherwise stay frozen on `/metrics`).
    pub fn forget(&self, labels: &ReplicaLabels) {
        let v = labels.values();
        for g in [
            &self.rpo,
            &self.upper_bound,
            &self.objective,
            &self.interval,
            &self.last_success,
        ] {
            let _ = g.remove_label_values(&v);
        }
        let _ = self.pending.remove_label_values(&v);
        let _ = self.probe_up.remove_label_values(&v);
        for metric in AWS_REPORTED_METRICS {
            let mut with_metric = v.to_vec();
            with_metric.push(metric);
            let _ = self.aws_reported.remove_label_values(&with_metric);
        }
    }
}

/// The resolved series of one (target, replica) pair.
#[derive(Clone)]
pub struct ReplicaMetrics {
    pub labels: ReplicaLabels,
    pub rpo: Gauge,
    pub upper_bound: Gauge,
    pub objective: Gauge,
    pub interval: Gauge,
    pub lag: Histogram,
    pub uncertainty: Histogram,
    pub written: IntCounter,
    pub observed: IntCounter,
    pub lost: IntCounter,
    pub failed: IntCounter,
    pub pending: IntGauge,
    pub pending_limit_hits: IntCounter,
    pub probe_up: IntGauge,
    pub last_success: Gauge,
    pub reads: IntCounter,
    probe_errors: IntCounterVec,
    aws_reported: GaugeVec,
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
    use prometheus::Encoder;

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
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
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
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
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
