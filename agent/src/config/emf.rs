//! Validation of `[emf]`: raw → `EmfConfig`, or the first problem with its
//! line, key and fix. Nothing here does I/O.

use std::time::Duration;

use toml::Spanned;

use super::raw::RawEmf;
use super::validate::Ctx;
use super::{ConfigError, EmfConfig, EmfDimension, EmfTo};

const DEFAULT_NAMESPACE: &str = "RPOAgent";
const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// CloudWatch's finest resolution is one second.
const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest `every`: the ProbeDown alarm of `rpo-agent alarms`
/// evaluates 3 periods of `every` (rounded up to a minute), and CloudWatch
/// caps an alarm's Period × EvaluationPeriods at one day (86,400 s:
/// `alarms::limits::MAX_ALARM_EVALUATION_SECONDS`), so 8 h at most.
pub(crate) const MAX_EVERY: Duration = Duration::from_secs(8 * 3600);
/// EMF's limit on dimension sets' size (CloudWatch's on a metric).
const MAX_DIMENSIONS_PER_SET: usize = 30;

pub(super) fn emf(cx: &Ctx, sp: &Spanned<RawEmf>) -> Result<EmfConfig, ConfigError> {
    let e = sp.get_ref();
    let to = match &e.to {
        None => EmfTo::Stdout,
        Some(v) => destination(cx, v)?,
    };
    let namespace = match &e.namespace {
        None => DEFAULT_NAMESPACE.to_string(),
        Some(v) => {
            let ns = v.get_ref().trim();
            let valid = !ns.is_empty()
                && ns.len() <= 255
                && !ns.starts_with("AWS/")
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_/#:".contains(c));
            if !valid {
                return Err(cx.err_at(
                    Some(v.span().start),
                    "emf.namespace",
                    &format!("`{ns}` is not a CloudWatch custom namespace"),
                    "use up to 255 letters, digits or . - _ / # : that do not start with \"AWS/\", e.g. \"RPOAgent\"",
                ));
            }
            ns.to_string()
        }
    };
    let every = cx.opt_duration(&e.every, "emf.every", DEFAULT_EVERY)?;
    if every < MIN_EVERY || every.subsec_nanos() != 0 {
        return Err(cx.err_at(
            e.every.as_ref().map(|s| s.span().start),
            "emf.every",
            &format!(
                "{} is not a whole number of seconds of at least 1s",
                humantime::format_duration(every)
            ),
            "use whole seconds such as \"60s\" (the default) or \"1s\" (CloudWatch's finest resolution)",
        ));
    }
    if every > MAX_EVERY {
        return Err(cx.err_at(
            e.every.as_ref().map(|s| s.span().start),
            "emf.every",
            &format!(
                "{} is longer than 8h: the ProbeDown alarm evaluates three periods of `every`, and CloudWatch refuses an alarm whose Period × EvaluationPeriods is over one day (86,400 s)",
                humantime::format_duration(every)
            ),
            "use \"8h\" or less (the default is \"60s\")",
        ));
    }
    let storage_resolution = match &e.storage_resolution {
        None => 60,
        Some(v) if matches!(*v.get_ref(), 1 | 60) => *v.get_ref() as u32,
        Some(v) => {
            return Err(cx.err_at(
                Some(v.span().start),
                "emf.storage_resolution",
                &format!("{} is not a CloudWatch storage resolution", v.get_ref()),
                "use 60 (standard, one datapoint a minute) or 1 (high resolution: every second, alarms from 10 s)",
            ))
        }
    };
    let dimensions = match &e.dimensions {
        None => vec![vec![EmfDimension::Target, EmfDimension::ReplicaRegion]],
        Some(v) => dimension_sets(cx, v)?,
    };
    Ok(EmfConfig {
        to,
        namespace,
        every,
        storage_resolution,
        dimensions,
    })
}

fn destination(cx: &Ctx, v: &Spanned<String>) -> Result<EmfTo, ConfigError> {
    let text = v.get_ref().trim();
    if text == "stdout" {
        return Ok(EmfTo::Stdout);
    }
    let fix = "write \"stdout\" (ECS awslogs), \"tcp://127.0.0.1:25888\" or \"udp://127.0.0.1:25888\" (the CloudWatch agent's EMF listener)";
    let bad = |problem: String| cx.err_at(Some(v.span().start), "emf.to", &problem, fix);
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| bad(format!("`{text}` is not a destination")))?;
    let valid_addr = rest.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !valid_addr {
        return Err(bad(format!("`{rest}` is not HOST:PORT")));
    }
    match scheme {
        "tcp" => Ok(EmfTo::Tcp(rest.to_string())),
        "udp" => Ok(EmfTo::Udp(rest.to_string())),
        other => Err(bad(format!("`{other}://` is not a destination scheme"))),
    }
}

fn dimension_sets(
    cx: &Ctx,
    v: &Spanned<Vec<Vec<Spanned<String>>>>,
) -> Result<Vec<Vec<EmfDimension>>, ConfigError> {
    let names: Vec<&str> = EmfDimension::ALL.iter().map(|d| d.as_str()).collect();
    if v.get_ref().is_empty() {
        return Err(cx.err_at(
            Some(v.span().start),
            "emf.dimensions",
            "no dimension set: the metrics of every target would be one",
            "leave it out for [[\"Target\", \"ReplicaRegion\"]], or list sets of those names",
        ));
    }
    let mut sets: Vec<Vec<EmfDimension>> = Vec::new();
    for set in v.get_ref() {
        let mut dims = Vec::new();
        for name in set {
            let d = EmfDimension::ALL
                .into_iter()
                .find(|d| d.as_str() == name.get_ref().trim())
                .ok_or_else(|| {
                    cx.err_at(
                        Some(name.span().start),
                        "emf.dimensions",
                        &format!("`{}` is not a dimension of these metrics", name.get_ref()),
                        &format!("use {}", names.join(", ")),
                    )
                })?;
            if dims.contains(&d) {
                return Err(cx.err_at(
                    Some(name.span().start),
                    "emf.dimensions",
                    &format!("`{}` appears twice in one dimension set", d.as_str()),
                    "name each dimension once per set",
                ));
            }
            dims.push(d);
        }
        if dims.is_empty() || dims.len() > MAX_DIMENSIONS_PER_SET {
            return Err(cx.err_at(
                Some(v.span().start),
                "emf.dimensions",
                "an empty dimension set",
                "every set names at least one of Target, ReplicaRegion, SourceRegion, Kind",
            ));
        }
        if sets.iter().any(|s| same_set(s, &dims)) {
            return Err(cx.err_at(
                Some(v.span().start),
                "emf.dimensions",
                "the same dimension set is listed twice",
                "list each set once: every set is billed as its own custom metrics",
            ));
        }
        sets.push(dims);
    }
    Ok(sets)
}

fn same_set(a: &[EmfDimension], b: &[EmfDimension]) -> bool {
    a.len() == b.len() && a.iter().all(|d| b.contains(d))
}
