//! The per-(target, replica) series, kept compact and written straight to
//! the text format at scrape time.
//!
//! Why not `prometheus`'s `GaugeVec` & co. for these: there every child keeps
//! its own copy of the label pairs (eight `String`s) and a histogram child its
//! bucket vectors, about 15 KiB per pair for the fifteen per-pair families,
//! and every scrape first builds a protobuf-shaped copy of all of them
//! (`Registry::gather`) before encoding it. With 1000 targets that was 15 MiB
//! resident and as much again during each scrape. Here a pair is one
//! `PairCells` of atomics (under 1 KiB) next to its labels, and `/metrics`
//! writes the text lines from it directly. The sparse per-pair families
//! (`rpo_probe_errors_total`, `rpo_aws_reported_lag_seconds`) stay on the
//! `Registry`: they only have children for pairs that had errors or figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::{ReplicaLabels, LAG_BUCKETS};

/// A gauge holding an `f64`.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A gauge holding an integer.
#[derive(Default)]
pub struct IntGauge(AtomicI64);

impl IntGauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter: only ever goes up.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram over [`LAG_BUCKETS`]. Behind a mutex so that a scrape sees
/// buckets, sum and count of the same set of observations (one observation
/// per canary: never contended).
#[derive(Default)]
pub struct Histogram(Mutex<HistogramData>);

#[derive(Default, Clone, Copy)]
struct HistogramData {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; LAG_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&self, v: f64) {
        let i = LAG_BUCKETS
            .iter()
            .position(|upper| v <= *upper)
            .unwrap_or(LAG_BUCKETS.len());
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        h.buckets[i] += 1;
        h.sum += v;
        h.count += 1;
    }

    fn data(&self) -> HistogramData {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every dense per-pair series of one (target, replica) pair.
#[derive(Default)]
pub struct PairCells {
    /// False after `forget`: the gauges are not exported (a swapped
    /// direction's frozen values would look current); counters and
    /// histograms are, so `rate()` stays right across a failover.
    pub(crate) gauges_shown: AtomicBool,
    pub rpo: Gauge,
    pub upper_bound: Gauge,
    pub objective: Gauge,
    pub interval: Gauge,
    pub last_success: Gauge,
    pub pending: IntGauge,
    pub probe_up: IntGauge,
    pub written: Counter,
    pub observed: Counter,
    pub lost: Counter,
    pub failed: Counter,
    pub pending_limit_hits: Counter,
    pub reads: Counter,
    pub lag: Histogram,
    pub uncertainty: Histogram,
}

/// Every pair's cells, by labels (sorted, as `Registry::gather` sorts).
#[derive(Default)]
pub(crate) struct PairTable {
    pairs: Mutex<BTreeMap<ReplicaLabels, Arc<PairCells>>>,
}

impl PairTable {
    /// The cells of `labels`, created at zero the first time. Asking again
    /// for the same labels gives the same cells (so a direction that swaps
    /// back continues its counters) and shows its gauges again.
    pub(crate) fn cells(&self, labels: &ReplicaLabels) -> Arc<PairCells> {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let cells = match pairs.get(labels) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(PairCells::default());
                pairs.insert(labels.clone(), c.clone());
                c
            }
        };
        cells.gauges_shown.store(true, Ordering::Relaxed);
        cells
    }

    /// Stops exporting the gauges of `labels` (counters stay).
    pub(crate) fn hide_gauges(&self, labels: &ReplicaLabels) {
        let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = pairs.get(labels) {
            c.gauges_shown.store(false, Ordering::Relaxed);
        }
    }

    /// Appends every family in the text exposition format 0.0.4.
    #[cfg(test)]
    pub(crate) fn encode(&self, out: &mut String) {
        let mut text = self.text();
        while text.write_chunk(out, usize::MAX) {}
    }

    /// The families as text, written a chunk at a time (`PairText`), from a
    /// snapshot of the list of pairs (no lock is held while writing).
    pub(crate) fn text(&self) -> PairText {
        let pairs = {
            let p = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            p.iter().map(|(l, c)| (label_text(l), c.clone())).collect()
        };
        PairText {
            pairs,
            family: 0,
            pair: 0,
        }
    }
}

/// Where a scrape is in writing the per-pair families. With 1000 targets
/// the text is 8 MiB; written in chunks, the whole of it never exists at once.
pub(crate) struct PairText {
    pairs: Vec<(String, Arc<PairCells>)>,
    family: usize,
    pair: usize,
}

