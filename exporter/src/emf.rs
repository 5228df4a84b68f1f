//! CloudWatch Embedded Metric Format: what one (target, replica) pair saw in
//! one period, and the JSON document that says it to CloudWatch Logs.
//!
//! Why: teams that watch CloudWatch, not Prometheus, get the agent's figures
//! with no extra service: on ECS the awslogs driver ships stdout to
//! CloudWatch Logs, which turns every document's `_aws` directive into
//! metrics. `Window` only accumulates (the pair's `PairState` feeds it);
//! `Document` only formats; `emf_sink` only writes lines.
//!
//! Written with serde_json rather than a crate: `metrique` and
//! `metrics_cloudwatch_embedded` are built around their own metric facades
//! (a unit of work, or the `metrics` crate's registry) and decide the
//! period and the flush themselves; here the scheduler owns the period and
//! the figures are already aggregated, and the format is ten members.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::metrics::ReplicaLabels;

/// EMF's limits: values per metric (array or histogram bins).
pub const MAX_VALUES: usize = 100;
/// EMF's limit of metrics per directive.
pub const MAX_METRICS: usize = 100;
/// EMF's limit of dimensions per dimension set.
pub const MAX_DIMENSIONS: usize = 30;
/// The awslogs driver splits lines longer than 16 KiB into several log
/// events, which CloudWatch Logs then cannot parse as JSON. Documents stay
/// far below (≈ 1–3 KiB); one that would not is not written.
pub const MAX_LINE_BYTES: usize = 16 * 1024 - 1;

/// What a dimension of an EMF metric can be: the pair's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Target,
    ReplicaRegion,
    SourceRegion,
    Kind,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Target,
        Dimension::ReplicaRegion,
        Dimension::SourceRegion,
        Dimension::Kind,
    ];

    /// The dimension's (and the document member's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Target => "Target",
            Dimension::ReplicaRegion => "ReplicaRegion",
            Dimension::SourceRegion => "SourceRegion",
            Dimension::Kind => "Kind",
        }
    }

    fn value(self, l: &ReplicaLabels) -> &str {
        match self {
            Dimension::Target => &l.target,
            Dimension::ReplicaRegion => &l.replica_region,
            Dimension::SourceRegion => &l.source_region,
            Dimension::Kind => &l.kind,
        }
    }
}

/// Where the documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One JSON line per document on stdout (the awslogs driver ships it).
    Stdout,
    /// The CloudWatch agent's EMF listener, newline-delimited over TCP (`HOST:PORT`).
    Tcp(String),
    /// The CloudWatch agent's EMF listener, one datagram per document (`HOST:PORT`).
    Udp(String),
}

/// How documents are shaped, for every pair alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub namespace: String,
    /// 60 (standard) or 1 (high resolution).
    pub storage_resolution: u32,
    pub dimensions: Vec<Vec<Dimension>>,
    /// Written as the `AgentId` property (searchable, not a dimension).
    pub agent_id: String,
}

/// Lag values kept as (value, count) bins of bounded number: values are
/// rounded to `digits` significant digits, and when more than `MAX_VALUES`
/// bins would exist, to one digit fewer. Count, sum, min and max stay exact.
#[derive(Debug, Clone, Default, PartialEq)]
struct Bins {
    bins: Vec<(f64, u64)>,
    digits: i32,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Significant digits lag values start with (0.1 % of the value: below
/// the uncertainty of any single canary).
const START_DIGITS: i32 = 4;

fn round_to(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

impl Bins {
    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.digits = START_DIGITS;
            self.min = v;
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.insert(round_to(v, self.digits), 1);
        while self.bins.len() > MAX_VALUES && self.digits > 1 {
            self.digits -= 1;
            let old = std::mem::take(&mut self.bins);
            for (b, n) in old {
                self.insert(round_to(b, self.digits), n);
            }
        }
    }

    fn insert(&mut self, key: f64, n: u64) {
        match self.bins.binary_search_by(|(b, _)| b.total_cmp(&key)) {
            Ok(i) => self.bins[i].1 += n,
            Err(i) => self.bins.insert(i, (key, n)),
        }
    }
}

/// What one pair saw during one period; `take` starts the next.
#[derive(Debug, Clone, Default)]
pub struct Window {
    rpo_max: Option<f64>,
    upper_max: Option<f64>,
    /// `Some(false)` if the probe was down at any sample of the period.
    up: Option<bool>,
    lags: Bins,
    lost: u64,
    failed: u64,
}

/// A closed period of one pair, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub rpo_max: Option<f64>,
    pub upper_max: Option<f64>,
    pub up: Option<bool>,
    lags: Bins,
    pub lost: u64,
    pub failed: u64,
}

impl Window {
    /// The gauges at one refresh (four times a second).
    pub fn sample(&mut self, rpo: Option<f64>, upper: Option<f64>, up: bool) {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.rpo_max = max(self.rpo_max, rpo.filter(|v| v.is_finite()));
        self.upper_max = max(self.upper_max, upper.filter(|v| v.is_finite()));
        self.up = Some(self.up.unwrap_or(true) && up);
    }

