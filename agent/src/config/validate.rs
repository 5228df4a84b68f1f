//! The pure validation step: raw TOML → typed `Config`, or the first
//! problem found with its line, key and fix. Nothing here does I/O.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;

use super::error::{line_of, ConfigError};
use super::raw::{RawAuth, RawConfig, RawEndpoint, RawTarget};
use super::{duration, AgentConfig, Auth, Config, Direction, Endpoint, Kind, Origin, TargetConfig};

const MIN_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_LISTEN: &str = "0.0.0.0:9464";
const DEFAULT_OBJECTIVE: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_PENDING: usize = 1000;
const DEFAULT_AWS_REPORTED_EVERY: Duration = Duration::from_secs(60);
/// CloudWatch keeps these metrics at one datapoint per minute.
const MIN_AWS_REPORTED_EVERY: Duration = Duration::from_secs(60);

/// Shorthand to build errors at a span.
pub(super) struct Ctx<'a> {
    origin: &'a Origin,
    text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err_at(
        &self,
        at: Option<usize>,
        key: &str,
        problem: &str,
        fix: &str,
    ) -> ConfigError {
        ConfigError::new(
            self.origin,
            at.map(|a| line_of(self.text, a)),
            key,
            problem,
            fix,
        )
    }

    /// Offset of the line that sets `key` inside `span`, else the span's start.
    fn key_in(&self, span: std::ops::Range<usize>, key: &str) -> usize {
        // The span of an array-of-tables entry may cover only its header, so
        // search until the next table header.
        let body = &self.text[span.start..];
        let mut off = 0;
        for (i, line) in body.split_inclusive('\n').enumerate() {
            let t = line.trim_start();
            if i > 0 && t.starts_with('[') && !t.starts_with("[{") {
                break;
            }
            if t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return span.start + off;
            }
            off += line.len();
        }
        span.start
    }

    fn duration(&self, v: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        duration::parse(v.get_ref()).map_err(|p| {
            self.err_at(
                Some(v.span().start),
                key,
                &p,
                "use a number followed by a unit: ms, s, m or h",
            )
        })
    }

    pub(super) fn opt_duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        v.as_ref().map_or(Ok(default), |v| self.duration(v, key))
    }
}

/// Validates the raw configuration.
pub fn validate(origin: &Origin, text: &str, raw: &RawConfig) -> Result<Config, ConfigError> {
    let cx = Ctx { origin, text };
    let a = &raw.agent;
    let id = match a.id.as_ref().map(|s| s.get_ref().trim()) {
        None | Some("auto") => None,
        Some("") => {
            return Err(cx.err_at(
                a.id.as_ref().map(|s| s.span().start),
                "agent.id",
                "empty id",
                "set a short id such as \"dr-agent-1\", or \"auto\"",
            ))
        }
        Some(s) if s.contains('#') || s.contains('/') => {
            return Err(cx.err_at(
                a.id.as_ref().map(|s| s.span().start),
                "agent.id",
                "the id may not contain '#' or '/' (they separate parts of canary keys)",
                "use letters, digits, '-', '_' or '.'",
            ))
        }
        Some(s) => Some(s.to_string()),
    };
    let listen_text = a
        .listen
        .as_ref()
        .map(|s| s.get_ref().as_str())
        .unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().map_err(|_| {
        cx.err_at(
            a.listen.as_ref().map(|s| s.span().start),
            "agent.listen",
            &format!("`{listen_text}` is not an address"),
            "write IP:PORT, e.g. \"0.0.0.0:9464\" or \"127.0.0.1:9464\"",
        )
    })?;
    let objective = cx.opt_duration(&a.objective, "agent.objective", DEFAULT_OBJECTIVE)?;
    positive(&cx, &a.objective, "agent.objective", objective)?;
    let interval = cx.opt_duration(&a.interval, "agent.interval", DEFAULT_INTERVAL)?;
    let timeout = cx.opt_duration(&a.timeout, "agent.timeout", DEFAULT_TIMEOUT)?;
    let shutdown_grace =
        cx.opt_duration(&a.shutdown_grace, "agent.shutdown_grace", DEFAULT_GRACE)?;
    let aws_reported_every = reported_every(
        &cx,
        &a.aws_reported_every,
        "agent.aws_reported_every",
        Some(DEFAULT_AWS_REPORTED_EVERY),
    )?;
    let defaults = Defaults {
        objective,
        interval,
        timeout,
        aws_reported_every,
    };

    if raw.target.is_empty() {
        return Err(cx.err_at(
            None,
            "target",
            "no [[target]] is configured",
            "add at least one [[target]] table (see the README's configuration reference)",
        ));
    }
    let mut names = HashSet::new();
    let mut targets = Vec::new();
    for t in &raw.target {
        let tc = target(&cx, t, &defaults)?;
        if !names.insert(tc.name.clone()) {
            return Err(cx.err_at(
                t.get_ref().name.as_ref().map(|n| n.span().start),
                "target.name",
                &format!("two targets are named `{}`", tc.name),
                "give every target a unique name: it is the `target` label of the metrics",
            ));
        }
        targets.push(tc);
    }
    let fleet = raw
        .fleet
        .as_ref()
        .map(|f| super::fleet::fleet(&cx, f))
        .transpose()?;
    let emf = raw
        .emf
        .as_ref()
        .map(|e| super::emf::emf(&cx, e))
        .transpose()?;
    let web_config = match &a.web_config {
        None => None,
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(cx.err_at(
                Some(v.span().start),
                "agent.web_config",
                "empty path",
                "name the exporter-toolkit web configuration file, e.g. \"/etc/rpo-agent/web.yml\", or leave the key out",
            ))
        }
        Some(v) => Some(std::path::PathBuf::from(v.get_ref().trim())),
    };
    Ok(Config {
        agent: AgentConfig {
            id,
            listen,
            shutdown_grace,
            web_config,
        },
        targets,
        fleet,
        emf,
    })
}

