//! The web configuration file (`[agent] web_config`): TLS and basic auth on
//! the agent's HTTP endpoints, in the format of the Prometheus exporters'
//! `--web.config.file` (exporter-toolkit), so one file serves both.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/rpo-agent/tls.crt
//!   key_file: /etc/rpo-agent/tls.key
//! basic_auth_users:
//!   prometheus: $2y$10$...   # htpasswd -nBC 10 prometheus
//! ```
//!
//! Strict like the TOML configuration: an unknown key, or a key of the
//! format that rustls cannot honour (TLS 1.0/1.1, CBC or RSA key-exchange
//! cipher suites, P-521, clients certificates that are asked for but not
//! verified), is an error that names the file, the key and what to write
//! instead; nothing is silently ignored. Relative paths are relative to the
//! file's directory, as exporter-toolkit resolves them.
//!
//! The certificate and key are read at start-up (a bad pair fails the start)
//! and again whenever their files change: [`ReloadingCert`] looks at their
//! modification times at most every [`CERT_CHECK_EVERY`] during handshakes,
//! so a rotated certificate is served without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// How often a handshake may look at the certificate files' modification
/// times (one `stat` each); a rotated certificate is served within this.
pub const CERT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// A problem with the web configuration file. `Display` names the file, the
/// key and the fix; no value of `basic_auth_users` is ever quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    pub file: PathBuf,
    /// Dotted path of the key, e.g. `tls_server_config.cert_file`; empty
    /// when the problem is the file as a whole.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for WebConfigError {}

/// The file as written (shape only). Key names are exporter-toolkit's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A loaded and validated web configuration.
#[derive(Clone)]
pub struct WebConfig {
    pub file: PathBuf,
    /// TLS settings, with the certificate already loaded once.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebConfig {
    // The hashes stay out of debug output too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

/// The headers exporter-toolkit lets `http_server_config.headers` set.
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Go's TLS 1.2 cipher-suite names that rustls (ring) implements.
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use provider::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

const SUPPORTED_SUITES: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, \
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, \
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

impl WebConfig {
    /// Reads, parses and validates `file`, and loads the certificate, key
    /// and client CA it names. Touches nothing else.
    pub fn load(file: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| WebConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            problem: format!("cannot read the file: {e}"),
            fix: "check [agent] web_config (the path of the web configuration file)".into(),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, file, base)
    }

    /// As `load`, from `text`; `file` is only named in errors and `base` is
    /// the directory relative paths start from.
    pub fn parse(text: &str, file: &Path, base: &Path) -> Result<WebConfig, WebConfigError> {
        let err = |key: &str, problem: String, fix: &str| WebConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem,
            fix: fix.to_string(),
        };
        // An empty file (or only comments) is a valid, empty configuration.
        let raw: RawWebConfig = if text.trim().is_empty()
            || text.lines().all(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with('#') || l == "---"
            }) {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?
        };

        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(err(
                    "basic_auth_users",
                    "a user name is empty or contains ':'".into(),
                    "basic auth cannot carry such a name; rename the user",
                ));
            }
            if let Err(problem) = check_bcrypt(&hash) {
                return Err(err(
                    &key,
                    problem,
                    "write a bcrypt hash, e.g. the part after ':' of `htpasswd -nBC 10 USER`, \
                     or python3 -c 'import bcrypt; print(bcrypt.hashpw(b\"PASSWORD\", bcrypt.gensalt(10)).decode())'",
                ));
            }
            users.insert(user, hash);
        }

        let mut headers = Vec::new();
        let http = raw.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            return Err(err(
                "http_server_config.http2",
                "the agent serves HTTP/1.1 only".into(),
                "remove the key or write `http2: false` (Prometheus scrapes over HTTP/1.1)",
            ));
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some(canonical) = ALLOWED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&name))
            else {
                return Err(err(
                    &key,
                    "this header cannot be set".into(),
                    &format!(
                        "the headers that can be set are {}",
                        ALLOWED_HEADERS.join(", ")
                    ),
                ));
            };
            let lower = value.to_ascii_lowercase();
            match *canonical {
                "X-Content-Type-Options" if lower != "nosniff" => {
                    return Err(err(
                        &key,
                        format!("invalid value {value:?}"),
                        "write nosniff",
                    ))
                }
                "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
                    return Err(err(
                        &key,
                        format!("invalid value {value:?}"),
                        "write deny or sameorigin",
                    ))
                }
                _ => {}
            }
            let value = HeaderValue::from_str(&value).map_err(|_| {
                err(
                    &key,
                    "the value is not a valid header value".into(),
                    "use printable ASCII only",
                )
            })?;
            let name = HeaderName::from_bytes(canonical.to_ascii_lowercase().as_bytes())
                .expect("a known header name");
            headers.push((name, value));
        }

        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(tls_config(t, file, base)?),
        };
        Ok(WebConfig {
            file: file.to_path_buf(),
            tls,
            users,
            headers,
        })
    }
}

