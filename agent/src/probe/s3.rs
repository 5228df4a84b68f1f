//! S3 replication (CRR / SRR, with or without RTC).
//!
//! A NEW object per canary, `<prefix><agent_id>/<target>/<seq>`, `PutObject`
//! in the source bucket; `HeadObject` in each destination bucket (one
//! replication rule each). S3 does not replicate in order, so a read answers
//! per canary (`Observation::Each`), and only for the canaries the poll
//! planner says are due (at most [`MAX_HEADS_PER_READ`] per read).
//!
//! FAILED replication: the source object's `x-amz-replication-status` turns
//! `FAILED` and the destination never gets the object. Waiting for the
//! timeout would report it 15 minutes late as "lost", so the source object is
//! HEADed too — but only for canaries that are overdue at the destination
//! (older than 1.5 × the recent lags + 50 ms, or no lag seen yet), in
//! parallel with the destination HEAD. A healthy canary read as it arrives
//! therefore costs destination HEADs only; an overdue one costs two HEADs
//! per read, and the planner spaces those reads by up to a quarter of the
//! canary's age (at most one interval), so a FAILED shows within one poll.
//! The source status is shared between the replicas' readers (one source
//! HEAD serves every destination for [`SOURCE_RECHECK`]; `FAILED` is final).
//! With several destinations S3 reports one status for all of them: a
//! `FAILED` source counts as failed for every destination still missing the
//! object.
//!
//! `prepare` checks what would otherwise look like lag: versioning `Enabled`
//! on the source and every destination, and an `Enabled` replication rule
//! whose filter covers the canary keys and whose destination is each
//! configured bucket. Those are configuration errors. A missing lifecycle
//! rule on the prefix (canaries would pile up) is only warned about, once.
//!
//! Cleanup needs no delete permission in the DR bucket: lifecycle rules on
//! the prefix expire old canaries. With `delete_seen = true` the agent also
//! deletes (plain `DeleteObject`, i.e. a delete marker that lifecycle
//! removes) its own source canaries once every destination has shown them.
//!
//! HeadObject answers have no body, so S3 error codes come from the status:
//! 404 is "not there yet" (never an error), 403 means the role lacks
//! `s3:GetObject` or `s3:ListBucket` (without it a missing key answers 403),
//! 503 is `SlowDown`, a redirect or 400 naming another region is a bucket in
//! the wrong region.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ReplicationRule, ReplicationStatus};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::aws::cloudwatch::AwsLagQuery;
use crate::aws::errors::from_sdk;
use crate::aws::metric_specs::S3_REPLICATION_LATENCY;
use crate::aws::{AwsPlumbing, CountAttempts};
use crate::config::{Endpoint, TargetConfig};
use crate::probe::{Canary, ErrorClass, Finding, Probe, ProbeError};
use crate::route::Route;
use crate::tracker::{Observation, Sighting};

/// Most canaries HEADed by one read; the rest wait for the next read.
pub const MAX_HEADS_PER_READ: usize = 16;
/// One source HEAD answers for every destination for this long.
pub const SOURCE_RECHECK: Duration = Duration::from_millis(500);
/// Recent destination lags kept per replica (to tell "overdue").
const LAG_HISTORY: usize = 8;

/// A bucket in its region, with the (shared) client signing for that region
/// and this target's request counter.
#[derive(Clone)]
pub struct Bucket {
    pub region: String,
    pub bucket: String,
    pub client: Client,
    pub count: CountAttempts,
}

impl Bucket {
    fn name(&self) -> String {
        format!("`{}` ({})", self.bucket, self.region)
    }
}

/// What the source said about a canary's replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceStatus {
    Pending,
    Completed,
    Failed,
    /// The source object is gone (deleted, or the store lost it).
    Gone,
}

#[derive(Default)]
struct State {
    /// When each canary's write was acknowledged.
    written: BTreeMap<u64, Instant>,
    /// The last source check of each canary.
    source: BTreeMap<u64, (SourceStatus, Instant)>,
    /// Which destinations have shown each canary (bit per replica).
    seen: BTreeMap<u64, u64>,
    /// Recent lags per replica (coarse: read end − ack).
    lags: Vec<VecDeque<Duration>>,
}

