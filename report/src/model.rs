//! What a report says, independent of how it is written out: the figures
//! `gather` computed from Prometheus, which `markdown`, `html` and JSON
//! (serde) only format. Times are Unix seconds (Prometheus's own clock);
//! `None` is "could not be computed", never zero.

use serde::Serialize;

/// One report: the window, how it was computed, every target and the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the report was made (Unix seconds).
    pub generated_at: f64,
    /// The Prometheus base URL the figures came from (credentials removed).
    pub prometheus: String,
    pub window: Window,
    /// Length of one attainment time slice, seconds (60).
    pub slice_seconds: f64,
    /// Which queries answered: the shipped recording rules or raw series.
    pub path: QueryPath,
    /// Why that path was taken (for the reader, and for audits).
    pub path_note: String,
    /// Every target's slices together: one slice per target and minute.
    pub fleet: Attainment,
    pub targets: Vec<TargetReport>,
    /// With `--drill`: the failover exercise's timeline and figures.
    pub drill: Option<Drill>,
}

/// The reported window, `[from, to)`, both on slice boundaries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub from: f64,
    pub to: f64,
}

impl Window {
    pub fn seconds(&self) -> f64 {
        self.to - self.from
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryPath {
    /// `rpo:*:1m` recording rules (dashboards/rules/rpo-recording.rules.yml).
    RecordingRules,
    /// Raw `rpo_*` series, computed by the queries themselves.
    RawQueries,
}

/// Time-slice attainment: each slice is met, breached, or has no data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Attainment {
    /// Slices in the window (window / slice length).
    pub slices: u64,
    /// Slices whose highest RPO stayed within the objective.
    pub met: u64,
    /// Slices in which RPO exceeded the objective at least once.
    pub breached: u64,
    /// Slices with no usable data (agent down, not scraped, not measured yet).
    pub no_data: u64,
}

impl Attainment {
    /// Met slices over slices with data; `None` when no slice had data.
    pub fn ratio(&self) -> Option<f64> {
        let judged = self.met + self.breached;
        (judged > 0).then(|| self.met as f64 / judged as f64)
    }

    /// Share of the window's slices that had data.
    pub fn coverage(&self) -> f64 {
        if self.slices == 0 {
            0.0
        } else {
            (self.met + self.breached) as f64 / self.slices as f64
        }
    }

    pub fn add(&mut self, o: &Attainment) {
        self.slices += o.slices;
        self.met += o.met;
        self.breached += o.breached;
        self.no_data += o.no_data;
    }

    pub fn verdict(&self) -> Verdict {
        if self.met + self.breached == 0 {
            Verdict::NoData
        } else if self.breached > 0 {
            Verdict::Breached
        } else {
            Verdict::Met
        }
    }
}

/// The one-word answer for a target over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No slice breached (slices without data are listed apart).
    Met,
    /// At least one slice breached the objective.
    Breached,
    /// No slice had data: nothing can be claimed.
    NoData,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Breached => "breached",
            Verdict::NoData => "no data",
        }
    }
}

/// One target (all its replicas and directions).
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub kind: String,
    /// The highest objective the target had in the window, seconds.
    pub objective_seconds: f64,
    /// A slice is met when every pair of the target met it.
    pub attainment: Attainment,
    pub verdict: Verdict,
    /// Episodes above objective, oldest first (at most `MAX_EPISODES`).
    pub episodes: Vec<Episode>,
    /// Episodes found in all (more than `episodes` holds when capped).
    pub episodes_total: usize,
    /// Direction changes (SQL failovers / switchovers), oldest first.
    pub failovers: Vec<Failover>,
    /// One entry per (source region, replica region) seen in the window.
    pub pairs: Vec<PairReport>,
    /// RPO over time: the target's highest RPO per chart step.
    pub chart: Chart,
}

impl TargetReport {
    /// The episode with the highest peak.
    pub fn worst_episode(&self) -> Option<&Episode> {
        self.episodes
            .iter()
            .max_by(|a, b| a.peak_rpo_seconds.total_cmp(&b.peak_rpo_seconds))
    }
}

/// A stretch of time with RPO above the objective.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub source_region: String,
    pub replica_region: String,
    /// First sample above the objective.
    pub start: f64,
    /// First sample back within it (or the last sample, if `open`).
    pub end: f64,
    pub duration_seconds: f64,
    pub peak_rpo_seconds: f64,
    /// Still above the objective when the window (or the data) ended.
    pub open: bool,
    /// What the metrics say happened meanwhile, largest first.
    pub causes: Vec<Cause>,
}

/// One counter that moved during an episode.
#[derive(Debug, Clone, Serialize)]
pub struct Cause {
    /// e.g. "probe errors: read ThrottlingException", "canaries lost".
    pub what: String,
    pub count: f64,
}

/// A direction change of a target (`rpo_direction_changes_total`).
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// The scrape at which the change counter had moved.
    pub at: f64,
    /// Source region before and after, where the series say it.
    pub from_source: Option<String>,
    pub to_source: Option<String>,
    /// The target's RPO at that moment (the last value before the change).
    pub rpo_seconds: Option<f64>,
}

/// Figures of one (source → replica) pair of a target.
#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub source_region: String,
    pub replica_region: String,
    pub attainment: Attainment,
    /// Per-canary lag over the window, from the histogram.
    pub lag_p50_seconds: Option<f64>,
    pub lag_p99_seconds: Option<f64>,
    /// Upper edge of the highest histogram bucket that holds a canary.
    pub lag_max_seconds: Option<f64>,
    pub canaries: Canaries,
    /// Replica reads per observed canary.
    pub reads_per_canary: Option<f64>,
    /// Time with `rpo_probe_up` 0, seconds (approximate at the step used).
    pub probe_down_seconds: f64,
    /// AWS's own lag figures beside ours, one per CloudWatch metric.
    pub aws: Vec<AwsBeside>,
}

/// Canary counts over the window (`increase` of the counters).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Canaries {
    pub written: f64,
    pub observed: f64,
    pub lost: f64,
    pub failed: f64,
}

/// AWS's figure minus ours (positive: AWS reports more lag).
#[derive(Debug, Clone, Serialize)]
pub struct AwsBeside {
    pub metric: String,
    pub mean_difference_seconds: f64,
    pub max_difference_seconds: f64,
}

/// The RPO-over-time series of one target, ready to draw.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub step_seconds: f64,
    pub objective_seconds: f64,
    /// (time, highest RPO in the step ending then); `None`: no data.
    pub points: Vec<(f64, Option<f64>)>,
}

/// `--drill`: what happened during a failover exercise.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    /// Every event of every target, in time order.
    pub timeline: Vec<DrillEvent>,
    /// The figures a drill record asks for, per target that switched.
    pub switches: Vec<DrillSwitch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillEvent {
    pub at: f64,
    pub target: String,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillSwitch {
    pub target: String,
    /// When the agent swapped the direction.
    pub switched_at: f64,
    /// RPO at that moment, seconds.
    pub rpo_at_switch_seconds: Option<f64>,
    /// From the first sign of trouble (probe errors or RPO above objective)
    /// before the switch, to the switch.
    pub time_to_detect_seconds: Option<f64>,
    /// The new direction's first canary seen (its observed counter moved).
    pub first_canary_new_direction_at: Option<f64>,
    /// From the switch to RPO back within objective.
    pub time_back_within_objective_seconds: Option<f64>,
    /// Canaries lost from the first sign of trouble to back within objective.
    pub canaries_lost: f64,
}