impl PairText {
    /// Appends lines to `out` until it holds at least `limit` bytes or all
    /// is written; whether anything is left to write.
    pub(crate) fn write_chunk(&mut self, out: &mut String, limit: usize) -> bool {
        while self.family < FAMILIES.len() && !self.pairs.is_empty() {
            let f = &FAMILIES[self.family];
            if self.pair == 0 {
                header(out, f.name, f.help, f.kind.type_name());
            }
            while self.pair < self.pairs.len() {
                let (l, c) = &self.pairs[self.pair];
                match f.kind {
                    Kind::Gauge(get) => {
                        if c.gauges_shown.load(Ordering::Relaxed) {
                            sample(out, f.name, "", l, get(c));
                        }
                    }
                    Kind::Counter(get) => sample_int(out, f.name, l, get(c)),
                    Kind::Histogram(get) => histogram(out, f.name, l, &get(c).data()),
                }
                self.pair += 1;
                if out.len() >= limit {
                    return !self.done_after_this_pair();
                }
            }
            self.family += 1;
            self.pair = 0;
        }
        false
    }

    fn done_after_this_pair(&mut self) -> bool {
        if self.pair == self.pairs.len() {
            self.family += 1;
            self.pair = 0;
        }
        self.family >= FAMILIES.len()
    }
}

/// `kind="…",replica_region="…",source_region="…",target="…"`: label names
/// in alphabetical order, as the `prometheus` crate writes them.
fn label_text(l: &ReplicaLabels) -> String {
    let mut s = String::with_capacity(96);
    for (i, (name, value)) in [
        ("kind", &l.kind),
        ("replica_region", &l.replica_region),
        ("source_region", &l.source_region),
        ("target", &l.target),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            s.push(',');
        }
        s.push_str(name);
        s.push_str("=\"");
        escape_into(&mut s, value, true);
        s.push('"');
    }
    s
}

/// The text format's escapes: `\` and newline always, `"` in label values.
fn escape_into(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_into(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    out.push('{');
    out.push_str(labels);
    out.push_str("} ");
    write_f64(out, v);
    out.push('\n');
}

fn sample_int(out: &mut String, name: &str, labels: &str, v: u64) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    out.push_str("} ");
    out.push_str(itoa::Buffer::new().format(v));
    out.push('\n');
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The `le` label of each bucket, `+Inf` last, as `f64`'s `Display` writes
/// the bounds (what the `prometheus` crate wrote).
const LE: [&str; LAG_BUCKETS.len() + 1] = [
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300",
    "600", "900", "1800", "3600", "+Inf",
];

/// Histograms are most of a scrape (21 lines per pair and histogram), so
/// their lines are plain copies, no formatting machinery.
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramData) {
    let mut cumulative = 0;
    let mut num = itoa::Buffer::new();
    for (le, n) in LE.iter().zip(h.buckets) {
        cumulative += n;
        out.push_str(name);
        out.push_str("_bucket{");
        out.push_str(labels);
        out.push_str(",le=\"");
        out.push_str(le);
        out.push_str("\"} ");
        out.push_str(num.format(cumulative));
        out.push('\n');
    }
    sample(out, name, "_sum", labels, h.sum);
    out.push_str(name);
    out.push_str("_count{");
    out.push_str(labels);
    out.push_str("} ");
    out.push_str(num.format(h.count));
    out.push('\n');
}

enum Kind {
    Gauge(fn(&PairCells) -> f64),
    Counter(fn(&PairCells) -> u64),
    Histogram(fn(&PairCells) -> &Histogram),
}

