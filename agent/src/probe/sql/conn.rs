//! Connection set-up: URL → connect options (TLS, credentials) → a small pool
//! that survives server restarts; and the handful of queries the probe runs.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::ConnectOptions;

use super::errors::{from_sqlx, timeout};
use super::{iam, Engine};
use crate::config::Auth;
use crate::error::ProbeError;
use crate::probe::credentials::{password_of_secret, Credentials};

/// Longest wait for a connection from the pool (this includes connecting,
/// and retrying a refused connection): the canary interval, within 1–3 s,
/// so a lost writer is noticed within a round or two.
pub fn acquire_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(3))
}
/// Longest wait for one query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of either engine.
#[derive(Clone)]
pub enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// Connect options of either engine.
#[derive(Clone)]
pub enum Options {
    Pg(PgConnectOptions),
    My(MySqlConnectOptions),
}

/// Is `key` (any of `names`) among the URL's query parameters?
fn has_param(url: &str, names: &[&str]) -> bool {
    url.split_once('?').is_some_and(|(_, q)| {
        q.split('&').any(|kv| {
            let k = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
            names.iter().any(|n| k.eq_ignore_ascii_case(n))
        })
    })
}

/// Host, port and user of a URL (for IAM tokens), as the driver parsed them.
pub fn host_port_user(o: &Options) -> (String, u16, String) {
    match o {
        Options::Pg(o) => (
            o.get_host().to_string(),
            o.get_port(),
            o.get_username().to_string(),
        ),
        Options::My(o) => (
            o.get_host().to_string(),
            o.get_port(),
            o.get_username().to_string(),
        ),
    }
}

/// Parses `url` and applies the TLS policy: the URL's own `sslmode=` /
/// `ssl-mode=` if it has one, else verify-full / VERIFY_IDENTITY;
/// `ca_bundle` replaces the root certificates.
pub fn options(
    engine: Engine,
    url: &str,
    ca_bundle: Option<&str>,
    what: &str,
) -> Result<Options, ProbeError> {
    let bad = |e: sqlx::Error| {
        ProbeError::config(
            "connect",
            "bad_url",
            format!("{what}: the URL does not parse: {e}"),
        )
    };
    Ok(match engine {
        Engine::Postgres => {
            let mut o = PgConnectOptions::from_str(url).map_err(bad)?;
            if !has_param(url, &["sslmode", "ssl-mode"]) {
                o = o.ssl_mode(PgSslMode::VerifyFull);
            }
            if let Some(ca) = ca_bundle {
                o = o.ssl_root_cert(ca);
            }
            Options::Pg(o.application_name("rpo-agent").disable_statement_logging())
        }
        Engine::Mysql => {
            let url = match url.strip_prefix("mariadb://") {
                Some(rest) => format!("mysql://{rest}"),
                None => url.to_string(),
            };
            let mut o = MySqlConnectOptions::from_str(&url).map_err(bad)?;
            if !has_param(&url, &["ssl-mode", "sslmode"]) {
                o = o.ssl_mode(MySqlSslMode::VerifyIdentity);
            }
            if let Some(ca) = ca_bundle {
                o = o.ssl_ca(ca);
            }
            Options::My(o.disable_statement_logging())
        }
    })
}

impl Options {
    pub fn with_password(self, p: &str) -> Options {
        match self {
            Options::Pg(o) => Options::Pg(o.password(p)),
            Options::My(o) => Options::My(o.password(p)),
        }
    }
}

/// A small lazy pool: connects on first use, re-connects after a restart
/// (every checkout is tested first, so a dead connection is replaced).
pub fn pool(o: Options, acquire_timeout: Duration) -> Pool {
    match o {
        Options::Pg(o) => Pool::Pg(
            PgPoolOptions::new()
                .max_connections(2)
                .min_connections(0)
                .acquire_timeout(acquire_timeout)
                .idle_timeout(Duration::from_secs(120))
                .test_before_acquire(true)
                .connect_lazy_with(o),
        ),
        Options::My(o) => Pool::My(
            MySqlPoolOptions::new()
                .max_connections(2)
                .min_connections(0)
                .acquire_timeout(acquire_timeout)
                .idle_timeout(Duration::from_secs(120))
                .test_before_acquire(true)
                .connect_lazy_with(o),
        ),
    }
}