/// The error of serde_yaml_ng as ours: its message names the key path
/// (`tls_server_config: unknown field ...`) and the line.
fn yaml_error(file: &Path, e: &serde_yaml_ng::Error) -> WebConfigError {
    let msg = e.to_string();
    // serde_yaml_ng writes "PATH: MESSAGE at line L column C" for nested keys.
    let (key, problem) = match msg.split_once(": ") {
        Some((k, rest)) if !k.contains(' ') && !k.is_empty() => (k.to_string(), rest.to_string()),
        _ => (String::new(), msg.clone()),
    };
    // "unknown field `certfile`, expected ...": the key is the unknown one.
    let key = match problem
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        Some((name, _)) if key.is_empty() => name.to_string(),
        Some((name, _)) => format!("{key}.{name}"),
        None => key,
    };
    let fix = if problem.contains("unknown field") {
        "remove or correct the key: the format is exporter-toolkit's web configuration \
         (tls_server_config, http_server_config, basic_auth_users)"
    } else {
        "correct the YAML (exporter-toolkit's web configuration format)"
    };
    WebConfigError {
        file: file.to_path_buf(),
        key,
        problem,
        fix: fix.to_string(),
    }
}

/// A bcrypt hash that the `bcrypt` crate (and Go's bcrypt) accept: `$2a$`,
/// `$2b$` or `$2y$`, a cost of 4..=31, 53 characters of salt and hash.
/// The problem text never quotes the hash.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let parts: Vec<&str> = hash.split('$').collect();
    if parts.len() != 4 || !parts[0].is_empty() || !matches!(parts[1], "2a" | "2b" | "2y") {
        return Err("not a bcrypt hash (it must start with $2a$, $2b$ or $2y$)".into());
    }
    match parts[2].parse::<u32>() {
        Ok(c) if (4..=31).contains(&c) && parts[2].len() == 2 => {}
        _ => return Err("the bcrypt cost must be two digits from 04 to 31".into()),
    }
    if parts[3].len() != 53 {
        return Err(format!(
            "a bcrypt hash has 60 characters, this one has {}",
            hash.len()
        ));
    }
    hash.parse::<bcrypt::HashParts>()
        .map(|_| ())
        .map_err(|_| "not a valid bcrypt hash".to_string())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn version(
    v: &str,
    key: &str,
    file: &Path,
) -> Result<&'static SupportedProtocolVersion, WebConfigError> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(WebConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem: format!("{v} is not supported (rustls implements TLS 1.2 and 1.3 only)"),
            fix: "write TLS12 or TLS13".into(),
        }),
        _ => Err(WebConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem: format!("unknown TLS version {v:?}"),
            fix: "write TLS12 or TLS13".into(),
        }),
    }
}