    /// One canary observed with this lag.
    pub fn lag(&mut self, seconds: f64) {
        self.lags.add(seconds);
    }

    pub fn lost(&mut self) {
        self.lost += 1;
    }

    pub fn failed(&mut self) {
        self.failed += 1;
    }

    /// Closes the period; `None` if nothing at all was seen in it (a pair
    /// standing by in a fleet: its holder writes the document).
    pub fn take(&mut self) -> Option<Period> {
        let w = std::mem::take(self);
        if w.up.is_none() && w.lags.count == 0 && w.lost == 0 && w.failed == 0 {
            return None;
        }
        Some(Period {
            rpo_max: w.rpo_max,
            upper_max: w.upper_max,
            up: w.up,
            lags: w.lags,
            lost: w.lost,
            failed: w.failed,
        })
    }
}

impl Period {
    /// Lag values as EMF wants them: (values, counts), sorted by value.
    /// Rounding may put the outer bins past the exact extremes; they are
    /// clamped to [Min, Max], so the histogram agrees with its own members.
    pub fn lag_bins(&self) -> (Vec<f64>, Vec<u64>) {
        let l = &self.lags;
        let mut out: Vec<(f64, u64)> = Vec::with_capacity(l.bins.len());
        for &(b, n) in &l.bins {
            let b = b.clamp(l.min, l.max);
            match out.last_mut() {
                Some((last, m)) if *last == b => *m += n,
                _ => out.push((b, n)),
            }
        }
        out.into_iter().unzip()
    }

