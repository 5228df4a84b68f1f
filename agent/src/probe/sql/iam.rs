//! IAM database authentication: a SigV4-presigned `rds-db:connect` URL used as
//! the password. Tokens live 15 minutes; the probe renews them well before.

use std::time::SystemTime;

use aws_credential_types::Credentials;

pub use crate::aws::presign::RENEW_AFTER;

/// Builds the token for `user` at `host:port` in `region`, signed at `now`.
pub fn token(
    creds: &Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    now: SystemTime,
) -> Result<String, String> {
    crate::aws::presign::connect_token(
        creds,
        region,
        "rds-db",
        "https",
        &format!("{host}:{port}"),
        &[("Action", "connect"), ("DBUser", user)],
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
