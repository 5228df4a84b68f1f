//! A minimal HTTP/1 GET client for `rpo-agent healthcheck` and for reading
//! the ECS task metadata endpoint.
//!
//! The container image has no curl, so the ECS container health check runs
//! `rpo-agent healthcheck`, which asks the running agent's `/healthz`. Both
//! uses are plain `http://` on a local or link-local address, so a bare
//! hyper connection over a `TcpStream` is enough: no TLS, no pool, no
//! redirects. Everything is bounded by one overall timeout.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest body read; the ECS task metadata document is a few KiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a GET failed. Messages name the URL or address and suggest the fix.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// Connection refused while checking the agent's health.
    #[error("no agent answers on {addr}: is it running, and is [agent] listen set to it?")]
    NoAgent { addr: String },

    #[error("nothing listens on {addr} (connection refused)")]
    Refused { addr: String },

    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },

    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },

    #[error("HTTP error talking to {url}: {source}")]
    Http { url: String, source: hyper::Error },

    #[error("cannot read the answer of {url}: {reason}")]
    Body { url: String, reason: String },

    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// Checks that the agent at `url` is alive: `Ok` only if `/healthz` answers
/// 200. A URL without a path (`http://127.0.0.1:9464`) means its `/healthz`.
pub async fn check(url: &str, timeout: Duration) -> Result<(), HealthcheckError> {
    let target = Target::parse(url)?;
    let url = if target.path == "/" {
        format!("http://{}/healthz", target.authority)
    } else {
        url.to_string()
    };
    match get_text(&url, timeout).await {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(HealthcheckError::Status {
            url,
            status,
            body: body.trim().chars().take(200).collect(),
        }),
        // Refused means no agent at all: say what to check on the agent side.
        Err(HealthcheckError::Refused { addr }) => Err(HealthcheckError::NoAgent { addr }),
        Err(e) => Err(e),
    }
}

/// The URL that `healthcheck` should ask, given the agent's `[agent] listen`:
/// an unspecified address (listen on all interfaces) is reached via loopback.
///
/// ```
/// use rpo_exporter::healthcheck::healthz_url;
/// assert_eq!(healthz_url("0.0.0.0:9464"), "http://127.0.0.1:9464/healthz");
/// assert_eq!(healthz_url("[::]:9464"), "http://[::1]:9464/healthz");
/// assert_eq!(healthz_url("10.0.0.5:80"), "http://10.0.0.5:80/healthz");
/// ```
pub fn healthz_url(listen: &str) -> String {
    let authority = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    };
    format!("http://{authority}/healthz")
}

/// GETs `url` (plain `http://` only) and returns the status code and the body
/// as text, whatever the status. Errors only when no HTTP answer came.
pub async fn get_text(url: &str, timeout: Duration) -> Result<(u16, String), HealthcheckError> {
    let target = Target::parse(url)?;
    match tokio::time::timeout(timeout, fetch(url, &target)).await {
        Ok(result) => result,
        Err(_) => Err(HealthcheckError::Timeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

async fn fetch(url: &str, t: &Target) -> Result<(u16, String), HealthcheckError> {
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|source| match source.kind() {
            io::ErrorKind::ConnectionRefused => HealthcheckError::Refused {
                addr: t.authority.clone(),
            },
            _ => HealthcheckError::Connect {
                addr: t.authority.clone(),
                source,
            },
        })?;
    let http_err = |source| HealthcheckError::Http {
        url: url.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    // The connection future drives the socket; it ends when the response is
    // read and `sender` is dropped, or with the whole call on timeout.
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "healthcheck connection ended with an error");
        }
    });
    let req = Request::get(t.path.as_str())
        .header(HOST, t.authority.as_str())
        .header(USER_AGENT, concat!("rpo-agent/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| HealthcheckError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status: StatusCode = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| HealthcheckError::Body {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    driver.abort();
    result
}

/// The parts of a plain-http URL that the client needs.
struct Target {
    host: String,
    port: u16,
    /// `host:port` as written, for the Host header and messages.
    authority: String,
    /// Path and query; "/" when the URL has none.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HealthcheckError> {
        let invalid = |reason: &str| HealthcheckError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            invalid(&format!("{e}; expected http://HOST:PORT/PATH"))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid(
                "https is not supported: the agent and the ECS metadata endpoint serve plain http",
            )),
            _ => return Err(invalid("expected http://HOST:PORT/PATH")),
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        // Uri keeps the brackets of an IPv6 literal; sockets want it bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| invalid("no host"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string();
        Ok(Target {
            host,
            port,
            authority,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_http_urls() {
        let t = Target::parse("http://169.254.170.2/v4/abc/task").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("169.254.170.2", 80));
        assert_eq!(t.path, "/v4/abc/task");
        let t = Target::parse("http://[::1]:9464").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9464, "/")
        );
        assert_eq!(t.authority, "[::1]:9464");
    }

    #[test]
    fn rejects_what_it_cannot_speak() {
        for url in [
            "https://example/healthz",
            "127.0.0.1:9464",
            "ftp://x/",
            "not a url",
        ] {
            let err = Target::parse(url).err().expect(url).to_string();
            assert!(err.contains("invalid URL"), "{url}: {err}");
        }
    }
}