fn tls_config(t: RawTls, file: &Path, base: &Path) -> Result<Arc<ServerConfig>, WebConfigError> {
    let err = |key: &str, problem: String, fix: &str| WebConfigError {
        file: file.to_path_buf(),
        key: format!("tls_server_config.{key}"),
        problem,
        fix: fix.to_string(),
    };
    let cert_file = t.cert_file.as_deref().filter(|s| !s.trim().is_empty());
    let key_file = t.key_file.as_deref().filter(|s| !s.trim().is_empty());
    let (cert_file, key_file) = match (cert_file, key_file) {
        (Some(c), Some(k)) => (resolve(base, c), resolve(base, k)),
        (None, _) => {
            return Err(err(
                "cert_file",
                "missing".into(),
                "name the server certificate's PEM file (with its chain), or remove tls_server_config to serve plain HTTP",
            ))
        }
        (_, None) => {
            return Err(err(
                "key_file",
                "missing".into(),
                "name the PEM file of the certificate's private key",
            ))
        }
    };

    // Versions.
    let min = match &t.min_version {
        Some(v) => version(v, "tls_server_config.min_version", file)?,
        None => &rustls::version::TLS12,
    };
    let max = match &t.max_version {
        Some(v) => version(v, "tls_server_config.max_version", file)?,
        None => &rustls::version::TLS13,
    };
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        return Err(err(
            "min_version",
            "is above max_version".into(),
            "make min_version TLS12 or raise max_version",
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect();

    // The provider: ring, narrowed to the listed suites and curves.
    let mut p: CryptoProvider = provider::default_provider();
    if let Some(names) = &t.cipher_suites {
        let mut tls12 = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = format!("cipher_suites[{i}]");
            if name.starts_with("TLS_AES_") || name.starts_with("TLS_CHACHA20_") {
                return Err(err(
                    &key,
                    format!("{name} is a TLS 1.3 suite, which cannot be chosen (as in Go)"),
                    &format!("list TLS 1.2 suites only: {SUPPORTED_SUITES}"),
                ));
            }
            match tls12_suite(name) {
                Some(s) => tls12.push(s),
                None => {
                    return Err(err(
                        &key,
                        format!("{name} is not implemented by rustls (CBC, RSA key exchange, 3DES and RC4 suites are not offered)"),
                        &format!("use one of {SUPPORTED_SUITES}"),
                    ))
                }
            }
        }
        if tls12.is_empty() {
            return Err(err(
                "cipher_suites",
                "is empty".into(),
                "remove the key or list at least one suite",
            ));
        }
        let tls13: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        p.cipher_suites = tls13.into_iter().chain(tls12).collect();
    }
    if let Some(names) = &t.curve_preferences {
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = format!("curve_preferences[{i}]");
            groups.push(match name.as_str() {
                "X25519" => provider::kx_group::X25519,
                "CurveP256" => provider::kx_group::SECP256R1,
                "CurveP384" => provider::kx_group::SECP384R1,
                "CurveP521" | "X25519MLKEM768" => {
                    return Err(err(
                        &key,
                        format!("{name} is not implemented by the ring provider"),
                        "use X25519, CurveP256 or CurveP384",
                    ))
                }
                _ => {
                    return Err(err(
                        &key,
                        format!("unknown curve {name:?}"),
                        "use X25519, CurveP256 or CurveP384",
                    ))
                }
            });
        }
        if groups.is_empty() {
            return Err(err(
                "curve_preferences",
                "is empty".into(),
                "remove the key or list at least one curve",
            ));
        }
        p.kx_groups = groups;
    }
    let p = Arc::new(p);

    // Client certificates.
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verify = match auth_type {
        "NoClientCert" | "" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(err(
                "client_auth_type",
                format!("{auth_type} accepts client certificates without verifying them, which rustls does not do"),
                "write VerifyClientCertIfGiven or RequireAndVerifyClientCert, with client_ca_file",
            ))
        }
        other => {
            return Err(err(
                "client_auth_type",
                format!("unknown value {other:?}"),
                "write NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            ))
        }
    };
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(err(
            "client_allowed_sans",
            "is not supported by rpo-agent".into(),
            "remove it; restrict clients by their CA (client_ca_file) instead",
        ));
    }
    let client_ca = t.client_ca_file.as_deref().filter(|s| !s.trim().is_empty());
    let verifier = match (verify, client_ca) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(err(
                "client_ca_file",
                "is set but client_auth_type does not verify client certificates".into(),
                "add client_auth_type: RequireAndVerifyClientCert (or remove client_ca_file)",
            ))
        }
        (Some(_), None) => {
            return Err(err(
                "client_ca_file",
                format!(
                "missing: client_auth_type {auth_type} needs the CA that signs client certificates"
            ),
                "name that CA's PEM file",
            ))
        }
        (Some(optional), Some(ca)) => {
            let path = resolve(base, ca);
            let mut roots = RootCertStore::empty();
            let certs = read_certs(&path).map_err(|e| {
                err(
                    "client_ca_file",
                    format!("{}: {e}", path.display()),
                    "name a readable PEM file of CA certificates",
                )
            })?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    err(
                        "client_ca_file",
                        format!("{}: not a usable CA certificate: {e}", path.display()),
                        "name a PEM file of CA certificates",
                    )
                })?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone());
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(b.build().map_err(|e| {
                err(
                    "client_ca_file",
                    format!("{}: {e}", path.display()),
                    "name a PEM file of CA certificates",
                )
            })?)
        }
    };

    let resolver = ReloadingCert::new(cert_file, key_file, p.clone(), file)?;
    let builder = ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            err(
                "cipher_suites",
                format!("no cipher suite is left for the versions chosen: {e}"),
                "allow TLS13, or list TLS 1.2 suites",
            )
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    // Go's tls ignores prefer_server_cipher_suites since 1.17 and always
    // prefers the server's order; default true as in exporter-toolkit.
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the file".into());
    }
    Ok(certs)
}

