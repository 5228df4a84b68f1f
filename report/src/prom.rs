//! The Prometheus HTTP API client of `rpo-agent report`: `/api/v1/query`
//! and `/api/v1/query_range` over HTTP or HTTPS, with the credentials that
//! managed Prometheus services want (bearer token, basic auth, extra
//! headers). It is the report's only network code.
//!
//! Queries are POSTed as forms, so a long PromQL expression never meets a
//! URL length limit. Every failure is a `PromError` that names the URL or
//! the query and says what to change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Largest answer read: a 30-day range query of a few series at 1-minute
/// steps is a few MiB.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Prometheus refuses range queries of more points than this per series.
pub const MAX_POINTS: u64 = 11_000;

/// How the report authenticates to Prometheus.
#[derive(Clone, Default)]
pub struct PromAuth {
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// `Authorization: Basic …` from user and password.
    pub basic: Option<(String, String)>,
    /// Extra headers, e.g. `X-Scope-OrgID` for Mimir / Cortex.
    pub headers: Vec<(String, String)>,
    /// PEM file of the CA that signed the server's certificate (default:
    /// the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PromAuth {
    // Never print a secret, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromAuth")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(u, _)| (u, "***")))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Why a Prometheus call failed.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("--prometheus {url:?} is not a usable URL: {reason} (give the server's base URL, e.g. http://prometheus:9090)")]
    BadUrl { url: String, reason: String },

    #[error("--ca-file {path}: {reason}")]
    BadCa { path: String, reason: String },

    #[error("header {header:?}: {reason} (write it as --header 'Name: value')")]
    BadHeader { header: String, reason: String },

    #[error("cannot reach Prometheus at {url}: {reason} (is it running, and is --prometheus its base URL?)")]
    Unreachable { url: String, reason: String },

    #[error("Prometheus at {url} did not answer within {timeout:?} (raise --query-timeout, shorten the window, or load and backfill the recording rules of dashboards/rules/rpo-recording.rules.yml, which make long windows fast)")]
    Timeout { url: String, timeout: Duration },

    #[error("Prometheus at {url} refused the credentials ({status}): give --bearer-token-file, or --basic-auth-user with --basic-auth-password-file")]
    Unauthorized { url: String, status: u16 },

    #[error("no Prometheus API at {url} ({status}): --prometheus must be the base URL, without /api/v1 (Grafana Cloud: …/api/prom; Amazon Managed Service for Prometheus: …/workspaces/ws-…, through a SigV4 proxy)")]
    NotFound { url: String, status: u16 },

    #[error("Prometheus at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },

    /// Prometheus understood the request and rejected the query.
    #[error("Prometheus rejected the query `{query}`: {error_type}: {error}")]
    Query {
        query: String,
        error_type: String,
        error: String,
    },

    #[error("the answer of {url} is not Prometheus's API JSON: {reason}")]
    Decode { url: String, reason: String },
}

impl PromError {
    /// Prometheus's `query.max-samples` limit: the caller may split the
    /// window into smaller pieces and ask again.
    pub fn is_too_many_samples(&self) -> bool {
        matches!(self, PromError::Query { error, .. } if error.contains("too many samples"))
    }
}

/// One series of an answer: its labels and its samples `(t, value)`.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for one Prometheus server.
pub struct Prom {
    base: String,
    client: HttpsClient,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// Queries sent so far (the report says how many it needed).
    queries: std::sync::atomic::AtomicU64,
}