impl Pool {
    pub fn set_options(&self, o: Options) {
        match (self, o) {
            (Pool::Pg(p), Options::Pg(o)) => p.set_connect_options(o),
            (Pool::My(p), Options::My(o)) => p.set_connect_options(o),
            _ => unreachable!("engine mismatch"),
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Pg(p) => p.close().await,
            Pool::My(p) => p.close().await,
        }
    }

    fn engine(&self) -> Engine {
        match self {
            Pool::Pg(_) => Engine::Postgres,
            Pool::My(_) => Engine::Mysql,
        }
    }
}

async fn timed<T>(
    engine: Engine,
    op: &'static str,
    what: &str,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(from_sqlx(engine, op, what, &e)),
        Err(_) => Err(timeout(op, what, QUERY_TIMEOUT)),
    }
}

pub const PG_CREATE: &str = "CREATE TABLE IF NOT EXISTS rpo_canary (\n  agent_id text NOT NULL,\n  target text NOT NULL,\n  seq bigint NOT NULL,\n  written_at timestamptz NOT NULL,\n  PRIMARY KEY (agent_id, target)\n)";
pub const MYSQL_CREATE: &str = "CREATE TABLE IF NOT EXISTS rpo_canary (\n  agent_id VARCHAR(191) NOT NULL,\n  target VARCHAR(191) NOT NULL,\n  seq BIGINT UNSIGNED NOT NULL,\n  written_at TIMESTAMP(6) NOT NULL,\n  PRIMARY KEY (agent_id, target)\n) ENGINE=InnoDB";

const PG_UPSERT: &str = "INSERT INTO rpo_canary (agent_id, target, seq, written_at) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000000)) ON CONFLICT (agent_id, target) DO UPDATE SET seq = EXCLUDED.seq, written_at = EXCLUDED.written_at";
const MYSQL_UPSERT: &str = "INSERT INTO rpo_canary (agent_id, target, seq, written_at) VALUES (?, ?, ?, FROM_UNIXTIME(? / 1000000)) ON DUPLICATE KEY UPDATE seq = VALUES(seq), written_at = VALUES(written_at)";
const PG_READ: &str = "SELECT (SELECT seq FROM rpo_canary WHERE agent_id = $1 AND target = $2), pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'";
const MYSQL_READ: &str = "SELECT (SELECT CAST(seq AS SIGNED) FROM rpo_canary WHERE agent_id = ? AND target = ?), CAST(@@global.read_only OR @@global.innodb_read_only AS SIGNED)";
const PG_ROLE: &str =
    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'";
const MYSQL_ROLE: &str = "SELECT CAST(@@global.read_only OR @@global.innodb_read_only AS SIGNED)";
pub const PG_AURORA: &str = "SELECT aws_region::text, rpo_lag_in_msec::float8, durability_lag_in_msec::float8 FROM aurora_global_db_status()";
/// Aurora MySQL's counterpart of `aurora_global_db_status()`: one row per
/// cluster of the global database, cross-region figures (AWS's
/// AuroraMySQL.Reference.ISTables page). `aurora_global_db_instance_status`'s
/// `VISIBILITY_LAG_IN_MSEC` is not used: in a secondary cluster it is a
/// reader's lag behind that cluster's own volume, not behind the primary
/// region. The primary's row shows 0 (PostgreSQL's shows -1); it is never
/// read, as only replica regions are looked up.
pub const MYSQL_AURORA: &str = "SELECT CAST(AWS_REGION AS CHAR), CAST(RPO_LAG_IN_MILLISECONDS AS DOUBLE), CAST(DURABILITY_LAG_IN_MILLISECONDS AS DOUBLE) FROM information_schema.aurora_global_db_status";

