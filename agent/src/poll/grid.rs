//! Quantised arrivals: stores that apply replicated changes in whole-second
//! steps. MariaDB's and MySQL's `MASTER_DELAY` is one: the applier sleeps a
//! whole number of seconds per event, each sleep starting where the last
//! apply ended, so under one canary per second every canary lands on one
//! sub-second phase while the lags scatter over seconds (1–3 s for a delay
//! of 2). The lag history then predicts nothing (the spread is seconds, and
//! the search across it costs 6–7 reads per canary); the phase predicts the
//! instant exactly.
//!
//! `Phases` keeps the miss→hit windows of the newest canaries. When they all
//! share an instant modulo one second, `Grid` is that phase, and the planner
//! reads just before and just after each whole-second step from the
//! earliest lag seen on: about two reads per step, shared by every canary in
//! flight. A canary seen off the grid (its window holds no step) forgets the
//! phase at once, and the planner searches as before.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The step of a quantised store.
pub const QUANTUM: Duration = Duration::from_secs(1);
/// How many of the newest windows must agree on the phase.
const WINDOWS: usize = 4;
/// A window wider than this says too little about the phase to be kept
/// (the search across a second's spread reads in eighths of it: the first
/// windows are about this wide, and their intersection narrows at once).
const MAX_WINDOW: Duration = Duration::from_millis(250);
/// The phase creeps from step to step by the time an apply takes before the
/// next sleep starts; more than this is not a creep.
const MAX_CREEP: Duration = Duration::from_millis(15);
/// The creep varies from apply to apply: an older window is widened by this
/// per canary between it and the newest.
const CREEP_NOISE: Duration = Duration::from_millis(4);
/// Margin read outside the learned phase on either side.
const MARGIN: Duration = Duration::from_millis(4);
/// Lags on one phase that differ by this much have stepped: the store is
/// quantised. Less is steady, for the lag history, which keeps reading
/// between steps (a grid reads only at steps, so a store that merely looks
/// quantised would be seen late when it changes).
const SCATTER: Duration = Duration::from_millis(250);
/// Reads inside a step's window are at least this far apart.
const MIN_READ_STEP: Duration = Duration::from_millis(2);
/// After a step's window, the search goes on in doubling steps this far
/// before it moves to the next step (the phase crept out of its window).
const OVERRUN: Duration = Duration::from_millis(32);

/// Where arrivals fall within the quantum, as learned from recent windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Where the next arrival's phase window starts; steps are `QUANTUM`
    /// apart.
    start: Instant,
    /// Width of the phase window (all recent windows, moved by the creep,
    /// share it).
    width: Duration,
    /// How far the phase moves per canary applied: a step further ahead may
    /// see its canary that much later per step.
    creep: Duration,
    /// Smallest lag among the windows: no step before `ack + min_lag − quantum`
    /// is read (a whole-second delay lands within a step of it).
    min_lag: Duration,
    /// Largest lag among the windows: past it (and one more step) the
    /// canary is stalled, and searched as any is.
    max_lag: Duration,
}

/// One canary's arrival window and lag.
#[derive(Debug, Clone, Copy)]
struct Window {
    lower: Instant,
    upper: Instant,
    lag: Duration,
}

/// The newest arrival windows, for `grid`.
#[derive(Debug, Default, Clone)]
pub struct Phases {
    windows: VecDeque<Window>,
    /// Lags on the current phase have differed by whole steps: the store is
    /// quantised until a canary lands off the phase. (Between jumps the
    /// lags of such a store are steady for tens of canaries.)
    stepped: bool,
}

/// Two lags on one phase differ by whole steps (give or take an eighth of
/// one: the writes' own jitter), not merely by the scatter of wide windows.
fn whole_steps_apart(a: Duration, b: Duration) -> bool {
    let d = a.abs_diff(b);
    let off = (d.as_nanos() as i128 + Q / 2).rem_euclid(Q) - Q / 2;
    d >= SCATTER && off.unsigned_abs() <= (QUANTUM / 8).as_nanos()
}

