//! Turns a window and a target list into a `Report`: the PromQL queries of
//! the report and the assembly of their answers. The arithmetic on samples
//! is in `analysis`; the HTTP in `prom`.
//!
//! Slices: a slice is the minute ending at `t`, for every `t` on a minute
//! (Prometheus 2 ranges include a sample exactly at `t − 60 s` too).
//! It is met when the highest RPO in it is within the objective, breached
//! when it is above, and has no data when the highest RPO is NaN or absent,
//! or when fewer than half of the slice's scrapes of the agent succeeded
//! (`avg_over_time(up[1m]) < 0.5`). Counting is done by Prometheus
//! (`count_over_time` / `sum_over_time` over a 1-minute subquery), so a long
//! window returns numbers, not samples. Long windows are asked in chunks,
//! halved whenever Prometheus says a chunk would load too many samples.

use std::collections::{BTreeMap, BTreeSet};

use super::analysis::{self, Run};
use super::html::fmt_time;
use super::model::*;
use super::prom::{Prom, PromError, Series, MAX_POINTS};
use super::ReportError;

/// Length of a time slice, seconds.
pub const SLICE: f64 = 60.0;
/// Longest chunk of one query over the window, seconds.
const FIRST_CHUNK: f64 = 86_400.0;
/// Episodes refined to sample precision, per report (the others keep the
/// precision of a slice).
const MAX_REFINED: usize = 200;
/// Episodes listed per target.
pub const MAX_EPISODES: usize = 500;
/// Errors further apart than this are not one run of trouble (drill).
const ERROR_GAP: f64 = 30.0;
/// Points of an RPO chart.
const CHART_POINTS: f64 = 720.0;
/// The labels of one pair.
const PAIR: &str = "target, kind, source_region, replica_region";
/// The recording rules the fast path needs (dashboards/rules/).
const RULES: [&str; 5] = [
    "rpo:rpo_seconds:max1m",
    "rpo:rpo_objective_seconds:max1m",
    "rpo:slice_within_objective:bool1m",
    "rpo:pair_slice_within_objective:bool1m",
    "rpo:target_slice_within_objective:bool1m",
];

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    pub window: Window,
    /// Empty: every target with data.
    pub targets: Vec<String>,
    pub drill: bool,
    /// Ignore the recording rules even when loaded.
    pub force_raw: bool,
}

/// (target, source_region, replica_region).
type PairKey = (String, String, String);

fn pair_key(s: &Series) -> PairKey {
    (
        s.label("target").to_string(),
        s.label("source_region").to_string(),
        s.label("replica_region").to_string(),
    )
}

/// A PromQL string literal.
pub fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A PromQL regex literal matching exactly these values.
fn any_of(values: &[String]) -> String {
    const SPECIAL: &str = r"\.+*?()|[]{}^$";
    let alts: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .flat_map(|c| {
                    if SPECIAL.contains(c) {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect()
        })
        .collect();
    quote(&alts.join("|"))
}

fn pair_selector(k: &PairKey) -> String {
    format!(
        "target={},source_region={},replica_region={}",
        quote(&k.0),
        quote(&k.1),
        quote(&k.2)
    )
}

/// The queries of one report.
struct Gatherer<'a> {
    prom: &'a Prom,
    window: Window,
    /// Label matchers every query carries (the chosen targets).
    sel: String,
    rules: bool,
    /// Rules path: the slices judged from raw samples (`Gatherer::edges`).
    edges: Option<Edges>,
}

/// The rules path's slices its evaluations cannot vouch for
/// (`analysis::uncertain_slices`), with their judgements on both paths.
#[derive(Debug, Default)]
struct Edges {
    /// Uncertain slice ends per pair and per target.
    pairs: BTreeMap<PairKey, BTreeSet<i64>>,
    targets: BTreeMap<String, BTreeSet<i64>>,
    /// Their judgements (1 met, 0 breached, absent no data): by the rules'
    /// evaluation in the minute before each end, and by raw samples.
    pair_rules: BTreeMap<PairKey, BTreeMap<i64, f64>>,
    pair_raw: BTreeMap<PairKey, BTreeMap<i64, f64>>,
    target_rules: BTreeMap<String, BTreeMap<i64, f64>>,
    target_raw: BTreeMap<String, BTreeMap<i64, f64>>,
    /// Breached uncertain slices per pair, `(slice end, highest RPO)`.
    breaches: BTreeMap<PairKey, Vec<(f64, f64)>>,
    /// The rules' last evaluation at or before the window's end.
    last_evaluation: Option<f64>,
    /// Slices of the window judged from raw samples, over every target.
    slices: u64,
}

/// The rules' judgement of the slice ending at each step: their one
/// evaluation in `(T − 1 min, T]`.
fn rule_at(series: &str, sel: &str) -> String {
    format!("min_over_time({series}{{{sel}}}[{}])", range(SLICE))
}

/// Slice ends whose rules evaluation breached, or appears or disappears
/// (present while the one a minute before is not, or the other way round),
/// per `by`: what `analysis::uncertain_slices` calls flags.
pub fn flag_expr(series: &str, sel: &str, by: &str) -> String {
    let now = rule_at(series, sel);
    let before = format!(
        "min_over_time({series}{{{sel}}}[{}] offset 1m)",
        range(SLICE)
    );
    format!("count by ({by}) (({now} == 0) or ({now} unless {before}) or ({before} unless {now}))")
}

/// Slice ends in which a scrape of an agent measuring the pair (or target)
/// failed, per `by`: those slices are judged from raw samples too, since
/// `avg_over_time(up[1m]) >= 0.5` of an evaluation does not carry over to
/// the clock minute it overlaps.
pub fn failed_scrape_expr(sel: &str, by: &str) -> String {
    format!(
        "min by ({by}) (min_over_time(up[{}]) * on (job, instance) group_right () group by (job, instance, {PAIR}) (last_over_time(rpo:rpo_seconds:max1m{{{sel}}}[1h]))) < 1",
        range(SLICE)
    )
}

