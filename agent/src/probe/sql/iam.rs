//! IAM database authentication: a SigV4-presigned `rds-db:connect` URL used as
//! the password. Tokens live 15 minutes; the probe renews them well before.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// How long a token is valid (the service maximum).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Renew after this age, so a pool never connects with an expiring token.
pub const RENEW_AFTER: Duration = Duration::from_secs(600);

/// Builds the token for `user` at `host:port` in `region`, signed at `now`.
pub fn token(
    creds: &Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    now: SystemTime,
) -> Result<String, String> {
    let identity: Identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let base = format!(
        "https://{host}:{port}/?Action=connect&DBUser={}",
        encode(user)
    );
    let req = SignableRequest::new("GET", &base, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _sig) = sign(req, &params).map_err(|e| e.to_string())?.into_parts();
    let mut out = format!("{host}:{port}/?Action=connect&DBUser={}", encode(user));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_the_rds_db_connect_shape() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secret/key+x",
            Some("sess=ion".into()),
            None,
            "t",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = token(
            &creds,
            "ap-northeast-1",
            "db.example",
            5432,
            "rpo user",
            now,
        )
        .unwrap();
        assert!(
            t.starts_with("db.example:5432/?Action=connect&DBUser=rpo%20user&"),
            "{t}"
        );
        assert!(!t.starts_with("https://"));
        for p in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fap-northeast-1%2Frds-db%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=sess%3Dion",
            "X-Amz-Signature=",
        ] {
            assert!(t.contains(p), "{p} missing in {t}");
        }
        let sig = t
            .split("X-Amz-Signature=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
        // The secret key never appears.
        assert!(!t.contains("secret"));
        // Deterministic for the same inputs.
        assert_eq!(
            t,
            token(
                &creds,
                "ap-northeast-1",
                "db.example",
                5432,
                "rpo user",
                now
            )
            .unwrap()
        );
    }
}