impl Prom {
    /// Checks the URL, the CA file and the headers; makes no request.
    pub fn new(base: &str, auth: &PromAuth, timeout: Duration) -> Result<Prom, PromError> {
        let base = base.trim_end_matches('/').to_string();
        let bad = |reason: &str| PromError::BadUrl {
            url: base.clone(),
            reason: reason.to_string(),
        };
        let uri: Uri = base.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("it must start with http:// or https://")),
        }
        if uri.host().is_none() {
            return Err(bad("it names no host"));
        }
        if base.contains("/api/v1") {
            return Err(bad("it must not include /api/v1"));
        }
        let tls = tls_config(auth.ca_file.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let mut headers = Vec::new();
        for (name, value) in &auth.headers {
            let bad_header = |reason: String| PromError::BadHeader {
                header: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| bad_header(e.to_string()))?;
            let mut v =
                HeaderValue::from_str(value.trim()).map_err(|e| bad_header(e.to_string()))?;
            v.set_sensitive(true);
            headers.push((n, v));
        }
        let secret = |s: String| {
            let mut v = HeaderValue::from_str(&s).map_err(|_| PromError::BadHeader {
                header: "Authorization".into(),
                reason: "the credential holds characters a header cannot carry".into(),
            })?;
            v.set_sensitive(true);
            Ok::<_, PromError>(v)
        };
        if let Some(token) = &auth.bearer_token {
            headers.push((AUTHORIZATION, secret(format!("Bearer {}", token.trim()))?));
        } else if let Some((user, pass)) = &auth.basic {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.push((AUTHORIZATION, secret(format!("Basic {raw}"))?));
        }
        Ok(Prom {
            base,
            client,
            headers,
            timeout,
            queries: Default::default(),
        })
    }

    /// The base URL, as given (it holds no credentials: those are flags).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn queries_sent(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An instant query at `at`.
    pub async fn query(&self, expr: &str, at: f64) -> Result<Vec<Series>, PromError> {
        self.api("query", expr, &[("time", fmt_time(at))]).await
    }

    /// A range query; `end` is included when it is on a step.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        self.api(
            "query_range",
            expr,
            &[
                ("start", fmt_time(start)),
                ("end", fmt_time(end)),
                ("step", format!("{step}")),
            ],
        )
        .await
    }

    /// Names of the recording rules Prometheus has loaded.
    pub async fn recording_rules(&self) -> Result<Vec<String>, PromError> {
        let url = format!("{}/api/v1/rules?type=record", self.base);
        let body = self.send(Method::GET, &url, None).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| PromError::Decode {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let mut names = Vec::new();
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                if let Some(n) = r["name"].as_str() {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    async fn api(
        &self,
        endpoint: &str,
        expr: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Series>, PromError> {
        self.queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut form = format!("query={}", form_encode(expr));
        for (k, v) in params {
            form.push_str(&format!("&{k}={}", form_encode(v)));
        }
        let body = match self.send(Method::POST, &url, Some(form)).await {
            Ok(b) => b,
            // 400 / 422 carry the PromQL error as API JSON.
            Err(PromError::Status { status, body, .. }) if status == 400 || status == 422 => {
                Bytes::from(body)
            }
            Err(e) => return Err(e),
        };
        let answer: ApiAnswer = serde_json::from_slice(&body).map_err(|e| PromError::Decode {
            url: url.clone(),
            reason: format!("{e}: {}", preview(&body)),
        })?;
        if answer.status != "success" {
            return Err(PromError::Query {
                query: expr.to_string(),
                error_type: answer.error_type.unwrap_or_else(|| "error".into()),
                error: answer.error.unwrap_or_default(),
            });
        }
        let data = answer.data.ok_or_else(|| PromError::Decode {
            url: url.clone(),
            reason: "no data in a successful answer".into(),
        })?;
        decode_result(&data).map_err(|reason| PromError::Decode { url, reason })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<String>,
    ) -> Result<Bytes, PromError> {
        let mut req = Request::builder().method(method).uri(url).header(
            USER_AGENT,
            concat!("rpo-agent/", env!("CARGO_PKG_VERSION"), " report"),
        );
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        let body = match form {
            Some(f) => {
                req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| PromError::BadUrl {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let unreachable = |e: &dyn std::error::Error| {
            // The innermost cause says what happened (refused, DNS, TLS).
            let mut reason = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                reason = s.to_string();
                src = s.source();
            }
            PromError::Unreachable {
                url: self.base.clone(),
                reason,
            }
        };
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(&e))?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| PromError::Unreachable {
                    url: self.base.clone(),
                    reason: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok::<_, PromError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| PromError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })??;
        match status {
            200..=299 => Ok(bytes),
            401 | 403 => Err(PromError::Unauthorized {
                url: self.base.clone(),
                status,
            }),
            404 => Err(PromError::NotFound {
                url: self.base.clone(),
                status,
            }),
            _ => Err(PromError::Status {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, PromError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| PromError::BadCa {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut added = 0;
            for cert in rustls_pemfile_certs(&pem) {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(bad("holds no PEM certificate".into()));
            }
        }
        None => {
            // A missing or unreadable system store leaves only --ca-file
            // servers reachable; plain http:// still works.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PromError::BadCa {
            path: "(TLS set-up)".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

fn decode_result(data: &ApiData) -> Result<Vec<Series>, String> {
    match data.result_type.as_str() {
        "vector" | "matrix" => {
            let raw: Vec<ApiSeries> =
                serde_json::from_value(data.result.clone()).map_err(|e| e.to_string())?;
            Ok(raw
                .into_iter()
                .map(|s| {
                    let pairs = s.value.into_iter().chain(s.values);
                    Series {
                        labels: s.metric,
                        samples: pairs.map(|(t, v)| (t, parse_value(&v))).collect(),
                    }
                })
                .collect())
        }
        "scalar" => {
            let (t, v): (f64, String) =
                serde_json::from_value(data.result.clone()).map_err(|e| e.to_string())?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                samples: vec![(t, parse_value(&v))],
            }])
        }
        other => Err(format!("unexpected resultType {other:?}")),
    }
}

/// Prometheus writes values as strings, `NaN` and `+Inf` included.
fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => v.parse().unwrap_or(f64::NAN),
    }
}

/// Unix seconds with millisecond precision, as the API accepts.
fn fmt_time(t: f64) -> String {
    format!("{t:.3}")
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_with_the_fix() {
        let auth = PromAuth::default();
        for (url, says) in [
            ("prometheus:9090", "http://"),
            ("ftp://x", "http://"),
            ("http://p:9090/api/v1", "/api/v1"),
        ] {
            let err = Prom::new(url, &auth, Duration::from_secs(1)).err().unwrap();
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let auth = PromAuth {
            bearer_token: Some("s3cret-token".into()),
            basic: Some(("alice".into(), "hunter2".into())),
            headers: vec![("X-Scope-OrgID".into(), "tenant-secret".into())],
            ca_file: None,
        };
        let dbg = format!("{auth:?}");
        assert!(
            !dbg.contains("s3cret") && !dbg.contains("hunter2") && !dbg.contains("tenant-secret"),
            "{dbg}"
        );
        assert!(dbg.contains("alice") && dbg.contains("X-Scope-OrgID"));
    }

    #[test]
    fn values_decode_with_nan_and_infinity() {
        let data = ApiData {
            result_type: "matrix".into(),
            result: serde_json::json!([{"metric": {"target": "t"}, "values": [[1.0, "2.5"], [2.0, "NaN"], [3.0, "+Inf"]]}]),
        };
        let s = decode_result(&data).unwrap();
        assert_eq!(s[0].label("target"), "t");
        assert_eq!(s[0].samples[0], (1.0, 2.5));
        assert!(s[0].samples[1].1.is_nan());
        assert!(s[0].samples[2].1.is_infinite());
    }

    #[test]
    fn too_many_samples_is_recognised() {
        let e = PromError::Query {
            query: "x".into(),
            error_type: "execution".into(),
            error: "query processing would load too many samples into memory in query execution"
                .into(),
        };
        assert!(e.is_too_many_samples());
    }
}