fn bound<V>(m: &mut BTreeMap<u64, V>, cap: usize) {
    while m.len() > cap {
        m.pop_first();
    }
}

/// The probe of one S3 route.
pub struct S3Probe {
    key_prefix: String,
    prefix: String,
    agent_id: String,
    target: String,
    source: Bucket,
    replicas: Vec<Bucket>,
    delete_seen: bool,
    cap: usize,
    state: Mutex<State>,
    lifecycle_checked: AtomicBool,
    delete_warned: Arc<AtomicBool>,
    /// Per destination, the covering rule's ID when the rule publishes
    /// replication metrics (found by `prepare`).
    metric_rules: Mutex<Vec<Option<String>>>,
}

impl S3Probe {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: &str,
        agent_id: &str,
        target: &str,
        source: Bucket,
        replicas: Vec<Bucket>,
        delete_seen: bool,
        max_pending: usize,
    ) -> Self {
        let state = State {
            lags: vec![VecDeque::new(); replicas.len()],
            ..State::default()
        };
        S3Probe {
            key_prefix: key_prefix(prefix, agent_id, target),
            prefix: prefix.to_string(),
            agent_id: agent_id.to_string(),
            target: target.to_string(),
            source,
            replicas,
            delete_seen,
            cap: max_pending.saturating_mul(2).saturating_add(64),
            state: Mutex::new(state),
            lifecycle_checked: AtomicBool::new(false),
            delete_warned: Arc::new(AtomicBool::new(false)),
            metric_rules: Mutex::new(Vec::new()),
        }
    }

    fn key(&self, seq: u64) -> String {
        format!("{}{seq}", self.key_prefix)
    }

    /// Whether canary `seq` is late enough at `replica` to ask the source.
    fn overdue(&self, st: &State, replica: usize, seq: u64, now: Instant) -> bool {
        let Some(acked) = st.written.get(&seq) else {
            return true;
        };
        let Some(hi) = st.lags[replica].iter().max() else {
            return true;
        };
        now.saturating_duration_since(*acked) >= *hi * 3 / 2 + Duration::from_millis(50)
    }

    async fn versioning(&self, b: &Bucket) -> Result<(), ProbeError> {
        let out = b
            .client
            .get_bucket_versioning()
            .bucket(&b.bucket)
            .customize()
            .interceptor(b.count.clone())
            .send()
            .await
            .map_err(|e| bucket_error(from_sdk("GetBucketVersioning", &e), b))?;
        match out.status() {
            Some(BucketVersioningStatus::Enabled) => Ok(()),
            other => Err(ProbeError::config(
                "GetBucketVersioning",
                "versioning_not_enabled",
                format!(
                    "bucket {} has versioning {}; S3 replication needs it Enabled on the source and every destination: aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled",
                    b.name(),
                    other.map(|s| s.as_str()).unwrap_or("never enabled"),
                    b.bucket
                ),
            )),
        }
    }

    async fn replication_rules(&self) -> Result<(), ProbeError> {
        let s = &self.source;
        let out = s
            .client
            .get_bucket_replication()
            .bucket(&s.bucket)
            .customize()
            .interceptor(s.count.clone())
            .send()
            .await
            .map_err(|e| {
                let err = from_sdk("GetBucketReplication", &e);
                if err.code == "ReplicationConfigurationNotFoundError" {
                    ProbeError::config(
                        "GetBucketReplication",
                        "no_replication_configuration",
                        format!(
                            "bucket {} has no replication configuration: add a rule with Filter Prefix `{}` and Destination {}",
                            s.name(),
                            self.prefix,
                            self.replicas.iter().map(|r| format!("arn:aws:s3:::{}", r.bucket)).collect::<Vec<_>>().join(", ")
                        ),
                    )
                } else {
                    bucket_error(err, s)
                }
            })?;
        let rules = out
            .replication_configuration()
            .map(|c| c.rules())
            .unwrap_or_default();
        let mut metric_rules = Vec::new();
        for r in &self.replicas {
            let rule = check_rules(rules, &self.key_prefix, &r.bucket).map_err(|why| {
                ProbeError::config(
                    "GetBucketReplication",
                    "replication_rule_missing",
                    format!(
                        "no Enabled replication rule of bucket {} replicates the canary keys `{}…` to `{}` ({why}): add a rule with Status Enabled, Filter Prefix `{}` (or an empty filter) and Destination Bucket arn:aws:s3:::{}",
                        s.name(),
                        self.key_prefix,
                        r.bucket,
                        self.prefix,
                        r.bucket
                    ),
                )
            })?;
            metric_rules
                .push(publishes_metrics(rule).then(|| rule.id().unwrap_or_default().to_string()));
        }
        *self.metric_rules.lock().unwrap() = metric_rules;
        Ok(())
    }

    /// Warns (once per probe) when a bucket has no lifecycle rule expiring
    /// the canaries.
    async fn lifecycle(&self) {
        if self.lifecycle_checked.swap(true, Ordering::SeqCst) {
            return;
        }
        for (b, f) in std::iter::once(&self.source)
            .chain(&self.replicas)
            .zip(self.lifecycle_findings().await)
        {
            if let Some(problem) = f.problem {
                warn!(target = %self.target, bucket = %b.bucket, region = %b.region, "{problem}");
            }
        }
    }

    /// Whether each bucket has a rule that expires old canaries.
    async fn lifecycle_findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for b in std::iter::once(&self.source).chain(&self.replicas) {
            let what = format!(
                "lifecycle rule on `{}` in bucket {} ({})",
                self.prefix, b.bucket, b.region
            );
            let res = b
                .client
                .get_bucket_lifecycle_configuration()
                .bucket(&b.bucket)
                .customize()
                .interceptor(b.count.clone())
                .send()
                .await;
            let rules = match res {
                Ok(out) => out.rules().to_vec(),
                Err(e) => {
                    let err = from_sdk("GetBucketLifecycleConfiguration", &e);
                    if err.code != "NoSuchLifecycleConfiguration" {
                        out.push(Finding::problem(
                            what,
                            format!(
                                "could not verify the lifecycle rule that expires old canaries ({}: {}); grant s3:GetLifecycleConfiguration on the bucket",
                                err.code, err.message
                            ),
                        ));
                        continue;
                    }
                    Vec::new()
                }
            };
            out.push(match lifecycle_gap(&rules, &self.key_prefix) {
                Some(missing) => Finding::problem(
                    what,
                    format!(
                        "no lifecycle rule {missing} under `{}`: old canaries (one object per interval) will pile up; add a rule on the prefix with Expiration Days=1, NoncurrentVersionExpiration NoncurrentDays=1 and ExpiredObjectDeleteMarker (the deploy templates create it)",
                        self.prefix
                    ),
                ),
                None => Finding::ok(what),
            });
        }
        out
    }

    /// Deletes our source canary once every destination showed it.
    fn seen(&self, st: &mut State, replica: usize, seq: u64) {
        if !self.delete_seen {
            return;
        }
        let all = if self.replicas.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.replicas.len()) - 1
        };
        let bits = st.seen.entry(seq).or_insert(0);
        *bits |= 1 << replica.min(63);
        if *bits != all {
            bound(&mut st.seen, self.cap);
            return;
        }
        st.seen.remove(&seq);
        let s = self.source.clone();
        let key = self.key(seq);
        let warned = self.delete_warned.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = s
                .client
                .delete_object()
                .bucket(&s.bucket)
                .key(&key)
                .customize()
                .interceptor(s.count.clone())
                .send()
                .await
            {
                let err = from_sdk("DeleteObject", &e);
                if !warned.swap(true, Ordering::SeqCst) {
                    warn!(target = %target, bucket = %s.bucket, key = %key, code = %err.code,
                        "could not delete a seen canary (delete_seen = true; the lifecycle rule will expire it): {}", err.message);
                } else {
                    debug!(target = %target, key = %key, code = %err.code, "DeleteObject failed");
                }
            }
        });
    }
}

