//! Valkey / Redis OSS targets: ElastiCache Global Datastore, MemoryDB
//! multi-region, plain Redis replicas.
//!
//! One canary key per agent (or fleet) and target, `rpo-canary:<id>:<target>`,
//! value `<seq>:<written_at_us>`, a TTL of a day: `SET` on the source's
//! primary endpoint, `GET` on each replica's endpoint. A replica that shows
//! `seq` has every older canary too (Redis replicates one ordered stream).
//!
//! Cluster mode (`cluster = true`): one key per shard, `<key>:{rpo<n>}`, the
//! hash tag chosen so the key lands in that shard's slots (`cluster.rs`). A
//! write sets every shard's key; a read gets each on the replica side's node
//! of that shard, and the replica has a canary only once every shard has it,
//! so the target's lag and RPO are its worst shard's.
//!
//! Roles (`roles`, before each canary; standalone only): `ROLE` on every
//! endpoint. A source that is no longer a master and a replica that is one is
//! a failover (Global Datastore promoted the secondary): the probe swaps them
//! and the scheduler follows. Two masters are split brain.

pub mod cluster;
pub mod conn;
pub mod errors;
pub mod iam;
pub mod members;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use tracing::info;

use crate::aws::cloudwatch::AwsLagQuery;
use crate::aws::metric_specs::ELASTICACHE_GLOBAL_DATASTORE_LAG;
use crate::aws::AwsPlumbing;
use crate::config::{Endpoint, TargetConfig};
use crate::probe::credentials::Credentials;
use crate::probe::{Canary, Finding, Probe, ProbeError, Roles, StoredCanaries};
use crate::route::Route;
use crate::tracker::Observation;
use conn::{parse_canary, parse_role, Access, Node, Role, Timeouts};

/// Canary keys expire after a day, so keys of dead agents go away.
pub const CANARY_TTL_SECONDS: u64 = 86_400;

/// One configured endpoint: its seed node, and in cluster mode the node of
/// each shard that this side uses (the master on the source, a replica on a
/// replica side), in the order of the canary keys.
struct Side {
    seed: Arc<Node>,
    shards: RwLock<Vec<Arc<Node>>>,
}

impl Side {
    /// The node serving canary key `i`.
    fn node(&self, i: usize) -> Arc<Node> {
        self.shards
            .read()
            .unwrap()
            .get(i)
            .cloned()
            .unwrap_or_else(|| self.seed.clone())
    }
}

/// The probe of one Redis target.
pub struct RedisProbe {
    target: String,
    /// The key of standalone targets, the base of cluster targets' keys.
    base_key: String,
    /// Cluster mode: one key per shard (found by `prepare`); else `[base_key]`.
    keys: RwLock<Vec<String>>,
    cluster: bool,
    /// 0 = the configured source, 1.. = the configured replicas.
    sides: Vec<Side>,
    /// Current position → side (position 0 writes); swapped on a failover.
    order: RwLock<Vec<usize>>,
    access: Access,
    ca_bundle: Option<String>,
    /// The region whose CloudWatch is read for AWS's figure (a replica's),
    /// and the member clusters it publishes that figure under.
    cloudwatch: Option<(String, members::MemberClusters)>,
}

/// The one route of a Redis target.
pub async fn routes(t: &TargetConfig, agent_id: &str, aws: &AwsPlumbing) -> Vec<Route> {
    let key = canary_key(agent_id, &t.name);
    // AWS publishes GlobalDatastoreReplicationLag in the secondary's region.
    let cw = &t.replicas[0];
    // Config validation parsed every URL the way `Node::new` does.
    let members = members::MemberClusters::new(
        aws.elasticache(&cw.region, cw.endpoint_url.as_deref())
            .await,
        aws.counter(&t.name, "elasticache", &cw.region),
        &t.name,
        &cw.region,
    );
    let probe = RedisProbe::new(t, agent_id, aws, Some((cw.region.clone(), members)))
        .expect("redis URLs are validated with the client's own parser");
    vec![
        Route::new(t, &t.source, &t.replicas, key, Arc::new(probe))
            .with_aws_reported(t, aws, cw)
            .await,
    ]
}

