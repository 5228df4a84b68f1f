//! The agent's id, part of every canary key: fixed in the config, else the
//! ECS task id from the task metadata endpoint, else the host name. A stable
//! id per task keeps one canary item per agent instead of one per restart.

use std::time::Duration;

use tracing::warn;

/// Environment variable ECS sets in every container of a task.
const ECS_METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Resolves the agent id.
pub async fn resolve(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.to_string();
    }
    if let Ok(base) = std::env::var(ECS_METADATA_ENV) {
        match ecs_task_id(&base).await {
            Some(id) => return id,
            None => warn!(
                "{ECS_METADATA_ENV} is set but the task id could not be read; using the host name"
            ),
        }
    }
    sanitize(&gethostname::gethostname().to_string_lossy())
}

async fn ecs_task_id(base: &str) -> Option<String> {
    let url = format!("{}/task", base.trim_end_matches('/'));
    let (status, body) = rpo_exporter::healthcheck::get_text(&url, Duration::from_secs(2))
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    task_id_from_arn(v.get("TaskARN")?.as_str()?)
}

/// `arn:aws:ecs:region:acct:task/cluster/0123abcd…` → `0123abcd…`.
fn task_id_from_arn(arn: &str) -> Option<String> {
    arn.rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && !s.starts_with("arn:"))
        .map(sanitize)
}

/// Keeps ids safe inside canary keys ('#' and '/' separate key parts).
fn sanitize(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c == '#' || c == '/' || c.is_whitespace() {
                '-'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() {
        "unknown-host".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_is_the_last_part_of_the_arn() {
        assert_eq!(
            task_id_from_arn("arn:aws:ecs:ap-northeast-1:123456789012:task/prod/8f2ad0c1b6e94c4a"),
            Some("8f2ad0c1b6e94c4a".into())
        );
        assert_eq!(task_id_from_arn("arn:aws:ecs:x"), None);
    }

    #[test]
    fn ids_never_contain_key_separators() {
        assert_eq!(sanitize("a#b/c d"), "a-b-c-d");
    }

    #[tokio::test]
    async fn a_configured_id_wins() {
        assert_eq!(resolve(Some("fixed")).await, "fixed");
    }
}
