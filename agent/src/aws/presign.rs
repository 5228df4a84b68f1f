//! SigV4 query-string presigning of a `connect` URL: the shape of both RDS
//! (`rds-db:connect`) and ElastiCache (`elasticache:Connect`) IAM auth
//! tokens. The token is the presigned URL without its scheme; it is used as
//! the password, and lives `TOKEN_LIFETIME`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// How long a token is valid (both services' maximum).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Renew after this age, so nothing connects with an expiring token.
pub const RENEW_AFTER: Duration = Duration::from_secs(600);

/// Presigns `GET {scheme}://{resource}/?{query}` for `service` in `region`
/// at `now`, and returns it without the scheme. `query` is given unencoded
/// as (name, value) pairs.
pub fn connect_token(
    creds: &Credentials,
    region: &str,
    service: &str,
    scheme: &str,
    resource: &str,
    query: &[(&str, &str)],
    now: SystemTime,
) -> Result<String, String> {
    let identity: Identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let unsigned = format!("{resource}/?{}", q.join("&"));
    let base = format!("{scheme}://{unsigned}");
    let req = SignableRequest::new("GET", &base, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _sig) = sign(req, &params).map_err(|e| e.to_string())?.into_parts();
    let mut out = unsigned;
    for (k, v) in instructions.params() {
        out.push('&');
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    Ok(out)
}

/// SigV4 percent-encoding: everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
