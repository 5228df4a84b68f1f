//! The state of one (route, replica) pair and how probe results change it.
//!
//! Writer, reader and refresher tasks share a `PairState` behind a mutex that
//! is never held across an `.await`; every metric and status update for the
//! pair happens here, so the tasks only deal with timing.

use std::time::Duration;

use rpo_exporter::emf;
use rpo_exporter::{Metrics, ReplicaLabels, ReplicaMetrics, ReplicaStatus, StatusBoard};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::canary::unix_seconds;
use crate::poll::{LagModel, Sample};
use crate::probe::{ErrorClass, ProbeError, StoredCanary};
use crate::route::Route;
use crate::tracker::{Event, Observation, ReadSpan, Tracker};

/// Repeated identical errors are logged once a minute, not every round.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// CloudWatch errors (a missing grant, mostly) are logged once an hour.
const AWS_ERROR_LOG_EVERY: Duration = Duration::from_secs(3600);

/// Lets an error code through to the log once per period; repeats of the
/// same code within it go to debug.
struct LogOnce {
    every: Duration,
    last: Option<(String, Instant)>,
}

impl LogOnce {
    fn new(every: Duration) -> Self {
        LogOnce { every, last: None }
    }

    /// Whether `code` is news at `now` (and if so, remembers it).
    fn news(&mut self, code: &str, now: Instant) -> bool {
        let repeat = matches!(&self.last, Some((c, t)) if c == code && now - *t < self.every);
        if !repeat {
            self.last = Some((code.to_string(), now));
        }
        !repeat
    }

    /// Forgets the last error; whether there was one.
    fn clear(&mut self) -> bool {
        self.last.take().is_some()
    }
}

pub struct PairState {
    pub labels: ReplicaLabels,
    canary_key: String,
    tracker: Tracker,
    model: LagModel,
    metrics: ReplicaMetrics,
    status: ReplicaStatus,
    write_ok: bool,
    read_ok: bool,
    /// The replica accepts writes too: down until the roles are sorted out,
    /// however well canaries are written and read meanwhile.
    split_brain: bool,
    errors_logged: LogOnce,
    aws_errors_logged: LogOnce,
    /// Fleet mode: another agent writes this target's canaries, so this
    /// pair exports no gauges and tracks nothing.
    standby: bool,
    /// `[emf]`: what this pair saw since the last EMF document.
    emf: Option<emf::Window>,
}

impl PairState {
    /// A fresh pair of `route` for `labels`, whose series may have existed
    /// before (this agent held the lease earlier, or measured this direction
    /// before a failover): its RPO gauges say "unknown" (NaN) until measured
    /// again, not the value they froze at back then. `emf`: keep an EMF
    /// window.
    pub fn for_route(route: &Route, labels: ReplicaLabels, metrics: &Metrics, emf: bool) -> Self {
        let m = metrics.replica(&labels);
        m.rpo.set(f64::NAN);
        m.upper_bound.set(f64::NAN);
        let mut p = PairState::new(
            labels,
            route.canary_key.clone(),
            m,
            route.timeout,
            route.max_pending,
            route.objective,
            route.interval,
        );
        p.emf = emf.then(emf::Window::default);
        p
    }

    fn new(
        labels: ReplicaLabels,
        canary_key: String,
        metrics: ReplicaMetrics,
        timeout: Duration,
        max_pending: usize,
        objective: Duration,
        interval: Duration,
    ) -> Self {
        metrics.objective.set(objective.as_secs_f64());
        metrics.interval.set(interval.as_secs_f64());
        metrics.probe_up.set(0);
        // Start the "last success" clock at start-up: a 0 would make
        // "no successful canary for N intervals" fire the moment we start.
        metrics.last_success.set(unix_seconds());
        let status = ReplicaStatus::new(&labels, objective.as_secs_f64());
        PairState {
            labels,
            canary_key,
            tracker: Tracker::new(timeout, max_pending),
            model: LagModel::default(),
            metrics,
            status,
            write_ok: false,
            read_ok: false,
            split_brain: false,
            errors_logged: LogOnce::new(ERROR_LOG_EVERY),
            aws_errors_logged: LogOnce::new(AWS_ERROR_LOG_EVERY),
            standby: false,
            emf: None,
        }
    }

