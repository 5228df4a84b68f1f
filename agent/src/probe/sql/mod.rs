//! PostgreSQL and MySQL/MariaDB targets (Aurora global databases, streaming
//! or binlog replicas, RDS cross-region read replicas).
//!
//! One canary row per agent and target in `rpo_canary(agent_id, target, seq,
//! written_at)`, upserted on the writer and read on each replica with
//! `SELECT seq … WHERE agent_id = ? AND target = ?`. The same read also says
//! whether the replica is read-only, so role changes cost no extra query on
//! replicas; the writer's role is checked once per round (`roles`) before the
//! canary is written, so a demoted writer never gets canaries in a loop of
//! errors. After a switchover/failover the probe swaps source and replica
//! (`Roles::Swapped`) and the scheduler follows.
//!
//! Where Aurora's own views exist (`aurora_global_db_status()`,
//! `information_schema.aurora_global_db_instance_status`), their lag is
//! exported beside ours as `rpo_aws_reported_lag_seconds{metric}`.

pub mod conn;
pub mod errors;
pub mod iam;

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::aws::AwsPlumbing;
use crate::config::{redact_url, Auth, Endpoint, Kind, TargetConfig};
use crate::probe::credentials::Credentials;
use crate::probe::{Canary, Probe, ProbeError, Roles, StoreFigure, StoredCanaries};
use crate::route::Route;
use crate::tracker::Observation;
use conn::{Options, Pool};

/// How often Aurora's own lag views are read.
const AURORA_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    pub fn of(kind: Kind) -> Option<Engine> {
        match kind {
            Kind::Postgres => Some(Engine::Postgres),
            Kind::Mysql => Some(Engine::Mysql),
            _ => None,
        }
    }
}

/// One database endpoint (the configured source or a replica).
struct Node {
    region: String,
    /// Region and redacted URL, for messages.
    what: String,
    url: String,
    pool: RwLock<Option<Pool>>,
    /// When the pool's password (IAM token) was made.
    creds_at: Mutex<Option<Instant>>,
    /// Read-only as seen by the latest read of this node (None: unknown).
    read_only: Mutex<Option<bool>>,
}

impl Node {
    fn new(e: &Endpoint) -> Node {
        let url = e.url.clone().unwrap_or_default();
        Node {
            region: e.region.clone(),
            what: format!("{} ({})", e.region, redact_url(&url)),
            url,
            pool: RwLock::new(None),
            creds_at: Mutex::new(None),
            read_only: Mutex::new(None),
        }
    }

    fn pool(&self) -> Result<Pool, ProbeError> {
        self.pool.read().unwrap().clone().ok_or_else(|| {
            ProbeError::transient(
                "connect",
                "not_prepared",
                format!("{}: not connected yet", self.what),
            )
        })
    }
}

#[derive(Default)]
struct Aurora {
    unavailable: bool,
    last: Option<Instant>,
    /// The latest figures, until the scheduler takes them
    /// (`Probe::take_store_figures`).
    figures: Vec<StoreFigure>,
}

/// The probe of one SQL target.
pub struct SqlProbe {
    engine: Engine,
    target: String,
    agent_id: String,
    /// 0 = the configured source, 1.. = the configured replicas.
    nodes: Vec<Node>,
    /// Current position → node: position 0 is the writer we write to,
    /// position 1 + i is replica i. Swapped on a failover.
    order: RwLock<Vec<usize>>,
    creds: Credentials,
    ca_bundle: Option<String>,
    aurora: Mutex<Aurora>,
    acquire_timeout: Duration,
}

/// The one route of a SQL target (the writer feeding its readers).
pub fn routes(t: &TargetConfig, agent_id: &str, aws: &AwsPlumbing) -> Vec<Route> {
    let key = canary_key(agent_id, &t.name);
    let probe = SqlProbe::new(t, agent_id, aws);
    vec![Route::new(
        t,
        &t.source,
        &t.replicas,
        key,
        std::sync::Arc::new(probe),
    )]
}

/// Where canaries go, for logs.
pub fn canary_key(agent_id: &str, target: &str) -> String {
    format!("rpo_canary(agent_id='{agent_id}', target='{target}')")
}

