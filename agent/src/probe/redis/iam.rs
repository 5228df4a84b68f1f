//! ElastiCache IAM authentication: a SigV4-presigned `connect` request for a
//! user and a replication group, used as the AUTH password. Tokens are valid
//! 15 minutes (only when connecting: a connection lives on), and ElastiCache
//! drops IAM-authenticated connections after 12 hours, so the probe signs a
//! fresh token for every new connection and reconnects after `RECONNECT_AFTER`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

/// Reconnect (with a new token) before ElastiCache's 12-hour limit.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(11 * 3600);

/// The token for `user` of `replication_group` in `region`, signed at `now`.
pub fn token(
    creds: &Credentials,
    region: &str,
    replication_group: &str,
    user: &str,
    now: SystemTime,
) -> Result<String, String> {
    crate::aws::presign::connect_token(
        creds,
        region,
        "elasticache",
        "http",
        replication_group,
        &[("Action", "connect"), ("User", user)],
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_the_elasticache_connect_shape() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret/key", None, None, "t");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = token(&creds, "ap-northeast-3", "sessions-apne3", "rpo-agent", now).unwrap();
        assert!(
            t.starts_with("sessions-apne3/?Action=connect&User=rpo-agent&"),
            "{t}"
        );
        for p in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fap-northeast-3%2Felasticache%2Faws4_request",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
        ] {
            assert!(t.contains(p), "{p} missing in {t}");
        }
        assert!(!t.contains("secret"));
        assert!(!t.starts_with("http"));
    }
}