    /// `[emf]`: closes the pair's period and writes its document. None:
    /// nothing was seen (standing by in a fleet), or no EMF; `Err`: the
    /// document would be over the line limit and is not written.
    ///
    /// The gauges are sampled once more at `now`, the period's end: the
    /// refresher's last sample may be up to 250 ms older, and during a stall
    /// the RPO is highest at the very end.
    pub fn take_emf(
        &mut self,
        settings: &emf::Settings,
        timestamp_ms: u64,
        now: Instant,
    ) -> Option<Result<String, ()>> {
        if !self.standby {
            let (rpo, upper, up) = self.gauges(now);
            if let Some(w) = &mut self.emf {
                w.sample(rpo, upper, up);
            }
        }
        let period = self.emf.as_mut()?.take()?;
        let doc = emf::document(
            settings,
            &self.labels,
            self.status.objective_seconds,
            &period,
            timestamp_ms,
        );
        if doc.is_none() {
            warn!(target = %self.labels.target, replica_region = %self.labels.replica_region,
                "EMF document over the line limit: not written (shorten the target's name)");
        }
        Some(doc.ok_or(()))
    }

    /// Fleet mode: another agent (`holder`, when known) writes the
    /// canaries. The pair hides its gauges (only the holder exports the
    /// target's RPO) and forgets its canaries; counters stay.
    pub fn stand_by(&mut self, holder: Option<String>, metrics: &rpo_exporter::Metrics) {
        metrics.forget(&self.labels);
        self.standby = true;
        self.tracker = Tracker::new(self.tracker.timeout(), self.tracker.max_pending());
        self.write_ok = false;
        self.read_ok = false;
        let objective = self.status.objective_seconds;
        self.status = ReplicaStatus::new(&self.labels, objective);
        self.status.fleet = Some(rpo_exporter::FleetSeat {
            leader: false,
            holder,
        });
    }

    /// Fleet mode: this agent writes the canaries (`holder`: its own id;
    /// None while it measures alone because the lease table is unreachable).
    pub fn set_leader(&mut self, holder: Option<String>) {
        self.status.fleet = Some(rpo_exporter::FleetSeat {
            leader: true,
            holder,
        });
    }

    /// Fleet takeover: carries on from the canaries the last holder left
    /// (`source`: the newest written; `replica`: the newest this replica
    /// has; `token`: our lease's). Their wall-clock write times are mapped onto our monotonic
    /// clock, which assumes synchronized host clocks (Amazon Time Sync).
    pub fn inherit(
        &mut self,
        source: Option<StoredCanary>,
        replica: Option<StoredCanary>,
        interval: Duration,
        token: Option<u64>,
    ) {
        // The new holder writes its first canary at once, so the source
        // may already show ours (stamped with our token): then the last
        // holder's newest is unknown, and our own canaries (tracked) cover
        // what the replica lacks.
        let source = source.filter(|s| token.is_none() || s.lease != token);
        let now = Instant::now();
        let now_us = crate::canary::unix_micros();
        let at = |us: u64| now.checked_sub(Duration::from_micros(now_us.saturating_sub(us)));
        let behind = match (source, replica) {
            (Some(s), Some(r)) => s.seq > r.seq,
            (Some(_), None) => true,
            _ => false,
        };
        // The first canary the replica lacks came one interval (less the
        // 5 % jitter) after its newest, and no later than the source's.
        let since = behind.then(|| {
            let s = source.map(|s| s.written_at_us).unwrap_or(now_us);
            let first = replica.map_or(s, |r| {
                r.written_at_us + interval.mul_f64(0.95).as_micros() as u64
            });
            first.min(s)
        });
        let awaited = behind.then(|| replica.map_or(source.map_or(0, |s| s.seq), |r| r.seq + 1));
        self.tracker.inherit(
            awaited,
            since.and_then(at),
            replica.and_then(|r| at(r.written_at_us)),
        );
        if let Some(since) = since {
            let l = &self.labels;
            info!(target = %l.target, replica_region = %l.replica_region,
                behind_seconds = now_us.saturating_sub(since) as f64 / 1e6,
                "took over a target whose replica lags: RPO carries on from the last holder's canaries");
        }
    }

    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// When the replica should be read next; `None` when nothing is awaited.
    pub fn next_read(&self, interval: Duration) -> Option<Instant> {
        let oldest = self.tracker.awaited().next()?;
        self.tracker
            .awaited()
            .map(|p| self.model.plan(p, oldest, interval))
            .min()
    }

    /// The seqs still awaited, oldest first.
    pub fn awaited(&self) -> Vec<u64> {
        self.tracker.awaited().map(|p| p.seq).collect()
    }

