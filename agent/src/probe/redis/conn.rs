//! One Redis node: its address, a lazily made multiplexed connection that is
//! dropped on I/O errors and made anew on the next call (so a restarted node
//! is followed without the probe noticing), and the few commands the probe
//! sends. Credentials are asked for at every connect: a rotated secret or a
//! fresh IAM token needs no other path.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::errors::{breaks_connection, from_redis};
use super::iam;
use crate::config::{redact_url, Auth};
use crate::error::ProbeError;
use crate::probe::credentials::{password_of_secret, username_of_secret, Credentials};

/// What a connection logs in with.
#[derive(Clone, Default)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// How a target's nodes are reached: credentials, TLS roots, timeouts.
pub struct Access {
    pub creds: Credentials,
    /// PEM roots from `ca_bundle` (None: the system's roots); read by `prepare`.
    pub roots: std::sync::RwLock<Option<Vec<u8>>>,
    pub timeouts: Timeouts,
}

impl Access {
    /// What a new connection to `n` logs in with (None fields: the URL's).
    /// Asked only when connecting.
    async fn login(&self, n: &Node) -> Result<Login, ProbeError> {
        Ok(match &self.creds.auth {
            Auth::Url => Login::default(),
            Auth::PasswordEnv(var) => Login {
                user: None,
                password: Some(self.creds.env_password(var, &n.what)?),
            },
            Auth::SecretArn(arn) => {
                let text = self.creds.secret(arn, &n.what).await?;
                Login {
                    user: username_of_secret(&text),
                    password: Some(password_of_secret(&text)),
                }
            }
            Auth::Iam => {
                let user = n.url_user().unwrap_or_default();
                let group = n.replication_group.clone().unwrap_or_default();
                let creds = self.creds.aws_credentials(&n.region, &n.what).await?;
                let token = iam::token(
                    &creds,
                    &n.region,
                    &group,
                    &user,
                    std::time::SystemTime::now(),
                )
                .map_err(|e| {
                    ProbeError::config("connect", "iam_token", format!("{}: {e}", n.what))
                })?;
                Login {
                    user: Some(user),
                    password: Some(token),
                }
            }
        })
    }

    fn max_age(&self) -> Duration {
        match self.creds.auth {
            Auth::Iam => iam::RECONNECT_AFTER,
            _ => Duration::MAX,
        }
    }
}

/// One node of a target (a configured endpoint, or a shard's node found by
/// `CLUSTER SLOTS`).
pub struct Node {
    /// Region and redacted URL, for messages.
    pub what: String,
    pub region: String,
    /// ElastiCache replication group (IAM tokens, CloudWatch).
    pub replication_group: Option<String>,
    info: ConnectionInfo,
    /// Send READONLY after connecting (a cluster replica we read from).
    readonly: bool,
    conn: Mutex<Option<(MultiplexedConnection, Instant)>>,
}