/// `<prefix><agent_id>/<target>/`: every canary key of one agent and target.
pub fn key_prefix(prefix: &str, agent_id: &str, target: &str) -> String {
    format!("{prefix}{agent_id}/{target}/")
}

/// Gives bucket-level errors a message that names the bucket and the fix.
fn bucket_error(mut err: ProbeError, b: &Bucket) -> ProbeError {
    match err.code.as_str() {
        "NoSuchBucket" => {
            err.message = format!(
                "bucket {} does not exist: create it, or fix the target's bucket",
                b.name()
            )
        }
        "AuthorizationHeaderMalformed" | "PermanentRedirect" | "http_301" => {
            err.class = ErrorClass::Config;
            err.message = format!(
                "bucket `{}` is not in region {}: set the region the bucket was created in ({})",
                b.bucket, b.region, err.message
            )
        }
        "AccessDenied" => {
            err.message = format!(
                "access denied on bucket {}: the agent's role needs s3:GetBucketVersioning, s3:GetReplicationConfiguration and s3:GetLifecycleConfiguration on it ({})",
                b.name(),
                err.message
            )
        }
        _ => {}
    }
    err
}

/// The key prefix a rule selects, or `None` when it needs tags (canaries
/// carry none).
fn rule_prefix(r: &ReplicationRule) -> Option<String> {
    match r.filter() {
        Some(f) => {
            if f.tag().is_some() {
                return None;
            }
            if let Some(and) = f.and() {
                if !and.tags().is_empty() {
                    return None;
                }
                return Some(and.prefix().unwrap_or("").to_string());
            }
            Some(f.prefix().unwrap_or("").to_string())
        }
        #[allow(deprecated)]
        None => Some(r.prefix().unwrap_or("").to_string()),
    }
}