/// The canary key of `owner` (agent id or fleet name) for `target`.
pub fn canary_key(owner: &str, target: &str) -> String {
    format!("rpo-canary:{owner}:{target}")
}

impl RedisProbe {
    /// Builds the probe; no network until `prepare`.
    pub fn new(
        t: &TargetConfig,
        agent_id: &str,
        aws: &AwsPlumbing,
        cloudwatch: Option<(String, members::MemberClusters)>,
    ) -> Result<RedisProbe, ProbeError> {
        let side = |e: &Endpoint| -> Result<Side, ProbeError> {
            let url = e.url.as_deref().unwrap_or_default();
            Ok(Side {
                seed: Arc::new(Node::new(
                    &e.region,
                    url,
                    e.replication_group.clone(),
                    false,
                )?),
                shards: RwLock::new(Vec::new()),
            })
        };
        let mut sides = vec![side(&t.source)?];
        for r in &t.replicas {
            sides.push(side(r)?);
        }
        let order = (0..sides.len()).collect();
        let base_key = canary_key(agent_id, &t.name);
        // Answers within the interval (1–3 s), so a lost node is seen in a round.
        let wait = t
            .interval
            .clamp(Duration::from_secs(1), Duration::from_secs(3));
        Ok(RedisProbe {
            target: t.name.clone(),
            keys: RwLock::new(vec![base_key.clone()]),
            base_key,
            cluster: t.cluster,
            sides,
            order: RwLock::new(order),
            access: Access {
                creds: Credentials {
                    auth: t.auth.clone(),
                    endpoint_url: t.source.endpoint_url.clone(),
                    aws: aws.clone(),
                    target: t.name.clone(),
                },
                roots: RwLock::new(None),
                timeouts: Timeouts {
                    connect: wait,
                    response: wait,
                },
            },
            ca_bundle: t.ca_bundle.clone(),
            cloudwatch,
        })
    }

    fn side_at(&self, pos: usize) -> &Side {
        &self.sides[self.order.read().unwrap()[pos]]
    }

    fn keys(&self) -> Vec<String> {
        self.keys.read().unwrap().clone()
    }

    async fn role(&self, n: &Node) -> Result<Role, ProbeError> {
        let v: redis::Value = n.query("role", &redis::cmd("ROLE"), &self.access).await?;
        parse_role(&v).ok_or_else(|| {
            ProbeError::transient(
                "role",
                "bad_reply",
                format!("{}: ROLE answered {v:?}", n.what),
            )
        })
    }

    /// Cluster mode: the shards of the source (their masters get the
    /// canaries) and, for each key, the node of each replica side that
    /// serves its slot (a replica of that shard if there is one).
    async fn discover(&self) -> Result<(), ProbeError> {
        let slots = |n: Arc<Node>| async move {
            let v: redis::Value = n
                .query("discover", redis::cmd("CLUSTER").arg("SLOTS"), &self.access)
                .await?;
            cluster::parse_slots(&v).map_err(|m| {
                ProbeError::config("discover", "not_a_cluster", format!("{}: {m}", n.what))
            })
        };
        let source = self.side_at(0);
        let shards = slots(source.seed.clone()).await?;
        let keys = cluster::shard_keys(&self.base_key, &shards);
        let mut masters = Vec::new();
        for s in &shards {
            masters.push(Arc::new(source.seed.sibling(
                &s.master.0,
                s.master.1,
                false,
            )?));
        }
        for pos in 1..self.sides.len() {
            let side = self.side_at(pos);
            let theirs = slots(side.seed.clone()).await?;
            let mut nodes = Vec::new();
            for k in &keys {
                let slot = cluster::slot(k);
                let s = theirs.iter().find(|s| s.serves(slot)).ok_or_else(|| {
                    ProbeError::config(
                        "discover",
                        "slot_not_served",
                        format!("{}: no shard serves slot {slot} of {k}", side.seed.what),
                    )
                })?;
                let (host, port) = s.replicas.first().unwrap_or(&s.master);
                nodes.push(Arc::new(side.seed.sibling(host, *port, true)?));
            }
            *side.shards.write().unwrap() = nodes;
        }
        *source.shards.write().unwrap() = masters;
        *self.keys.write().unwrap() = keys;
        Ok(())
    }