/// The certificate and key as rustls uses them; `Err` names the key.
fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    p: &CryptoProvider,
) -> Result<CertifiedKey, (&'static str, String)> {
    let certs = read_certs(cert_file)
        .map_err(|e| ("cert_file", format!("{}: {e}", cert_file.display())))?;
    let bytes = std::fs::read(key_file)
        .map_err(|e| ("key_file", format!("{}: {e}", key_file.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        (
            "key_file",
            format!(
                "{}: no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
                key_file.display()
            ),
        )
    })?;
    CertifiedKey::from_der(certs, key, p).map_err(|e| {
        (
            "key_file",
            format!(
                "{}: does not fit {} ({e})",
                key_file.display(),
                cert_file.display()
            ),
        )
    })
}

/// Serves the certificate from `cert_file`/`key_file`, read again when
/// either file's modification time or size changed (checked at most every
/// [`CERT_CHECK_EVERY`], during a handshake). A pair that cannot be read or
/// does not match (a rotation half done) keeps the previous one in service
/// and is tried again at the next check.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertState>,
}

struct CertState {
    current: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

type Stamp = [(Option<SystemTime>, u64); 2];

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl ReloadingCert {
    fn new(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
        file: &Path,
    ) -> Result<Self, WebConfigError> {
        let stamp = stamp(&cert_file, &key_file);
        let pair = load_pair(&cert_file, &key_file, &provider).map_err(|(key, problem)| {
            WebConfigError {
                file: file.to_path_buf(),
                key: format!("tls_server_config.{key}"),
                problem,
                fix: if key == "cert_file" {
                    "name a readable PEM file: the server certificate first, then its chain".into()
                } else {
                    "name the readable PEM file of the private key of cert_file".into()
                },
            }
        })?;
        Ok(ReloadingCert {
            cert_file,
            key_file,
            provider,
            state: Mutex::new(CertState {
                current: Arc::new(pair),
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to serve now, re-read first if its files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= CERT_CHECK_EVERY {
            st.checked = Instant::now();
            let now = stamp(&self.cert_file, &self.key_file);
            if now != st.stamp {
                match load_pair(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(pair) => {
                        st.current = Arc::new(pair);
                        st.stamp = now;
                        tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                    }
                    // Keep the stamp: try again at the next check.
                    Err((_, problem)) => tracing::warn!(
                        %problem,
                        "cannot reload the TLS certificate; still serving the previous one"
                    ),
                }
            }
        }
        st.current.clone()
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(cert), one(key)]
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(
            text,
            Path::new("/etc/rpo-agent/web.yml"),
            Path::new("/nonexistent"),
        )
    }

    const HASH: &str = "$2b$10$2Rr315yuk11QKA9car6AvewMIRutoJU3tA3PhUXGlbeQq64Gb1Qda";

    #[test]
    fn empty_file_means_nothing_configured() {
        for text in ["", "# nothing\n", "---\n"] {
            let c = parse(text).unwrap();
            assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
        }
    }

    #[test]
    fn users_and_headers() {
        let c = parse(&format!(
            "basic_auth_users:\n  prometheus: {HASH}\nhttp_server_config:\n  http2: false\n  headers:\n    x-frame-options: deny\n"
        ))
        .unwrap();
        assert_eq!(c.users.get("prometheus").map(String::as_str), Some(HASH));
        assert_eq!(c.headers[0].0.as_str(), "x-frame-options");
        // Debug output names users, never hashes.
        assert!(!format!("{c:?}").contains(HASH));
    }

    #[track_caller]
    fn fails(text: &str, key: &str, fix: &str) -> WebConfigError {
        let e = parse(text).expect_err(text);
        assert_eq!(e.key, key, "{e}");
        assert!(e.fix.contains(fix), "{e}");
        let s = e.to_string();
        assert!(s.starts_with("/etc/rpo-agent/web.yml: "), "{s}");
        e
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = fails(
            "tls_server_config:\n  certfile: a\n",
            "tls_server_config.certfile",
            "remove or correct",
        );
        assert!(e.problem.contains("expected one of `cert_file`"), "{e}");
        fails(
            "basic_auth_user:\n  a: b\n",
            "basic_auth_user",
            "remove or correct",
        );
        fails(
            "http_server_config:\n  foo: 1\n",
            "http_server_config.foo",
            "remove",
        );
        fails(
            "basic_auth_users: [a]\n",
            "basic_auth_users",
            "correct the YAML",
        );
    }

    #[test]
    fn bad_hashes_are_refused_without_quoting_them() {
        let e = fails(
            "basic_auth_users:\n  alice: secret-in-clear\n",
            "basic_auth_users.alice",
            "htpasswd -nBC 10",
        );
        assert!(!e.to_string().contains("secret-in-clear"), "{e}");
        fails(
            &format!("basic_auth_users:\n  alice: {}\n", &HASH[..50]),
            "basic_auth_users.alice",
            "bcrypt",
        );
        fails(
            &format!(
                "basic_auth_users:\n  alice: {}\n",
                HASH.replace("$10$", "$03$")
            ),
            "basic_auth_users.alice",
            "bcrypt",
        );
    }

    #[test]
    fn what_rustls_cannot_do_is_refused_with_the_alternative() {
        let tls = |rest: &str| {
            format!("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n{rest}")
        };
        fails(
            &tls("  min_version: TLS10\n"),
            "tls_server_config.min_version",
            "TLS12",
        );
        fails(
            &tls("  max_version: TLS11\n"),
            "tls_server_config.max_version",
            "TLS12",
        );
        fails(
            &tls("  min_version: TLS13\n  max_version: TLS12\n"),
            "tls_server_config.min_version",
            "TLS12",
        );
        fails(
            &tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n"),
            "tls_server_config.cipher_suites[1]",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        );
        fails(
            &tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "tls_server_config.cipher_suites[0]",
            "TLS 1.2 suites only",
        );
        fails(
            &tls("  curve_preferences: [CurveP521]\n"),
            "tls_server_config.curve_preferences[0]",
            "CurveP384",
        );
        fails(
            &tls("  client_auth_type: RequireAnyClientCert\n"),
            "tls_server_config.client_auth_type",
            "RequireAndVerifyClientCert",
        );
        fails(
            &tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            "tls_server_config.client_ca_file",
            "CA",
        );
        fails(
            &tls("  client_ca_file: ca.pem\n"),
            "tls_server_config.client_ca_file",
            "client_auth_type",
        );
        fails(
            &tls("  client_allowed_sans: [a]\n"),
            "tls_server_config.client_allowed_sans",
            "client_ca_file",
        );
        fails(
            "http_server_config:\n  http2: true\n",
            "http_server_config.http2",
            "http2: false",
        );
        fails(
            "http_server_config:\n  headers:\n    Server: x\n",
            "http_server_config.headers.Server",
            "Strict-Transport-Security",
        );
        fails(
            "tls_server_config:\n  key_file: k.pem\n",
            "tls_server_config.cert_file",
            "PEM",
        );
        fails(
            "tls_server_config:\n  cert_file: c.pem\n",
            "tls_server_config.key_file",
            "PEM",
        );
    }

    #[test]
    fn missing_certificate_files_are_named_with_the_resolved_path() {
        let e = fails(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
            "tls_server_config.cert_file",
            "PEM",
        );
        assert!(e.problem.contains("/nonexistent/c.pem"), "{e}");
    }

    /// A self-signed EC pair made with the openssl CLI (cert, key).
    fn openssl_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
        (crt, key)
    }

    #[test]
    fn a_rotated_certificate_is_served_and_a_half_rotation_is_not() {
        let dir = std::env::temp_dir().join(format!("rpo-wc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a_crt, a_key) = openssl_pair(&dir, "a");
        let (b_crt, b_key) = openssl_pair(&dir, "b");
        let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::copy(&a_crt, &crt).unwrap();
        std::fs::copy(&a_key, &key).unwrap();
        let p = Arc::new(provider::default_provider());
        let r = ReloadingCert::new(crt.clone(), key.clone(), p, Path::new("web.yml")).unwrap();
        let der = |f: &Path| read_certs(f).unwrap().remove(0);
        assert_eq!(r.current().cert[0], der(&a_crt));
        let force_check = || r.state.lock().unwrap().checked -= CERT_CHECK_EVERY;

        // Half a rotation (the new certificate, the old key): the old pair stays.
        std::fs::copy(&b_crt, &crt).unwrap();
        force_check();
        assert_eq!(r.current().cert[0], der(&a_crt));
        // The key follows: the new pair is served at the next check, not before.
        std::fs::copy(&b_key, &key).unwrap();
        assert_eq!(
            r.current().cert[0],
            der(&a_crt),
            "checked at most every 5 s"
        );
        force_check();
        assert_eq!(r.current().cert[0], der(&b_crt));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_at_load() {
        let dir = std::env::temp_dir().join(format!("rpo-wc-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        openssl_pair(&dir, "a");
        openssl_pair(&dir, "b");
        let e = WebConfig::parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: b.key\n",
            Path::new("web.yml"),
            &dir,
        )
        .unwrap_err();
        assert_eq!(e.key, "tls_server_config.key_file", "{e}");
        assert!(e.problem.contains("does not fit"), "{e}");
        let ok = WebConfig::parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS13\n  curve_preferences: [X25519]\n",
            Path::new("web.yml"),
            &dir,
        )
        .unwrap();
        assert!(ok.tls.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
