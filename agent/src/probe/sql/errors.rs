//! `sqlx` errors → `ProbeError`: a bounded `code` (SQLSTATE, or `connect`,
//! `timeout`, `io`, `tls`…), a class, and a message free of secrets.

use crate::probe::ProbeError;

use super::Engine;

/// The fix printed when the canary table is missing.
pub const INIT_HINT: &str = "table rpo_canary is missing: run `rpo-agent init --config …`";

/// Is this SQLSTATE / MySQL errno a "table does not exist"?
fn missing_table(engine: Engine, code: &str, number: Option<u16>) -> bool {
    match engine {
        Engine::Postgres => code == "42P01",
        Engine::Mysql => code == "42S02" || number == Some(1146),
    }
}

/// Errors that mean "the node is read-only" (a standby, `read_only=1`).
pub fn is_read_only(e: &ProbeError) -> bool {
    matches!(e.code.as_str(), "25006" | "HY000:1290" | "HY000:1836")
}

/// Maps one `sqlx` error; `what` names the node (region and redacted URL).
pub fn from_sqlx(engine: Engine, op: &'static str, what: &str, err: &sqlx::Error) -> ProbeError {
    use sqlx::Error as E;
    match err {
        E::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            let sqlstate = db.code().map(|c| c.to_string()).unwrap_or_default();
            let code = match (engine, number) {
                // MySQL's generic HY000 says nothing; the errno does.
                (Engine::Mysql, Some(n)) if sqlstate == "HY000" || sqlstate.is_empty() => {
                    format!("HY000:{n}")
                }
                _ => sqlstate.clone(),
            };
            let msg = db.message().to_string();
            if missing_table(engine, &sqlstate, number) {
                return ProbeError::config(op, "missing_table", format!("{what}: {INIT_HINT}"));
            }
            // Authentication and privileges are set-up problems, not lag.
            let config = match engine {
                Engine::Postgres => sqlstate.starts_with("28") || sqlstate == "42501" || sqlstate == "3D000",
                Engine::Mysql => matches!(number, Some(1044 | 1045 | 1049 | 1142 | 1143 | 1227)),
            };
            if config {
                ProbeError::config(op, code, format!("{what}: {msg}: check the user, password/auth and grants"))
            } else {
                ProbeError::transient(op, code, format!("{what}: {msg}"))
            }
        }
        E::Tls(e) => ProbeError::config(
            op,
            "tls",
            format!(
                "{what}: TLS failed: {e}: check ca_bundle (or the URL's sslrootcert / ssl-ca) and that the URL's host name matches the server certificate"
            ),
        ),
        E::Configuration(e) => ProbeError::config(op, "config", format!("{what}: {e}")),
        E::PoolTimedOut => ProbeError::transient(
            op,
            "connect",
            format!("{what}: no connection within the acquire timeout (server down or unreachable?)"),
        ),
        E::Io(e) if looks_like_tls(&e.to_string()) => ProbeError::config(
            op,
            "tls",
            format!(
                "{what}: TLS failed: {e}: check ca_bundle (or the URL's sslrootcert / ssl-ca) and that the URL's host name matches the server certificate"
            ),
        ),
        E::Io(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connect",
                std::io::ErrorKind::TimedOut => "timeout",
                _ => "io",
            };
            ProbeError::transient(op, code, format!("{what}: {e}"))
        }
        E::Protocol(m) => {
            // sqlx reports some TLS set-up failures as protocol errors.
            if m.to_ascii_lowercase().contains("tls") || m.to_ascii_lowercase().contains("ssl") {
                ProbeError::config(op, "tls", format!("{what}: {m}"))
            } else {
                ProbeError::transient(op, "protocol", format!("{what}: {m}"))
            }
        }
        E::RowNotFound | E::ColumnNotFound(_) | E::ColumnDecode { .. } | E::Decode(_) => {
            ProbeError::transient(op, "bad_canary", format!("{what}: {err}"))
        }
        E::PoolClosed => ProbeError::transient(op, "pool_closed", format!("{what}: pool closed")),
        other => ProbeError::transient(op, "io", format!("{what}: {other}")),
    }
}

pub fn timeout(op: &'static str, what: &str, after: std::time::Duration) -> ProbeError {
    ProbeError::transient(op, "timeout", format!("{what}: no answer within {after:?}"))
}

/// sqlx reports rustls verification failures as I/O errors.
fn looks_like_tls(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "tls",
        "handshake",
        "notvalidforname",
    ]
    .iter()
    .any(|k| m.contains(k))
}