impl Gatherer<'_> {
    /// Evaluates `expr(range)` over consecutive chunks covering the window;
    /// every returned series has one sample per chunk, at the chunk's end.
    async fn over_window(&self, expr: &dyn Fn(&str) -> String) -> Result<Vec<Series>, ReportError> {
        let Window { from, to } = self.window;
        let mut chunk = FIRST_CHUNK.min(to - from);
        loop {
            match self.over_window_in(expr, chunk).await {
                Err(e) if e.is_too_many_samples() && chunk > SLICE => {
                    chunk = ((chunk / 2.0 / SLICE).floor() * SLICE).max(SLICE);
                }
                r => return r.map_err(ReportError::from),
            }
        }
    }

    async fn over_window_in(
        &self,
        expr: &dyn Fn(&str) -> String,
        chunk: f64,
    ) -> Result<Vec<Series>, PromError> {
        let Window { from, to } = self.window;
        let full = ((to - from) / chunk).floor() as u64;
        let mut out: Vec<Series> = Vec::new();
        let q = expr(&range(chunk));
        let mut done = 0;
        while done < full {
            let n = (full - done).min(MAX_POINTS - 1);
            let start = from + (done + 1) as f64 * chunk;
            let end = from + (done + n) as f64 * chunk;
            out.extend(self.prom.query_range(&q, start, end, chunk).await?);
            done += n;
        }
        let rest = to - (from + full as f64 * chunk);
        if rest >= 1.0 {
            let q = expr(&range(rest.round()));
            out.extend(self.prom.query(&q, to).await?);
        }
        Ok(out)
    }

    /// Sums each series' chunk values, keyed by `key`.
    async fn sum_over_window<K: Ord>(
        &self,
        expr: &dyn Fn(&str) -> String,
        key: impl Fn(&Series) -> K,
    ) -> Result<BTreeMap<K, f64>, ReportError> {
        let mut sums = BTreeMap::new();
        for s in self.over_window(expr).await? {
            let v: f64 = s
                .samples
                .iter()
                .map(|x| x.1)
                .filter(|v| v.is_finite())
                .sum();
            *sums.entry(key(&s)).or_insert(0.0) += v;
        }
        Ok(sums)
    }

    /// The per-slice judgement of every pair: 1 met, 0 breached, absent no data.
    fn slice_expr(&self) -> String {
        self.slice_expr_of(self.rules)
    }

    fn slice_expr_of(&self, rules: bool) -> String {
        let sel = &self.sel;
        if rules {
            format!(
                "min by ({PAIR}) (max_over_time(rpo:slice_within_objective:bool1m{{{sel}}}[1m]))"
            )
        } else {
            format!(
                "min by ({PAIR}) (\
                 (max_over_time(rpo_seconds{{{sel}}}[1m]) <= bool max_over_time(rpo_objective_seconds{{{sel}}}[1m])) \
                 and (max_over_time(rpo_seconds{{{sel}}}[1m]) == max_over_time(rpo_seconds{{{sel}}}[1m])) \
                 and on (job, instance) (avg_over_time(up[1m]) >= 0.5))"
            )
        }
    }

    /// The highest RPO of every breached slice (only breached slices answer).
    fn breach_expr(&self, sel: &str, rules: bool) -> String {
        if rules {
            format!(
                "max by ({PAIR}) (max_over_time(rpo:rpo_seconds:max1m{{{sel}}}[1m]) > max_over_time(rpo:rpo_objective_seconds:max1m{{{sel}}}[1m]))"
            )
        } else {
            format!(
                "max by ({PAIR}) (max_over_time(rpo_seconds{{{sel}}}[1m]) > max_over_time(rpo_objective_seconds{{{sel}}}[1m]))"
            )
        }
    }

    /// Slices with data and met slices, per pair and per target.
    async fn attainment(
        &self,
    ) -> Result<(BTreeMap<PairKey, Attainment>, BTreeMap<String, Attainment>), ReportError> {
        let s = self.slice_expr();
        let sel = self.sel.clone();
        let rules = self.rules;
        // With the rules, the slices are recorded per pair and per target:
        // plain range functions over them, no subquery.
        let per_pair = |agg: &'static str| {
            let s = s.clone();
            let sel = sel.clone();
            move |r: &str| {
                if rules {
                    format!("{agg}(rpo:pair_slice_within_objective:bool1m{{{sel}}}[{r}])")
                } else {
                    format!("{agg}((({s}))[{r}:1m])")
                }
            }
        };
        let per_target = |agg: &'static str| {
            let s = s.clone();
            let sel = sel.clone();
            move |r: &str| {
                if rules {
                    format!("{agg}(rpo:target_slice_within_objective:bool1m{{{sel}}}[{r}])")
                } else {
                    format!("{agg}((min by (target) ({s}))[{r}:1m])")
                }
            }
        };
        let judged = self
            .sum_over_window(&per_pair("count_over_time"), pair_key)
            .await?;
        let met = self
            .sum_over_window(&per_pair("sum_over_time"), pair_key)
            .await?;
        let t_judged = self
            .sum_over_window(&per_target("count_over_time"), |s| {
                s.label("target").to_string()
            })
            .await?;
        let t_met = self
            .sum_over_window(&per_target("sum_over_time"), |s| {
                s.label("target").to_string()
            })
            .await?;
        let (mut judged, mut met, mut t_judged, mut t_met) = (judged, met, t_judged, t_met);
        if let Some(edges) = &self.edges {
            swap(
                &mut judged,
                &mut met,
                &edges.pairs,
                &edges.pair_rules,
                &edges.pair_raw,
            );
            swap(
                &mut t_judged,
                &mut t_met,
                &edges.targets,
                &edges.target_rules,
                &edges.target_raw,
            );
        }
        let slices = (self.window.seconds() / SLICE).round() as u64;
        let make = |judged: f64, met: f64| {
            let judged = (judged.round() as u64).min(slices);
            let met = (met.round() as u64).min(judged);
            Attainment {
                slices,
                met,
                breached: judged - met,
                no_data: slices - judged,
            }
        };
        let pairs = judged
            .iter()
            .map(|(k, j)| (k.clone(), make(*j, met.get(k).copied().unwrap_or(0.0))))
            .collect();
        let targets = t_judged
            .iter()
            .map(|(k, j)| (k.clone(), make(*j, t_met.get(k).copied().unwrap_or(0.0))))
            .collect();
        Ok((pairs, targets))
    }

    /// Rules path: the slices the rules' evaluations cannot vouch for, per
    /// pair and per target, judged again from raw samples (the raw path's
    /// own expressions, at the same clock minutes), so both paths count the
    /// same slices. Few slices, asked in few ranges.
    async fn edges(
        &self,
        pairs: &BTreeSet<PairKey>,
        targets: &BTreeSet<String>,
    ) -> Result<Edges, ReportError> {
        let Window { from, to } = self.window;
        let sel = &self.sel;
        let per_call = (MAX_POINTS - 1) as f64 * SLICE;
        // Slice ends per key, from one query over the window.
        let ends = |q: String| async move {
            let mut out: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
            for (s, e) in analysis::chunks(from, to, per_call) {
                for series in self.prom.query_range(&q, s + SLICE, e, SLICE).await? {
                    out.entry(vec![
                        series.label("target").to_string(),
                        series.label("source_region").to_string(),
                        series.label("replica_region").to_string(),
                    ])
                    .or_default()
                    .extend(series.samples.iter().map(|x| x.0));
                }
            }
            Ok::<_, ReportError>(out)
        };
        let by_target = "target, kind";
        let pair_flags = ends(flag_expr(
            "rpo:pair_slice_within_objective:bool1m",
            sel,
            PAIR,
        ))
        .await?;
        let target_flags = ends(flag_expr(
            "rpo:target_slice_within_objective:bool1m",
            sel,
            by_target,
        ))
        .await?;
        let pair_failed = ends(failed_scrape_expr(sel, PAIR)).await?;
        let target_failed = ends(failed_scrape_expr(sel, by_target)).await?;
        let none = Vec::new();
        let mut edges = Edges::default();
        let pair_keys: BTreeSet<PairKey> = pairs
            .iter()
            .cloned()
            .chain(
                pair_flags
                    .keys()
                    .chain(pair_failed.keys())
                    .map(|k| (k[0].clone(), k[1].clone(), k[2].clone())),
            )
            .collect();
        for k in pair_keys {
            let v = vec![k.0.clone(), k.1.clone(), k.2.clone()];
            let u = analysis::uncertain_slices(
                pair_flags.get(&v).unwrap_or(&none),
                pair_failed.get(&v).unwrap_or(&none),
                from,
                to,
                SLICE,
            );
            edges.pairs.insert(k, u);
        }
        let target_keys: BTreeSet<String> = targets
            .iter()
            .cloned()
            .chain(
                target_flags
                    .keys()
                    .chain(target_failed.keys())
                    .map(|k| k[0].clone()),
            )
            .collect();
        for t in target_keys {
            let v = vec![t.clone(), String::new(), String::new()];
            let u = analysis::uncertain_slices(
                target_flags.get(&v).unwrap_or(&none),
                target_failed.get(&v).unwrap_or(&none),
                from,
                to,
                SLICE,
            );
            edges.slices += u.len() as u64;
            edges.targets.insert(t, u);
        }
        // Judge them: the raw path's expressions and the rules' evaluation,
        // at the same slice ends.
        let all: BTreeSet<i64> = edges
            .pairs
            .values()
            .chain(edges.targets.values())
            .flatten()
            .copied()
            .collect();
        let raw_pair = self.slice_expr_of(false);
        let raw_target = format!("min by (target) ({raw_pair})");
        let rules_pair = rule_at("rpo:pair_slice_within_objective:bool1m", sel);
        let rules_target = rule_at("rpo:target_slice_within_objective:bool1m", sel);
        let raw_breach = self.breach_expr(sel, false);
        let at = |series: &Series| -> Vec<(i64, f64)> {
            series
                .samples
                .iter()
                .filter(|x| x.1.is_finite())
                .map(|x| (x.0.round() as i64, x.1))
                .collect()
        };
        let step = SLICE as i64;
        for (a, b) in analysis::slice_ranges(&all, step, 10, (MAX_POINTS - 1) as i64) {
            let (a, b) = (a as f64, b as f64);
            for s in self.prom.query_range(&raw_pair, a, b, SLICE).await? {
                let k = pair_key(&s);
                let u = edges.pairs.get(&k);
                let m = edges.pair_raw.entry(k.clone()).or_default();
                m.extend(
                    at(&s)
                        .into_iter()
                        .filter(|(t, _)| u.is_some_and(|u| u.contains(t))),
                );
            }
            for s in self.prom.query_range(&rules_pair, a, b, SLICE).await? {
                let k = pair_key(&s);
                let u = edges.pairs.get(&k);
                let m = edges.pair_rules.entry(k.clone()).or_default();
                m.extend(
                    at(&s)
                        .into_iter()
                        .filter(|(t, _)| u.is_some_and(|u| u.contains(t))),
                );
            }
            for s in self.prom.query_range(&raw_target, a, b, SLICE).await? {
                let k = s.label("target").to_string();
                let u = edges.targets.get(&k);
                let m = edges.target_raw.entry(k.clone()).or_default();
                m.extend(
                    at(&s)
                        .into_iter()
                        .filter(|(t, _)| u.is_some_and(|u| u.contains(t))),
                );
            }
            for s in self.prom.query_range(&rules_target, a, b, SLICE).await? {
                let k = s.label("target").to_string();
                let u = edges.targets.get(&k);
                let m = edges.target_rules.entry(k.clone()).or_default();
                m.extend(
                    at(&s)
                        .into_iter()
                        .filter(|(t, _)| u.is_some_and(|u| u.contains(t))),
                );
            }
            for s in self.prom.query_range(&raw_breach, a, b, SLICE).await? {
                let k = pair_key(&s);
                let u = edges.pairs.get(&k);
                edges.breaches.entry(k.clone()).or_default().extend(
                    at(&s)
                        .into_iter()
                        .filter(|(t, _)| u.is_some_and(|u| u.contains(t)))
                        .map(|(t, v)| (t as f64, v)),
                );
            }
        }
        for v in edges.breaches.values_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        edges.last_evaluation = self
            .prom
            .query(
                &format!("max(timestamp(rpo:rpo_objective_seconds:max1m{{{sel}}}))"),
                to,
            )
            .await?
            .first()
            .map(first)
            .filter(|v| v.is_finite());
        Ok(edges)
    }

    /// Breached slices per pair, as `(slice end, highest RPO)`, in order.
    /// On the rules path only uncertain slices can breach: a slice both of
    /// whose evaluations met is met.
    async fn breached_slices(&self) -> Result<BTreeMap<PairKey, Vec<(f64, f64)>>, ReportError> {
        if let Some(edges) = &self.edges {
            return Ok(edges.breaches.clone());
        }
        let mut out: BTreeMap<PairKey, Vec<(f64, f64)>> = BTreeMap::new();
        let per_call = (MAX_POINTS - 1) as f64 * SLICE;
        let q = self.breach_expr(&self.sel, self.rules);
        let Window { from, to } = self.window;
        for (s, e) in analysis::chunks(from, to, per_call) {
            for series in self.prom.query_range(&q, s + SLICE, e, SLICE).await? {
                out.entry(pair_key(&series))
                    .or_default()
                    .extend(series.samples.iter().filter(|x| x.1.is_finite()));
            }
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Ok(out)
    }

    /// RPO and objective of one pair sampled every `step` over `[s, e]`.
    async fn fine(
        &self,
        k: &PairKey,
        s: f64,
        e: f64,
    ) -> Result<(Vec<(f64, f64)>, Vec<(f64, f64)>, f64), ReportError> {
        let step = ((e - s) / (MAX_POINTS - 1) as f64).ceil().max(1.0);
        let sel = pair_selector(k);
        let rpo = self
            .prom
            .query_range(&format!("max(rpo_seconds{{{sel}}})"), s, e, step)
            .await?;
        let obj = self
            .prom
            .query_range(&format!("max(rpo_objective_seconds{{{sel}}})"), s, e, step)
            .await?;
        let take = |v: Vec<Series>| v.into_iter().next().map(|s| s.samples).unwrap_or_default();
        Ok((take(rpo), take(obj), step))
    }

    /// What the counters say happened in `[start, end]` of a target.
    async fn causes(&self, k: &PairKey, start: f64, end: f64) -> Result<Vec<Cause>, ReportError> {
        // One scrape before the start, so the first increment is inside.
        let range = format!("{}s", ((end - start) + SLICE).ceil() as u64);
        let t = quote(&k.0);
        let pair = pair_selector(k);
        let q = format!(
            "label_replace(sum by (op, code) (increase(rpo_probe_errors_total{{target={t}}}[{range}])), \"what\", \"errors\", \"\", \"\") \
             or label_replace(sum(increase(rpo_canaries_lost_total{{{pair}}}[{range}])), \"what\", \"lost\", \"\", \"\") \
             or label_replace(sum(increase(rpo_canaries_failed_total{{{pair}}}[{range}])), \"what\", \"failed\", \"\", \"\")"
        );
        let mut causes: Vec<Cause> = self
            .prom
            .query(&q, end)
            .await?
            .iter()
            .filter_map(|s| {
                let count = s.samples.first()?.1.round();
                (count >= 1.0).then(|| Cause {
                    what: match s.label("what") {
                        "errors" => format!("probe errors: {} {}", s.label("op"), s.label("code")),
                        "lost" => "canaries lost".to_string(),
                        _ => "canaries failed (replication reported FAILED)".to_string(),
                    },
                    count,
                })
            })
            .collect();
        causes.sort_by(|a, b| b.count.total_cmp(&a.count));
        Ok(causes)
    }

    /// Episodes per target: breached slices grouped into runs, then
    /// refined to sample precision (the `MAX_REFINED` highest peaks).
    async fn episodes(&self) -> Result<BTreeMap<String, (Vec<Episode>, usize)>, ReportError> {
        let slices = self.breached_slices().await?;
        let mut coarse: Vec<(PairKey, (f64, f64, f64))> = Vec::new();
        for (k, v) in &slices {
            for run in analysis::breached_runs(v, SLICE) {
                coarse.push((k.clone(), run));
            }
        }
        let mut by_peak: Vec<usize> = (0..coarse.len()).collect();
        by_peak.sort_by(|a, b| coarse[*b].1 .2.total_cmp(&coarse[*a].1 .2));
        let refine: BTreeSet<usize> = by_peak.into_iter().take(MAX_REFINED).collect();
        let mut out: BTreeMap<String, (Vec<Episode>, usize)> = BTreeMap::new();
        for (i, (k, (first, last, peak))) in coarse.iter().enumerate() {
            let runs = if refine.contains(&i) {
                let s = (first - 2.0 * SLICE).max(self.window.from);
                let e = (last + SLICE).min(self.window.to);
                let (rpo, obj, step) = self.fine(k, s, e).await?;
                let mut runs = analysis::runs_above(&rpo, &obj, step);
                // Runs the slices do not vouch for belong to a neighbour. A
                // rules slice judges the minute before its evaluation, which
                // may begin up to a minute before the aligned slice does.
                runs.retain(|r| r.end >= first - 2.0 * SLICE && r.start <= *last);
                for r in runs.iter_mut() {
                    // Open only if it reaches the window's end (not merely
                    // the end of the refined stretch).
                    if r.open && r.end >= e - step && e < self.window.to - 1.0 {
                        r.open = false;
                    }
                }
                if runs.is_empty() {
                    vec![slice_run(*first, *last, *peak)]
                } else {
                    runs
                }
            } else {
                vec![slice_run(*first, *last, *peak)]
            };
            for r in runs {
                let causes = if refine.contains(&i) {
                    self.causes(k, r.start, r.end).await?
                } else {
                    Vec::new()
                };
                let entry = out.entry(k.0.clone()).or_default();
                entry.1 += 1;
                entry.0.push(Episode {
                    source_region: k.1.clone(),
                    replica_region: k.2.clone(),
                    start: r.start,
                    end: r.end,
                    duration_seconds: r.end - r.start,
                    peak_rpo_seconds: r.peak,
                    open: r.open,
                    causes,
                });
            }
        }
        for (eps, _) in out.values_mut() {
            eps.sort_by(|a, b| a.start.total_cmp(&b.start));
            eps.truncate(MAX_EPISODES);
        }
        Ok(out)
    }

    /// Counter increases per pair: written, observed, lost, failed, reads.
    async fn counters(&self) -> Result<BTreeMap<(PairKey, String), f64>, ReportError> {
        let sel = &self.sel;
        let expr = |r: &str| {
            ["written", "observed", "lost", "failed"]
                .iter()
                .map(|c| {
                    format!(
                        "label_replace(sum by ({PAIR}) (increase(rpo_canaries_{c}_total{{{sel}}}[{r}])), \"what\", \"{c}\", \"\", \"\")"
                    )
                })
                .chain(std::iter::once(format!(
                    "label_replace(sum by ({PAIR}) (increase(rpo_replica_reads_total{{{sel}}}[{r}])), \"what\", \"reads\", \"\", \"\")"
                )))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        self.sum_over_window(&expr, |s| (pair_key(s), s.label("what").to_string()))
            .await
    }

    /// Bucket increases of the lag histogram per pair, cumulative by `le`.
    async fn lag_buckets(&self) -> Result<BTreeMap<PairKey, Vec<(f64, f64)>>, ReportError> {
        let sel = &self.sel;
        let expr = |r: &str| {
            format!(
                "sum by ({PAIR}, le) (increase(rpo_replication_lag_seconds_bucket{{{sel}}}[{r}]))"
            )
        };
        let sums = self
            .sum_over_window(&expr, |s| {
                let le = match s.label("le") {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or(f64::NAN),
                };
                (pair_key(s), le.to_bits())
            })
            .await?;
        let mut out: BTreeMap<PairKey, Vec<(f64, f64)>> = BTreeMap::new();
        for ((k, le), v) in sums {
            out.entry(k).or_default().push((f64::from_bits(le), v));
        }
        Ok(out
            .into_iter()
            .map(|(k, b)| (k, analysis::sorted_buckets(b)))
            .collect())
    }

    /// The step of subqueries that sample gauges over the window: a few
    /// thousand steps per series at most (a 30-day window: every 15
    /// minutes; an hour: every second), so long windows stay cheap.
    fn gauge_step(&self) -> f64 {
        analysis::chart_step(self.window.seconds(), 3_000.0, 1.0)
    }

    /// Seconds with `rpo_probe_up` 0, per pair.
    async fn probe_down(&self) -> Result<BTreeMap<PairKey, f64>, ReportError> {
        let sel = &self.sel;
        let step = self.gauge_step();
        let expr = |r: &str| {
            format!("count_over_time((min by ({PAIR}) (rpo_probe_up{{{sel}}}) == 0)[{r}:{step}s]) * {step}")
        };
        self.sum_over_window(&expr, pair_key).await
    }

    /// AWS's figure minus ours per pair and metric: (sum, count, max).
    async fn aws_beside(
        &self,
    ) -> Result<BTreeMap<(PairKey, String), (f64, f64, f64)>, ReportError> {
        let sel = &self.sel;
        let step = self.gauge_step();
        let diff = format!(
            "(max by ({PAIR}, metric) (rpo_aws_reported_lag_seconds{{{sel}}}) - ignoring (metric) group_left () max by ({PAIR}) (rpo_seconds{{{sel}}}))"
        );
        let key = |s: &Series| (pair_key(s), s.label("metric").to_string());
        let sum = self
            .sum_over_window(
                &|r: &str| format!("sum_over_time({diff}[{r}:{step}s])"),
                key,
            )
            .await?;
        let count = self
            .sum_over_window(
                &|r: &str| format!("count_over_time({diff}[{r}:{step}s])"),
                key,
            )
            .await?;
        let mut max: BTreeMap<(PairKey, String), f64> = BTreeMap::new();
        for s in self
            .over_window(&|r: &str| format!("max_over_time({diff}[{r}:{step}s])"))
            .await?
        {
            let m = s
                .samples
                .iter()
                .map(|x| x.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let e = max.entry(key(&s)).or_insert(f64::NEG_INFINITY);
            *e = e.max(m);
        }
        Ok(sum
            .into_iter()
            .filter_map(|(k, s)| {
                let c = *count.get(&k)?;
                let m = *max.get(&k)?;
                (c > 0.0).then_some((k, (s, c, m)))
            })
            .collect())
    }

    /// The RPO chart of every target.
    async fn charts(
        &self,
        objectives: &BTreeMap<String, f64>,
    ) -> Result<BTreeMap<String, Chart>, ReportError> {
        let Window { from, to } = self.window;
        let step = analysis::chart_step(to - from, CHART_POINTS, 1.0);
        let sel = &self.sel;
        let src = if self.rules && step >= SLICE && (step % SLICE) == 0.0 {
            format!("rpo:rpo_seconds:max1m{{{sel}}}")
        } else {
            format!("rpo_seconds{{{sel}}}")
        };
        let q = format!("max by (target) (max_over_time({src}[{}s]))", step as u64);
        let answer = self.prom.query_range(&q, from + step, to, step).await?;
        let mut out = BTreeMap::new();
        for (target, objective) in objectives {
            let have: BTreeMap<i64, f64> = answer
                .iter()
                .filter(|s| s.label("target") == target)
                .flat_map(|s| s.samples.iter())
                .map(|(t, v)| (t.round() as i64, *v))
                .collect();
            let n = ((to - from) / step).round() as i64;
            let points = (1..=n)
                .map(|i| {
                    let t = from + i as f64 * step;
                    let v = have
                        .get(&(t.round() as i64))
                        .copied()
                        .filter(|v| v.is_finite());
                    (t, v)
                })
                .collect();
            out.insert(
                target.clone(),
                Chart {
                    step_seconds: step,
                    objective_seconds: *objective,
                    points,
                },
            );
        }
        Ok(out)
    }

    /// Direction changes per target, at scrape precision, with the RPO then.
    async fn failovers(&self) -> Result<BTreeMap<String, Vec<Failover>>, ReportError> {
        let sel = &self.sel;
        let Window { from, to } = self.window;
        let q = format!("max by (target) (changes(rpo_direction_changes_total{{{sel}}}[1m]) > 0)");
        let mut slices: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (s, e) in analysis::chunks(from, to, (MAX_POINTS - 1) as f64 * SLICE) {
            for series in self.prom.query_range(&q, s + SLICE, e, SLICE).await? {
                slices
                    .entry(series.label("target").to_string())
                    .or_default()
                    .extend(series.samples.iter().map(|x| x.0));
            }
        }
        let mut out: BTreeMap<String, Vec<Failover>> = BTreeMap::new();
        for (target, ends) in slices {
            let mut seen: Vec<f64> = Vec::new();
            for end in ends {
                // The raw samples of that minute (and the one before, for
                // the value it changed from), per agent instance.
                let raw = self
                    .prom
                    .query(
                        &format!(
                            "rpo_direction_changes_total{{target={}}}[2m]",
                            quote(&target)
                        ),
                        end,
                    )
                    .await?;
                for s in raw {
                    for at in analysis::increments(&s.samples) {
                        if at > end - SLICE - 1e-6
                            && at <= end + 1e-6
                            && !seen.iter().any(|x| (x - at).abs() < 2.0)
                        {
                            seen.push(at);
                        }
                    }
                }
            }
            seen.sort_by(f64::total_cmp);
            for at in seen {
                let f = self.failover_at(&target, at).await?;
                out.entry(target.clone()).or_default().push(f);
            }
        }
        Ok(out)
    }

    async fn failover_at(&self, target: &str, at: f64) -> Result<Failover, ReportError> {
        let t = quote(target);
        // The direction whose RPO series was current just before, and the
        // one that wrote canaries after (gauges of a swapped-out direction
        // are withdrawn by the agent; counters stay).
        let before = self
            .prom
            .query(
                &format!("max by (source_region) (last_over_time(rpo_seconds{{target={t}}}[1m]))"),
                at - 0.001,
            )
            .await?;
        let after_t = (at + 2.0 * SLICE).min(self.window.to.max(at + 1.0));
        // Written, not observed: the new replica (the old primary) may be
        // down, as after a real region loss.
        let after = self
            .prom
            .query(
                &format!("sum by (source_region) (increase(rpo_canaries_written_total{{target={t}}}[{}s])) > 0", (after_t - at).ceil().max(1.0) as u64),
                after_t,
            )
            .await?;
        let from_source = before
            .iter()
            .max_by(|a, b| first(a).total_cmp(&first(b)))
            .map(|s| s.label("source_region").to_string());
        let to_source = after
            .iter()
            .map(|s| s.label("source_region").to_string())
            .find(|s| Some(s) != from_source.as_ref())
            .or_else(|| after.first().map(|s| s.label("source_region").to_string()));
        let rpo = before
            .iter()
            .map(first)
            .filter(|v| v.is_finite())
            .reduce(f64::max);
        Ok(Failover {
            at,
            from_source,
            to_source,
            rpo_seconds: rpo,
        })
    }

    /// The first error of the run of probe errors that led up to `e` (no
    /// gap longer than `ERROR_GAP` between them and up to `e`), if any.
    async fn first_error(&self, target: &str, s: f64, e: f64) -> Result<Option<f64>, ReportError> {
        if e <= s {
            return Ok(None);
        }
        let step = ((e - s) / (MAX_POINTS - 1) as f64).ceil().max(1.0);
        let q = format!("sum(rpo_probe_errors_total{{target={}}})", quote(target));
        // The steps fall on whole seconds, the switch on a scrape: an error
        // scraped with the switch shows at the step after it.
        let r = self.prom.query_range(&q, s, e + step, step).await?;
        let mut ups = Vec::new();
        if let Some(x) = r.first() {
            // A counter that did not exist before its first error appears
            // with that error: its first sample is an error too.
            if x.samples
                .first()
                .is_some_and(|f| f.0 > s + step && f.1 > 0.0)
            {
                ups.push(x.samples[0].0);
            }
            ups.extend(analysis::increments(&x.samples));
        }
        Ok(analysis::run_leading_to(&ups, e + step, ERROR_GAP).map(|t| t.min(e)))
    }

    /// First time in `[s, e]` at which a direction's observed counter moved.
    async fn first_canary(
        &self,
        target: &str,
        source: &str,
        s: f64,
        e: f64,
    ) -> Result<Option<f64>, ReportError> {
        if e <= s {
            return Ok(None);
        }
        let step = ((e - s) / (MAX_POINTS - 1) as f64).ceil().max(1.0);
        let q = format!(
            "sum(rpo_canaries_observed_total{{target={},source_region={}}})",
            quote(target),
            quote(source)
        );
        let r = self.prom.query_range(&q, s, e, step).await?;
        Ok(r.first().and_then(|x| {
            // A direction measured for the first time starts at 0: its first
            // sample above 0 is the first canary.
            if x.samples
                .first()
                .is_some_and(|f| f.1 > 0.0 && f.0 > s + step)
            {
                return Some(x.samples[0].0);
            }
            analysis::increments(&x.samples).first().copied()
        }))
    }

    async fn lost_between(&self, target: &str, s: f64, e: f64) -> Result<f64, ReportError> {
        let range = ((e - s) + SLICE).ceil().max(1.0) as u64;
        let q = format!(
            "sum(increase(rpo_canaries_lost_total{{target={}}}[{range}s]))",
            quote(target)
        );
        let r = self.prom.query(&q, e).await?;
        Ok(r.first()
            .map(first)
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
            .round())
    }

    /// The drill record: timeline and switch figures.
    async fn drill(&self, targets: &[TargetReport]) -> Result<Drill, ReportError> {
        let mut timeline = Vec::new();
        let mut switches = Vec::new();
        let ev = |at: f64, target: &str, what: String| DrillEvent {
            at,
            target: target.to_string(),
            what,
        };
        for t in targets {
            for (start, end) in analysis::gaps(&t.chart.points, t.chart.step_seconds) {
                timeline.push(ev(
                    start,
                    &t.target,
                    format!(
                        "no data for {:.0} s (the agent did not measure, or was not scraped)",
                        end - start
                    ),
                ));
            }
            for e in &t.episodes {
                timeline.push(ev(
                    e.start,
                    &t.target,
                    format!(
                        "RPO left the objective ({} → {})",
                        e.source_region, e.replica_region
                    ),
                ));
                if !e.open {
                    timeline.push(ev(
                        e.end,
                        &t.target,
                        format!(
                            "RPO back within the objective (peak {:.1} s)",
                            e.peak_rpo_seconds
                        ),
                    ));
                }
            }
            for f in &t.failovers {
                let dir = format!(
                    "{} → {}",
                    f.from_source.as_deref().unwrap_or("?"),
                    f.to_source.as_deref().unwrap_or("?")
                );
                timeline.push(ev(
                    f.at,
                    &t.target,
                    format!("direction changed: source {dir}"),
                ));
                // The episode the switch belongs to: the one it falls in, or
                // the one that starts soon after it.
                let episode = t
                    .episodes
                    .iter()
                    .find(|e| e.start <= f.at + 1.0 && e.end >= f.at - 1.0)
                    .or_else(|| {
                        t.episodes
                            .iter()
                            .find(|e| e.start > f.at && e.start <= f.at + 5.0 * SLICE)
                    });
                let look_back = (f.at - 5.0 * SLICE).max(self.window.from);
                let first_error = self.first_error(&t.target, look_back, f.at).await?;
                let first_sign = [first_error, episode.map(|e| e.start).filter(|s| *s <= f.at)]
                    .into_iter()
                    .flatten()
                    .reduce(f64::min);
                let first_canary = match &f.to_source {
                    Some(src) => {
                        self.first_canary(
                            &t.target,
                            src,
                            f.at - 1.0,
                            (f.at + 10.0 * SLICE).min(self.window.to),
                        )
                        .await?
                    }
                    None => None,
                };
                if let Some(at) = first_canary {
                    timeline.push(ev(
                        at,
                        &t.target,
                        "first canary of the new direction seen".into(),
                    ));
                }
                let back = match episode {
                    Some(e) if !e.open => Some((e.end - f.at).max(0.0)),
                    Some(_) => None,
                    None => Some(0.0),
                };
                let lost_from = first_sign.unwrap_or(f.at);
                let lost_to = episode.map(|e| e.end).unwrap_or(f.at).max(f.at);
                switches.push(DrillSwitch {
                    target: t.target.clone(),
                    switched_at: f.at,
                    rpo_at_switch_seconds: f.rpo_seconds,
                    time_to_detect_seconds: first_sign.map(|s| f.at - s),
                    first_canary_new_direction_at: first_canary,
                    time_back_within_objective_seconds: back,
                    canaries_lost: self.lost_between(&t.target, lost_from, lost_to).await?,
                });
            }
        }
        timeline.sort_by(|a, b| a.at.total_cmp(&b.at));
        Ok(Drill { timeline, switches })
    }
}

/// A range of `secs` that leaves out its first instant: Prometheus 2's
/// ranges and subqueries include both ends, so adjacent chunks `[a, b]`
/// and `[b, c]` would count the slice ending at `b` twice.
fn range(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round() as u64 - 1)
}

fn first(s: &Series) -> f64 {
    s.samples.first().map(|x| x.1).unwrap_or(f64::NAN)
}

/// The rules' counts per key with their uncertain slices judged from raw
/// samples (`analysis::swap_uncertain`).
fn swap<K: Ord + Clone>(
    judged: &mut BTreeMap<K, f64>,
    met: &mut BTreeMap<K, f64>,
    uncertain: &BTreeMap<K, BTreeSet<i64>>,
    rules: &BTreeMap<K, BTreeMap<i64, f64>>,
    raw: &BTreeMap<K, BTreeMap<i64, f64>>,
) {
    let empty = BTreeMap::new();
    for (k, u) in uncertain {
        let (j, m) = analysis::swap_uncertain(
            judged.get(k).copied().unwrap_or(0.0),
            met.get(k).copied().unwrap_or(0.0),
            u,
            rules.get(k).unwrap_or(&empty),
            raw.get(k).unwrap_or(&empty),
        );
        if j > 0.0 || judged.contains_key(k) {
            judged.insert(k.clone(), j);
            met.insert(k.clone(), m);
        }
    }
}

/// An episode known only to slice precision.
fn slice_run(first: f64, last: f64, peak: f64) -> Run {
    Run {
        start: first - SLICE,
        end: last,
        peak,
        open: false,
    }
}

/// What the rules path's note adds: which slices raw samples judged, and
/// where the rules' evaluations ended.
fn edges_note(edges: &Edges, window: Window) -> String {
    let last = match edges.last_evaluation {
        Some(t) => format!(
            "the rules' last evaluation in the window was at {} ({:.0} s past the minute)",
            fmt_time(t),
            t.rem_euclid(SLICE)
        ),
        None => "the rules made no evaluation in the window's last 5 minutes".to_string(),
    };
    format!(
        "; the other {} slice(s) were judged from raw samples, as --raw judges them: those a breached, missing or new evaluation or a failed scrape touches, and the window's last slice (to {}), whose second evaluation comes after the window: {last})",
        edges.slices,
        fmt_time(window.to)
    )
}

/// Which query path answers, and why.
async fn choose_path(
    prom: &Prom,
    g: &Gatherer<'_>,
    force_raw: bool,
) -> Result<(bool, String), ReportError> {
    if force_raw {
        return Ok((false, "raw queries (--raw)".into()));
    }
    let loaded = prom.recording_rules().await?;
    let missing: Vec<&str> = RULES
        .iter()
        .copied()
        .filter(|r| !loaded.iter().any(|l| l == r))
        .collect();
    if !missing.is_empty() {
        return Ok((
            false,
            format!(
                "raw queries: the recording rules of dashboards/rules/rpo-recording.rules.yml are not loaded in this Prometheus (missing {}); load them to make long reports fast",
                missing.join(", ")
            ),
        ));
    }
    // Rules loaded after the window began would leave its start without
    // slices: every pair with raw samples in the window's first minutes
    // must have rule samples too. A pair gets its first rule sample up to a
    // minute after its first raw one, so raw pairs are counted up to a
    // minute before the rule pairs.
    let Window { from, to } = g.window;
    let probe = (from + 600.0).min(to);
    if probe - SLICE - from < SLICE {
        return Ok((
            false,
            "raw queries: the window is too short to check that the recording rules cover it"
                .into(),
        ));
    }
    let sel = &g.sel;
    let count = |q: String, at: f64| async move {
        let r = prom.query(&q, at).await?;
        Ok::<f64, ReportError>(r.first().map(first).unwrap_or(0.0))
    };
    let raw = count(
        format!(
            "count(count by ({PAIR}) (count_over_time(rpo_seconds{{{sel}}}[{}])))",
            range(probe - SLICE - from)
        ),
        probe - SLICE,
    )
    .await?;
    let ruled = count(
        format!(
            "count(count by ({PAIR}) (count_over_time(rpo:rpo_seconds:max1m{{{sel}}}[{}])))",
            range(probe - from)
        ),
        probe,
    )
    .await?;
    if ruled < raw {
        return Ok((
            false,
            format!(
                "raw queries: the recording rules are loaded, but in the window's first 10 minutes only {ruled} of {raw} pairs have their series (rules loaded after the window began: backfill them with `promtool tsdb create-blocks-from rules`, or report a later window)"
            ),
        ));
    }
    // The rules' evaluations are offset from the clock's minutes: a slice
    // is met on their word only when both evaluations overlapping it are
    // (`Gatherer::edges`); `gather` adds which slices raw samples judged.
    Ok((
        true,
        "recording rules (rpo:*:1m of dashboards/rules/rpo-recording.rules.yml; each clock minute met when both of the rules' evaluations that overlap it are met".into(),
    ))
}

/// The pairs and objectives seen in the window.
async fn discover(g: &Gatherer<'_>) -> Result<BTreeMap<PairKey, (String, f64)>, ReportError> {
    let src = if g.rules {
        "rpo:rpo_objective_seconds:max1m"
    } else {
        "rpo_objective_seconds"
    };
    let sel = &g.sel;
    let expr = |r: &str| format!("max by ({PAIR}) (max_over_time({src}{{{sel}}}[{r}]))");
    let mut out: BTreeMap<PairKey, (String, f64)> = BTreeMap::new();
    for s in g.over_window(&expr).await? {
        let m = s
            .samples
            .iter()
            .map(|x| x.1)
            .filter(|v| v.is_finite())
            .fold(f64::NAN, f64::max);
        let e = out
            .entry(pair_key(&s))
            .or_insert((s.label("kind").to_string(), f64::NAN));
        e.1 = e.1.max(m);
    }
    Ok(out)
}

/// Gathers the whole report.
pub async fn gather(prom: &Prom, req: &Request, now: f64) -> Result<Report, ReportError> {
    let mut g = Gatherer {
        prom,
        window: req.window,
        sel: String::new(),
        rules: false,
        edges: None,
    };
    let (rules, mut path_note) = choose_path(prom, &g, req.force_raw).await?;
    g.rules = rules;
    // Every target with data first: an unknown name is then named with the
    // ones that exist.
    let mut all = discover(&g).await?;
    if g.rules {
        // A pair that appeared in the last minutes (a new direction) may
        // have no rule evaluation yet: the raw series name it.
        let recent = Gatherer {
            prom,
            window: Window {
                from: (req.window.to - 3.0 * SLICE).max(req.window.from),
                to: req.window.to,
            },
            sel: String::new(),
            rules: false,
            edges: None,
        };
        for (k, v) in discover(&recent).await? {
            let e = all.entry(k).or_insert((v.0.clone(), f64::NAN));
            e.1 = e.1.max(v.1);
        }
    }
    if all.is_empty() {
        return Err(ReportError::NoData {
            prometheus: prom.base().to_string(),
            window: req.window,
        });
    }
    let known: BTreeSet<String> = all.keys().map(|k| k.0.clone()).collect();
    for t in &req.targets {
        if !known.contains(t) {
            return Err(ReportError::UnknownTarget {
                name: t.clone(),
                known: known.iter().cloned().collect(),
            });
        }
    }
    if !req.targets.is_empty() {
        g.sel = format!("target=~{}", any_of(&req.targets));
    }
    let pairs: BTreeMap<PairKey, (String, f64)> = all
        .into_iter()
        .filter(|(k, _)| req.targets.is_empty() || req.targets.contains(&k.0))
        .collect();

    if g.rules {
        let keys: BTreeSet<PairKey> = pairs.keys().cloned().collect();
        let names: BTreeSet<String> = keys.iter().map(|k| k.0.clone()).collect();
        let edges = g.edges(&keys, &names).await?;
        path_note.push_str(&edges_note(&edges, req.window));
        g.edges = Some(edges);
    }
    // Independent questions, asked side by side.
    let ((pair_att, target_att), episodes, counters, buckets, down, aws, failovers) = tokio::try_join!(
        g.attainment(),
        g.episodes(),
        g.counters(),
        g.lag_buckets(),
        g.probe_down(),
        g.aws_beside(),
        g.failovers(),
    )?;
    let mut objectives: BTreeMap<String, f64> = BTreeMap::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for (k, (kind, obj)) in &pairs {
        let o = objectives.entry(k.0.clone()).or_insert(f64::NAN);
        *o = o.max(*obj);
        kinds.insert(k.0.clone(), kind.clone());
    }
    let charts = g.charts(&objectives).await?;
    let slices = (req.window.seconds() / SLICE).round() as u64;
    let empty = Attainment {
        slices,
        no_data: slices,
        ..Default::default()
    };

    let mut targets = Vec::new();
    let mut fleet = Attainment::default();
    for (target, objective) in &objectives {
        let attainment = target_att.get(target).copied().unwrap_or(empty);
        fleet.add(&attainment);
        let mut pair_reports = Vec::new();
        for k in pairs.keys().filter(|k| &k.0 == target) {
            let c = |what: &str| {
                counters
                    .get(&(k.clone(), what.to_string()))
                    .copied()
                    .unwrap_or(0.0)
                    .round()
            };
            let b = buckets.get(k).cloned().unwrap_or_default();
            let canaries = Canaries {
                written: c("written"),
                observed: c("observed"),
                lost: c("lost"),
                failed: c("failed"),
            };
            pair_reports.push(PairReport {
                source_region: k.1.clone(),
                replica_region: k.2.clone(),
                attainment: pair_att.get(k).copied().unwrap_or(empty),
                lag_p50_seconds: analysis::histogram_quantile(0.5, &b),
                lag_p99_seconds: analysis::histogram_quantile(0.99, &b),
                lag_max_seconds: analysis::histogram_max(&b),
                canaries,
                reads_per_canary: (canaries.observed >= 1.0)
                    .then(|| c("reads") / canaries.observed),
                probe_down_seconds: down.get(k).copied().unwrap_or(0.0),
                aws: aws
                    .iter()
                    .filter(|((pk, _), _)| pk == k)
                    .map(|((_, metric), (sum, count, max))| AwsBeside {
                        metric: metric.clone(),
                        mean_difference_seconds: sum / count,
                        max_difference_seconds: *max,
                    })
                    .collect(),
            });
        }
        let (eps, total) = episodes.get(target).cloned().unwrap_or_default();
        targets.push(TargetReport {
            target: target.clone(),
            kind: kinds.get(target).cloned().unwrap_or_default(),
            objective_seconds: *objective,
            attainment,
            verdict: attainment.verdict(),
            episodes: eps,
            episodes_total: total,
            failovers: failovers.get(target).cloned().unwrap_or_default(),
            pairs: pair_reports,
            chart: charts.get(target).cloned().unwrap_or(Chart {
                step_seconds: SLICE,
                objective_seconds: *objective,
                points: Vec::new(),
            }),
        });
    }
    let drill = if req.drill {
        Some(g.drill(&targets).await?)
    } else {
        None
    };
    Ok(Report {
        generated_at: now,
        prometheus: prom.base().to_string(),
        window: req.window,
        slice_seconds: SLICE,
        path: if rules {
            QueryPath::RecordingRules
        } else {
            QueryPath::RawQueries
        },
        path_note,
        fleet,
        targets,
        drill,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_quoted_and_regex_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(any_of(&["a.b".into(), "c|d".into()]), r#""a\\.b|c\\|d""#);
    }
}