/// The Enabled rule (highest priority first) that covers keys under
/// `key_prefix` and replicates to `bucket`; else what was found instead.
fn check_rules<'a>(
    rules: &'a [ReplicationRule],
    key_prefix: &str,
    bucket: &str,
) -> Result<&'a ReplicationRule, String> {
    let dest = |r: &ReplicationRule| {
        r.destination()
            .map(|d| d.bucket().rsplit(':').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    if let Some(r) = rules
        .iter()
        .filter(|r| {
            r.status().as_str() == "Enabled"
                && dest(r) == bucket
                && rule_prefix(r).is_some_and(|p| key_prefix.starts_with(&p))
        })
        .max_by_key(|r| r.priority().unwrap_or(0))
    {
        return Ok(r);
    }
    if rules.is_empty() {
        return Err("the configuration has no rules".into());
    }
    let found: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "rule `{}`: {}, {}, to `{}`",
                r.id().unwrap_or("-"),
                r.status().as_str(),
                match rule_prefix(r) {
                    Some(p) => format!("prefix `{p}`"),
                    None => "tag filter".into(),
                },
                dest(r)
            )
        })
        .collect();
    Err(format!("found {}", found.join("; ")))
}

/// S3 publishes `ReplicationLatency` for a rule only with replication
/// metrics (or RTC, which includes them) enabled.
fn publishes_metrics(r: &ReplicationRule) -> bool {
    let Some(d) = r.destination() else {
        return false;
    };
    d.metrics()
        .is_some_and(|m| m.status().as_str() == "Enabled")
        || d.replication_time()
            .is_some_and(|t| t.status().as_str() == "Enabled")
}

