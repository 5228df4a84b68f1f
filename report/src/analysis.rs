//! The report's arithmetic on series Prometheus returned: episodes from
//! sampled RPO, runs of breached slices, histogram quantiles, counter
//! increases, chart steps. Pure functions, no I/O, so each rule is tested
//! on hand-made samples.

/// Runs of breached slices: each `(first slice end, last slice end, peak)`.
/// `slices` are `(slice end, highest RPO in it)` of breached slices only,
/// in time order; slices `slice` apart belong to one run.
pub fn breached_runs(slices: &[(f64, f64)], slice: f64) -> Vec<(f64, f64, f64)> {
    let mut runs: Vec<(f64, f64, f64)> = Vec::new();
    for &(t, v) in slices {
        match runs.last_mut() {
            Some(run) if t - run.1 <= slice * 1.5 => {
                run.1 = t;
                run.2 = run.2.max(v);
            }
            _ => runs.push((t, t, v)),
        }
    }
    runs
}

/// One stretch above objective found in finely sampled RPO.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub start: f64,
    pub end: f64,
    pub peak: f64,
    /// The samples ended while still above (no sample back within).
    pub open: bool,
}

/// Stretches where `rpo > objective` in samples taken every `step` seconds
/// (`rpo` and `objective` aligned by time; a missing objective sample
/// reuses the last one). Start: the first sample above; end: the first
/// sample back within, or the last sample above when the data stops (a gap
/// longer than two steps, or the end of the samples), marked `open`.
pub fn runs_above(rpo: &[(f64, f64)], objective: &[(f64, f64)], step: f64) -> Vec<Run> {
    let mut out = Vec::new();
    let mut obj_i = 0;
    let mut obj = f64::NAN;
    let mut cur: Option<Run> = None;
    let mut last_t = f64::NEG_INFINITY;
    for &(t, v) in rpo {
        while obj_i < objective.len() && objective[obj_i].0 <= t + 1e-6 {
            obj = objective[obj_i].1;
            obj_i += 1;
        }
        // A gap in the data ends a run where the data ended: what happened
        // meanwhile is unknown, and the report says "no data" for it.
        if t - last_t > step * 2.5 {
            if let Some(mut r) = cur.take() {
                r.open = true;
                out.push(r);
            }
        }
        let above = v.is_finite() && obj.is_finite() && v > obj;
        match (&mut cur, above) {
            (Some(r), true) => {
                r.end = t;
                r.peak = r.peak.max(v);
            }
            (None, true) => {
                cur = Some(Run {
                    start: t,
                    end: t,
                    peak: v,
                    open: false,
                })
            }
            (Some(_), false) => {
                let mut r = cur.take().unwrap_or_else(|| unreachable!());
                r.end = t;
                out.push(r);
            }
            (None, false) => {}
        }
        last_t = t;
    }
    if let Some(mut r) = cur {
        r.open = true;
        out.push(r);
    }
    out
}

/// `histogram_quantile` as Prometheus computes it, on `(le, cumulative
/// count)` buckets sorted by `le` (the last one `+Inf`). `None` with no
/// observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Prometheus answers the highest finite bound here.
                return Some(prev_le);
            }
            let in_bucket = count - prev_count;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(prev_le + (le - prev_le) * (rank - prev_count) / in_bucket);
        }
        prev_le = le;
        prev_count = count;
    }
    Some(prev_le)
}

/// The upper bound of the highest bucket that holds an observation (the
/// histogram's best answer to "the largest lag").
pub fn histogram_max(buckets: &[(f64, f64)]) -> Option<f64> {
    let mut prev = 0.0;
    let mut max = None;
    for &(le, count) in buckets {
        if count - prev > 0.5 {
            max = Some(le);
        }
        prev = count;
    }
    max
}

/// Turns per-`le` bucket increases into cumulative buckets sorted by `le`
/// and made monotonic (summing chunks can leave tiny inversions).
pub fn sorted_buckets(mut raw: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    raw.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut hi: f64 = 0.0;
    for b in raw.iter_mut() {
        hi = hi.max(b.1);
        b.1 = hi;
    }
    raw
}

/// Times at which a counter went up, from its raw samples (a drop is a
/// restart of the agent, not an event).
pub fn increments(samples: &[(f64, f64)]) -> Vec<f64> {
    samples
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .collect()
}

/// The first of the events (sorted times) that form a run ending at `end`:
/// the last event is at most `gap` before `end`, and each earlier one at
/// most `gap` before the next. `None` when no event is that close to `end`.
pub fn run_leading_to(events: &[f64], end: f64, gap: f64) -> Option<f64> {
    let mut next = end;
    let mut first = None;
    for &t in events.iter().rev().filter(|t| **t <= end) {
        if next - t > gap {
            break;
        }
        first = Some(t);
        next = t;
    }
    first
}

