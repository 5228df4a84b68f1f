//! One module per backend; each implements a single write and a single read.
//!
//! The scheduler owns all timing, retries and bookkeeping; a probe only knows
//! how to put one canary into its store and how to look for canaries in one
//! replica. That keeps every backend small and lets the same tracker and poll
//! planner serve them all.

pub mod credentials;
pub mod dynamodb;
pub mod redis;
pub mod s3;
pub mod sql;

use async_trait::async_trait;

pub use crate::error::{ErrorClass, ProbeError};
use crate::tracker::Observation;

/// The error code of a canary write that the store refused because a newer
/// lease holder of the fleet writes the target (DynamoDB's fencing).
pub const LEASE_LOST: &str = "lease_lost";

/// A canary to write.
#[derive(Debug, Clone, Copy)]
pub struct Canary {
    pub seq: u64,
    /// Wall-clock write time, µs since the epoch (stored beside `seq` so a
    /// person looking at the store can read it).
    pub written_at_us: u64,
    /// Fleet mode: the writer's lease counter (fencing token). A store that
    /// can check it on write (DynamoDB: a condition on the item) refuses a
    /// canary whose token is older than the item's.
    pub lease: Option<u64>,
}

/// Which endpoint accepts writes, for stores with a single writer (SQL).
#[derive(Debug, Clone)]
pub enum Roles {
    /// Write to the source as configured (always, for multi-active stores).
    AsConfigured,
    /// The source is read-only (or gone) and replica `replica` accepts
    /// writes: the probe has already swapped the two, so from now on
    /// `write` goes to the old replica and `read(replica, …)` reads the old
    /// source. The scheduler follows (labels, metrics, log).
    Swapped { replica: usize },
    /// Nobody accepts writes: write no canary this round, report this error.
    NoWriter(ProbeError),
    /// The source and these replicas all accept writes (split brain).
    SplitBrain { replicas: Vec<usize> },
}

/// One of AWS's own lag figures, as a store reported it for a replica.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFigure {
    /// Index into the route's replicas (in the current direction).
    pub replica: usize,
    /// The `metric` label's value (one of `AWS_REPORTED_METRICS`).
    pub metric: &'static str,
    pub seconds: f64,
}

/// A set-up detail that `rpo-agent check` reports beside `prepare` and
/// `roles`: it does not stop measuring, but should be fixed (a lifecycle
/// rule that expires old canaries, a TTL on the canary attribute).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was checked, e.g. "lifecycle rule on rpo-canary/ in bucket b".
    pub what: String,
    /// `None` when fine; otherwise the problem and its fix.
    pub problem: Option<String>,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Self {
        Finding {
            what: what.into(),
            problem: None,
        }
    }

    pub fn problem(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding {
            what: what.into(),
            problem: Some(problem.into()),
        }
    }
}

/// A canary found in the store (fleet takeover: what the last holder left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCanary {
    pub seq: u64,
    /// The writer's wall clock, µs since the epoch.
    pub written_at_us: u64,
    /// The fencing token it was written with (fleet mode).
    pub lease: Option<u64>,
}

/// The canary state of a route's store: the source's newest canary and
/// each replica's (in the route's order); `None` where there is none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredCanaries {
    pub source: Option<StoredCanary>,
    pub replicas: Vec<Option<StoredCanary>>,
}

impl StoredCanaries {
    /// From each side's `(seq, written_at_us)`, the source's first, for
    /// stores whose canaries carry no lease token.
    pub fn unfenced(sides: Vec<Option<(u64, u64)>>) -> StoredCanaries {
        let mut found = sides.into_iter().map(|c| {
            c.map(|(seq, written_at_us)| StoredCanary {
                seq,
                written_at_us,
                lease: None,
            })
        });
        StoredCanaries {
            source: found.next().flatten(),
            replicas: found.collect(),
        }
    }
}

/// One backend's view of one route: a source and its replicas.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Discovers what the probe needs (key schema, clients) and checks the
    /// set-up. Called before the first write and again after a failure.
    async fn prepare(&self) -> Result<(), ProbeError>;

    /// Writes one canary in the source.
    async fn write(&self, canary: Canary) -> Result<(), ProbeError>;

    /// Looks for canaries in replica `replica` (index into the route's
    /// replicas). `awaited` lists the canaries awaited there that the poll
    /// planner says are due for a read, oldest first; stores that replicate
    /// in order may ignore it.
    async fn read(&self, replica: usize, awaited: &[u64]) -> Result<Observation, ProbeError>;

    /// Checked by the writer before each canary: who accepts writes now.
    async fn roles(&self) -> Result<Roles, ProbeError> {
        Ok(Roles::AsConfigured)
    }

    /// The store's own lag metrics in CloudWatch, per replica (empty when
    /// it has none, or before `prepare` found what they are named by).
    /// Called once per CloudWatch period; a store whose metric dimensions
    /// need an AWS call to be known (ElastiCache's member clusters) makes
    /// it here, so a refused call is retried by itself.
    async fn aws_lag_queries(&self) -> Vec<crate::aws::cloudwatch::AwsLagQuery> {
        Vec::new()
    }

    /// AWS's own lag figures that the store itself reported since the last
    /// call (Aurora's global-database views, read by `roles`); the writer
    /// hands them to the pairs, which export them. Empty for most stores.
    fn take_store_figures(&self) -> Vec<StoreFigure> {
        Vec::new()
    }

    /// The lags (per replica, in the route's order) that the last agent
    /// on this target kept in the store (`write_lag_hint`), so a restart or
    /// a new task starts warm. Empty for stores that keep none.
    async fn read_lag_hint(&self) -> Result<Vec<Option<std::time::Duration>>, ProbeError> {
        Ok(Vec::new())
    }

    /// Keeps the current lag estimates (per replica) in the store for the
    /// next agent on this target. A no-op for stores that keep none.
    async fn write_lag_hint(&self, _lags: &[std::time::Duration]) -> Result<(), ProbeError> {
        Ok(())
    }

    /// Fleet mode, at a takeover: the canaries the last holder left in the
    /// source and each replica, so RPO carries on from them. Stores whose
    /// canaries are not one item overwritten in place (S3) keep none.
    async fn stored_canaries(&self) -> Result<StoredCanaries, ProbeError> {
        Ok(StoredCanaries::default())
    }

    /// For `rpo-agent check`, after a successful `prepare`: housekeeping
    /// that keeps canaries from piling up. Makes read-only calls only.
    async fn housekeeping(&self) -> Vec<Finding> {
        Vec::new()
    }
}