impl SqlProbe {
    /// Builds the probe; no network until `prepare`.
    pub fn new(t: &TargetConfig, agent_id: &str, aws: &AwsPlumbing) -> SqlProbe {
        let engine = Engine::of(t.kind).expect("a SQL target");
        let mut nodes = vec![Node::new(&t.source)];
        nodes.extend(t.replicas.iter().map(Node::new));
        let order = (0..nodes.len()).collect();
        SqlProbe {
            engine,
            target: t.name.clone(),
            agent_id: agent_id.to_string(),
            nodes,
            order: RwLock::new(order),
            creds: Credentials {
                auth: t.auth.clone(),
                endpoint_url: t.source.endpoint_url.clone(),
                aws: aws.clone(),
                target: t.name.clone(),
            },
            ca_bundle: t.ca_bundle.clone(),
            aurora: Mutex::new(Aurora::default()),
            acquire_timeout: conn::acquire_timeout(t.interval),
        }
    }

    fn node_at(&self, pos: usize) -> &Node {
        &self.nodes[self.order.read().unwrap()[pos]]
    }

    async fn options(&self, n: &Node) -> Result<Options, ProbeError> {
        let o = conn::options(self.engine, &n.url, self.ca_bundle.as_deref(), &n.what)?;
        Ok(match self.creds.password(&o, &n.region, &n.what).await? {
            Some(p) => o.with_password(&p),
            None => o,
        })
    }

    /// Creates the node's pool, or gives it fresh credentials.
    async fn connect(&self, n: &Node) -> Result<Pool, ProbeError> {
        let o = self.options(n).await?;
        *n.creds_at.lock().unwrap() = Some(Instant::now());
        let existing = n.pool.read().unwrap().clone();
        Ok(match existing {
            Some(p) => {
                p.set_options(o);
                p
            }
            None => {
                let p = conn::pool(o, self.acquire_timeout);
                *n.pool.write().unwrap() = Some(p.clone());
                p
            }
        })
    }

    /// IAM tokens expire after 15 minutes: renew them after 10.
    async fn renew_tokens(&self) {
        if self.creds.auth != Auth::Iam {
            return;
        }
        for n in &self.nodes {
            let old = n
                .creds_at
                .lock()
                .unwrap()
                .is_some_and(|t| t.elapsed() >= iam::RENEW_AFTER);
            if old {
                if let Err(e) = self.connect(n).await {
                    warn!(target = %self.target, code = %e.code, "renewing the IAM auth token failed: {}", e.message);
                }
            }
        }
    }

    /// Reads Aurora's own lag views on the writer, at most every 10 s; says
    /// once (info) when they do not exist (plain PostgreSQL/MySQL, the lab).
    async fn aurora_views(&self, writer: &Node) {
        {
            let a = self.aurora.lock().unwrap();
            if a.unavailable || a.last.is_some_and(|t| t.elapsed() < AURORA_EVERY) {
                return;
            }
        }
        self.aurora.lock().unwrap().last = Some(Instant::now());
        let Ok(pool) = writer.pool() else { return };
        match conn::aurora_lags(&pool).await {
            Ok(rows) => {
                let mut figures = Vec::new();
                for pos in 1..self.nodes.len() {
                    let region = &self.node_at(pos).region;
                    for (_, metric, secs) in rows.iter().filter(|(r, ..)| r == region) {
                        figures.push(StoreFigure {
                            replica: pos - 1,
                            metric,
                            seconds: *secs,
                        });
                    }
                }
                self.aurora.lock().unwrap().figures = figures;
            }
            Err(Some(msg)) => {
                self.aurora.lock().unwrap().unavailable = true;
                let view = match self.engine {
                    Engine::Postgres => "aurora_global_db_status()",
                    Engine::Mysql => "information_schema.aurora_global_db_status",
                };
                info!(target = %self.target, "{view} is not available on {} ({msg}): not an Aurora global database, so rpo_aws_reported_lag_seconds stays empty for this target", writer.what);
            }
            Err(None) => {}
        }
    }

    async fn read_only(&self, n: &Node) -> Result<bool, ProbeError> {
        let pool = n.pool()?;
        let ro = conn::read_only(&pool, &n.what).await;
        *n.read_only.lock().unwrap() = ro.as_ref().ok().copied();
        ro
    }
}