    /// The seqs due for a read at `now` by the poll planner, oldest first:
    /// stores read per canary (S3) look only at these.
    pub fn due(&self, now: Instant, interval: Duration) -> Vec<u64> {
        let Some(oldest) = self.tracker.awaited().next() else {
            return Vec::new();
        };
        self.tracker
            .awaited()
            .filter(|p| self.model.plan(p, oldest, interval) <= now)
            .map(|p| p.seq)
            .collect()
    }

    /// Starts the poll planner from a lag the last agent kept (lag hint).
    pub fn seed_lag(&mut self, lag: Duration) {
        self.model.seed(lag);
    }

    /// The current lag estimate, to keep for the next agent.
    pub fn lag_estimate(&self) -> Option<Duration> {
        self.model.estimate()
    }

    pub fn has_awaited(&self) -> bool {
        self.tracker.pending_count() > 0
    }

    pub fn on_write(&mut self, seq: u64, sent: Instant, acked: Instant) {
        self.write_ok = true;
        self.metrics.written.inc();
        let events = self.tracker.written(seq, sent, acked);
        self.apply(events);
        self.recovered_if_up();
    }

    pub fn on_error(&mut self, err: &ProbeError, during_read: bool) {
        if during_read {
            self.read_ok = false;
        } else {
            self.write_ok = false;
        }
        self.metrics.probe_up.set(0);
        self.metrics.probe_error(err.op, &err.code);
        self.status.last_error = Some(err.to_string());
        let l = &self.labels;
        if !self.errors_logged.news(&err.code, Instant::now()) {
            debug!(target = %l.target, replica_region = %l.replica_region, op = err.op, code = %err.code, "{}", err.message);
            return;
        }
        match err.class {
            ErrorClass::Config => error!(
                target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                op = err.op, code = %err.code, "configuration problem, not lag: {}", err.message
            ),
            ErrorClass::Transient => warn!(
                target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                op = err.op, code = %err.code, "probe error: {}", err.message
            ),
        }
    }

    /// AWS's own lag figure for this pair (None: AWS reports none now).
    pub fn on_aws_lag(&mut self, metric: &str, seconds: Option<f64>) {
        if self.standby {
            return;
        }
        match seconds {
            Some(s) => self.metrics.aws_reported_lag(metric, s),
            None => self.metrics.clear_aws_reported_lag(metric),
        }
    }

    /// Reading AWS's own figure failed. Counted and logged (once an hour per
    /// code), but the probe stays up: the canaries are the measurement,
    /// CloudWatch only the comparison.
    ///
    /// One batched call serves many pairs: only the pair with `log` set
    /// writes the warning (still once an hour), so a failed call is one
    /// line, not one per target.
    pub fn on_aws_lag_error(&mut self, err: &ProbeError, log: bool) {
        self.metrics.probe_error(err.op, &err.code);
        let l = &self.labels;
        if !log || !self.aws_errors_logged.news(&err.code, Instant::now()) {
            debug!(target = %l.target, replica_region = %l.replica_region, op = err.op, code = %err.code, "{}", err.message);
            return;
        }
        warn!(
            target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
            op = err.op, code = %err.code, "could not read AWS's own lag figure: {}", err.message
        );
    }

    pub fn on_read(&mut self, span: ReadSpan, obs: &Observation) {
        self.read_ok = true;
        self.metrics.reads.inc();
        let events = self.tracker.observe(span, obs);
        self.apply(events);
        self.recovered_if_up();
    }

    /// What the writer's role check found this round: split brain or not.
    pub fn set_split_brain(&mut self, on: bool) {
        self.split_brain = on;
        if on {
            self.metrics.probe_up.set(0);
        } else {
            self.recovered_if_up();
        }
    }

    fn recovered_if_up(&mut self) {
        if self.write_ok && self.read_ok && !self.split_brain && self.errors_logged.clear() {
            self.status.last_error = None;
            info!(target = %self.labels.target, replica_region = %self.labels.replica_region, "probe recovered");
        }
    }

