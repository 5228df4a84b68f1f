//! Where a password comes from, for the kinds that log in (SQL, Redis): the
//! URL, an environment variable, a Secrets Manager secret, or the AWS
//! credentials an IAM auth token is signed with. Each kind turns these into
//! its own password or token.

use aws_credential_types::provider::ProvideCredentials;

use crate::aws::AwsPlumbing;
use crate::config::Auth;
use crate::error::ProbeError;

/// Where the password comes from.
pub struct Credentials {
    pub auth: Auth,
    /// AWS endpoint override (Secrets Manager in the lab), from the endpoint.
    pub endpoint_url: Option<String>,
    /// The process's shared AWS plumbing (Secrets Manager client, the
    /// credential chain for IAM tokens). `GetSecretValue` calls count in
    /// `rpo_api_requests_total` for `target`, as every other AWS call does.
    pub aws: AwsPlumbing,
    pub target: String,
}

impl Credentials {
    /// The password in environment variable `var` (auth.password_env).
    pub fn env_password(&self, var: &str, what: &str) -> Result<String, ProbeError> {
        std::env::var(var).map_err(|_| {
            ProbeError::config(
                "connect",
                "password_env_unset",
                format!("{what}: environment variable {var} (auth.password_env) is not set"),
            )
        })
    }

    /// The AWS credentials an IAM auth token for `region` is signed with.
    pub async fn aws_credentials(
        &self,
        region: &str,
        what: &str,
    ) -> Result<aws_credential_types::Credentials, ProbeError> {
        let sdk = self
            .aws
            .sdk_config(region, self.endpoint_url.as_deref())
            .await;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            ProbeError::config(
                "connect",
                "no_credentials",
                format!(
                    "{what}: auth = {{ iam = true }} needs AWS credentials, none are configured"
                ),
            )
        })?;
        provider.provide_credentials().await.map_err(|e| {
            ProbeError::config(
                "connect",
                "no_credentials",
                format!("{what}: no AWS credentials for the IAM auth token: {e}"),
            )
        })
    }

    /// The secret's text (`SecretString`), as stored.
    pub async fn secret(&self, arn: &str, what: &str) -> Result<String, ProbeError> {
        // arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME
        let region = arn.split(':').nth(3).unwrap_or("us-east-1");
        let client = self
            .aws
            .secretsmanager(region, self.endpoint_url.as_deref())
            .await;
        let out = client
            .get_secret_value()
            .secret_id(arn)
            .customize()
            .interceptor(self.aws.counter(&self.target, "secretsmanager", region))
            .send()
            .await
            .map_err(|e| {
                let mut err = crate::aws::errors::from_sdk("GetSecretValue", &e);
                err.message = format!("{what}: secret {arn}: {}", err.message);
                if err.code.contains("NotFound") || err.code.contains("AccessDenied") {
                    err.class = crate::error::ErrorClass::Config;
                }
                err
            })?;
        let text = out.secret_string().ok_or_else(|| {
            ProbeError::config(
                "GetSecretValue",
                "bad_secret",
                format!("{what}: secret {arn} has no SecretString"),
            )
        })?;
        Ok(text.to_string())
    }
}

/// A secret is either JSON with `password` (RDS-managed secrets) or the
/// password itself.
pub fn password_of_secret(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m
            .get("password")
            .and_then(|p| p.as_str())
            .unwrap_or(text)
            .to_string(),
        _ => text.to_string(),
    }
}

/// A secret's `username`, when it is JSON that has one (RBAC users).
pub fn username_of_secret(text: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m
            .get("username")
            .and_then(|p| p.as_str())
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_may_be_json_or_plain() {
        let json = r#"{"username":"rpo","password":"s3cr3t"}"#;
        assert_eq!(password_of_secret(json), "s3cr3t");
        assert_eq!(username_of_secret(json).as_deref(), Some("rpo"));
        assert_eq!(password_of_secret("plain"), "plain");
        assert_eq!(username_of_secret("plain"), None);
        assert_eq!(username_of_secret(r#"{"password":"x"}"#), None);
    }
}