    /// Each key's canary on the side at `pos`: (seq, written_at_us), None
    /// where the key is missing.
    async fn canaries_at(
        &self,
        op: &'static str,
        pos: usize,
    ) -> Result<Vec<Option<(u64, u64)>>, ProbeError> {
        let side = self.side_at(pos);
        let keys = self.keys();
        let reads = keys.iter().enumerate().map(|(i, k)| {
            let n = side.node(i);
            async move {
                let v: Option<String> = n.query(op, redis::cmd("GET").arg(k), &self.access).await?;
                Ok::<_, ProbeError>(v.as_deref().and_then(parse_canary))
            }
        });
        join_all(reads).await.into_iter().collect()
    }
}

/// The oldest of the shards' canaries (None if a shard has none): what the
/// replica has of every shard.
fn worst(found: &[Option<(u64, u64)>]) -> Option<(u64, u64)> {
    found.iter().try_fold(None, |acc: Option<(u64, u64)>, c| {
        let c = (*c)?;
        Some(Some(match acc {
            Some(a) if a.0 <= c.0 => a,
            _ => c,
        }))
    })?
}

#[async_trait]
impl Probe for RedisProbe {
    async fn prepare(&self) -> Result<(), ProbeError> {
        if let Some(path) = &self.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                ProbeError::config(
                    "connect",
                    "ca_bundle",
                    format!("ca_bundle {path}: cannot read it: {e}"),
                )
            })?;
            *self.access.roots.write().unwrap() = Some(pem);
        }
        // Every endpoint answers, or says why not; a refused login or an
        // untrusted certificate stops here, an unreachable node does not
        // (the rounds report it).
        for side in &self.sides {
            let ping = side
                .seed
                .query::<String>("connect", &redis::cmd("PING"), &self.access)
                .await;
            match ping {
                Err(e) if e.class == crate::probe::ErrorClass::Config => return Err(e),
                _ => {}
            }
        }
        if self.cluster {
            self.discover().await?;
        }
        Ok(())
    }

    async fn write(&self, canary: Canary) -> Result<(), ProbeError> {
        let side = self.side_at(0);
        let value = conn::canary_value(canary.seq, canary.written_at_us);
        let keys = self.keys();
        let writes = keys.iter().enumerate().map(|(i, k)| {
            let n = side.node(i);
            let value = &value;
            async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(k).arg(value).arg("EX").arg(CANARY_TTL_SECONDS);
                n.query::<()>("write", &cmd, &self.access).await
            }
        });
        for r in join_all(writes).await {
            r?;
        }
        Ok(())
    }

    async fn read(&self, replica: usize, _awaited: &[u64]) -> Result<Observation, ProbeError> {
        let found = self.canaries_at("read", 1 + replica).await?;
        Ok(Observation::UpTo(worst(&found).map(|c| c.0)))
    }

    async fn roles(&self) -> Result<Roles, ProbeError> {
        if self.cluster {
            return Ok(Roles::AsConfigured);
        }
        let n = self.sides.len();
        let roles: Vec<Result<Role, ProbeError>> =
            join_all((0..n).map(|pos| async move { self.role(&self.side_at(pos).seed).await }))
                .await;
        let masters: Vec<usize> = (1..n)
            .filter(|&p| matches!(roles[p], Ok(Role::Master)))
            .map(|p| p - 1)
            .collect();
        match (&roles[0], masters.first()) {
            (Ok(Role::Master), None) => Ok(Roles::AsConfigured),
            (Ok(Role::Master), Some(_)) => Ok(Roles::SplitBrain { replicas: masters }),
            (src, Some(&i)) => {
                let old = self.side_at(0).seed.what.clone();
                self.order.write().unwrap().swap(0, 1 + i);
                let why = match src {
                    Ok(_) => "is a replica now".to_string(),
                    Err(e) => format!("is unreachable ({})", e.code),
                };
                info!(target = %self.target, "{old} {why} and {} is a master: failover detected", self.side_at(0).seed.what);
                Ok(Roles::Swapped { replica: i })
            }
            (Ok(Role::Replica), None) => Ok(Roles::NoWriter(ProbeError::transient(
                "role",
                "source_read_only",
                format!(
                    "{} is a replica and no replica endpoint is a master: no canary written (failover in progress?)",
                    self.side_at(0).seed.what
                ),
            ))),
            (Err(e), None) => Err(e.clone()),
        }
    }

    async fn aws_lag_queries(&self) -> Vec<AwsLagQuery> {
        let Some((region, members)) = &self.cloudwatch else {
            return Vec::new();
        };
        let groups: Vec<(usize, String)> = (1..self.sides.len())
            .filter_map(|pos| {
                let seed = &self.side_at(pos).seed;
                let group = seed.replication_group.clone()?;
                (&seed.region == region).then_some((pos - 1, group))
            })
            .collect();
        let mut out = Vec::new();
        for (replica, group) in groups {
            for cluster in members.of(&group).await.unwrap_or_default() {
                out.push(AwsLagQuery::new(
                    replica,
                    &ELASTICACHE_GLOBAL_DATASTORE_LAG,
                    vec![cluster],
                ));
            }
        }
        out
    }

    /// Each side's canary (the worst shard's); a side that does not answer
    /// within 3 s is unknown. Redis canaries carry no lease token.
    async fn stored_canaries(&self) -> Result<StoredCanaries, ProbeError> {
        let mut found = Vec::new();
        for pos in 0..self.sides.len() {
            let read = tokio::time::timeout(Duration::from_secs(3), self.canaries_at("read", pos));
            let c = match read.await {
                Ok(Ok(v)) => worst(&v),
                _ => None,
            };
            found.push(c);
        }
        Ok(StoredCanaries::unfenced(found))
    }

    /// The role of each endpoint, and that canary keys expire.
    async fn housekeeping(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for pos in 0..self.sides.len() {
            let seed = self.side_at(pos).seed.clone();
            let what = format!("role of {}", seed.what);
            out.push(match (pos, self.role(&seed).await) {
                (_, Err(e)) => Finding::problem(what, e.to_string()),
                (0, Ok(Role::Replica)) => Finding::problem(what, "a replica: the source must be the primary endpoint"),
                (0, Ok(Role::Master)) => Finding::ok(format!("{what}: master")),
                (_, Ok(Role::Master)) if !self.cluster => Finding::problem(
                    what,
                    "a master: a replica endpoint must be read-only (split brain, or the primary endpoint of the wrong cluster)",
                ),
                (_, Ok(r)) => Finding::ok(format!("{what}: {}", if r == Role::Master { "master" } else { "replica" })),
            });
        }
        let source = self.side_at(0);
        for (i, k) in self.keys().iter().enumerate() {
            let n = source.node(i);
            let what = format!("TTL of {k} on {}", n.what);
            let ttl: Result<i64, _> = n.query("ttl", redis::cmd("TTL").arg(k), &self.access).await;
            out.push(match ttl {
                Ok(-2) => Finding::ok(format!("{what}: no canary yet (it is written with a TTL of {CANARY_TTL_SECONDS} s)")),
                Ok(-1) => Finding::problem(what, "the canary key has no TTL: something rewrote it without one; delete it, the agent writes it again with a day's TTL"),
                Ok(s) => Finding::ok(format!("{what}: {s} s")),
                Err(e) => Finding::problem(what, e.to_string()),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_shard_decides() {
        assert_eq!(worst(&[Some((5, 1)), Some((3, 2))]), Some((3, 2)));
        assert_eq!(worst(&[Some((5, 1)), None]), None);
        assert_eq!(worst(&[Some((7, 9))]), Some((7, 9)));
        assert_eq!(worst(&[]), None);
    }

    #[test]
    fn keys_follow_the_design() {
        assert_eq!(
            canary_key("task-1", "sessions"),
            "rpo-canary:task-1:sessions"
        );
    }
}