    pub fn lag_count(&self) -> u64 {
        self.lags.count
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition {
    name: &'static str,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_resolution: Option<u32>,
}

/// The one JSON line of a pair's period. `timestamp_ms` is the period's
/// start (CloudWatch files a datapoint under the period it begins).
pub fn document(
    settings: &Settings,
    labels: &ReplicaLabels,
    objective_seconds: f64,
    period: &Period,
    timestamp_ms: u64,
) -> Option<String> {
    let mut root = Map::new();
    let mut metrics = Vec::new();
    let resolution = (settings.storage_resolution == 1).then_some(1);
    let mut metric = |root: &mut Map<String, Value>, name: &'static str, unit, v: Value| {
        metrics.push(MetricDefinition {
            name,
            unit,
            storage_resolution: resolution,
        });
        root.insert(name.to_string(), v);
    };
    if let Some(r) = period.rpo_max {
        metric(&mut root, "RPO", "Seconds", r.into());
    }
    if let Some(u) = period.upper_max {
        metric(&mut root, "RPOUpperBound", "Seconds", u.into());
    }
    if period.lags.count > 0 {
        let (values, counts) = period.lag_bins();
        let l = &period.lags;
        let hist = serde_json::json!({
            "Values": values,
            "Counts": counts,
            "Max": l.max,
            "Min": l.min,
            "Count": l.count,
            "Sum": l.sum,
        });
        metric(&mut root, "ReplicationLag", "Seconds", hist);
    }
    metric(&mut root, "CanariesLost", "Count", period.lost.into());
    metric(&mut root, "CanariesFailed", "Count", period.failed.into());
    if let Some(up) = period.up {
        metric(&mut root, "ProbeUp", "None", (up as u8).into());
    }
    debug_assert!(metrics.len() <= MAX_METRICS);
    let dimension_sets: Vec<Vec<&str>> = settings
        .dimensions
        .iter()
        .map(|set| {
            set.iter()
                .take(MAX_DIMENSIONS)
                .map(|d| d.as_str())
                .collect()
        })
        .collect();
    // Every label is a top-level member: the dimensions' values, and the
    // others as properties that Logs Insights can search.
    for d in Dimension::ALL {
        root.insert(d.as_str().to_string(), d.value(labels).into());
    }
    root.insert("Objective".into(), objective_seconds.into());
    root.insert("AgentId".into(), settings.agent_id.clone().into());
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": settings.namespace,
                "Dimensions": dimension_sets,
                "Metrics": metrics,
            }],
        }),
    );
    let line = serde_json::to_string(&Value::Object(root)).ok()?;
    (line.len() <= MAX_LINE_BYTES).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> ReplicaLabels {
        ReplicaLabels {
            target: "orders".into(),
            kind: "dynamodb".into(),
            source_region: "ap-northeast-1".into(),
            replica_region: "ap-northeast-3".into(),
        }
    }

    fn settings(resolution: u32) -> Settings {
        Settings {
            namespace: "RPOAgent".into(),
            storage_resolution: resolution,
            dimensions: vec![vec![Dimension::Target, Dimension::ReplicaRegion]],
            agent_id: "agent-1".into(),
        }
    }

    #[test]
    fn rpo_is_the_maximum_of_the_period_and_up_its_minimum() {
        let mut w = Window::default();
        w.sample(Some(0.5), Some(0.7), true);
        w.sample(Some(9.0), Some(9.5), false);
        w.sample(Some(1.0), Some(1.2), true);
        let p = w.take().unwrap();
        assert_eq!(p.rpo_max, Some(9.0));
        assert_eq!(p.upper_max, Some(9.5));
        assert_eq!(p.up, Some(false));
        // The next period starts empty.
        assert_eq!(w.take(), None);
    }

    #[test]
    fn lag_bins_stay_within_emf_limits_and_keep_exact_totals() {
        let mut w = Window::default();
        w.sample(Some(1.0), None, true);
        let mut sum = 0.0;
        for i in 0..5000 {
            let v = 0.001 * (1.0 + i as f64 * 0.37);
            sum += v;
            w.lag(v);
        }
        let p = w.take().unwrap();
        let (values, counts) = p.lag_bins();
        assert!(values.len() <= MAX_VALUES, "{} bins", values.len());
        assert_eq!(values.len(), counts.len());
        assert_eq!(counts.iter().sum::<u64>(), 5000);
        assert!(values.windows(2).all(|w| w[0] < w[1]));
        assert!(values[0] >= p.lags.min && values[values.len() - 1] <= p.lags.max);
        assert!((p.lags.sum - sum).abs() < 1e-9);
        assert_eq!(p.lags.min, 0.001);
    }

    #[test]
    fn few_lags_are_kept_to_four_digits() {
        let mut w = Window::default();
        for v in [0.31234, 0.31236, 0.7] {
            w.lag(v);
        }
        let p = w.take().unwrap();
        // 0.31234 rounds below the minimum: clamped to it.
        assert_eq!(p.lag_bins(), (vec![0.31234, 0.3124, 0.7], vec![1, 1, 1]));
    }

    #[test]
    fn the_document_has_every_member_emf_needs() {
        let mut w = Window::default();
        w.sample(Some(2.5), Some(3.0), true);
        w.lag(0.25);
        w.lag(0.25);
        w.lost();
        let p = w.take().unwrap();
        let line = document(&settings(1), &labels(), 60.0, &p, 1_700_000_000_000).unwrap();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000u64);
        let d = &aws["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "RPOAgent");
        assert_eq!(
            d["Dimensions"],
            serde_json::json!([["Target", "ReplicaRegion"]])
        );
        let names: Vec<&str> = d["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "RPO",
                "RPOUpperBound",
                "ReplicationLag",
                "CanariesLost",
                "CanariesFailed",
                "ProbeUp"
            ]
        );
        for m in d["Metrics"].as_array().unwrap() {
            assert_eq!(m["StorageResolution"], 1);
            assert!(v.get(m["Name"].as_str().unwrap()).is_some());
        }
        assert_eq!(v["Target"], "orders");
        assert_eq!(v["ReplicaRegion"], "ap-northeast-3");
        assert_eq!(v["SourceRegion"], "ap-northeast-1");
        assert_eq!(v["Kind"], "dynamodb");
        assert_eq!(v["Objective"], 60.0);
        assert_eq!(v["RPO"], 2.5);
        assert_eq!(v["CanariesLost"], 1);
        assert_eq!(v["ProbeUp"], 1);
        assert_eq!(v["ReplicationLag"]["Values"], serde_json::json!([0.25]));
        assert_eq!(v["ReplicationLag"]["Counts"], serde_json::json!([2]));
        assert_eq!(v["ReplicationLag"]["Count"], 2);
        assert_eq!(v["ReplicationLag"]["Sum"], 0.5);
    }

    #[test]
    fn standard_resolution_is_left_to_the_default_and_no_rpo_is_no_metric() {
        let mut w = Window::default();
        w.sample(None, None, false);
        let p = w.take().unwrap();
        let line = document(&settings(60), &labels(), 60.0, &p, 0).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let metrics = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .clone();
        assert!(metrics.iter().all(|m| m.get("StorageResolution").is_none()));
        assert!(metrics
            .iter()
            .all(|m| m["Name"] != "RPO" && m["Name"] != "ReplicationLag"));
        assert!(v.get("RPO").is_none());
        assert_eq!(v["ProbeUp"], 0);
    }
}
