//! Reads AWS's own lag figures (CloudWatch) for one route, once a minute, on
//! a task of its own: a slow or failing CloudWatch never delays a canary,
//! and its errors never mark the probe down.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::sleep;

use super::RouteRun;
use crate::aws::cloudwatch::{fetch, PERIOD};
use crate::shutdown::Shutdown;

/// The first read waits for a few canaries to have replicated.
const FIRST_READ: Duration = Duration::from_secs(10);
/// Until `prepare` has found what the metrics are named by.
const NOT_READY_RETRY: Duration = Duration::from_secs(10);

pub async fn run(run: Arc<RouteRun>, mut shutdown: Shutdown) {
    let Some(client) = run.route.cloudwatch.clone() else {
        return;
    };
    let mut wait = FIRST_READ;
    loop {
        tokio::select! {
            _ = sleep(wait) => {}
            _ = shutdown.recv() => return,
        }
        let queries = run.route.probe.aws_lag_queries();
        if queries.is_empty() {
            wait = NOT_READY_RETRY;
            continue;
        }
        wait = PERIOD;
        let res = tokio::select! {
            r = fetch(&client, &queries, SystemTime::now()) => r,
            _ = shutdown.recv() => return,
        };
        match res {
            Ok(values) => {
                for (q, v) in queries.iter().zip(values) {
                    if let Some(p) = run.pairs.get(q.replica) {
                        p.lock().unwrap().on_aws_lag(q.metric, v);
                    }
                }
            }
            Err(e) => {
                let mut replicas: Vec<usize> = queries.iter().map(|q| q.replica).collect();
                replicas.dedup();
                for i in replicas {
                    if let Some(p) = run.pairs.get(i) {
                        p.lock().unwrap().on_aws_lag_error(&e);
                    }
                }
            }
        }
    }
}
