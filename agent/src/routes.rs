//! Expands configured targets into routes: one source feeding some replicas,
//! each with the probe that serves it.
//!
//! A one-way target is one route. A DynamoDB target with `direction = "both"`
//! adds, for every replica region, a reverse route that writes its own canary
//! item there and reads it back in the source region.

use std::sync::Arc;
use std::time::Duration;

use rpo_exporter::{Metrics, ReplicaLabels};

use crate::aws::attempts::CountAttempts;
use crate::aws::sdk_config;
use crate::canary::item_key;
use crate::config::{Config, Direction, Endpoint, Kind, TargetConfig};
use crate::probe::dynamodb::{DynamoProbe, Side};
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
    /// CloudWatch in the source region, for the probe's `aws_lag_queries`
    /// (None: the store has no such metrics, e.g. SQL targets).
    pub cloudwatch: Option<aws_sdk_cloudwatch::Client>,
}

impl Route {
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

/// Errors building routes (before any network call).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("target `{target}`: kind `{kind}` is not supported by this build of rpo-agent")]
    Unsupported { target: String, kind: &'static str },
}

/// Builds every route of the configuration.
pub async fn build(
    cfg: &Config,
    agent_id: &str,
    metrics: &Metrics,
) -> Result<Vec<Route>, RouteError> {
    let mut routes = Vec::new();
    for t in &cfg.targets {
        match t.kind {
            Kind::Dynamodb => {
                routes
                    .push(dynamodb_route(t, agent_id, metrics, &t.source, &t.replicas, None).await);
                if t.direction == Direction::Both {
                    for r in &t.replicas {
                        let back = std::slice::from_ref(&t.source);
                        routes.push(
                            dynamodb_route(t, agent_id, metrics, r, back, Some(&r.region)).await,
                        );
                    }
                }
            }
            Kind::S3 => routes.extend(crate::probe::s3::routes(t, agent_id, metrics).await),
            Kind::Postgres | Kind::Mysql => {
                let key = crate::probe::sql::canary_key(agent_id, &t.name);
                let probe = crate::probe::sql::SqlProbe::new(t, agent_id, metrics);
                routes.push(route(t, &t.source, &t.replicas, key, Arc::new(probe)));
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(RouteError::Unsupported {
                    target: t.name.clone(),
                    kind: other.as_str(),
                })
            }
        }
    }
    Ok(routes)
}

fn route(
    t: &TargetConfig,
    source: &Endpoint,
    replicas: &[Endpoint],
    key: String,
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
        canary_key: key,
        probe,
        cloudwatch: None,
    }
}

async fn dynamodb_side(t: &TargetConfig, e: &Endpoint, metrics: &Metrics) -> Side {
    let sdk = sdk_config(&e.region, e.endpoint_url.as_deref()).await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(CountAttempts {
            metrics: metrics.clone(),
            target: t.name.clone(),
            service: "dynamodb",
            region: e.region.clone(),
        })
        .build();
    Side {
        region: e.region.clone(),
        client: aws_sdk_dynamodb::Client::from_conf(conf),
    }
}

async fn dynamodb_route(
    t: &TargetConfig,
    agent_id: &str,
    metrics: &Metrics,
    source: &Endpoint,
    replicas: &[Endpoint],
    written_in: Option<&str>,
) -> Route {
    let key = item_key(agent_id, &t.name, written_in);
    let src = dynamodb_side(t, source, metrics).await;
    let mut reps = Vec::new();
    for r in replicas {
        reps.push(dynamodb_side(t, r, metrics).await);
    }
    let table = t
        .table
        .clone()
        .expect("validated: dynamodb targets have a table");
    let probe = DynamoProbe::new(table, key.clone(), agent_id.to_string(), src, reps);
    let cloudwatch = crate::aws::cloudwatch::client(
        &source.region,
        source.endpoint_url.as_deref(),
        metrics,
        &t.name,
    )
    .await;
    Route {
        cloudwatch: Some(cloudwatch),
        ..route(t, source, replicas, key, Arc::new(probe))
    }
}
