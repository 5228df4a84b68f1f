//! A handle on the two-region lab (`tests/lab/lab`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

pub struct Lab {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub env: HashMap<String, String>,
}

fn lab_cmd() -> PathBuf {
    super::repo_root().join("tests/lab/lab")
}

impl Lab {
    /// Starts a lab with `components` (e.g. "aws") in a fresh directory. The
    /// lab stops itself when this test process exits, even on a crash.
    pub fn start(components: &str) -> Lab {
        let tmp = tempfile::Builder::new()
            .prefix("rpo-lab-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let out = Command::new(lab_cmd())
            .args(["up", "--dir"])
            .arg(&dir)
            .args([
                "--components",
                components,
                "--exit-with",
                &std::process::id().to_string(),
            ])
            .output()
            .expect("run tests/lab/lab");
        assert!(
            out.status.success(),
            "lab up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = parse_env(&std::fs::read_to_string(dir.join("lab.env")).unwrap());
        Lab {
            dir,
            _tmp: Some(tmp),
            env,
        }
    }

    /// The lab shared by every test of this test binary.
    pub fn shared(components: &'static str) -> &'static Lab {
        static LAB: OnceLock<Lab> = OnceLock::new();
        LAB.get_or_init(|| Lab::start(components))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("lab.env has no {key}"))
    }

    /// Runs `lab fault --dir DIR ARGS…`, panicking on failure.
    pub fn fault(&self, args: &[&str]) {
        let out = Command::new(lab_cmd())
            .args(["fault", "--dir"])
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab fault {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `lab fault ARGS…` now and `lab fault UNDO…` when the returned
    /// guard drops, also when the test panics: a pair-wide fault (a stalled
    /// PostgreSQL replica) left behind by a failed assertion would otherwise
    /// fail every later test of that engine for reasons of its own.
    pub fn fault_until_drop<'a>(&'a self, args: &[&str], undo: &[&str]) -> FaultGuard<'a> {
        self.fault(args);
        FaultGuard {
            lab: self,
            undo: undo.iter().map(|s| s.to_string()).collect(),
            done: false,
        }
    }

    /// Every ground-truth line so far.
    pub fn ground_truth(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.get("LAB_GROUND_TRUTH")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// An SDK config for `region` pointing at the lab.
    pub async fn sdk(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(self.get("AWS_ENDPOINT_URL"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "lab", "lab", None, None, "lab",
            ))
            .load()
            .await
    }

    /// Creates a global table `name` (partition key `pk`, plus a sort key
    /// `sk` of `sort_type` if given) in `source` with a replica in `replica`.
    pub async fn create_global_table(
        &self,
        name: &str,
        source: &str,
        replica: &str,
        sort_type: Option<&str>,
    ) {
        use aws_sdk_dynamodb::types::*;
        let c = aws_sdk_dynamodb::Client::new(&self.sdk(source).await);
        let mut req = c
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            );
        if let Some(t) = sort_type {
            req = req
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("sk")
                        .key_type(KeyType::Range)
                        .build()
                        .unwrap(),
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("sk")
                        .attribute_type(ScalarAttributeType::from(t))
                        .build()
                        .unwrap(),
                );
        }
        req.send().await.expect("CreateTable");
        c.update_table()
            .table_name(name)
            .replica_updates(
                ReplicationGroupUpdate::builder()
                    .create(
                        CreateReplicationGroupMemberAction::builder()
                            .region_name(replica)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("UpdateTable ReplicaUpdates");
    }

    /// An S3 client for `region` pointing at the lab (path style: the lab's
    /// endpoint is an IP address).
    pub async fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk(region).await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates bucket `name` in `region`, with versioning Enabled if asked.
    pub async fn create_bucket(&self, name: &str, region: &str, versioned: bool) {
        use aws_sdk_s3::types::*;
        let c = self.s3(region).await;
        c.create_bucket()
            .bucket(name)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket {name}: {e:?}"));
        if versioned {
            self.set_versioning(name, region, true).await;
        }
    }

    /// Turns versioning of `name` on (Enabled) or off (Suspended).
    pub async fn set_versioning(&self, name: &str, region: &str, enabled: bool) {
        use aws_sdk_s3::types::*;
        let status = if enabled {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        self.s3(region)
            .await
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutBucketVersioning {name}: {e:?}"));
    }

    /// Puts the canary lifecycle rule (expire current and noncurrent
    /// versions after a day) on `prefix` of bucket `name`.
    pub async fn put_lifecycle(&self, name: &str, region: &str, prefix: &str) {
        use aws_sdk_s3::types::*;
        let rule = LifecycleRule::builder()
            .id("rpo-canary-expire")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(1).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap();
        self.s3(region)
            .await
            .put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutBucketLifecycleConfiguration {name}: {e:?}"));
    }

    /// Creates versioned bucket `source` in `source_region` replicating keys
    /// under `rule_prefix` to each versioned `(bucket, region)` of `dests`
    /// (one rule each), and, when `lifecycle`, the canary lifecycle rule on
    /// `rpo-canary/` in every bucket.
    pub async fn create_replicated_buckets(
        &self,
        source: &str,
        source_region: &str,
        dests: &[(&str, &str)],
        rule_prefix: &str,
        lifecycle: bool,
    ) {
        use aws_sdk_s3::types::*;
        self.create_bucket(source, source_region, true).await;
        let mut conf = ReplicationConfiguration::builder()
            .role("arn:aws:iam::123456789012:role/s3-replication");
        for (i, (bucket, region)) in dests.iter().enumerate() {
            self.create_bucket(bucket, region, true).await;
            conf = conf.rules(
                ReplicationRule::builder()
                    .id(format!("to-{bucket}"))
                    .priority(i as i32 + 1)
                    .status(ReplicationRuleStatus::Enabled)
                    .filter(ReplicationRuleFilter::builder().prefix(rule_prefix).build())
                    .delete_marker_replication(
                        DeleteMarkerReplication::builder()
                            .status(DeleteMarkerReplicationStatus::Disabled)
                            .build(),
                    )
                    .destination(
                        Destination::builder()
                            .bucket(format!("arn:aws:s3:::{bucket}"))
                            // S3 publishes ReplicationLatency to CloudWatch
                            // for rules with replication metrics on.
                            .metrics(
                                Metrics::builder()
                                    .status(MetricsStatus::Enabled)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            );
        }
        self.s3(source_region)
            .await
            .put_bucket_replication()
            .bucket(source)
            .replication_configuration(conf.build().unwrap())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutBucketReplication {source}: {e:?}"));
        if lifecycle {
            self.put_lifecycle(source, source_region, "rpo-canary/")
                .await;
            for (bucket, region) in dests {
                self.put_lifecycle(bucket, region, "rpo-canary/").await;
            }
        }
    }

    /// S3 ground truth of source bucket `bucket`: (key, line) pairs.
    pub fn s3_ground_truth(&self, bucket: &str) -> Vec<Value> {
        self.ground_truth()
            .into_iter()
            .filter(|v| v["service"] == "s3" && v["bucket"] == bucket)
            .collect()
    }

    /// Stops the lab now (tests that own their lab).
    pub fn stop(&self) {
        let _ = Command::new(lab_cmd())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// A lab owned by one test stops when the test is done with it (or panics),
/// before its directory is removed: the watchdog that `--exit-with` starts
/// would find no state to stop once the directory is gone, and its servers
/// would outlive the test. (A `Lab::shared` lab is never dropped; its
/// watchdog stops it when the test process exits.)
impl Drop for Lab {
    fn drop(&mut self) {
        if self._tmp.is_some() {
            self.stop();
        }
    }
}

/// Parses shell `KEY=value` lines (values possibly single-quoted).
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// Undoes a fault when dropped (see `Lab::fault_until_drop`).
pub struct FaultGuard<'a> {
    lab: &'a Lab,
    undo: Vec<String>,
    done: bool,
}

impl FaultGuard<'_> {
    /// Undoes the fault now.
    pub fn undo(mut self) {
        self.run_undo();
    }

    fn run_undo(&mut self) {
        if !self.done {
            self.done = true;
            let args: Vec<&str> = self.undo.iter().map(String::as_str).collect();
            if std::thread::panicking() {
                // Best effort: a second panic while unwinding would abort.
                let _ = Command::new(lab_cmd())
                    .args(["fault", "--dir"])
                    .arg(&self.lab.dir)
                    .args(&args)
                    .output();
            } else {
                self.lab.fault(&args);
            }
        }
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        self.run_undo();
    }
}
