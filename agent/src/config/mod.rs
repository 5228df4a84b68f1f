//! Configuration: one TOML document, parsed strictly, then validated purely.
//!
//! Parsing (`raw`) only checks shape: unknown keys and wrong types are errors
//! at that stage. `validate` turns the raw form into the typed `Config` the
//! rest of the agent uses, without touching the network, so `rpo-agent run`
//! fails in milliseconds on a typo instead of after minutes of retries.

mod duration;
mod emf;
mod error;
mod fleet;
mod raw;
mod validate;

use std::path::Path;
use std::time::Duration;

pub use error::ConfigError;
pub use validate::validate;

/// Where the configuration text came from; named in every error.
#[derive(Debug, Clone)]
pub enum Origin {
    File(String),
    Env(&'static str),
    Inline,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{p}"),
            Origin::Env(v) => write!(f, "${v}"),
            Origin::Inline => write!(f, "<config>"),
        }
    }
}

/// The environment variable that may carry the whole configuration (ECS).
pub const CONFIG_ENV: &str = "RPO_AGENT_CONFIG";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub agent: AgentConfig,
    pub targets: Vec<TargetConfig>,
    /// `[fleet]`: share the targets with the other agents of the fleet.
    pub fleet: Option<FleetConfig>,
    /// `[emf]`: CloudWatch Embedded Metric Format documents.
    pub emf: Option<EmfConfig>,
}

/// `[emf]`: one CloudWatch EMF document per (target, replica) per `every`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmfConfig {
    pub to: EmfTo,
    pub namespace: String,
    pub every: Duration,
    /// 60 (standard resolution) or 1 (high resolution).
    pub storage_resolution: u32,
    /// Dimension sets; every set is billed as its own custom metrics.
    pub dimensions: Vec<Vec<EmfDimension>>,
}

/// Where EMF documents go, and what their dimensions can be (the exporter's
/// types: the config names them, the exporter writes them).
pub use rpo_exporter::emf::{Destination as EmfTo, Dimension as EmfDimension};

/// `[fleet]`: agents of one name share the targets; per target, the agent
/// that holds the lease (an item in `table`) writes the canaries.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Takes the agent id's place in canary keys.
    pub name: String,
    /// DynamoDB table of the leases, partition key `pk` (string).
    pub table: String,
    pub region: String,
    /// Unrenewed this long, a lease may be taken over; renewed every lease/4.
    pub lease: Duration,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `None` means "auto": ECS task id, else the host name.
    pub id: Option<String>,
    pub listen: std::net::SocketAddr,
    /// How long SIGTERM waits for in-flight reads before exiting.
    pub shutdown_grace: Duration,
    /// Exporter-toolkit web configuration file (TLS, basic auth), read at start-up.
    pub web_config: Option<std::path::PathBuf>,
}

/// The kinds of store the agent can probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dynamodb,
    S3,
    Postgres,
    Mysql,
    /// Valkey / Redis OSS: ElastiCache Global Datastore, MemoryDB
    /// multi-region, plain replicas.
    Redis,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dynamodb => "dynamodb",
            Kind::S3 => "s3",
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
            Kind::Redis => "redis",
        }
    }

    /// SQL and Redis stores have one writer that can move (failover);
    /// DynamoDB global tables are multi-active and S3 buckets are always
    /// writable.
    pub fn single_writer(self) -> bool {
        matches!(self, Kind::Postgres | Kind::Mysql | Kind::Redis)
    }

    /// Kinds that connect by URL and authenticate (`auth`, `ca_bundle`).
    pub fn by_url(self) -> bool {
        self.single_writer()
    }
}

/// Which way canaries flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Write in the source, read in every replica.
    OneWay,
    /// Also write in every replica and read in the source (multi-active stores).
    Both,
}