struct Defaults {
    objective: Duration,
    interval: Duration,
    timeout: Duration,
    aws_reported_every: Option<Duration>,
}

/// `"off"` (None), or a period of at least a minute.
fn reported_every(
    cx: &Ctx,
    v: &Option<Spanned<String>>,
    key: &str,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    let Some(sp) = v else { return Ok(default) };
    if sp.get_ref().trim() == "off" {
        return Ok(None);
    }
    let d = cx.duration(sp, key)?;
    if d < MIN_AWS_REPORTED_EVERY {
        return Err(cx.err_at(
            Some(sp.span().start),
            key,
            &format!(
                "{} is below a minute: CloudWatch has one datapoint per minute for these metrics, and every read is billed per metric",
                humantime::format_duration(d)
            ),
            "use \"1m\" or more, or \"off\"",
        ));
    }
    Ok(Some(d))
}

fn positive(
    cx: &Ctx,
    v: &Option<Spanned<String>>,
    key: &str,
    d: Duration,
) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(cx.err_at(
            v.as_ref().map(|s| s.span().start),
            key,
            "must be greater than zero",
            "set an objective such as \"60s\" or \"15m\"",
        ));
    }
    Ok(())
}

fn target(
    cx: &Ctx,
    spanned: &Spanned<RawTarget>,
    d: &Defaults,
) -> Result<TargetConfig, ConfigError> {
    let at = Some(spanned.span().start);
    let t = spanned.get_ref();
    let name = t.name.as_ref().ok_or_else(|| {
        cx.err_at(
            at,
            "target.name",
            "this target has no name",
            "add name = \"orders\" (unique, used as the metric label)",
        )
    })?;
    let name_s = name.get_ref().trim().to_string();
    if name_s.is_empty()
        || !name_s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(cx.err_at(Some(name.span().start), "target.name", &format!("`{name_s}` is not a valid name"),
            "use letters, digits, '-', '_' or '.' (it becomes part of canary keys and metric labels)"));
    }
    let key = |k: &str| format!("target[{name_s}].{k}");
    let kind_v = t.kind.as_ref().ok_or_else(|| {
        cx.err_at(
            at,
            &key("kind"),
            "missing",
            "add kind = \"dynamodb\" (or \"s3\", \"postgres\", \"mysql\", \"redis\")",
        )
    })?;
    let kind = match kind_v.get_ref().as_str() {
        "dynamodb" => Kind::Dynamodb,
        "s3" => Kind::S3,
        "postgres" => Kind::Postgres,
        "mysql" => Kind::Mysql,
        "redis" | "valkey" => Kind::Redis,
        other => {
            return Err(cx.err_at(
                Some(kind_v.span().start),
                &key("kind"),
                &format!("unknown kind `{other}`"),
                "use one of \"dynamodb\", \"s3\", \"postgres\", \"mysql\", \"redis\"",
            ))
        }
    };
    let interval = cx.opt_duration(&t.interval, &key("interval"), d.interval)?;
    if interval < MIN_INTERVAL {
        return Err(cx.err_at(
            t.interval.as_ref().map(|s| s.span().start),
            &key("interval"),
            &format!(
                "{} is below the minimum of 100ms",
                humantime::format_duration(interval)
            ),
            "canaries more often than every 100ms only add cost; use \"1s\" or more",
        ));
    }
    let timeout = cx.opt_duration(&t.timeout, &key("timeout"), d.timeout)?;
    if timeout <= interval {
        return Err(cx.err_at(
            t.timeout.as_ref().map(|s| s.span().start).or(at),
            &key("timeout"),
            "must be longer than the interval",
            "set timeout to many intervals, e.g. \"10m\"",
        ));
    }
    let objective = cx.opt_duration(&t.objective, &key("objective"), d.objective)?;
    positive(cx, &t.objective, &key("objective"), objective)?;

    let source_sp = t.source.as_ref().ok_or_else(|| {
        cx.err_at(
            at,
            &key("source"),
            "missing",
            "add source = { region = \"ap-northeast-1\", … }",
        )
    })?;
    let source = endpoint(cx, source_sp, kind, &key("source"))?;
    if t.replicas.is_empty() {
        return Err(cx.err_at(
            at,
            &key("replicas"),
            "no replica is configured",
            "add replicas = [{ region = \"ap-northeast-3\", … }]",
        ));
    }
    let mut replicas = Vec::new();
    for r in &t.replicas {
        let rep = endpoint(cx, r, kind, &key("replicas"))?;
        let same = match kind {
            Kind::Dynamodb => rep.region == source.region,
            Kind::S3 => rep.region == source.region && rep.bucket == source.bucket,
            Kind::Postgres | Kind::Mysql | Kind::Redis => rep.url == source.url,
        };
        if same || replicas.iter().any(|x: &Endpoint| x == &rep) {
            return Err(cx.err_at(
                Some(r.span().start),
                &key("replicas"),
                "a replica is the same as the source (or listed twice)",
                match kind {
                    Kind::Dynamodb => "a replica must be another region of the global table",
                    Kind::S3 => "name the destination bucket of the replication rule",
                    _ => "give the reader endpoint of the secondary cluster",
                },
            ));
        }
        replicas.push(rep);
    }

    let only = |v: bool, k: &str, kinds: &str| -> Result<(), ConfigError> {
        if v {
            return Err(cx.err_at(
                Some(cx.key_in(spanned.span(), k)),
                &key(k),
                &format!("not used by kind `{}`", kind.as_str()),
                &format!("remove it (it applies to {kinds} targets only)"),
            ));
        }
        Ok(())
    };
    let table = match kind {
        Kind::Dynamodb => {
            let tb = t.table.as_ref().ok_or_else(|| {
                cx.err_at(
                    at,
                    &key("table"),
                    "missing",
                    "add table = \"<global table name>\"",
                )
            })?;
            Some(tb.get_ref().clone())
        }
        _ => {
            only(t.table.is_some(), "table", "dynamodb")?;
            None
        }
    };
    let direction = match t.direction.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("one-way") => Direction::OneWay,
        Some("both") if kind == Kind::Dynamodb => Direction::Both,
        Some(other) => {
            return Err(cx.err_at(
                t.direction.as_ref().map(|s| s.span().start),
                &key("direction"),
                &format!("`{other}` is not a direction for kind `{}`", kind.as_str()),
                "use \"one-way\", or \"both\" for DynamoDB global tables",
            ))
        }
    };
    if kind != Kind::S3 {
        only(t.prefix.is_some(), "prefix", "s3")?;
        only(t.delete_seen.is_some(), "delete_seen", "s3")?;
    }
    let prefix = t
        .prefix
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "rpo-canary/".into());
    let max_pending = match &t.max_pending {
        None => DEFAULT_MAX_PENDING,
        Some(v) if *v.get_ref() >= 1 => *v.get_ref() as usize,
        Some(v) => {
            return Err(cx.err_at(
                Some(v.span().start),
                &key("max_pending"),
                "must be at least 1",
                "leave it out (default 1000) or set a positive number",
            ))
        }
    };
    let sql = matches!(kind, Kind::Postgres | Kind::Mysql);
    if !kind.by_url() {
        only(t.auth.is_some(), "auth", "postgres, mysql and redis")?;
        only(
            t.ca_bundle.is_some(),
            "ca_bundle",
            "postgres, mysql and redis",
        )?;
    }
    if kind != Kind::Redis {
        only(t.cluster.is_some(), "cluster", "redis")?;
    }
    if sql {
        // Aurora's own figures come from the database, not CloudWatch.
        only(
            t.aws_reported_every.is_some(),
            "aws_reported_every",
            "dynamodb, s3 and redis",
        )?;
    }
    let aws_reported_every = match sql {
        true => None,
        false => reported_every(
            cx,
            &t.aws_reported_every,
            &key("aws_reported_every"),
            d.aws_reported_every,
        )?,
    };
    let auth = match &t.auth {
        None => Auth::Url,
        Some(a) => auth(cx, a, &key("auth"))?,
    };
    if kind == Kind::Redis {
        redis_iam(cx, spanned, &auth, &source, &replicas, &key)?;
    }
    Ok(TargetConfig {
        name: name_s,
        kind,
        table,
        source,
        replicas,
        interval,
        timeout,
        objective,
        direction,
        prefix,
        delete_seen: t.delete_seen.unwrap_or(false),
        max_pending,
        auth,
        ca_bundle: t.ca_bundle.as_ref().map(|s| s.get_ref().clone()),
        cluster: t.cluster.unwrap_or(false),
        aws_reported_every,
    })
}

