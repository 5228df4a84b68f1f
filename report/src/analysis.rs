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

/// The rules path's slices that its evaluations cannot vouch for, as slice
/// ends (Unix seconds) in `(from, to]`.
///
/// Prometheus offsets a rule group's evaluations from the clock's minute,
/// so the clock slice ending at `T` overlaps two evaluations: the one in
/// `(T − slice, T]` and the one in `(T, T + slice]`. It is met for sure only
/// when both are met and no scrape of the agent failed within it; every
/// other slice is judged from raw samples, as the raw path judges it.
/// `flags` are the `T` whose evaluation in `(T − slice, T]` breached, or
/// is present while the one before is absent, or the other way round: each
/// makes the slices ending at `T − slice` and `T` uncertain. `failed` are
/// slice ends with a failed scrape: each makes its own slice uncertain. The
/// window's last slice is always uncertain: its second evaluation is after
/// `to` (not made yet, or outside the window).
pub fn uncertain_slices(
    flags: &[f64],
    failed: &[f64],
    from: f64,
    to: f64,
    slice: f64,
) -> std::collections::BTreeSet<i64> {
    let (from, to, slice) = (from.round() as i64, to.round() as i64, slice.round() as i64);
    let end = |t: f64| {
        // A slice end on the step grid (ranges are asked on whole minutes).
        let t = t.round() as i64;
        t - (t - from).rem_euclid(slice)
    };
    let mut out: std::collections::BTreeSet<i64> = flags
        .iter()
        .flat_map(|t| [end(*t) - slice, end(*t)])
        .chain(failed.iter().map(|t| end(*t)))
        .filter(|t| *t > from && *t <= to)
        .collect();
    if to - from >= slice {
        out.insert(to);
    }
    out
}

/// Ranges `(first end, last end)` covering every slice end of `ends`:
/// neighbours at most `max_gap` slices apart share a range (evaluating a
/// few slices in between costs less than a request), and a range holds at
/// most `max_len` slices.
pub fn slice_ranges(
    ends: &std::collections::BTreeSet<i64>,
    slice: i64,
    max_gap: i64,
    max_len: i64,
) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &t in ends {
        match out.last_mut() {
            Some(r) if t - r.1 <= max_gap * slice && (t - r.0) / slice < max_len => r.1 = t,
            _ => out.push((t, t)),
        }
    }
    out
}