/// What the lifecycle rules fail to expire under `key_prefix`, if anything.
fn lifecycle_gap(rules: &[aws_sdk_s3::types::LifecycleRule], key_prefix: &str) -> Option<String> {
    let covering: Vec<_> = rules
        .iter()
        .filter(|r| r.status().as_str() == "Enabled")
        .filter(|r| {
            #[allow(deprecated)]
            let p = match r.filter() {
                Some(f) if f.tag().is_some() => None,
                Some(f) => match f.and() {
                    Some(a) if !a.tags().is_empty() => None,
                    Some(a) => Some(a.prefix().unwrap_or("")),
                    None => Some(f.prefix().unwrap_or("")),
                },
                None => Some(r.prefix().unwrap_or("")),
            };
            p.is_some_and(|p| key_prefix.starts_with(p))
        })
        .collect();
    let current = covering.iter().any(|r| {
        r.expiration()
            .is_some_and(|e| e.days().is_some() || e.date().is_some())
    });
    let noncurrent = covering
        .iter()
        .any(|r| r.noncurrent_version_expiration().is_some());
    match (current, noncurrent) {
        (true, true) => None,
        (false, false) => Some("expires the canaries".into()),
        (false, true) => Some("expires the current versions of canaries".into()),
        (true, false) => Some("expires the noncurrent versions of canaries (versioned bucket: expiry leaves them behind)".into()),
    }
}

/// One HeadObject: `Ok(None)` when the object is not there (404).
async fn head(b: Bucket, key: String) -> Result<Option<HeadObjectOutput>, ProbeError> {
    match b
        .client
        .head_object()
        .bucket(&b.bucket)
        .key(&key)
        .customize()
        .interceptor(b.count.clone())
        .send()
        .await
    {
        Ok(out) => Ok(Some(out)),
        Err(e) => head_error(&b, &e),
    }
}

fn head_error(
    b: &Bucket,
    e: &SdkError<HeadObjectError, HttpResponse>,
) -> Result<Option<HeadObjectOutput>, ProbeError> {
    let mut err = from_sdk("HeadObject", e);
    let SdkError::ServiceError(s) = e else {
        return Err(err);
    };
    let status = s.raw().status().as_u16();
    if status == 404 || s.err().is_not_found() {
        return Ok(None);
    }
    let other_region = s
        .raw()
        .headers()
        .get("x-amz-bucket-region")
        .map(|r| r.to_string())
        .filter(|r| r != &b.region);
    // A HEAD answer has no body: name the code after the status.
    match (status, other_region) {
        (301 | 400, Some(r)) => {
            err.code = "wrong_region".into();
            err.class = ErrorClass::Config;
            err.message = format!(
                "bucket `{}` is in region {r}, not {}: fix the region in the target",
                b.bucket, b.region
            );
        }
        (403, _) => {
            err.code = "AccessDenied".into();
            err.class = ErrorClass::Config;
            err.message = format!(
                "HeadObject on bucket {} answered 403: the agent's role needs s3:GetObject on the canary prefix and s3:ListBucket on the bucket (without it a canary not yet replicated answers 403 instead of 404)",
                b.name()
            );
        }
        (503, _) => err.code = "SlowDown".into(),
        (500, _) => err.code = "InternalError".into(),
        _ => {}
    }
    Err(err)
}

fn source_status(out: &HeadObjectOutput) -> SourceStatus {
    match out.replication_status() {
        Some(ReplicationStatus::Failed) => SourceStatus::Failed,
        Some(ReplicationStatus::Complete | ReplicationStatus::Completed) => SourceStatus::Completed,
        _ => SourceStatus::Pending,
    }
}