impl Kind {
    fn type_name(&self) -> &'static str {
        match self {
            Kind::Gauge(_) => "gauge",
            Kind::Counter(_) => "counter",
            Kind::Histogram(_) => "histogram",
        }
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

/// The dense per-pair families of DESIGN.md, in the order they are written.
const FAMILIES: &[Family] = &[
    Family { name: "rpo_seconds", help: "RPO now: max(lag of the newest observed canary, age of the oldest canary written but not yet seen).", kind: Kind::Gauge(|c| c.rpo.get()) },
    Family { name: "rpo_upper_bound_seconds", help: "Now minus the write time of the newest canary seen in the replica; never under-reports.", kind: Kind::Gauge(|c| c.upper_bound.get()) },
    Family { name: "rpo_objective_seconds", help: "The configured RPO objective of the target.", kind: Kind::Gauge(|c| c.objective.get()) },
    Family { name: "rpo_interval_seconds", help: "The configured canary interval of the target.", kind: Kind::Gauge(|c| c.interval.get()) },
    Family { name: "rpo_replication_lag_seconds", help: "Replication lag per canary: first read that saw it minus the source's write acknowledgement.", kind: Kind::Histogram(|c| &c.lag) },
    Family { name: "rpo_measurement_uncertainty_seconds", help: "Width of the window between the last read that missed a canary and the first that saw it.", kind: Kind::Histogram(|c| &c.uncertainty) },
    Family { name: "rpo_canaries_written_total", help: "Canaries written to the source (counted once per replica they are expected in).", kind: Kind::Counter(|c| c.written.get()) },
    Family { name: "rpo_canaries_observed_total", help: "Canaries seen in the replica.", kind: Kind::Counter(|c| c.observed.get()) },
    Family { name: "rpo_canaries_lost_total", help: "Canaries not seen in the replica within the target's timeout.", kind: Kind::Counter(|c| c.lost.get()) },
    Family { name: "rpo_canaries_failed_total", help: "Canaries whose replication the store reported as FAILED.", kind: Kind::Counter(|c| c.failed.get()) },
    Family { name: "rpo_canaries_pending", help: "Canaries written but not yet seen in the replica.", kind: Kind::Gauge(|c| c.pending.get() as f64) },
    Family { name: "rpo_canaries_pending_limit_total", help: "Canaries dropped from tracking because the bound on pending canaries was reached.", kind: Kind::Counter(|c| c.pending_limit_hits.get()) },
    Family { name: "rpo_probe_up", help: "1 if the last canary write and the last replica read both succeeded.", kind: Kind::Gauge(|c| c.probe_up.get() as f64) },
    Family { name: "rpo_last_canary_success_timestamp_seconds", help: "Unix time at which a canary was last seen in the replica.", kind: Kind::Gauge(|c| c.last_success.get()) },
    Family { name: "rpo_replica_reads_total", help: "Reads of the replica made to look for canaries.", kind: Kind::Counter(|c| c.reads.get()) },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(target: &str) -> ReplicaLabels {
        ReplicaLabels {
            target: target.into(),
            kind: "dynamodb".into(),
            source_region: "ap-northeast-1".into(),
            replica_region: "ap-northeast-3".into(),
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_the_count() {
        let t = PairTable::default();
        let c = t.cells(&labels("a"));
        for v in [0.005, 0.3, 0.3, 7200.0] {
            c.lag.observe(v);
        }
        let mut out = String::new();
        t.encode(&mut out);
        let l = "kind=\"dynamodb\",replica_region=\"ap-northeast-3\",source_region=\"ap-northeast-1\",target=\"a\"";
        for (le, n) in [
            ("0.01", 1),
            ("0.25", 1),
            ("0.5", 3),
            ("3600", 3),
            ("+Inf", 4),
        ] {
            let line = format!("rpo_replication_lag_seconds_bucket{{{l},le=\"{le}\"}} {n}\n");
            assert!(out.contains(&line), "{line} in {out}");
        }
        assert!(
            out.contains(&format!(
                "rpo_replication_lag_seconds_sum{{{l}}} 7200.605\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("rpo_replication_lag_seconds_count{{{l}}} 4\n")),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let t = PairTable::default();
        t.cells(&labels("a\"b\\c\nd")).rpo.set(1.0);
        let mut out = String::new();
        t.encode(&mut out);
        assert!(out.contains("target=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
    }

    #[test]
    fn the_same_labels_give_the_same_cells_and_show_hidden_gauges_again() {
        let t = PairTable::default();
        t.cells(&labels("a")).written.inc();
        t.cells(&labels("a")).rpo.set(2.5);
        t.hide_gauges(&labels("a"));
        let mut out = String::new();
        t.encode(&mut out);
        assert!(!out.contains("rpo_seconds{"), "{out}");
        assert!(out.contains("rpo_canaries_written_total{"), "{out}");
        let again = t.cells(&labels("a"));
        assert_eq!(again.written.get(), 1);
        out.clear();
        t.encode(&mut out);
        assert!(out.contains("target=\"a\"} 2.5\n"), "{out}");
    }

    #[test]
    fn the_le_labels_are_the_buckets_as_displayed() {
        for (le, upper) in LE.iter().zip(LAG_BUCKETS) {
            assert_eq!(*le, upper.to_string());
        }
        assert_eq!(LE[LAG_BUCKETS.len()], "+Inf");
    }

    #[test]
    fn text_written_in_small_chunks_is_the_text_written_at_once() {
        let t = PairTable::default();
        for i in 0..50 {
            let c = t.cells(&labels(&format!("t{i}")));
            c.rpo.set(i as f64 / 4.0);
            c.lag.observe(0.2);
            c.reads.inc_by(i);
        }
        let mut whole = String::new();
        t.encode(&mut whole);
        let mut text = t.text();
        let mut pieces = String::new();
        let mut chunks = 0;
        loop {
            let mut chunk = String::new();
            let more = text.write_chunk(&mut chunk, 1000);
            assert!(!chunk.is_empty() || !more);
            pieces.push_str(&chunk);
            chunks += 1;
            if !more {
                break;
            }
        }
        assert_eq!(pieces, whole);
        assert!(chunks > 50, "{chunks} chunks");
        assert_eq!(whole.matches("# TYPE ").count(), FAMILIES.len());
    }

    #[test]
    fn non_finite_values_use_the_text_format_spelling() {
        let mut out = String::new();
        write_f64(&mut out, f64::INFINITY);
        out.push(' ');
        write_f64(&mut out, f64::NAN);
        assert_eq!(out, "+Inf NaN");
    }
}