/// One key's counts on the rules path: the rules' own `judged` and `met`
/// over the window (one evaluation per slice), with the judgements of the
/// `uncertain` slices swapped for the raw ones. `rules` and `raw` map a
/// slice end to 1 (met) or 0 (breached); an absent end has no data.
/// Returns `(judged, met)`.
pub fn swap_uncertain(
    judged: f64,
    met: f64,
    uncertain: &std::collections::BTreeSet<i64>,
    rules: &std::collections::BTreeMap<i64, f64>,
    raw: &std::collections::BTreeMap<i64, f64>,
) -> (f64, f64) {
    let (mut judged, mut met) = (judged.round(), met.round());
    for t in uncertain {
        if let Some(v) = rules.get(t) {
            judged -= 1.0;
            met -= v.round();
        }
        if let Some(v) = raw.get(t) {
            judged += 1.0;
            met += v.round();
        }
    }
    (judged.max(0.0), met.max(0.0))
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

/// The two query paths of `gather` on a simulated agent (scraped every
/// second, at half seconds): the raw path judges every clock minute from
/// the samples; the rules path takes one evaluation per minute at `offset`
/// past it and swaps the slices `uncertain_slices` names for raw ones. They
/// must agree exactly, whatever the offset and wherever an episode or an
/// outage falls.
#[cfg(test)]
mod edges {
    use super::*;
    use std::collections::BTreeMap;

    const OBJ: f64 = 5.0;
    const FROM: i64 = 1_800_000_000 - 1_800_000_000 % 60;

    /// `rpo[i]`: the sample at `FROM - 120 + i + 0.5`; `None`: not scraped.
    struct Sim {
        rpo: Vec<Option<f64>>,
    }

    impl Sim {
        fn healthy(seconds: usize) -> Sim {
            Sim {
                rpo: vec![Some(1.0); seconds],
            }
        }
        fn at(t: f64) -> usize {
            (t - (FROM - 120) as f64).floor() as usize
        }
        /// RPO above the objective over `[a, b)` (seconds after FROM).
        fn breach(mut self, a: f64, b: f64) -> Sim {
            for i in Sim::at(FROM as f64 + a)..Sim::at(FROM as f64 + b) {
                self.rpo[i] = Some(OBJ + 10.0);
            }
            self
        }
        fn down(mut self, a: f64, b: f64) -> Sim {
            for i in Sim::at(FROM as f64 + a)..Sim::at(FROM as f64 + b) {
                self.rpo[i] = None;
            }
            self
        }
        /// The judgement of `(lo, hi]`: met 1, breached 0, None no data
        /// (fewer than half of the scrapes succeeded, or none).
        fn judge(&self, lo: i64, hi: i64) -> Option<f64> {
            let s: Vec<Option<f64>> = (lo..hi)
                .map(|t| self.rpo.get(Sim::at(t as f64 + 0.5)).copied().flatten())
                .collect();
            let up = s.iter().filter(|v| v.is_some()).count();
            if up * 2 < s.len() || up == 0 {
                return None;
            }
            let max = s.iter().flatten().fold(f64::MIN, |a, b| a.max(*b));
            Some(if max <= OBJ { 1.0 } else { 0.0 })
        }
        fn failed(&self, lo: i64, hi: i64) -> bool {
            (lo..hi).any(|t| {
                self.rpo
                    .get(Sim::at(t as f64 + 0.5))
                    .copied()
                    .flatten()
                    .is_none()
            })
        }
    }

    /// (judged, met) over the window `FROM .. FROM + minutes`, raw and rules.
    fn both(sim: &Sim, minutes: i64, offset: i64) -> ((f64, f64), (f64, f64), (f64, f64)) {
        let to = FROM + minutes * 60;
        let ends: Vec<i64> = (1..=minutes).map(|i| FROM + i * 60).collect();
        let raw: BTreeMap<i64, f64> = ends
            .iter()
            .filter_map(|t| sim.judge(t - 60, *t).map(|v| (*t, v)))
            .collect();
        // The evaluation in (T − 60, T].
        let eval = |t: i64| {
            let e = if offset == 0 { t } else { t - 60 + offset };
            sim.judge(e - 60, e)
        };
        let rules: BTreeMap<i64, f64> = ends
            .iter()
            .filter_map(|t| eval(*t).map(|v| (*t, v)))
            .collect();
        let count = |m: &BTreeMap<i64, f64>| (m.len() as f64, m.values().sum::<f64>());
        let flags: Vec<f64> = ends
            .iter()
            .filter(|t| eval(**t) == Some(0.0) || eval(**t).is_some() != eval(**t - 60).is_some())
            .map(|t| *t as f64)
            .collect();
        let failed: Vec<f64> = ends
            .iter()
            .filter(|t| sim.failed(**t - 60, **t))
            .map(|t| *t as f64)
            .collect();
        let u = uncertain_slices(&flags, &failed, FROM as f64, to as f64, 60.0);
        let (rj, rm) = count(&rules);
        let swapped = swap_uncertain(rj, rm, &u, &rules, &raw);
        (count(&raw), swapped, (rj, rm))
    }

    fn agree(sim: &Sim, minutes: i64, what: &str) -> usize {
        let mut old_differs = 0;
        for offset in 0..60 {
            let (raw, rules, old) = both(sim, minutes, offset);
            assert_eq!(raw, rules, "{what}, evaluations at :{offset:02}");
            if old != raw {
                old_differs += 1;
            }
        }
        old_differs
    }

    #[test]
    fn episodes_straddling_a_minute_are_judged_alike() {
        // 14 s above, straddling the minute FROM + 120 at every phase.
        for shift in -13..=0 {
            let a = 120.0 + shift as f64;
            let sim = Sim::healthy(600).breach(a, a + 14.0);
            let old = agree(&sim, 5, &format!("14 s from +{a}"));
            // The old rules path (one evaluation per slice) disagreed at
            // most offsets.
            assert!(
                old >= 10,
                "14 s from +{a}: the old path differed at only {old} offsets"
            );
        }
    }

    #[test]
    fn a_breach_in_the_last_minute_is_never_met() {
        // 25 s above, ending just before the window's end (its evaluation
        // comes after `to`).
        let sim = Sim::healthy(600).breach(150.0, 175.0);
        let old = agree(&sim, 3, "25 s before to");
        assert!(old > 0);
        for offset in 0..60 {
            let (_, (judged, met), _) = both(&sim, 3, offset);
            assert_eq!((judged, met), (3.0, 2.0), "evaluations at :{offset:02}");
        }
        // Without the tail the window is all met.
        assert_eq!(both(&sim, 2, 17).1, (2.0, 2.0));
    }

    #[test]
    fn outages_are_judged_alike() {
        for (len, at) in [
            (35.0, 61.0),
            (35.0, 95.0),
            (62.0, 59.0),
            (62.0, 100.0),
            (150.0, 70.0),
            (20.0, 170.0),
        ] {
            let sim = Sim::healthy(700).down(at, at + len).breach(250.0, 262.0);
            agree(&sim, 6, &format!("{len} s down from +{at}"));
        }
    }

    #[test]
    fn uncertain_ranges_merge_near_neighbours() {
        let u = uncertain_slices(
            &[FROM as f64 + 120.0],
            &[FROM as f64 + 600.0],
            FROM as f64,
            FROM as f64 + 3600.0,
            60.0,
        );
        let f = FROM;
        assert_eq!(
            u.iter().copied().collect::<Vec<_>>(),
            vec![f + 60, f + 120, f + 600, f + 3600]
        );
        assert_eq!(
            slice_ranges(&u, 60, 10, 1000),
            vec![(f + 60, f + 600), (f + 3600, f + 3600)]
        );
        assert_eq!(slice_ranges(&u, 60, 1, 1000).len(), 3);
        assert_eq!(slice_ranges(&u, 60, 10, 2).len(), 3);
    }
}