    fn apply(&mut self, events: Vec<Event>) {
        let l = &self.labels;
        for e in events {
            match e {
                Event::Observed {
                    seq,
                    acked,
                    lag,
                    uncertainty,
                    reads,
                } => {
                    self.metrics.observed.inc();
                    self.metrics.lag.observe(lag.as_secs_f64());
                    if let Some(w) = &mut self.emf {
                        w.lag(lag.as_secs_f64());
                    }
                    self.metrics.uncertainty.observe(uncertainty.as_secs_f64());
                    self.metrics.last_success.set(unix_seconds());
                    self.model.record(Sample {
                        seq,
                        acked,
                        lag,
                        uncertainty,
                    });
                    debug!(
                        target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                        seq, lag_seconds = lag.as_secs_f64(), uncertainty_seconds = uncertainty.as_secs_f64(), reads,
                        "canary observed"
                    );
                }
                Event::Lost { seq, age } => {
                    self.metrics.lost.inc();
                    if let Some(w) = &mut self.emf {
                        w.lost();
                    }
                    warn!(
                        target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                        seq, key = %self.canary_key, age_seconds = age.as_secs_f64(),
                        "canary lost: not seen in the replica within the timeout"
                    );
                }
                Event::Failed { seq } => {
                    self.metrics.failed.inc();
                    if let Some(w) = &mut self.emf {
                        w.failed();
                    }
                    warn!(
                        target = %l.target, source_region = %l.source_region, replica_region = %l.replica_region,
                        seq, key = %self.canary_key, "canary replication FAILED (reported by the store)"
                    );
                }
                Event::LateArrival { seq, lag } => info!(
                    target = %l.target, replica_region = %l.replica_region, seq, lag_seconds = lag.as_secs_f64(),
                    "a canary counted lost arrived late"
                ),
                Event::Evicted { seq } => {
                    self.metrics.pending_limit_hits.inc();
                    warn!(
                        target = %l.target, replica_region = %l.replica_region, seq,
                        "too many canaries pending: stopped tracking the oldest (raise max_pending or the interval)"
                    );
                }
            }
        }
    }

    /// RPO and upper bound (seconds; None until known) and whether the
    /// probe is up, at `now`: what the gauges and the EMF window show.
    fn gauges(&self, now: Instant) -> (Option<f64>, Option<f64>, bool) {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        (
            secs(self.tracker.rpo(now)),
            secs(self.tracker.upper_bound(now)),
            self.write_ok && self.read_ok && !self.split_brain,
        )
    }

    /// Expires old canaries and refreshes gauges; returns the status to show.
    /// Recomputes the gauges that grow with time (RPO during a stall) and
    /// the pair's status, and puts it on `board` without reallocating its
    /// strings (this runs for every pair four times a second).
    pub fn refresh(&mut self, now: Instant, board: &StatusBoard) {
        if self.standby {
            board.update_with(&self.labels, |into| copy_status(&self.status, into));
            return;
        }
        let events = self.tracker.expire(now);
        self.apply(events);
        let (rpo, upper, up) = self.gauges(now);
        if let Some(r) = rpo {
            self.metrics.rpo.set(r);
        }
        if let Some(u) = upper {
            self.metrics.upper_bound.set(u);
        }
        let pending = self.tracker.pending_count() as u64;
        self.metrics.pending.set(pending as i64);
        self.metrics.probe_up.set(up as i64);
        if let Some(w) = &mut self.emf {
            w.sample(rpo, upper, up);
        }
        let s = &mut self.status;
        s.rpo_seconds = rpo;
        s.upper_bound_seconds = upper;
        if let Some((lag, unc)) = self.tracker.newest_lag() {
            s.last_lag_seconds = Some(lag.as_secs_f64());
            s.last_uncertainty_seconds = Some(unc.as_secs_f64());
        }
        s.pending = pending;
        s.written = self.metrics.written.get();
        s.observed = self.metrics.observed.get();
        s.lost = self.metrics.lost.get();
        s.failed = self.metrics.failed.get();
        s.up = up;
        board.update_with(&self.labels, |into| copy_status(&self.status, into));
    }
}

/// `*to = from.clone()`, reusing `to`'s string buffers.
fn copy_status(from: &ReplicaStatus, to: &mut ReplicaStatus) {
    let ReplicaStatus {
        target,
        kind,
        source_region,
        replica_region,
        rpo_seconds,
        upper_bound_seconds,
        objective_seconds,
        last_lag_seconds,
        last_uncertainty_seconds,
        pending,
        written,
        observed,
        lost,
        failed,
        up,
        last_error,
        direction,
        fleet,
    } = from;
    to.target.clone_from(target);
    to.kind.clone_from(kind);
    to.source_region.clone_from(source_region);
    to.replica_region.clone_from(replica_region);
    to.rpo_seconds = *rpo_seconds;
    to.upper_bound_seconds = *upper_bound_seconds;
    to.objective_seconds = *objective_seconds;
    to.last_lag_seconds = *last_lag_seconds;
    to.last_uncertainty_seconds = *last_uncertainty_seconds;
    to.pending = *pending;
    to.written = *written;
    to.observed = *observed;
    to.lost = *lost;
    to.failed = *failed;
    to.up = *up;
    to.last_error.clone_from(last_error);
    to.direction.clone_from(direction);
    to.fleet.clone_from(fleet);
}
