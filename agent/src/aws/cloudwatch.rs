//! AWS's own replication-lag figures, read from CloudWatch (DynamoDB and S3
//! `ReplicationLatency`) and exported beside ours as
//! `rpo_aws_reported_lag_seconds`, so a dashboard can show both and an alert
//! can say when they disagree.
//!
//! AWS publishes these only while something replicates: during a stall the
//! datapoints stop, and the last one would show a healthy lag. So a figure
//! older than `FRESH_FOR` is no figure, and the series is removed.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;

use super::attempts::CountAttempts;
use super::errors::from_sdk;
use crate::error::ProbeError;

/// CloudWatch's resolution for these metrics: one datapoint per minute.
pub const PERIOD: Duration = Duration::from_secs(60);
/// A newest datapoint older than this means AWS reports nothing now.
pub const FRESH_FOR: Duration = Duration::from_secs(300);
/// GetMetricData's limit on queries in one call.
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// How far back one read looks (two fresh windows).
const LOOK_BACK: Duration = Duration::from_secs(600);

/// One of a store's own lag metrics, for one replica of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsLagQuery {
    /// Index into the route's replicas.
    pub replica: usize,
    pub namespace: &'static str,
    /// The CloudWatch metric name, also the `metric` label's value.
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub stat: &'static str,
    /// Multiplier to seconds (DynamoDB reports milliseconds).
    pub to_seconds: f64,
}

/// Reads every query (at most `MAX_QUERIES_PER_CALL`) in one GetMetricData
/// call, counted once by `count`; per query, its newest fresh value in
/// seconds, or `None` when AWS reports nothing now.
pub async fn fetch(
    client: &Client,
    count: &CountAttempts,
    queries: &[&AwsLagQuery],
    now: SystemTime,
) -> Result<Vec<Option<f64>>, ProbeError> {
    debug_assert!(queries.len() <= MAX_QUERIES_PER_CALL);
    let mut metric_queries = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let metric = Metric::builder()
            .namespace(q.namespace)
            .metric_name(q.metric)
            .set_dimensions(Some(
                q.dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
                    .collect(),
            ))
            .build();
        let stat = MetricStat::builder()
            .metric(metric)
            .period(PERIOD.as_secs() as i32)
            .stat(q.stat)
            .build();
        metric_queries.push(
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .metric_stat(stat)
                .return_data(true)
                .build(),
        );
    }
    let out = client
        .get_metric_data()
        .start_time(DateTime::from(now - LOOK_BACK))
        .end_time(DateTime::from(now))
        .scan_by(ScanBy::TimestampDescending)
        .set_metric_data_queries(Some(metric_queries))
        .customize()
        .interceptor(count.clone())
        .send()
        .await
        .map_err(|e| {
            let mut err = from_sdk("GetMetricData", &e);
            if err.code.starts_with("AccessDenied") {
                err.message = format!(
                    "{}: grant cloudwatch:GetMetricData to see AWS's own lag figure beside ours",
                    err.message
                );
            }
            err
        })?;
    // Ids are `q<index>`; a result with another id answers nothing.
    let mut values = vec![None; queries.len()];
    for r in out.metric_data_results() {
        let Some(i) = r
            .id()
            .and_then(|id| id.strip_prefix('q')?.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(q) = queries.get(i) {
            values[i] = newest_fresh(r.timestamps(), r.values(), now).map(|v| v * q.to_seconds);
        }
    }
    Ok(values)
}

/// The value of the newest datapoint, unless it is older than `FRESH_FOR`.
fn newest_fresh(timestamps: &[DateTime], values: &[f64], now: SystemTime) -> Option<f64> {
    let now = DateTime::from(now).as_secs_f64();
    let (at, value) = timestamps
        .iter()
        .zip(values)
        .map(|(t, v)| (t.as_secs_f64(), *v))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    // A datapoint is stamped with the start of its minute.
    let age = now - at - PERIOD.as_secs_f64();
    (age <= FRESH_FOR.as_secs_f64() && value.is_finite()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime {
        DateTime::from_secs(secs)
    }

    #[test]
    fn the_newest_datapoint_wins_whatever_the_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let ts = [at(9_820), at(9_940), at(9_880)];
        assert_eq!(newest_fresh(&ts, &[310.0, 305.0, 320.0], now), Some(305.0));
    }

    #[test]
    fn no_datapoint_for_five_minutes_is_no_figure() {
        // AWS stops publishing while nothing replicates (a stall): the last
        // datapoint would show a healthy lag.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(newest_fresh(&[at(9_600)], &[300.0], now), None);
        assert_eq!(newest_fresh(&[at(9_660)], &[300.0], now), Some(300.0));
        assert_eq!(newest_fresh(&[], &[], now), None);
        assert_eq!(newest_fresh(&[at(9_940)], &[f64::NAN], now), None);
    }
}
