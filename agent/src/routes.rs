//! Expands configured targets into routes by asking each target's backend
//! (`probe::<kind>::routes`) for them: this module only dispatches by kind.
//! Building routes makes no network call: it only creates (shared) clients
//! and probes.

use crate::aws::AwsPlumbing;
use crate::config::{Config, Kind};
use crate::probe::{dynamodb, redis, s3, sql};

pub use crate::route::{AwsReported, Route};

/// Errors building routes (before any network call).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("target `{target}`: kind `{kind}` is not supported by this build of rpo-agent")]
    Unsupported { target: String, kind: &'static str },
}

/// Builds every route of the configuration.
pub async fn build(
    cfg: &Config,
    agent_id: &str,
    aws: &AwsPlumbing,
) -> Result<Vec<Route>, RouteError> {
    // A fleet's agents share one canary per target: the fleet's name takes
    // the agent id's place in the keys.
    let owner = cfg.fleet.as_ref().map_or(agent_id, |f| f.name.as_str());
    let mut routes = Vec::new();
    for t in &cfg.targets {
        match t.kind {
            Kind::Dynamodb => routes.extend(dynamodb::routes(t, owner, aws).await),
            Kind::S3 => routes.extend(s3::routes(t, owner, aws).await),
            Kind::Postgres | Kind::Mysql => routes.extend(sql::routes(t, owner, aws)),
            Kind::Redis => routes.extend(redis::routes(t, owner, aws).await),
            #[allow(unreachable_patterns)]
            other => {
                return Err(RouteError::Unsupported {
                    target: t.name.clone(),
                    kind: other.as_str(),
                })
            }
        }
    }
    Ok(routes)
}
