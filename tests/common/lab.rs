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

    /// Stops the lab now (tests that own their lab).
    pub fn stop(&self) {
        let _ = Command::new(lab_cmd())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .output();
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
