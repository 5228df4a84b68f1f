//! `redis::RedisError` → `ProbeError`: a bounded `code` per failure, and the
//! class that decides whether it is lag-side trouble (transient) or a set-up
//! problem (a refused password, an untrusted certificate).

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::error::ProbeError;

/// Maps a failed command or connection to `what` (region and redacted URL).
pub fn from_redis(op: &'static str, what: &str, e: &RedisError) -> ProbeError {
    let text = e.to_string();
    match e.kind() {
        ErrorKind::AuthenticationFailed => ProbeError::config(
            op,
            "auth",
            format!("{what}: authentication refused ({text}): check the password (auth.password_env / auth.secret_arn), the user in the URL, or the IAM policy's elasticache:Connect"),
        ),
        ErrorKind::Server(ServerErrorKind::NoPerm) => ProbeError::config(
            op,
            "no_perm",
            format!("{what}: {text}: the user's ACL must allow the command on ~rpo-canary:* (see README, kind redis)"),
        ),
        ErrorKind::Server(ServerErrorKind::ReadOnly) => {
            ProbeError::transient(op, "read_only", format!("{what}: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::BusyLoading) => {
            ProbeError::transient(op, "loading", format!("{what}: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            ProbeError::transient(op, "moved", format!("{what}: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain) => {
            ProbeError::transient(op, "cluster_down", format!("{what}: {text}"))
        }
        ErrorKind::Server(ServerErrorKind::MasterDown) => {
            ProbeError::transient(op, "master_down", format!("{what}: {text}"))
        }
        ErrorKind::Server(_) if auth_refused(&text) => ProbeError::config(
            op,
            "auth",
            format!("{what}: authentication refused ({text}): check the password and the user in the URL"),
        ),
        ErrorKind::InvalidClientConfig => {
            ProbeError::config(op, "config", format!("{what}: {text}"))
        }
        _ if looks_like_tls(&text) => ProbeError::config(
            op,
            "tls",
            format!("{what}: TLS failed: {text}: check ca_bundle and that the URL's host name matches the server certificate (redis:// only for a store without TLS in transit)"),
        ),
        _ if e.is_timeout() => ProbeError::transient(op, "timeout", format!("{what}: {text}")),
        _ if e.is_connection_refusal() => {
            ProbeError::transient(op, "connect", format!("{what}: {text}"))
        }
        _ if e.is_connection_dropped() => {
            ProbeError::transient(op, "connection_lost", format!("{what}: {text}"))
        }
        ErrorKind::Io => ProbeError::transient(op, "io", format!("{what}: {text}")),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            ProbeError::transient(op, "bad_reply", format!("{what}: {text}"))
        }
        _ => ProbeError::transient(op, "error", format!("{what}: {text}")),
    }
}

/// True when the connection should be dropped and made anew.
pub fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.kind(), ErrorKind::AuthenticationFailed)
}

fn auth_refused(text: &str) -> bool {
    text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("invalid password")
}

/// rustls verification failures arrive as I/O errors.
fn looks_like_tls(text: &str) -> bool {
    let m = text.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "handshake",
        "notvalidforname",
        "tls",
    ]
    .iter()
    .any(|k| m.contains(k))
}