/// One side of a replication: a region plus the store's address there.
/// `Debug` shows the URL redacted: a config dumped with `{:?}` leaks nothing.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    pub region: String,
    /// S3 bucket.
    pub bucket: Option<String>,
    /// SQL or Redis connection URL (may hold a password: never print it raw).
    pub url: Option<String>,
    /// Redis: the ElastiCache replication group behind this endpoint (IAM
    /// auth tokens, CloudWatch `GlobalDatastoreReplicationLag`).
    pub replication_group: Option<String>,
    /// Overrides the AWS endpoint (VPC endpoint, local lab).
    pub endpoint_url: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("replication_group", &self.replication_group)
            .field("endpoint_url", &self.endpoint_url)
            .finish()
    }
}

/// How SQL and Redis targets authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// The password is in the URL, or none is needed.
    Url,
    /// The password is read from this environment variable.
    PasswordEnv(String),
    /// IAM authentication tokens (RDS `rds-db:connect`, ElastiCache
    /// `elasticache:Connect`).
    Iam,
    /// A Secrets Manager secret (JSON with `password` and optionally
    /// `username`, or a plain string).
    SecretArn(String),
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub kind: Kind,
    /// DynamoDB table.
    pub table: Option<String>,
    pub source: Endpoint,
    pub replicas: Vec<Endpoint>,
    pub interval: Duration,
    pub timeout: Duration,
    pub objective: Duration,
    pub direction: Direction,
    /// S3 key prefix of canaries.
    pub prefix: String,
    /// S3: delete our own source canaries once every replica saw them.
    pub delete_seen: bool,
    /// Most canaries tracked at once per replica; older ones are given up.
    pub max_pending: usize,
    pub auth: Auth,
    /// SQL, Redis: a PEM CA bundle for TLS verification.
    pub ca_bundle: Option<String>,
    /// Redis: cluster mode (one canary per shard; the target's RPO is the
    /// worst shard's).
    pub cluster: bool,
    /// How often AWS's own lag figures are read from CloudWatch (DynamoDB,
    /// S3, Redis); `None` when `"off"` (and for SQL targets, whose Aurora
    /// figures come from the database itself). GetMetricData is billed per
    /// metric.
    pub aws_reported_every: Option<Duration>,
}

/// Reads the configuration from `path`, or from `$RPO_AGENT_CONFIG` when
/// `path` is `None`, then validates it.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (origin, text) = match path {
        Some(p) => {
            let origin = Origin::File(p.display().to_string());
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(&origin, None, "--config", &format!("cannot read the file: {e}"),
                    "pass the path of a readable TOML file, or put the whole configuration in $RPO_AGENT_CONFIG")
            })?;
            (origin, text)
        }
        None => {
            let origin = Origin::Env(CONFIG_ENV);
            let text = std::env::var(CONFIG_ENV).map_err(|_| {
                ConfigError::new(
                    &origin,
                    None,
                    "--config",
                    "no configuration given",
                    "pass --config FILE, or set RPO_AGENT_CONFIG to the TOML text",
                )
            })?;
            (origin, text)
        }
    };
    parse(&origin, &text)
}

/// Parses and validates configuration text.
pub fn parse(origin: &Origin, text: &str) -> Result<Config, ConfigError> {
    let raw = raw::parse(origin, text)?;
    validate(origin, text, &raw)
}

/// Removes the password from a connection URL, for logs and errors.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, host) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        match auth {
            Some(a) => {
                let user = a.split(':').next().unwrap_or("");
                let hidden = if a.contains(':') { ":***" } else { "" };
                let host = redact_query(host);
                format!("{scheme}://{user}{hidden}@{host}")
            }
            None => format!("{scheme}://{}", redact_query(host)),
        }
    } else {
        "<unparsable url>".to_string()
    }
}

fn redact_query(s: &str) -> String {
    match s.split_once('?') {
        Some((base, q)) => {
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    // `password`, and `sslpassword` (a client key's passphrase).
                    Some((k, _)) if k.to_ascii_lowercase().ends_with("password") => {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", parts.join("&"))
        }
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