/// `t − origin` in nanoseconds, signed.
fn offset(t: Instant, origin: Instant) -> i128 {
    if t >= origin {
        (t - origin).as_nanos() as i128
    } else {
        -((origin - t).as_nanos() as i128)
    }
}

fn at(origin: Instant, nanos: i128) -> Instant {
    let d = Duration::from_nanos(nanos.unsigned_abs() as u64);
    if nanos >= 0 {
        origin + d
    } else {
        origin.checked_sub(d).unwrap_or(origin)
    }
}

const Q: i128 = QUANTUM.as_nanos() as i128;

impl Phases {
    /// Records a canary seen between `lower` (its last miss) and `upper`
    /// (the hit), `lag` after its ack. A window that meets no step of the
    /// current grid at a lag the grid expects is proof the store is not (or
    /// no longer) quantised: the phase is forgotten. Wide windows are not
    /// kept.
    pub fn record(&mut self, lower: Instant, upper: Instant, lag: Duration) {
        let acked = upper - lag;
        if let Some(g) = self.grid() {
            let floor = acked + g.min_lag.saturating_sub(QUANTUM);
            // The grid's first read of a canary is a step's near edge: a
            // canary already there arrived off the grid.
            if lower <= acked || !g.meets_a_step(lower.max(floor), upper) {
                self.windows.clear();
                self.stepped = false;
            }
        }
        // A first read that hit says only "by then": no phase in that.
        if lower <= acked || upper.saturating_duration_since(lower) > MAX_WINDOW {
            return;
        }
        // (Whether the windows share a phase too is `grid`'s to check.)
        self.stepped |= self.windows.iter().any(|w| whole_steps_apart(w.lag, lag));
        if self.windows.len() == WINDOWS {
            self.windows.pop_front();
        }
        self.windows.push_back(Window { lower, upper, lag });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }

    /// The phase every recent window shares, if there are enough of them,
    /// they do, and lags on it have stepped by whole seconds (canaries
    /// written a whole number of seconds apart with one steady lag share a
    /// phase too: they are left to the lag history, which also reads
    /// between steps, so a change is seen at once). Each apply's own time delays the next
    /// sleep's start, so the phase creeps forward by about that much per
    /// canary: the creep is estimated from the oldest and newest windows,
    /// and every window is moved by it to the next arrival before they are
    /// intersected.
    pub fn grid(&self) -> Option<Grid> {
        self.phase().filter(|_| self.stepped)
    }

    /// The phase the recent windows share, whether or not their lags have
    /// stepped.
    fn phase(&self) -> Option<Grid> {
        if self.windows.len() < WINDOWS {
            return None;
        }
        let min_lag = self.windows.iter().map(|w| w.lag).min()?;
        let max_lag = self.windows.iter().map(|w| w.lag).max()?;
        let newest = self.windows.back()?;
        let origin = newest.lower;
        // Each window's offset from the newest one's lower edge, folded into
        // the same second, oldest first.
        let folded: Vec<(i128, i128)> = self
            .windows
            .iter()
            .map(|w| {
                let mut a = offset(w.lower, origin).rem_euclid(Q);
                if a > Q / 2 {
                    a -= Q;
                }
                (a, a + offset(w.upper, w.lower))
            })
            .collect();
        let mid = |(a, b): (i128, i128)| (a + b) / 2;
        let ages = (folded.len() - 1) as i128;
        let creep = ((mid(folded[folded.len() - 1]) - mid(folded[0])) / ages)
            .clamp(0, MAX_CREEP.as_nanos() as i128);
        let (mut lo, mut hi) = (i128::MIN, i128::MAX);
        for (age, (a, b)) in folded.iter().rev().enumerate() {
            let age = age as i128;
            let shift = creep * (age + 1);
            let slack = (CREEP_NOISE.as_nanos() as i128) * age;
            lo = lo.max(a + shift - slack);
            hi = hi.min(b + shift + slack);
            if lo > hi {
                return None;
            }
        }
        let width = Duration::from_nanos((hi - lo) as u64);
        Some(Grid {
            start: at(origin, lo),
            width,
            creep: Duration::from_nanos(creep as u64),
            min_lag,
            max_lag,
        })
    }
}

