//! Validation of `[fleet]`: raw → `FleetConfig`, or the first problem with
//! its line, key and fix. Nothing here does I/O.

use std::time::Duration;

use toml::Spanned;

use super::raw::RawFleet;
use super::validate::Ctx;
use super::{ConfigError, FleetConfig};

const DEFAULT_LEASE: Duration = Duration::from_secs(20);
/// Renewals come every lease/4: below 2 s a slow call already costs it.
const MIN_LEASE: Duration = Duration::from_secs(2);

pub(super) fn fleet(cx: &Ctx, sp: &Spanned<RawFleet>) -> Result<FleetConfig, ConfigError> {
    let at = Some(sp.span().start);
    let f = sp.get_ref();
    let required = |v: &Option<Spanned<String>>, key: &str, fix: &str| match v
        .as_ref()
        .map(|s| (s.get_ref().trim(), s.span().start))
    {
        Some((s, _)) if !s.is_empty() => Ok(s.to_string()),
        Some((_, start)) => Err(cx.err_at(Some(start), key, "empty", fix)),
        None => Err(cx.err_at(at, key, "missing", fix)),
    };
    let name = required(
        &f.name,
        "fleet.name",
        "add name = \"orders-api\": agents with the same name share the targets",
    )?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(cx.err_at(
            f.name.as_ref().map(|s| s.span().start),
            "fleet.name",
            &format!("`{name}` is not a valid fleet name"),
            "use letters, digits, '-', '_' or '.' (it takes the agent id's place in canary keys)",
        ));
    }
    let table = required(
        &f.table,
        "fleet.table",
        "add table = \"rpo-agent-leases\" (a DynamoDB table with partition key `pk`, a string; `rpo-agent init` creates it)",
    )?;
    let region = required(
        &f.region,
        "fleet.region",
        "add region = \"ap-northeast-3\": where the lease table lives (the DR region is best)",
    )?;
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(cx.err_at(
            f.region.as_ref().map(|s| s.span().start),
            "fleet.region",
            &format!("`{region}` is not a region name"),
            "write it like \"ap-northeast-3\"",
        ));
    }
    let lease = cx.opt_duration(&f.lease, "fleet.lease", DEFAULT_LEASE)?;
    if lease < MIN_LEASE {
        return Err(cx.err_at(
            f.lease.as_ref().map(|s| s.span().start),
            "fleet.lease",
            &format!(
                "{} is too short: the holder renews every lease/4, and one slow call would lose it",
                humantime::format_duration(lease)
            ),
            "use \"2s\" or more (default \"20s\")",
        ));
    }
    let endpoint_url = f
        .endpoint_url
        .as_ref()
        .map(|s| s.get_ref().trim().to_string());
    if let Some(u) = &endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(cx.err_at(
                f.endpoint_url.as_ref().map(|s| s.span().start),
                "fleet.endpoint_url",
                &format!("`{u}` is not an http(s) URL"),
                "write it like \"https://dynamodb.ap-northeast-3.amazonaws.com\"",
            ));
        }
    }
    Ok(FleetConfig {
        name,
        table,
        region,
        lease,
        endpoint_url,
    })
}
