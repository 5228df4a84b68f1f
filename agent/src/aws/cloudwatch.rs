//! AWS's own replication-lag figures, read from CloudWatch (DynamoDB and S3
//! `ReplicationLatency`) and exported beside ours as
//! `rpo_aws_reported_lag_seconds`, so a dashboard can show both and an alert
//! can say when they disagree.
//!
//! AWS publishes these only while something replicates: during a stall the
//! datapoints stop, and the last one would show a healthy lag. So a figure
//! older than its metric's `fresh_for` is no figure, and the series is
//! removed. What each metric is (namespace, dimensions, statistic, period)
//! is `metric_specs.rs`'s.

use std::time::SystemTime;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;

use super::attempts::CountAttempts;
use super::errors::from_sdk;
use super::metric_specs::AwsMetric;
use crate::error::ProbeError;

/// GetMetricData's limit on queries in one call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// One of a store's own lag metrics, for one replica of a route. A replica
/// may have several (ElastiCache: one per member cluster); its figure is
/// their maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsLagQuery {
    /// Index into the route's replicas.
    pub replica: usize,
    pub metric: &'static AwsMetric,
    /// Values of `metric.dimensions`, in that order.
    pub dimension_values: Vec<String>,
}

impl AwsLagQuery {
    pub fn new(replica: usize, metric: &'static AwsMetric, values: Vec<String>) -> Self {
        debug_assert_eq!(values.len(), metric.dimensions.len(), "{}", metric.name);
        AwsLagQuery {
            replica,
            metric,
            dimension_values: values,
        }
    }
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
        let m = q.metric;
        let metric = Metric::builder()
            .namespace(m.namespace)
            .metric_name(m.name)
            .set_dimensions(Some(
                m.dimensions
                    .iter()
                    .zip(&q.dimension_values)
                    .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
                    .collect(),
            ))
            .build();
        let stat = MetricStat::builder()
            .metric(metric)
            .period(m.period.as_secs() as i32)
            .stat(m.stat)
            .build();
        metric_queries.push(
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .metric_stat(stat)
                .return_data(true)
                .build(),
        );
    }
    // Two fresh windows back, for the slowest metric asked.
    let look_back = queries
        .iter()
        .map(|q| q.metric.fresh_for() * 2)
        .max()
        .unwrap_or_default();
    let out = client
        .get_metric_data()
        .start_time(DateTime::from(now - look_back))
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
            values[i] = newest_fresh(q.metric, r.timestamps(), r.values(), now)
                .map(|v| v * q.metric.to_seconds);
        }
    }
    Ok(values)
}

/// The value of the newest datapoint, unless it is older than the metric's
/// `fresh_for`.
fn newest_fresh(
    m: &AwsMetric,
    timestamps: &[DateTime],
    values: &[f64],
    now: SystemTime,
) -> Option<f64> {
    let now = DateTime::from(now).as_secs_f64();
    let (at, value) = timestamps
        .iter()
        .zip(values)
        .map(|(t, v)| (t.as_secs_f64(), *v))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    // A datapoint is stamped with the start of its period.
    let age = now - at - m.period.as_secs_f64();
    (age <= m.fresh_for().as_secs_f64() && value.is_finite()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::metric_specs::{DYNAMODB_REPLICATION_LATENCY, S3_REPLICATION_LATENCY};
    use std::time::Duration;

    const S3: &AwsMetric = &S3_REPLICATION_LATENCY;

    fn at(secs: i64) -> DateTime {
        DateTime::from_secs(secs)
    }

    #[test]
    fn the_newest_datapoint_wins_whatever_the_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let ts = [at(9_820), at(9_940), at(9_880)];
        assert_eq!(
            newest_fresh(S3, &ts, &[310.0, 305.0, 320.0], now),
            Some(305.0)
        );
    }

    #[test]
    fn no_datapoint_for_five_minutes_is_no_figure() {
        // AWS stops publishing while nothing replicates (a stall): the last
        // datapoint would show a healthy lag.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(newest_fresh(S3, &[at(9_600)], &[300.0], now), None);
        assert_eq!(newest_fresh(S3, &[at(9_660)], &[300.0], now), Some(300.0));
        assert_eq!(newest_fresh(S3, &[], &[], now), None);
        assert_eq!(newest_fresh(S3, &[at(9_940)], &[f64::NAN], now), None);
    }

    #[test]
    fn a_five_minute_metric_stays_fresh_between_its_datapoints() {
        // DynamoDB aggregates ReplicationLatency per five minutes: the
        // datapoint of [9 300, 9 600) is the newest until 9 900 has passed
        // and stays a figure for two periods after its end.
        let d = &DYNAMODB_REPLICATION_LATENCY;
        let now = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            newest_fresh(d, &[at(9_300)], &[420.0], now(10_150)),
            Some(420.0)
        );
        assert_eq!(
            newest_fresh(d, &[at(9_300)], &[420.0], now(10_200)),
            Some(420.0)
        );
        assert_eq!(newest_fresh(d, &[at(9_300)], &[420.0], now(10_201)), None);
        // The same age blanks a per-minute metric.
        assert_eq!(newest_fresh(S3, &[at(9_300)], &[420.0], now(10_150)), None);
    }
}