impl Grid {
    /// The reads of step `n`, in order.
    fn reads(&self, n: i128) -> Vec<Instant> {
        let (open, close) = (self.open(n), self.close(n));
        let mut v = vec![open, open + ((close - open) / 2).max(MIN_READ_STEP), close];
        let mut past = MARGIN;
        while past < OVERRUN {
            v.push(close + past);
            past *= 2;
        }
        v
    }

    /// Step `n`'s read window opens here (a margin before the phase).
    fn open(&self, n: i128) -> Instant {
        at(self.start, n * Q - MARGIN.as_nanos() as i128)
    }

    /// Step `n`'s read window closes here (a margin after the phase, and
    /// the creep of the canaries that may be applied before it).
    fn close(&self, n: i128) -> Instant {
        let ahead = n.clamp(0, 8) as u32;
        self.open(n) + self.width + MARGIN * 2 + self.creep * ahead
    }

    /// The first step whose window, extended by `extra`, ends after `t`.
    fn step_ending_after(&self, t: Instant, extra: Duration) -> i128 {
        let tail = (self.width + MARGIN + extra).as_nanos() as i128;
        let n = (offset(t, self.start) - tail).div_euclid(Q) + 1;
        // The creep widens later windows: the one before may still be open.
        if n > 0 && self.close(n - 1) + extra > t {
            n - 1
        } else {
            n
        }
    }

    /// Some step's phase window (without the read margins) meets
    /// `[lower, upper]`.
    fn meets_a_step(&self, lower: Instant, upper: Instant) -> bool {
        let n = self.step_ending_after(lower, Duration::ZERO);
        [n - 1, n].iter().any(|n| {
            let (start, end) = (self.open(*n) + MARGIN, self.close(*n) - MARGIN);
            start <= upper && lower <= end
        })
    }

