//! Reads AWS's own lag figures (CloudWatch) for every route of one source
//! region, in one GetMetricData call per period (up to 500 queries a call),
//! on a task of its own: a slow or failing CloudWatch never delays a canary,
//! and its errors never mark the probe down.
//!
//! Why batched: GetMetricData is billed per metric requested, but also
//! counted per call against quotas, and one call per route per minute grew
//! with the number of targets (2116 calls in 130 s with 1000 targets). Each
//! call is counted once (`rpo_api_requests_total`, empty target); what each
//! target requested is counted in `rpo_cloudwatch_metrics_requested_total`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rpo_exporter::Metrics;
use tokio::time::{sleep_until, Instant};

use super::RouteRun;
use crate::aws::cloudwatch::{fetch, AwsLagQuery, MAX_QUERIES_PER_CALL};
use crate::error::ProbeError;
use crate::route::AwsReported;
use crate::shutdown::Shutdown;

/// The first read waits for a few canaries to have replicated.
const FIRST_READ: Duration = Duration::from_secs(10);
/// Until every route's `prepare` has found what its metrics are named by.
const NOT_READY_RETRY: Duration = Duration::from_secs(10);

/// One query of one route.
struct Asked<'a> {
    run: &'a RouteRun,
    query: AwsLagQuery,
}

/// Serves `runs`, which share `cw` (same region, endpoint and period).
///
/// Every period, one read of all routes whose probe has told its queries.
/// A route that tells them later (its `prepare` took longer) is read on its
/// own sooner, once, so its figure does not wait a whole period; a route
/// that never prepares costs no call.
pub async fn run(
    runs: Vec<Arc<RouteRun>>,
    cw: AwsReported,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    let mut read_once = vec![false; runs.len()];
    let mut next_full = Instant::now() + FIRST_READ;
    loop {
        let wait_for = if read_once.iter().all(|r| *r) {
            next_full
        } else {
            next_full.min(Instant::now() + NOT_READY_RETRY)
        };
        tokio::select! {
            _ = sleep_until(wait_for) => {}
            _ = shutdown.recv() => return,
        }
        let full = Instant::now() >= next_full;
        if full {
            next_full += cw.every;
        }
        let mut asked = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            if !full && read_once[i] {
                continue;
            }
            let queries = run.route.probe.aws_lag_queries().await;
            read_once[i] |= !queries.is_empty();
            asked.extend(queries.into_iter().map(|query| Asked { run, query }));
        }
        for chunk in asked.chunks(MAX_QUERIES_PER_CALL) {
            let queries: Vec<&AwsLagQuery> = chunk.iter().map(|a| &a.query).collect();
            let res = tokio::select! {
                r = fetch(&cw.client, &cw.count, &queries, SystemTime::now()) => r,
                _ = shutdown.recv() => return,
            };
            for a in chunk {
                metrics.cloudwatch_metrics_requested(&a.run.route.target, 1);
            }
            deliver(chunk, res);
        }
    }
}

/// Hands each route's figures (or the error) to its pairs. A pair asked
/// several queries of one metric (ElastiCache: one per member cluster) gets
/// their maximum, or none when none of them has a fresh figure.
fn deliver(chunk: &[Asked<'_>], res: Result<Vec<Option<f64>>, ProbeError>) {
    match res {
        Ok(values) => {
            for (run, replica, metric, v) in worst_per_pair(chunk, values) {
                if let Some(p) = run.pairs.get(replica) {
                    p.lock().unwrap().on_aws_lag(metric, v);
                }
            }
        }
        Err(e) => {
            for (i, a) in chunk.iter().enumerate() {
                if let Some(p) = a.run.pairs.get(a.query.replica) {
                    p.lock().unwrap().on_aws_lag_error(&e, i == 0);
                }
            }
        }
    }
}

/// (route, replica, metric name, maximum of its fresh values), once per
/// pair and metric, in the order first asked.
fn worst_per_pair<'a>(
    chunk: &[Asked<'a>],
    values: Vec<Option<f64>>,
) -> Vec<(&'a RouteRun, usize, &'static str, Option<f64>)> {
    let mut out: Vec<(&'a RouteRun, usize, &'static str, Option<f64>)> = Vec::new();
    for (a, v) in chunk.iter().zip(values) {
        let (replica, metric) = (a.query.replica, a.query.metric.name);
        match out
            .iter_mut()
            .find(|(r, i, m, _)| std::ptr::eq(*r, a.run) && *i == replica && *m == metric)
        {
            Some((.., worst)) => *worst = max_of(*worst, v),
            None => out.push((a.run, replica, metric, v)),
        }
    }
    out
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::max_of;

    #[test]
    fn a_pairs_figure_is_the_worst_fresh_one() {
        assert_eq!(max_of(Some(0.4), Some(1.2)), Some(1.2));
        assert_eq!(max_of(None, Some(0.3)), Some(0.3));
        assert_eq!(max_of(Some(0.3), None), Some(0.3));
        assert_eq!(max_of(None, None), None);
    }
}