fn endpoint(
    cx: &Ctx,
    sp: &Spanned<RawEndpoint>,
    kind: Kind,
    key: &str,
) -> Result<Endpoint, ConfigError> {
    let at = Some(sp.span().start);
    let e = sp.get_ref();
    let region = e.region.clone().ok_or_else(|| {
        cx.err_at(
            at,
            &format!("{key}.region"),
            "missing",
            "add region = \"ap-northeast-1\" (the AWS region of this side)",
        )
    })?;
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(cx.err_at(
            at,
            &format!("{key}.region"),
            &format!("`{region}` is not a region name"),
            "write it like \"ap-northeast-1\"",
        ));
    }
    let need = |v: &Option<String>, field: &str, fix: &str| -> Result<(), ConfigError> {
        if v.is_none() {
            return Err(cx.err_at(
                at,
                &format!("{key}.{field}"),
                &format!("missing for kind `{}`", kind.as_str()),
                fix,
            ));
        }
        Ok(())
    };
    let forbid = |v: &Option<String>, field: &str| -> Result<(), ConfigError> {
        if v.is_some() {
            return Err(cx.err_at(
                at,
                &format!("{key}.{field}"),
                &format!("not used by kind `{}`", kind.as_str()),
                "remove it",
            ));
        }
        Ok(())
    };
    match kind {
        Kind::Dynamodb => {
            forbid(&e.bucket, "bucket")?;
            forbid(&e.url, "url")?;
            forbid(&e.replication_group, "replication_group")?;
        }
        Kind::S3 => {
            need(&e.bucket, "bucket", "add bucket = \"<bucket name>\"")?;
            forbid(&e.url, "url")?;
            forbid(&e.replication_group, "replication_group")?;
        }
        Kind::Redis => {
            need(
                &e.url,
                "url",
                "add url = \"rediss://primary.example.cache.amazonaws.com:6379\"",
            )?;
            forbid(&e.bucket, "bucket")?;
            let url = e.url.as_deref().unwrap_or("");
            // The client's own parser, so the probe can never meet a URL it refuses.
            let parses = redis::IntoConnectionInfo::into_connection_info(url).is_ok();
            if !(url.starts_with("rediss://") || url.starts_with("redis://")) || !parses {
                return Err(cx.err_at(
                    at,
                    &format!("{key}.url"),
                    &format!("`{}` is not a redis URL", super::redact_url(url)),
                    "write it like \"rediss://user@host:6379\" (rediss:// is TLS; redis:// only for a store without TLS in transit)",
                ));
            }
        }
        Kind::Postgres | Kind::Mysql => {
            forbid(&e.replication_group, "replication_group")?;
            need(
                &e.url,
                "url",
                "add url = \"postgres://user@host:5432/db\" (or mysql://…)",
            )?;
            forbid(&e.bucket, "bucket")?;
            let url = e.url.as_deref().unwrap_or("");
            let ok = match kind {
                Kind::Postgres => {
                    url.starts_with("postgres://") || url.starts_with("postgresql://")
                }
                _ => url.starts_with("mysql://") || url.starts_with("mariadb://"),
            };
            if !ok {
                return Err(cx.err_at(
                    at,
                    &format!("{key}.url"),
                    &format!(
                        "`{}` is not a {} URL",
                        super::redact_url(url),
                        kind.as_str()
                    ),
                    "start it with postgres:// for postgres targets, mysql:// for mysql targets",
                ));
            }
        }
    }
    if let Some(u) = &e.endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(cx.err_at(
                at,
                &format!("{key}.endpoint_url"),
                &format!("`{u}` is not an http(s) URL"),
                "write it like \"https://dynamodb.ap-northeast-1.amazonaws.com\"",
            ));
        }
    }
    Ok(Endpoint {
        region,
        bucket: e.bucket.clone(),
        url: e.url.clone(),
        replication_group: e.replication_group.clone(),
        endpoint_url: e.endpoint_url.clone(),
    })
}