/// Upserts the one canary row of (agent, target).
pub async fn upsert(
    pool: &Pool,
    what: &str,
    agent: &str,
    target: &str,
    seq: u64,
    written_at_us: u64,
) -> Result<(), ProbeError> {
    let e = pool.engine();
    let (seq, at) = (seq as i64, written_at_us as f64);
    match pool {
        Pool::Pg(p) => {
            let q = sqlx::query(PG_UPSERT)
                .bind(agent)
                .bind(target)
                .bind(seq)
                .bind(at);
            timed(e, "write", what, q.execute(p)).await?;
        }
        Pool::My(p) => {
            let q = sqlx::query(MYSQL_UPSERT)
                .bind(agent)
                .bind(target)
                .bind(seq)
                .bind(at);
            timed(e, "write", what, q.execute(p)).await?;
        }
    }
    Ok(())
}

/// Reads the canary's seq and whether the node is read-only.
pub async fn read(
    pool: &Pool,
    what: &str,
    agent: &str,
    target: &str,
) -> Result<(Option<u64>, bool), ProbeError> {
    let e = pool.engine();
    let (seq, read_only) = match pool {
        Pool::Pg(p) => {
            let q = sqlx::query_as::<_, (Option<i64>, Option<bool>)>(PG_READ)
                .bind(agent)
                .bind(target);
            let (s, ro) = timed(e, "read", what, q.fetch_one(p)).await?;
            (s, ro.unwrap_or(true))
        }
        Pool::My(p) => {
            let q = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(MYSQL_READ)
                .bind(agent)
                .bind(target);
            let (s, ro) = timed(e, "read", what, q.fetch_one(p)).await?;
            (s, ro.unwrap_or(1) != 0)
        }
    };
    Ok((seq.map(|s| s as u64), read_only))
}

const PG_STORED: &str = "SELECT seq, (extract(epoch FROM written_at) * 1000000)::bigint FROM rpo_canary WHERE agent_id = $1 AND target = $2";
const MYSQL_STORED: &str = "SELECT CAST(seq AS SIGNED), CAST(UNIX_TIMESTAMP(written_at) * 1000000 AS SIGNED) FROM rpo_canary WHERE agent_id = ? AND target = ?";

/// The canary row of (agent, target): (seq, written_at in µs), if any.
pub async fn stored(
    pool: &Pool,
    what: &str,
    agent: &str,
    target: &str,
) -> Result<Option<(u64, u64)>, ProbeError> {
    let e = pool.engine();
    let row = match pool {
        Pool::Pg(p) => {
            let q = sqlx::query_as::<_, (i64, i64)>(PG_STORED)
                .bind(agent)
                .bind(target);
            timed(e, "read", what, q.fetch_optional(p)).await?
        }
        Pool::My(p) => {
            let q = sqlx::query_as::<_, (i64, i64)>(MYSQL_STORED)
                .bind(agent)
                .bind(target);
            timed(e, "read", what, q.fetch_optional(p)).await?
        }
    };
    Ok(row.map(|(s, at)| (s as u64, at as u64)))
}

/// Is the node read-only (a standby, a reader, `read_only=1`)?
pub async fn read_only(pool: &Pool, what: &str) -> Result<bool, ProbeError> {
    let e = pool.engine();
    match pool {
        Pool::Pg(p) => {
            let q = sqlx::query_scalar::<_, Option<bool>>(PG_ROLE);
            Ok(timed(e, "role", what, q.fetch_one(p))
                .await?
                .unwrap_or(true))
        }
        Pool::My(p) => {
            let q = sqlx::query_scalar::<_, Option<i64>>(MYSQL_ROLE);
            Ok(timed(e, "role", what, q.fetch_one(p)).await?.unwrap_or(1) != 0)
        }
    }
}

