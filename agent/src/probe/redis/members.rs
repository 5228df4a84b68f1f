//! Where ElastiCache publishes a Global Datastore's lag: per cache cluster of
//! the secondary replication group (`CacheClusterId`), not per group. This
//! module asks DescribeReplicationGroups for a group's `MemberClusters` (in
//! the secondary's region; needs `elasticache:DescribeReplicationGroups`)
//! and keeps the answer for an hour, so scaling the group's replicas is
//! followed without a call per CloudWatch read.
//!
//! A refused or failed call is logged once per error code, with the fix;
//! the figure stays absent and the next CloudWatch period asks again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::aws::errors::from_sdk;
use crate::aws::CountAttempts;

/// How long a group's member list is trusted.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// The member clusters of the replication groups of one target.
pub struct MemberClusters {
    client: aws_sdk_elasticache::Client,
    count: CountAttempts,
    target: String,
    region: String,
    known: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    /// The last error code logged, so a lasting refusal is one line.
    logged: Mutex<Option<String>>,
}

impl MemberClusters {
    pub fn new(
        client: aws_sdk_elasticache::Client,
        count: CountAttempts,
        target: &str,
        region: &str,
    ) -> Self {
        MemberClusters {
            client,
            count,
            target: target.to_string(),
            region: region.to_string(),
            known: Mutex::new(HashMap::new()),
            logged: Mutex::new(None),
        }
    }

    /// The cache cluster ids of `group` (an older answer when a refresh
    /// fails; None when none was ever had).
    pub async fn of(&self, group: &str) -> Option<Vec<String>> {
        let cached = self.known.lock().unwrap().get(group).cloned();
        if let Some((at, members)) = &cached {
            if at.elapsed() < REFRESH_EVERY {
                return Some(members.clone());
            }
        }
        match self.describe(group).await {
            Ok(members) => {
                debug!(target = %self.target, replication_group = group, ?members, "member clusters");
                if self.logged.lock().unwrap().take().is_some() {
                    info!(target = %self.target, replication_group = group,
                        "DescribeReplicationGroups answers again: AWS's GlobalDatastoreReplicationLag is read");
                }
                self.known
                    .lock()
                    .unwrap()
                    .insert(group.to_string(), (Instant::now(), members.clone()));
                Some(members)
            }
            Err(e) => {
                let news =
                    self.logged.lock().unwrap().replace(e.code.clone()) != Some(e.code.clone());
                if news {
                    warn!(target = %self.target, replication_group = group, op = e.op, code = %e.code,
                        "could not list the replication group's member clusters, so AWS's own lag figure is not read: {}", e.message);
                }
                cached.map(|(_, m)| m)
            }
        }
    }

    async fn describe(&self, group: &str) -> Result<Vec<String>, crate::error::ProbeError> {
        let out = self
            .client
            .describe_replication_groups()
            .replication_group_id(group)
            .customize()
            .interceptor(self.count.clone())
            .send()
            .await
            .map_err(|e| {
                let mut err = from_sdk("DescribeReplicationGroups", &e);
                err.message = if err.code.starts_with("AccessDenied") {
                    format!("{}: grant elasticache:DescribeReplicationGroups to the agent's role", err.message)
                } else if err.code.contains("NotFound") {
                    format!(
                        "replication_group {group} is not in {}: set the replica's replication_group to the secondary group's id ({})",
                        self.region, err.message
                    )
                } else {
                    err.message
                };
                err
            })?;
        let mut members: Vec<String> = out
            .replication_groups()
            .iter()
            .filter(|g| g.replication_group_id() == Some(group))
            .flat_map(|g| g.member_clusters().iter().cloned())
            .collect();
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }
}