    /// When canary `acked` (last missing at `last_miss`) should be read
    /// next, or `None` when it is past every step a learned lag reaches
    /// (`hi`, or the grid's own largest): that is a stall, for the usual
    /// search. Reads fall at the edges of each step's window (inside a wide
    /// one, in quarters of it); a miss at the far edge is followed by
    /// doubling steps for `OVERRUN` (the phase crept), then the next step.
    /// Between steps no read is made unless `interval` is shorter than the
    /// gap.
    pub fn next_read(
        &self,
        acked: Instant,
        last_miss: Option<Instant>,
        hi: Duration,
        interval: Duration,
    ) -> Option<Instant> {
        let floor = acked + self.min_lag.saturating_sub(QUANTUM);
        let from = last_miss.map_or(floor, |m| m.max(floor));
        if from > acked + hi.max(self.max_lag) + QUANTUM {
            return None;
        }
        let mut n = self.step_ending_after(from, OVERRUN);
        // A step whose window opened before the canary was written cannot be
        // bracketed for it (reads before the ack say nothing of it): the
        // canary's first step is the next.
        if self.open(n) < acked {
            n += 1;
        }
        // The step's reads are fixed instants, the same for every canary in
        // flight, so one read serves them all: its window's near edge, its
        // middle (each canary then halves the window it is seen in, and the
        // phase narrows), its far edge, then doubling steps past it for
        // `OVERRUN` (the phase crept); then the next step.
        let after = last_miss.unwrap_or(acked);
        // A step a whole one below every lag seen is read (a quantised lag
        // can drop by a step) but not searched past: its reads are the
        // older canaries' anyway.
        let early = self.open(n) + MARGIN + QUANTUM / 2 < acked + self.min_lag;
        let mut reads = self.reads(n);
        if early {
            reads.truncate(3);
        }
        let at = reads
            .into_iter()
            .find(|t| *t > after || (last_miss.is_none() && *t >= after))
            .unwrap_or_else(|| self.open(n + 1));
        Some(match last_miss {
            Some(m) => at.min(m + interval),
            None => at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn phases(t0: Instant, arrivals: &[u64], width: u64) -> Phases {
        let mut p = Phases::default();
        for (i, a) in (0u64..).zip(arrivals) {
            let upper = t0 + ms(*a);
            p.record(upper - ms(width), upper, ms(*a - (i + 1) * 1000));
        }
        p
    }

    #[test]
    fn windows_on_one_phase_with_scattered_lags_make_a_grid() {
        let t0 = Instant::now();
        // Arrivals 1–3 s after writes 1 s apart, all at phase .300–.310.
        let p = phases(t0, &[2_305, 4_308, 5_303, 7_306], 8);
        let g = p.grid().expect("a grid");
        let phase = offset(g.start, t0).rem_euclid(Q) as f64 / 1e6;
        assert!((297.0..=305.0).contains(&phase), "phase {phase} ms");
        assert!(g.width <= ms(10), "{g:?}");
        assert_eq!(g.min_lag, ms(1_305));
        assert_eq!(g.max_lag, ms(3_306));
    }

    #[test]
    fn scattered_phases_make_none() {
        let t0 = Instant::now();
        assert!(phases(t0, &[2_305, 4_408, 5_303, 7_306], 8)
            .grid()
            .is_none());
        // Too few windows.
        assert!(phases(t0, &[2_305, 4_308, 5_303], 8).grid().is_none());
        // One steady lag.
        assert!(phases(t0, &[3_305, 4_308, 5_303, 6_306], 8)
            .grid()
            .is_none());
    }

    #[test]
    fn an_arrival_off_the_grid_forgets_it() {
        let t0 = Instant::now();
        let mut p = phases(t0, &[2_305, 4_308, 5_303, 7_306], 8);
        // Seen between two steps, in a window 700 ms wide.
        p.record(t0 + ms(8_400), t0 + ms(9_100), ms(1_100));
        assert_eq!(p.len(), 0);
        assert!(p.grid().is_none());
    }

    #[test]
    fn reads_bracket_each_step_from_the_earliest_lag() {
        let t0 = Instant::now();
        let p = phases(t0, &[2_305, 4_308, 5_303, 7_306], 8);
        let g = p.grid().unwrap();
        let ack = t0 + ms(8_000);
        // min lag 1.305 s: the first step read is the one at 8.3 s (one
        // step below it).
        let first = g.next_read(ack, None, ms(2_400), ms(1000)).unwrap();
        let off = offset(first, t0) as f64 / 1e6;
        assert!((8_290.0..8_302.0).contains(&off), "first read at {off} ms");
        let second = g.next_read(ack, Some(first), ms(2_400), ms(1000)).unwrap();
        let off2 = offset(second, t0) as f64 / 1e6;
        assert!(
            (8_299.0..8_312.0).contains(&off2),
            "second read (the middle) at {off2} ms"
        );
        // A miss at the far edge: doubling steps, then the next step.
        let mut m = second;
        let mut n = 0;
        while m < t0 + ms(9_000) {
            m = g.next_read(ack, Some(m), ms(2_400), ms(1000)).unwrap();
            n += 1;
            assert!(n < 12, "{n} reads");
        }
        let off3 = offset(m, t0) as f64 / 1e6;
        assert!(
            (9_290.0..9_302.0).contains(&off3),
            "next step read at {off3} ms"
        );
        // Past every learned lag (+ a step): the usual search.
        assert!(g
            .next_read(ack, Some(t0 + ms(12_500)), ms(2_400), ms(1000))
            .is_none());
    }
}