/// Redis with `auth = { iam = true }`: the token is signed for a user (the
/// URL's) and a replication group (each endpoint's), so both must be there.
fn redis_iam(
    cx: &Ctx,
    t: &Spanned<RawTarget>,
    auth: &Auth,
    source: &Endpoint,
    replicas: &[Endpoint],
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if *auth != Auth::Iam {
        return Ok(());
    }
    let at = Some(t.span().start);
    let sides = std::iter::once(("source", source)).chain(replicas.iter().map(|r| ("replicas", r)));
    for (side, e) in sides {
        let url = e.url.as_deref().unwrap_or("");
        let user = url::Url::parse(url)
            .map(|u| u.username().to_string())
            .unwrap_or_default();
        if user.is_empty() {
            return Err(cx.err_at(
                at,
                &key(&format!("{side}.url")),
                &format!(
                    "`{}` names no user, and IAM authentication signs its token for one",
                    super::redact_url(url)
                ),
                "put the ElastiCache user id in the URL: rediss://rpo-agent@host:6379",
            ));
        }
        if e.replication_group.is_none() {
            return Err(cx.err_at(
                at,
                &key(&format!("{side}.replication_group")),
                "missing: IAM authentication signs its token for the replication group",
                "add replication_group = \"<the ElastiCache replication group id of this endpoint>\"",
            ));
        }
    }
    Ok(())
}

fn auth(cx: &Ctx, sp: &Spanned<RawAuth>, key: &str) -> Result<Auth, ConfigError> {
    let a = sp.get_ref();
    let at = Some(sp.span().start);
    let n = a.password_env.is_some() as u8
        + a.iam.unwrap_or(false) as u8
        + a.secret_arn.is_some() as u8;
    if n != 1 {
        return Err(cx.err_at(
            at,
            key,
            "give exactly one of password_env, iam = true, secret_arn",
            "e.g. auth = { password_env = \"RPO_DB_PASSWORD\" }",
        ));
    }
    Ok(if let Some(v) = &a.password_env {
        Auth::PasswordEnv(v.clone())
    } else if let Some(arn) = &a.secret_arn {
        if !arn.starts_with("arn:") {
            return Err(cx.err_at(
                at,
                &format!("{key}.secret_arn"),
                "not an ARN",
                "copy the secret's full ARN (arn:aws:secretsmanager:…)",
            ));
        }
        Auth::SecretArn(arn.clone())
    } else {
        Auth::Iam
    })
}