/// Creates the canary table (idempotent).
pub async fn create_table(pool: &Pool, what: &str) -> Result<(), ProbeError> {
    let e = pool.engine();
    match pool {
        Pool::Pg(p) => {
            timed(e, "init", what, sqlx::query(PG_CREATE).execute(p)).await?;
        }
        Pool::My(p) => {
            timed(e, "init", what, sqlx::query(MYSQL_CREATE).execute(p)).await?;
        }
    }
    Ok(())
}

/// Aurora's own lag figures per region: (region, CloudWatch-style metric
/// name, seconds). `Err(Some(msg))`: the view does not exist here (not an
/// Aurora global database); `Err(None)`: a passing failure.
/// Both engines' views give (region, RPO lag ms, durability lag ms) per
/// cluster; they become the CloudWatch names AWS gives the same figures.
fn push_aurora_rows(
    out: &mut Vec<(String, &'static str, f64)>,
    rows: Vec<(Option<String>, Option<f64>, Option<f64>)>,
) {
    for (region, rpo, durability) in rows {
        let Some(region) = region else { continue };
        if let Some(ms) = rpo {
            out.push((region.clone(), "AuroraGlobalDBRPOLag", ms / 1e3));
        }
        if let Some(ms) = durability {
            out.push((region, "AuroraGlobalDBReplicationLag", ms / 1e3));
        }
    }
}

pub async fn aurora_lags(pool: &Pool) -> Result<Vec<(String, &'static str, f64)>, Option<String>> {
    let classify = |e: sqlx::Error| match e {
        sqlx::Error::Database(db) => Some(db.message().to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    match pool {
        Pool::Pg(p) => {
            let q = sqlx::query_as::<_, (Option<String>, Option<f64>, Option<f64>)>(PG_AURORA);
            let rows = tokio::time::timeout(QUERY_TIMEOUT, q.fetch_all(p))
                .await
                .map_err(|_| None)?
                .map_err(classify)?;
            push_aurora_rows(&mut out, rows);
        }
        Pool::My(p) => {
            let q = sqlx::query_as::<_, (Option<String>, Option<f64>, Option<f64>)>(MYSQL_AURORA);
            let rows = tokio::time::timeout(QUERY_TIMEOUT, q.fetch_all(p))
                .await
                .map_err(|_| None)?
                .map_err(classify)?;
            push_aurora_rows(&mut out, rows);
        }
    }
    Ok(out)
}

impl Credentials {
    /// The password to use for a node (None: keep the URL's own, or none).
    /// `region` is the node's region (IAM tokens are signed for it).
    pub async fn password(
        &self,
        o: &Options,
        region: &str,
        what: &str,
    ) -> Result<Option<String>, ProbeError> {
        match &self.auth {
            Auth::Url => Ok(None),
            Auth::PasswordEnv(var) => self.env_password(var, what).map(Some),
            Auth::SecretArn(arn) => {
                let text = self.secret(arn, what).await?;
                Ok(Some(password_of_secret(&text)))
            }
            Auth::Iam => {
                let creds = self.aws_credentials(region, what).await?;
                let (host, port, user) = host_port_user(o);
                iam::token(&creds, region, &host, port, &user, SystemTime::now())
                    .map(Some)
                    .map_err(|e| ProbeError::config("connect", "iam_token", format!("{what}: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_follows_the_url_else_verify_full() {
        let Options::Pg(o) =
            options(Engine::Postgres, "postgres://u:p@h:5432/db", None, "x").unwrap()
        else {
            panic!()
        };
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        let Options::Pg(o) = options(
            Engine::Postgres,
            "postgres://u:p@h:5432/db?sslmode=disable",
            None,
            "x",
        )
        .unwrap() else {
            panic!()
        };
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Disable));
        assert!(matches!(
            options(Engine::Mysql, "mariadb://u@h:3306/db", Some("/ca.pem"), "x").unwrap(),
            Options::My(_)
        ));
        assert!(has_param(
            "mysql://h/db?x=1&ssl-mode=DISABLED",
            &["ssl-mode"]
        ));
        assert!(!has_param("mysql://h/db?x=1", &["ssl-mode"]));
    }
}
