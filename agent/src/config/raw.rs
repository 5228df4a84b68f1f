//! The configuration exactly as written: serde structs that reject unknown
//! keys and wrong types, keeping spans so later errors can name a line.

use serde::Deserialize;
use toml::Spanned;

use super::error::{line_of, ConfigError};
use super::Origin;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Agent-wide settings.
    #[serde(default)]
    pub agent: RawAgent,
    /// The stores to measure; one `[[target]]` table each.
    #[serde(default)]
    pub target: Vec<Spanned<RawTarget>>,
    /// Agents that share their targets (one writer per target, by lease).
    pub fleet: Option<Spanned<RawFleet>>,
    /// CloudWatch Embedded Metric Format documents beside `/metrics`.
    pub emf: Option<Spanned<RawEmf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmf {
    /// `"stdout"` (default), `"tcp://HOST:PORT"` or `"udp://HOST:PORT"` (the CloudWatch agent).
    pub to: Option<Spanned<String>>,
    /// CloudWatch namespace of the metrics (default `RPOAgent`).
    pub namespace: Option<Spanned<String>>,
    /// One document per (target, replica) per this period (default `"60s"`, at least `"1s"`).
    pub every: Option<Spanned<String>>,
    /// 60 (standard) or 1 (high-resolution metrics).
    pub storage_resolution: Option<Spanned<i64>>,
    /// Dimension sets (default `[["Target", "ReplicaRegion"]]`); each set is billed as its own metrics.
    pub dimensions: Option<Spanned<Vec<Vec<Spanned<String>>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// Agents with the same fleet name share the targets.
    pub name: Option<Spanned<String>>,
    /// DynamoDB table of the leases (partition key `pk`, a string).
    pub table: Option<Spanned<String>>,
    /// The region of the lease table (one region; the DR region is best).
    pub region: Option<Spanned<String>>,
    /// How long a lease lasts unrenewed (default 20s); renewed every lease/4.
    pub lease: Option<Spanned<String>>,
    /// Custom DynamoDB endpoint for the lease table (VPC endpoint, local lab).
    pub endpoint_url: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Agent id used in canary keys: "auto" (ECS task id, else host name) or a fixed string.
    pub id: Option<Spanned<String>>,
    /// Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`, `/`).
    pub listen: Option<Spanned<String>>,
    /// Default RPO objective of every target.
    pub objective: Option<Spanned<String>>,
    /// Default canary interval of every target.
    pub interval: Option<Spanned<String>>,
    /// Default time after which an unseen canary is lost.
    pub timeout: Option<Spanned<String>>,
    /// How long SIGTERM waits for in-flight reads.
    pub shutdown_grace: Option<Spanned<String>>,
    /// Default period of AWS's own lag figures from CloudWatch (`"1m"`), or `"off"`.
    pub aws_reported_every: Option<Spanned<String>>,
    /// Exporter-toolkit web configuration file (TLS, basic auth) of the HTTP endpoints.
    pub web_config: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name; the `target` label of every metric.
    pub name: Option<Spanned<String>>,
    /// `dynamodb`, `s3`, `postgres`, `mysql` or `redis`.
    pub kind: Option<Spanned<String>>,
    /// DynamoDB: the global table's name.
    pub table: Option<Spanned<String>>,
    /// Where canaries are written.
    pub source: Option<Spanned<RawEndpoint>>,
    /// Where canaries are read back.
    #[serde(default)]
    pub replicas: Vec<Spanned<RawEndpoint>>,
    /// Time between canaries.
    pub interval: Option<Spanned<String>>,
    /// A canary unseen after this long is lost.
    pub timeout: Option<Spanned<String>>,
    /// RPO objective of this target (defaults to `[agent] objective`).
    pub objective: Option<Spanned<String>>,
    /// `one-way` (default) or `both` (DynamoDB global tables are multi-active).
    pub direction: Option<Spanned<String>>,
    /// S3: key prefix of canaries (default `rpo-canary/`).
    pub prefix: Option<Spanned<String>>,
    /// S3: delete our own source canaries once every replica has them.
    pub delete_seen: Option<bool>,
    /// Most canaries tracked at once per replica.
    pub max_pending: Option<Spanned<i64>>,
    /// SQL, Redis: how to authenticate.
    pub auth: Option<Spanned<RawAuth>>,
    /// SQL, Redis: PEM bundle of CAs to verify the server (e.g. the RDS bundle).
    pub ca_bundle: Option<Spanned<String>>,
    /// Redis: cluster mode enabled (one canary per shard).
    pub cluster: Option<bool>,
    /// DynamoDB, S3, Redis: period of AWS's own lag figures from CloudWatch, or `"off"`.
    pub aws_reported_every: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// AWS region, e.g. `ap-northeast-1`.
    pub region: Option<String>,
    /// S3 bucket in that region.
    pub bucket: Option<String>,
    /// SQL or Redis connection URL of the writer (source) or reader (replica) endpoint.
    pub url: Option<String>,
    /// Redis: the ElastiCache replication group of this endpoint.
    pub replication_group: Option<String>,
    /// Custom AWS endpoint (VPC endpoint, local lab).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Environment variable that holds the database password.
    pub password_env: Option<String>,
    /// Use IAM database authentication tokens.
    pub iam: Option<bool>,
    /// Secrets Manager secret holding the password.
    pub secret_arn: Option<String>,
}

/// Parses the text; type and unknown-key errors name their line and key.
pub fn parse(origin: &Origin, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let msg = e.message().trim().to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let key = rest.split('`').next().unwrap_or("").to_string();
            let expected = rest.split_once(", expected ").map(|(_, x)| x).unwrap_or("");
            return ConfigError::new(
                origin,
                line,
                &key,
                "unknown key",
                &format!("remove it or correct its spelling; valid keys here: {expected}"),
            );
        }
        let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
        ConfigError::new(
            origin,
            line,
            &key,
            &msg,
            "check the value's type and TOML syntax (strings in quotes, durations like \"5s\")",
        )
    })
}

/// The key on the line that holds byte offset `at`, for messages.
fn key_at(text: &str, at: usize) -> String {
    let start = text[..at.min(text.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = text[start..].lines().next().unwrap_or("");
    line.split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['[', ']'])
        .to_string()
}
