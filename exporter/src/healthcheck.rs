//! A minimal HTTP/1 GET client for `rpo-agent healthcheck` and for reading
//! the ECS task metadata endpoint.
//!
//! The container image has no curl, so the ECS container health check runs
//! `rpo-agent healthcheck`, which asks the running agent's `/healthz`. The
//! metadata endpoint is plain `http://` on a link-local address; the agent
//! may serve `https://` (its web configuration file), verified against a CA
//! file or the system's roots. A bare hyper connection over a `TcpStream`
//! (in rustls, for https) is enough: no pool, no redirects. Everything is
//! bounded by one overall timeout.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

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

    #[error("cannot use the CA file {path}: {reason}; --ca-file must be the PEM file of the CA that signed the agent's certificate")]
    CaFile { path: PathBuf, reason: String },

    #[error("no trusted CA certificate on this system to verify {url}: pass --ca-file PATH (the CA that signed the agent's certificate)")]
    NoRoots { url: String },

    #[error("TLS with {addr} failed: {reason}; is --ca-file the CA that signed the agent's certificate (its web_config's tls_server_config.cert_file), and is the URL's host one of the certificate's names?")]
    Tls { addr: String, reason: String },

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
    check_with(url, timeout, None).await
}

/// As [`check`]; an `https://` URL is verified against the certificates of
/// `ca_file` (PEM), or the system's roots without it.
pub async fn check_with(
    url: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<(), HealthcheckError> {
    let target = Target::parse(url)?;
    let url = if target.path == "/" {
        format!("{}://{}/healthz", target.scheme, target.authority)
    } else {
        url.to_string()
    };
    match get_text_with(&url, timeout, ca_file).await {
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

/// GETs `url` and returns the status code and the body as text, whatever
/// the status. Errors only when no HTTP answer came.
pub async fn get_text(url: &str, timeout: Duration) -> Result<(u16, String), HealthcheckError> {
    get_text_with(url, timeout, None).await
}

/// As [`get_text`], with the CA file for `https://` (see [`check_with`]).
pub async fn get_text_with(
    url: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<(u16, String), HealthcheckError> {
    let target = Target::parse(url)?;
    // Read before the clock starts: a bad file is not a timeout.
    let tls = match target.scheme {
        "https" => Some(tls_connector(url, ca_file)?),
        _ => None,
    };
    match tokio::time::timeout(timeout, fetch(url, &target, tls)).await {
        Ok(result) => result,
        Err(_) => Err(HealthcheckError::Timeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

/// rustls with ring, trusting `ca_file` or the system's roots.
fn tls_connector(url: &str, ca_file: Option<&Path>) -> Result<TlsConnector, HealthcheckError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |reason: String| HealthcheckError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| ca_err(format!("not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("no CERTIFICATE in it".into()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(HealthcheckError::NoRoots {
                    url: url.to_string(),
                });
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HealthcheckError::Tls {
        addr: url.to_string(),
        reason: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn fetch(
    url: &str,
    t: &Target,
    tls: Option<TlsConnector>,
) -> Result<(u16, String), HealthcheckError> {
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
    match tls {
        None => exchange(url, t, stream).await,
        Some(connector) => {
            let name =
                ServerName::try_from(t.host.clone()).map_err(|e| HealthcheckError::InvalidUrl {
                    url: url.to_string(),
                    reason: format!("the host is not a DNS name or IP address: {e}"),
                })?;
            let stream =
                connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| HealthcheckError::Tls {
                        addr: t.authority.clone(),
                        reason: e.to_string(),
                    })?;
            exchange(url, t, stream).await
        }
    }
}

/// One GET over an open (plain or TLS) connection.
async fn exchange<I>(url: &str, t: &Target, io: I) -> Result<(u16, String), HealthcheckError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| HealthcheckError::Http {
        url: url.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
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

/// The parts of an http(s) URL that the client needs.
struct Target {
    scheme: &'static str,
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
            invalid(&format!("{e}; expected http(s)://HOST:PORT/PATH"))
        })?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some("http") => ("http", 80),
            Some("https") => ("https", 443),
            _ => {
                return Err(invalid(
                    "expected http://HOST:PORT/PATH or https://HOST:PORT/PATH",
                ))
            }
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        // Uri keeps the brackets of an IPv6 literal; sockets want it bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(default_port);
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
            scheme,
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
        let t = Target::parse("https://localhost/healthz").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            ("https", "localhost", 443)
        );
    }

    #[tokio::test]
    async fn a_bad_ca_file_is_named() {
        let dir = std::env::temp_dir().join(format!("rpo-hc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not-a-ca.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        for (path, needle) in [
            (dir.join("missing.pem"), "No such file"),
            (not_pem.clone(), "no CERTIFICATE"),
        ] {
            let e = check_with(
                "https://127.0.0.1:1/healthz",
                Duration::from_secs(1),
                Some(&path),
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(needle),
                "{e}"
            );
            assert!(e.contains("--ca-file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_what_it_cannot_speak() {
        for url in ["127.0.0.1:9464", "ftp://x/", "not a url"] {
            let err = Target::parse(url).err().expect(url).to_string();
            assert!(err.contains("invalid URL"), "{url}: {err}");
        }
    }
}