#[async_trait]
impl Probe for S3Probe {
    async fn aws_lag_queries(&self) -> Vec<AwsLagQuery> {
        let rules = self.metric_rules.lock().unwrap();
        rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                Some(AwsLagQuery::new(
                    i,
                    &S3_REPLICATION_LATENCY,
                    vec![
                        self.source.bucket.clone(),
                        self.replicas.get(i)?.bucket.clone(),
                        rule.clone()?,
                    ],
                ))
            })
            .collect()
    }

    async fn prepare(&self) -> Result<(), ProbeError> {
        self.versioning(&self.source).await?;
        for r in &self.replicas {
            self.versioning(r).await?;
        }
        self.replication_rules().await?;
        self.lifecycle().await;
        Ok(())
    }

    async fn housekeeping(&self) -> Vec<Finding> {
        self.lifecycle_findings().await
    }

    async fn write(&self, canary: Canary) -> Result<(), ProbeError> {
        let body = serde_json::json!({
            "seq": canary.seq,
            "agent": self.agent_id,
            "target": self.target,
            "written_at_us": canary.written_at_us,
        })
        .to_string();
        let s = &self.source;
        s.client
            .put_object()
            .bucket(&s.bucket)
            .key(self.key(canary.seq))
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .customize()
            .interceptor(s.count.clone())
            .send()
            .await
            .map_err(|e| bucket_error(from_sdk("PutObject", &e), s))?;
        let mut st = self.state.lock().unwrap();
        st.written.insert(canary.seq, Instant::now());
        bound(&mut st.written, self.cap);
        Ok(())
    }

    async fn read(&self, replica: usize, due: &[u64]) -> Result<Observation, ProbeError> {
        let dest = &self.replicas[replica];
        let now = Instant::now();
        // Which canaries also need the source's replication status.
        let plan: Vec<(u64, bool, Option<SourceStatus>)> = {
            let st = self.state.lock().unwrap();
            due.iter()
                .take(MAX_HEADS_PER_READ)
                .map(|&seq| {
                    let cached = st.source.get(&seq).and_then(|(s, at)| {
                        (*s == SourceStatus::Failed || now - *at < SOURCE_RECHECK).then_some(*s)
                    });
                    let ask = cached.is_none() && self.overdue(&st, replica, seq, now);
                    (seq, ask, cached)
                })
                .collect()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (seq, ask, cached) in plan {
            let d = head(dest.clone(), self.key(seq));
            let s = ask.then(|| head(self.source.clone(), self.key(seq)));
            tasks.spawn(async move {
                let (d, s) = match s {
                    Some(s) => {
                        let (d, s) = tokio::join!(d, s);
                        (d, Some(s))
                    }
                    None => (d.await, None),
                };
                (seq, d, s, cached)
            });
        }
        let mut results = Vec::new();
        while let Some(r) = tasks.join_next().await {
            results.push(r.map_err(|e| {
                ProbeError::transient("HeadObject", "task", format!("a HEAD task failed: {e}"))
            })?);
        }
        results.sort_by_key(|r| r.0);
        let received = Instant::now();
        let mut seen = Vec::new();
        let mut first_err = None;
        let mut st = self.state.lock().unwrap();
        for (seq, d, s, cached) in results {
            let src = match s {
                None => cached,
                Some(Ok(out)) => {
                    let status = out.as_ref().map_or(SourceStatus::Gone, source_status);
                    st.source.insert(seq, (status, received));
                    Some(status)
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(e);
                    cached
                }
            };
            match d {
                Ok(Some(_)) => {
                    if let Some(acked) = st.written.get(&seq).copied() {
                        let lags = &mut st.lags[replica];
                        if lags.len() == LAG_HISTORY {
                            lags.pop_front();
                        }
                        lags.push_back(received.saturating_duration_since(acked));
                    }
                    self.seen(&mut st, replica, seq);
                    seen.push((seq, Sighting::Present));
                }
                Ok(None) if src == Some(SourceStatus::Failed) => seen.push((seq, Sighting::Failed)),
                Ok(None) => {
                    if src == Some(SourceStatus::Gone) {
                        debug!(target = %self.target, seq, "the source canary is gone; it will time out as lost");
                    }
                    seen.push((seq, Sighting::Missing))
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        bound(&mut st.source, self.cap);
        // An error fails the read unless a canary was found: then the
        // sighting matters more (the others are simply read again).
        match first_err {
            Some(e) if !seen.iter().any(|(_, s)| *s != Sighting::Missing) => Err(e),
            _ => Ok(Observation::Each(seen)),
        }
    }
}

async fn side(t: &TargetConfig, e: &Endpoint, aws: &AwsPlumbing) -> Bucket {
    Bucket {
        region: e.region.clone(),
        bucket: e
            .bucket
            .clone()
            .expect("validated: s3 endpoints have a bucket"),
        client: aws.s3(&e.region, e.endpoint_url.as_deref()).await,
        count: aws.counter(&t.name, "s3", &e.region),
    }
}

/// The route of an S3 target: the source bucket feeding its destinations.
pub async fn routes(t: &TargetConfig, agent_id: &str, aws: &AwsPlumbing) -> Vec<Route> {
    let src = side(t, &t.source, aws).await;
    let mut reps = Vec::new();
    for r in &t.replicas {
        reps.push(side(t, r, aws).await);
    }
    let key = key_prefix(&t.prefix, agent_id, &t.name);
    let probe = S3Probe::new(
        &t.prefix,
        agent_id,
        &t.name,
        src,
        reps,
        t.delete_seen,
        t.max_pending,
    );
    let route = Route::new(
        t,
        &t.source,
        &t.replicas,
        format!("{key}<seq>"),
        Arc::new(probe),
    );
    vec![route.with_aws_reported(t, aws, &t.source).await]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::*;

    fn rule(
        id: &str,
        status: &str,
        filter: Option<ReplicationRuleFilter>,
        dest: &str,
    ) -> ReplicationRule {
        let mut b = ReplicationRule::builder()
            .id(id)
            .status(ReplicationRuleStatus::from(status))
            .destination(
                Destination::builder()
                    .bucket(format!("arn:aws:s3:::{dest}"))
                    .build()
                    .unwrap(),
            );
        if let Some(f) = filter {
            b = b.filter(f);
        }
        b.build().unwrap()
    }

    fn prefix(p: &str) -> Option<ReplicationRuleFilter> {
        Some(ReplicationRuleFilter::builder().prefix(p).build())
    }

    const K: &str = "rpo-canary/a1/inv/";

    #[test]
    fn a_rule_must_be_enabled_cover_the_prefix_and_reach_the_bucket() {
        assert!(check_rules(
            &[rule("r", "Enabled", prefix("rpo-canary/"), "dr")],
            K,
            "dr"
        )
        .is_ok());
        assert!(check_rules(&[rule("r", "Enabled", prefix(""), "dr")], K, "dr").is_ok());
        assert!(check_rules(&[rule("r", "Enabled", None, "dr")], K, "dr").is_ok());
        let e = check_rules(&[rule("r", "Enabled", prefix("logs/"), "dr")], K, "dr").unwrap_err();
        assert!(e.contains("prefix `logs/`"), "{e}");
        assert!(check_rules(
            &[rule("r", "Disabled", prefix("rpo-canary/"), "dr")],
            K,
            "dr"
        )
        .is_err());
        assert!(check_rules(
            &[rule("r", "Enabled", prefix("rpo-canary/"), "other")],
            K,
            "dr"
        )
        .is_err());
        let tagged = ReplicationRuleFilter::builder()
            .tag(Tag::builder().key("a").value("b").build().unwrap())
            .build();
        assert!(check_rules(&[rule("r", "Enabled", Some(tagged), "dr")], K, "dr").is_err());
        assert!(check_rules(&[], K, "dr").unwrap_err().contains("no rules"));
    }

    #[test]
    fn lifecycle_needs_current_and_noncurrent_expiry_on_the_prefix() {
        let lc = |p: &str, cur: bool, nc: bool| {
            let mut b = LifecycleRule::builder()
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix(p).build());
            if cur {
                b = b.expiration(LifecycleExpiration::builder().days(1).build());
            }
            if nc {
                b = b.noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .build(),
                );
            }
            b.build().unwrap()
        };
        assert_eq!(lifecycle_gap(&[lc("rpo-canary/", true, true)], K), None);
        assert_eq!(
            lifecycle_gap(&[lc("rpo-canary/", true, false), lc("", false, true)], K),
            None
        );
        assert!(lifecycle_gap(&[lc("logs/", true, true)], K).is_some());
        assert!(lifecycle_gap(&[lc("rpo-canary/", true, false)], K)
            .unwrap()
            .contains("noncurrent"));
        assert!(lifecycle_gap(&[], K).is_some());
    }

    #[test]
    fn keys_are_prefix_agent_target_seq() {
        assert_eq!(key_prefix("rpo-canary/", "a1", "inv"), "rpo-canary/a1/inv/");
    }
}