#[async_trait]
impl Probe for SqlProbe {
    async fn prepare(&self) -> Result<(), ProbeError> {
        for n in &self.nodes {
            self.connect(n).await?;
        }
        // The table must exist on every node we can reach; an unreachable
        // node is not a set-up problem (the rounds will report it).
        for n in &self.nodes {
            let pool = n.pool()?;
            match conn::read(&pool, &n.what, &self.agent_id, &self.target).await {
                Ok((_, ro)) => *n.read_only.lock().unwrap() = Some(ro),
                Err(e) if e.class == crate::probe::ErrorClass::Config => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    async fn write(&self, canary: Canary) -> Result<(), ProbeError> {
        let n = self.node_at(0);
        let pool = n.pool()?;
        conn::upsert(
            &pool,
            &n.what,
            &self.agent_id,
            &self.target,
            canary.seq,
            canary.written_at_us,
        )
        .await
    }

    async fn read(&self, replica: usize, _awaited: &[u64]) -> Result<Observation, ProbeError> {
        let n = self.node_at(1 + replica);
        let pool = n.pool()?;
        match conn::read(&pool, &n.what, &self.agent_id, &self.target).await {
            Ok((seq, ro)) => {
                *n.read_only.lock().unwrap() = Some(ro);
                Ok(Observation::UpTo(seq))
            }
            Err(e) => {
                *n.read_only.lock().unwrap() = None;
                Err(e)
            }
        }
    }

    /// Each node's row; a node that does not answer within 3 s is unknown
    /// (`None`). SQL rows carry no lease token.
    async fn stored_canaries(&self) -> Result<StoredCanaries, ProbeError> {
        let mut found = Vec::new();
        for i in 0..self.nodes.len() {
            let n = self.node_at(i);
            let read = async {
                let pool = n.pool().ok()?;
                conn::stored(&pool, &n.what, &self.agent_id, &self.target)
                    .await
                    .ok()?
            };
            let row = tokio::time::timeout(Duration::from_secs(3), read)
                .await
                .ok()
                .flatten();
            found.push(row);
        }
        Ok(StoredCanaries::unfenced(found))
    }

    fn take_store_figures(&self) -> Vec<StoreFigure> {
        std::mem::take(&mut self.aurora.lock().unwrap().figures)
    }

    async fn roles(&self) -> Result<Roles, ProbeError> {
        self.renew_tokens().await;
        let replicas = self.nodes.len() - 1;
        let source = self.node_at(0);
        let src = self.read_only(source).await;
        if matches!(src, Ok(false)) {
            self.aurora_views(source).await;
            // Replicas' roles come for free with every read.
            let writable: Vec<usize> = (0..replicas)
                .filter(|&i| *self.node_at(1 + i).read_only.lock().unwrap() == Some(false))
                .collect();
            return Ok(if writable.is_empty() {
                Roles::AsConfigured
            } else {
                Roles::SplitBrain { replicas: writable }
            });
        }
        // The writer is read-only or unreachable: who accepts writes now?
        let mut writer = None;
        for i in 0..replicas {
            if matches!(self.read_only(self.node_at(1 + i)).await, Ok(false)) {
                writer = Some(i);
                break;
            }
        }
        match (writer, src) {
            (Some(i), src) => {
                let old = source.what.clone();
                {
                    let mut order = self.order.write().unwrap();
                    order.swap(0, 1 + i);
                }
                // The demoted node's role is unknown until it is read again.
                *self.node_at(1 + i).read_only.lock().unwrap() = None;
                let why = match src {
                    Ok(_) => "is read-only".to_string(),
                    Err(e) => format!("is unreachable ({})", e.code),
                };
                info!(target = %self.target, "{old} {why} and {} accepts writes: switchover/failover detected", self.node_at(0).what);
                Ok(Roles::Swapped { replica: i })
            }
            (None, Ok(_)) => Ok(Roles::NoWriter(ProbeError::transient(
                "role",
                "source_read_only",
                format!(
                    "{} is read-only and no replica accepts writes: no canary written (switchover in progress?)",
                    source.what
                ),
            ))),
            (None, Err(e)) => Err(e),
        }
    }
}

/// `rpo-agent init`: creates `rpo_canary` on the target's writer (the
/// configured source, or a replica if the source is read-only). Returns
/// where it was created.
pub async fn init(t: &TargetConfig, aws: &AwsPlumbing) -> Result<String, ProbeError> {
    let probe = SqlProbe::new(t, "init", aws);
    let mut last = None;
    for n in &probe.nodes {
        let pool = probe.connect(n).await?;
        match probe.read_only(n).await {
            Ok(false) => {
                let r = conn::create_table(&pool, &n.what)
                    .await
                    .map(|_| n.what.clone());
                pool.close().await;
                return r;
            }
            Ok(true) => {
                last = Some(ProbeError::config(
                    "init",
                    "read_only",
                    format!("{} is read-only", n.what),
                ))
            }
            Err(e) => last = Some(e),
        }
        pool.close().await;
    }
    Err(last
        .unwrap_or_else(|| ProbeError::config("init", "no_writer", "no endpoint accepts writes")))
}
