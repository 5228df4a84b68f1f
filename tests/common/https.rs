//! A tiny HTTPS GET for tests of the agent's TLS endpoints (web_config):
//! rustls with the ring provider, verified against a CA file, HTTP/1.0 so
//! the answer is never chunked.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status, headers (names lower-cased), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GET `https://{addr}{path}` trusting only `ca_file`, with basic auth if
/// `auth` is given. `Err` when TLS or the connection failed.
pub fn get(
    addr: &str,
    path: &str,
    ca_file: &Path,
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    super::rt().block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca_file).map_err(|e| e.to_string())? {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(addr)
            .to_string();
        let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {addr}: {e}"))?;
        let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        if let Some((u, p)) = auth {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req.push_str(&format!("Authorization: Basic {b}\r\n"));
        }
        req.push_str("\r\n");
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        // The agent closes after an HTTP/1.0 answer; a TLS close_notify may be missing.
        let _ = tls.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no HTTP answer from {addr}{path}: {text:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Answer {
            status,
            headers,
            body: body.to_string(),
        })
    })
}