/// Timeouts of one node's connection.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Node {
    /// A node at `url` (`redis://` or `rediss://`, optionally with a user and
    /// password). No network until the first command.
    pub fn new(
        region: &str,
        url: &str,
        replication_group: Option<String>,
        readonly: bool,
    ) -> Result<Node, ProbeError> {
        let what = format!("{region} ({})", redact_url(url));
        let info = url
            .into_connection_info()
            .map_err(|e| ProbeError::config("connect", "bad_url", format!("{what}: {e}")))?;
        Ok(Node {
            what,
            region: region.to_string(),
            replication_group,
            info,
            readonly,
            conn: Mutex::new(None),
        })
    }

    /// Another node of the same cluster at `host:port`, reached the same way
    /// (TLS or not) with the same login.
    pub fn sibling(&self, host: &str, port: u16, readonly: bool) -> Result<Node, ProbeError> {
        let scheme = if self.tls() { "rediss" } else { "redis" };
        let url = format!("{scheme}://{host}:{port}");
        let mut n = Node::new(&self.region, &url, self.replication_group.clone(), readonly)?;
        n.info = n
            .info
            .set_redis_settings(self.info.redis_settings().clone());
        Ok(n)
    }

    pub fn tls(&self) -> bool {
        matches!(self.info.addr(), redis::ConnectionAddr::TcpTls { .. })
    }

    /// The user named in the URL, if any.
    pub fn url_user(&self) -> Option<String> {
        self.info.redis_settings().username().map(str::to_string)
    }

    /// Drops the connection; the next command connects anew.
    pub async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    /// The connection; made anew when there is none or it is older than
    /// the access's limit (IAM: 11 h).
    pub async fn connection(&self, access: &Access) -> Result<MultiplexedConnection, ProbeError> {
        let mut slot = self.conn.lock().await;
        if let Some((c, at)) = slot.as_ref() {
            if at.elapsed() < access.max_age() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let login = access.login(self).await?;
        let t = access.timeouts;
        let roots = access.roots.read().unwrap().clone();
        let mut settings = self.info.redis_settings().clone();
        if let Some(u) = &login.user {
            settings = settings.set_username(u);
        }
        if let Some(p) = &login.password {
            settings = settings.set_password(p);
        }
        let info = self.info.clone().set_redis_settings(settings);
        let client = if self.tls() {
            ensure_crypto_provider();
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: roots,
                },
            )
        } else {
            Client::open(info)
        }
        .map_err(|e| from_redis("connect", &self.what, &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(Some(t.response));
        let mut c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| from_redis("connect", &self.what, &e))?;
        if self.readonly {
            redis::cmd("READONLY")
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| from_redis("connect", &self.what, &e))?;
        }
        *slot = Some((c.clone(), Instant::now()));
        Ok(c)
    }

    /// Runs `cmd` on a connection; an I/O failure drops the connection.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
        access: &Access,
    ) -> Result<T, ProbeError> {
        // A failed (re)connect counts against the operation that needed it.
        let mut c = self
            .connection(access)
            .await
            .map_err(|e| ProbeError { op, ..e })?;
        match cmd.query_async::<T>(&mut c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if breaks_connection(&e) {
                    self.reset().await;
                }
                Err(from_redis(op, &self.what, &e))
            }
        }
    }
}

/// redis builds its rustls config with the process's default provider; this
/// binary links two (ring, and aws-lc for the AWS SDK), so pick one.
fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The canary value: `<seq>:<written_at_us>`.
pub fn canary_value(seq: u64, written_at_us: u64) -> String {
    format!("{seq}:{written_at_us}")
}

/// Parses a canary value; anything else is no canary of ours.
pub fn parse_canary(v: &str) -> Option<(u64, u64)> {
    let mut it = v.split(':');
    let seq = it.next()?.parse().ok()?;
    let at = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((seq, at))
}

/// What `ROLE` says a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

/// Parses `ROLE`'s first element.
pub fn parse_role(v: &Value) -> Option<Role> {
    let Value::Array(a) = v else { return None };
    let first = match a.first()? {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    match first.as_str() {
        "master" => Some(Role::Master),
        "slave" | "replica" => Some(Role::Replica),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_values_round_trip_and_others_are_ignored() {
        assert_eq!(parse_canary(&canary_value(42, 1_700)), Some((42, 1_700)));
        assert_eq!(parse_canary("7"), Some((7, 0)));
        assert_eq!(parse_canary("hello"), None);
    }

    #[test]
    fn roles_are_read_from_the_first_element() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            parse_role(&Value::Array(vec![
                b("master"),
                Value::Int(0),
                Value::Array(vec![])
            ])),
            Some(Role::Master)
        );
        assert_eq!(
            parse_role(&Value::Array(vec![
                b("slave"),
                b("10.0.0.1"),
                Value::Int(6379)
            ])),
            Some(Role::Replica)
        );
        assert_eq!(parse_role(&Value::Nil), None);
    }

    #[test]
    fn urls_are_redacted_and_siblings_keep_tls_and_login() {
        let n = Node::new("r", "rediss://u:pw@h.example:6380", None, false).unwrap();
        assert!(!n.what.contains("pw"), "{}", n.what);
        assert!(n.tls());
        assert_eq!(n.url_user().as_deref(), Some("u"));
        let s = n.sibling("10.0.0.9", 7000, true).unwrap();
        assert!(s.tls());
        assert_eq!(s.url_user().as_deref(), Some("u"));
        assert!(!Node::new("r", "redis://h:1", None, false).unwrap().tls());
    }
}
