//! `Route`: one source feeding some replicas, with the probe that serves
//! them. Each backend builds its own (`probe::<kind>::routes`); the
//! scheduler, `once` and `check` only consume them.

use std::sync::Arc;
use std::time::Duration;

use rpo_exporter::ReplicaLabels;

use crate::aws::{AwsPlumbing, CountAttempts};
use crate::config::{Endpoint, Kind, TargetConfig};
use crate::probe::Probe;

/// One source and the replicas it feeds, with the probe that serves them.
pub struct Route {
    pub target: String,
    pub kind: Kind,
    pub source_region: String,
    pub replica_regions: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub objective: Duration,
    pub max_pending: usize,
    /// Where canaries go, for logs (key, object prefix or table row).
    pub canary_key: String,
    pub probe: Arc<dyn Probe>,
    /// Where and how often AWS's own lag figures for the probe's
    /// `aws_lag_queries` are read (None: the store has no such metrics, as
    /// SQL targets, or `aws_reported_every = "off"`).
    pub aws_reported: Option<AwsReported>,
}

/// CloudWatch in a route's source region, shared by every route there: the
/// scheduler batches all their queries into one GetMetricData per period.
#[derive(Clone)]
pub struct AwsReported {
    pub client: aws_sdk_cloudwatch::Client,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub every: Duration,
    /// Counts the batched call once, with an empty target (it serves all).
    pub count: CountAttempts,
}

impl AwsReported {
    /// Routes with equal keys share their GetMetricData calls.
    pub fn batch_key(&self) -> (String, Option<String>, Duration) {
        (self.region.clone(), self.endpoint_url.clone(), self.every)
    }
}

impl Route {
    /// A route of target `t` from `source` to `replicas`.
    pub fn new(
        t: &TargetConfig,
        source: &Endpoint,
        replicas: &[Endpoint],
        canary_key: String,
        probe: Arc<dyn Probe>,
    ) -> Route {
        Route {
            target: t.name.clone(),
            kind: t.kind,
            source_region: source.region.clone(),
            replica_regions: replicas.iter().map(|r| r.region.clone()).collect(),
            interval: t.interval,
            timeout: t.timeout,
            objective: t.objective,
            max_pending: t.max_pending,
            canary_key,
            probe,
            aws_reported: None,
        }
    }

    /// Reads AWS's own lag figures in `source`'s CloudWatch every
    /// `t.aws_reported_every` (unless it is off).
    pub async fn with_aws_reported(
        mut self,
        t: &TargetConfig,
        aws: &AwsPlumbing,
        source: &Endpoint,
    ) -> Route {
        if let Some(every) = t.aws_reported_every {
            let endpoint = source.endpoint_url.as_deref();
            self.aws_reported = Some(AwsReported {
                client: aws.cloudwatch(&source.region, endpoint).await,
                region: source.region.clone(),
                endpoint_url: source.endpoint_url.clone(),
                every,
                count: aws.counter("", "cloudwatch", &source.region),
            });
        }
        self
    }

    /// The metric labels of replica `i`.
    pub fn labels(&self, i: usize) -> ReplicaLabels {
        ReplicaLabels {
            target: self.target.clone(),
            kind: self.kind.as_str().to_string(),
            source_region: self.source_region.clone(),
            replica_region: self.replica_regions[i].clone(),
        }
    }
}
