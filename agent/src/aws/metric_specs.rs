//! The CloudWatch metrics in which AWS publishes a store's own replication
//! lag, as AWS documents them: one place per fact, read by the probes (their
//! `aws_lag_queries`), the batched CloudWatch reader and `rpo-agent alarms`'
//! dashboard, so the three cannot drift apart.
//!
//! Each fact names the AWS page it comes from; `tests/aws_facts/` checks the
//! (namespace, metric, dimensions) against AWS's machine-readable metric
//! lists where AWS publishes one.

use std::time::Duration;

/// One AWS-published lag metric.
#[derive(Debug, PartialEq)]
pub struct AwsMetric {
    pub namespace: &'static str,
    /// The metric name, also the `metric` label of `rpo_aws_reported_lag_seconds`.
    pub name: &'static str,
    /// The dimension names AWS publishes it with (a query must name all of
    /// them: CloudWatch matches dimension sets exactly), in this order.
    pub dimensions: &'static [&'static str],
    /// The statistic read: `Maximum` wherever AWS offers it, as the figure
    /// sits beside an RPO (the worst write of the period is what is lost).
    pub stat: &'static str,
    /// How often AWS aggregates the metric; the query's period.
    pub period: Duration,
    /// Multiplier to seconds (the metric's unit).
    pub to_seconds: f64,
    /// Where AWS documents it.
    pub doc: &'static str,
}

impl AwsMetric {
    /// A newest datapoint older than this (from its period's end) means AWS
    /// reports nothing now: AWS publishes only while something replicates,
    /// so during a stall the last datapoint would look healthy. Two periods,
    /// and at least 5 minutes for AWS's publishing delay.
    pub fn fresh_for(&self) -> Duration {
        (self.period * 2).max(Duration::from_secs(300))
    }
}

/// DynamoDB global tables. Not in the list of metrics DynamoDB aggregates
/// at one-minute intervals, so "the aggregation granularity is five
/// minutes": a 60 s period would find most minutes empty.
pub const DYNAMODB_REPLICATION_LATENCY: AwsMetric = AwsMetric {
    namespace: "AWS/DynamoDB",
    name: "ReplicationLatency",
    dimensions: &["TableName", "ReceivingRegion"],
    stat: "Maximum",
    period: Duration::from_secs(300),
    to_seconds: 0.001,
    doc: "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html",
};

/// S3 replication metrics (rules with `Metrics` or RTC enabled), published
/// per minute, in seconds, in the source bucket's region.
pub const S3_REPLICATION_LATENCY: AwsMetric = AwsMetric {
    namespace: "AWS/S3",
    name: "ReplicationLatency",
    dimensions: &["SourceBucket", "DestinationBucket", "RuleId"],
    stat: "Maximum",
    period: Duration::from_secs(60),
    to_seconds: 1.0,
    doc: "https://docs.aws.amazon.com/AmazonS3/latest/userguide/repl-metrics.html",
};

/// ElastiCache Global Datastore: published by the secondary region's
/// nodes, per cache cluster (`CacheClusterId`: a member cluster of the
/// secondary replication group, from DescribeReplicationGroups'
/// `MemberClusters`), in seconds. AWS documents no `ReplicationGroupId`
/// dimension for it; the agent takes the maximum over the member clusters.
pub const ELASTICACHE_GLOBAL_DATASTORE_LAG: AwsMetric = AwsMetric {
    namespace: "AWS/ElastiCache",
    name: "GlobalDatastoreReplicationLag",
    dimensions: &["CacheClusterId"],
    stat: "Maximum",
    period: Duration::from_secs(60),
    to_seconds: 1.0,
    doc: "https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheMetrics.Redis.html",
};

/// Every metric above, for checks and the exporter's label values.
pub const ALL: [&AwsMetric; 3] = [
    &DYNAMODB_REPLICATION_LATENCY,
    &S3_REPLICATION_LATENCY,
    &ELASTICACHE_GLOBAL_DATASTORE_LAG,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_outlasts_the_period_and_publishing_delay() {
        assert_eq!(
            DYNAMODB_REPLICATION_LATENCY.fresh_for(),
            Duration::from_secs(600)
        );
        assert_eq!(S3_REPLICATION_LATENCY.fresh_for(), Duration::from_secs(300));
        for m in ALL {
            assert!(m.fresh_for() > m.period, "{}", m.name);
            assert!(!m.dimensions.is_empty(), "{}", m.name);
            assert!(
                rpo_exporter::metrics::AWS_REPORTED_METRICS.contains(&m.name),
                "{}: the exporter does not know it",
                m.name
            );
        }
    }
}