/// Stretches without data in chart points taken every `step`: `(start,
/// end)` of each run of `None`s at least two steps long, inside the data
/// (before the first value and after the last one, the target may simply
/// not have existed).
pub fn gaps(points: &[(f64, Option<f64>)], step: f64) -> Vec<(f64, f64)> {
    let first = points.iter().position(|p| p.1.is_some());
    let last = points.iter().rposition(|p| p.1.is_some());
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut start: Option<f64> = None;
    for &(t, v) in &points[first..=last] {
        match (v, start) {
            (None, None) => start = Some(t - step),
            (Some(_), Some(s)) => {
                if t - step - s >= 2.0 * step - 1e-9 {
                    out.push((s, t - step));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A chart step that gives at most `max_points` points over `window`
/// seconds, from a list of round values, never below `floor`.
pub fn chart_step(window: f64, max_points: f64, floor: f64) -> f64 {
    const NICE: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 86400.0,
    ];
    let want = (window / max_points).max(floor);
    NICE.iter().copied().find(|&s| s >= want).unwrap_or(86400.0)
}

/// Splits `[from, to]` into consecutive chunks of at most `chunk` seconds
/// (a multiple of `align`), returned as `(start, end)`.
pub fn chunks(from: f64, to: f64, chunk: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut s = from;
    while s < to - 1e-9 {
        let e = (s + chunk).min(to);
        out.push((s, e));
        s = e;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_second(values: &[f64], t0: f64) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (t0 + i as f64, *v))
            .collect()
    }

    #[test]
    fn a_stall_is_one_run_from_first_to_first_back() {
        let rpo = every_second(&[1.0, 2.0, 6.0, 7.0, 8.0, 2.0, 1.0], 100.0);
        let obj = vec![(100.0, 5.0)];
        let runs = runs_above(&rpo, &obj, 1.0);
        assert_eq!(
            runs,
            vec![Run {
                start: 102.0,
                end: 105.0,
                peak: 8.0,
                open: false
            }]
        );
    }

    #[test]
    fn a_run_still_above_at_the_end_or_before_a_gap_is_open() {
        let mut rpo = every_second(&[6.0, 7.0], 0.0);
        rpo.extend(every_second(&[1.0, 9.0], 100.0));
        let runs = runs_above(&rpo, &[(0.0, 5.0)], 1.0);
        assert_eq!(runs.len(), 2);
        assert!(runs[0].open && runs[0].end == 1.0, "{runs:?}");
        assert!(runs[1].open && runs[1].start == 101.0, "{runs:?}");
    }

    #[test]
    fn nan_is_never_above() {
        let rpo = every_second(&[f64::NAN, f64::NAN], 0.0);
        assert!(runs_above(&rpo, &[(0.0, 5.0)], 1.0).is_empty());
    }

    #[test]
    fn breached_slices_group_into_runs() {
        let s = [(60.0, 6.0), (120.0, 9.0), (300.0, 7.0)];
        assert_eq!(
            breached_runs(&s, 60.0),
            vec![(60.0, 120.0, 9.0), (300.0, 300.0, 7.0)]
        );
    }

    #[test]
    fn quantiles_interpolate_as_prometheus_does() {
        let b = sorted_buckets(vec![
            (f64::INFINITY, 10.0),
            (1.0, 0.0),
            (2.0, 10.0),
            (4.0, 10.0),
        ]);
        assert_eq!(histogram_quantile(0.5, &b), Some(1.5));
        assert_eq!(histogram_max(&b), Some(2.0));
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        // Everything above the highest finite bound.
        assert_eq!(
            histogram_quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 3.0)]),
            Some(1.0)
        );
    }

    #[test]
    fn counter_increments_skip_restarts() {
        let s = [(1.0, 0.0), (2.0, 1.0), (3.0, 1.0), (4.0, 0.0), (5.0, 1.0)];
        assert_eq!(increments(&s), vec![2.0, 5.0]);
    }

    #[test]
    fn the_run_of_errors_before_a_switch_starts_at_its_first() {
        // An error long before (a restart), then a burst up to the switch.
        let ev = [10.0, 100.0, 103.0, 110.0];
        assert_eq!(run_leading_to(&ev, 115.0, 30.0), Some(100.0));
        assert_eq!(run_leading_to(&ev, 200.0, 30.0), None);
        assert_eq!(run_leading_to(&[], 1.0, 30.0), None);
    }

    #[test]
    fn gaps_are_runs_of_missing_points_inside_the_data() {
        let p = |v: &[Option<f64>]| {
            v.iter()
                .enumerate()
                .map(|(i, x)| (i as f64 + 1.0, *x))
                .collect::<Vec<_>>()
        };
        // Missing at the edges is not a gap; one missing step is not either.
        let pts = p(&[
            None,
            Some(1.0),
            None,
            Some(1.0),
            None,
            None,
            None,
            Some(2.0),
            None,
        ]);
        assert_eq!(gaps(&pts, 1.0), vec![(4.0, 7.0)]);
        assert!(gaps(&p(&[None, None]), 1.0).is_empty());
    }

    #[test]
    fn chart_steps_are_round_and_bounded() {
        assert_eq!(chart_step(300.0, 720.0, 1.0), 1.0);
        assert_eq!(chart_step(30.0 * 86400.0, 720.0, 1.0), 3600.0);
        assert_eq!(chart_step(86400.0, 720.0, 1.0), 120.0);
    }

    #[test]
    fn chunks_cover_the_window_exactly() {
        assert_eq!(
            chunks(0.0, 250.0, 100.0),
            vec![(0.0, 100.0), (100.0, 200.0), (200.0, 250.0)]
        );
        assert!(chunks(5.0, 5.0, 10.0).is_empty());
    }
}
