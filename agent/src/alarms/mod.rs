//! `rpo-agent alarms`: CloudWatch alarms and a dashboard for the agent's EMF
//! metrics, as a CloudFormation template, from the validated `Config` alone.
//!
//! Pure: no network, no AWS client, no clock. The pairs come from the
//! targets as `routes` would build them (one per replica region, and with
//! `direction = "both"` one back into the source's region), keyed by the EMF
//! dimensions `Target` and `ReplicaRegion` that the alarms select on.
//!
//! Why a generator and not a hand-written template: every threshold is a
//! target's objective, and a template kept by hand drifts from the config the
//! moment someone changes one. `deploy/check` regenerates the checked-in
//! template and fails when it differs.
//!
//! This file checks the `[emf]` section (`emf_of`) and builds the template
//! (`template`, `render`). The parts: `pairs` (what is watched: `Pair`,
//! `AlarmKind`, `Timing`), `names` (alarm names and logical ids, stable
//! across builds), `dashboard` (the dashboard body), `node` (the ordered tree
//! the template is built as, and its YAML and JSON writers, by hand so the
//! checked-in file is byte-stable).

mod dashboard;
#[cfg(test)]
mod fixtures;
pub mod limits;
mod names;
mod node;
mod pairs;

use std::time::Duration;

use crate::config::{Config, ConfigError, EmfConfig, EmfDimension, Origin};

pub use dashboard::aurora_cluster_id;
pub use limits::{Limit, Measure, Upload};
pub use names::{alarm_name, logical_id};
pub use node::{to_json, to_yaml, Node};
pub use pairs::{pairs, timing, AlarmKind, Pair, Timing};

use dashboard::dashboard_body;
use names::fit;
use node::{map, reference, s};

/// CloudWatch's limit on alarm names.
pub const MAX_ALARM_NAME: usize = 255;
/// CloudFormation's limit on logical ids.
pub const MAX_LOGICAL_ID: usize = 255;
/// CloudWatch's limit on alarm descriptions.
pub const MAX_DESCRIPTION: usize = 1024;
/// The dashboard's name unless the stack is given another.
pub const DEFAULT_DASHBOARD: &str = "rpo-agent";

/// Why no template can be made from this configuration: a configuration
/// problem (exit 2), told as `ConfigError`s are, with the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmsError {
    NoEmf,
    NoPairDimensions {
        sets: String,
    },
    /// One pair's alarms and panels alone break one of AWS's limits.
    PairTooLarge {
        pair: String,
        limit: Limit,
    },
}

impl AlarmsError {
    pub fn key(&self) -> &'static str {
        match self {
            AlarmsError::NoEmf => "emf",
            AlarmsError::NoPairDimensions { .. } => "emf.dimensions",
            AlarmsError::PairTooLarge { .. } => "target",
        }
    }

    pub fn problem(&self) -> String {
        match self {
            AlarmsError::NoEmf => "there is no [emf] section, so the agent writes no CloudWatch metrics to alarm on".to_string(),
            AlarmsError::NoPairDimensions { sets } => format!(
                "no dimension set is [\"Target\", \"ReplicaRegion\"] (the sets are {sets}): the alarms select each (target, replica region) by exactly those two dimensions"
            ),
            AlarmsError::PairTooLarge { pair, limit } => format!(
                "the alarms and dashboard of {pair} alone do not fit one template: {}",
                limit.describe()
            ),
        }
    }

    pub fn fix(&self) -> &'static str {
        match self {
            AlarmsError::NoEmf => "add `[emf]` with `to = \"stdout\"` (on ECS the awslogs driver ships stdout to CloudWatch Logs, which extracts the metrics)",
            AlarmsError::NoPairDimensions { .. } => "leave emf.dimensions out (the default is [[\"Target\", \"ReplicaRegion\"]]), or add [\"Target\", \"ReplicaRegion\"] as one of its sets",
            AlarmsError::PairTooLarge { .. } => "write the templates for S3 (rpo-agent alarms --s3, then aws cloudformation deploy --s3-bucket), or shorten the target's name",
        }
    }

    /// As the configuration error it is, naming where the text came from.
    pub fn config_error(&self, origin: &Origin) -> ConfigError {
        ConfigError::new(origin, None, self.key(), &self.problem(), self.fix())
    }
}

impl std::fmt::Display for AlarmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: {}\n  fix: {}",
            self.key(),
            self.problem(),
            self.fix()
        )
    }
}

impl std::error::Error for AlarmsError {}

/// Checks that the alarms can select the pairs' series.
pub fn emf_of(cfg: &Config) -> Result<&EmfConfig, AlarmsError> {
    let emf = cfg.emf.as_ref().ok_or(AlarmsError::NoEmf)?;
    let wanted = [EmfDimension::Target, EmfDimension::ReplicaRegion];
    let has = emf
        .dimensions
        .iter()
        .any(|s| s.len() == wanted.len() && wanted.iter().all(|d| s.contains(d)));
    if !has {
        let sets: Vec<String> = emf
            .dimensions
            .iter()
            .map(|s| {
                let names: Vec<String> = s.iter().map(|d| format!("\"{}\"", d.as_str())).collect();
                format!("[{}]", names.join(", "))
            })
            .collect();
        return Err(AlarmsError::NoPairDimensions {
            sets: format!("[{}]", sets.join(", ")),
        });
    }
    Ok(emf)
}

/// The CloudFormation template as YAML text.
pub fn render(cfg: &Config) -> Result<String, AlarmsError> {
    Ok(to_yaml(&template(cfg)?))
}

/// Seconds as a number: an integer when whole, so the threshold reads as
/// the objective does.
fn seconds(d: Duration) -> Node {
    if d.subsec_nanos() == 0 {
        Node::Num(d.as_secs().to_string())
    } else {
        Node::Num(format!("{}", d.as_secs_f64()))
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The template as a tree: every pair in one template, as `render` writes
/// it (whether or not it fits AWS's limits: `plan` checks them).
pub fn template(cfg: &Config) -> Result<Node, AlarmsError> {
    let emf = emf_of(cfg)?;
    Ok(build(cfg, emf, &timing(emf), &pairs(cfg), None))
}

/// One of several templates: the `index`-th (from 1) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub of: usize,
}

/// A template `plan` wrote, with what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// `None` when one template holds every pair (the file `render` writes).
    pub part: Option<Part>,
    pub text: String,
    /// The pairs it holds, in config order (labels: `Pair::label`).
    pub pairs: Vec<String>,
    pub measure: Measure,
    /// The limit that one more pair would have broken (`None` for the last
    /// or only template).
    pub full: Option<Limit>,
}

/// Every pair's alarms and dashboard panels in templates that each pass all
/// of AWS's limits (`limits`) for this upload: one template when it fits,
/// else several, each with its own dashboard (`<DashboardName>-<n>`), filled
/// in config order. A template ends at a target's boundary when it can, so
/// a target's alarms stay in one stack; adding targets at the end of the
/// configuration moves no alarm from one template to another.
pub fn plan(cfg: &Config, upload: Upload) -> Result<Vec<Written>, AlarmsError> {
    let emf = emf_of(cfg)?;
    let tm = timing(emf);
    let all = pairs(cfg);
    let measure = |ps: &[Pair], part: Option<Part>| {
        let t = build(cfg, emf, &tm, ps, part);
        let text = to_yaml(&t);
        let m = Measure::of(&t, &text);
        (text, m)
    };
    let (text, m) = measure(&all, None);
    if m.exceeds(upload).is_none() {
        return Ok(vec![Written {
            part: None,
            pairs: all.iter().map(Pair::label).collect(),
            text,
            measure: m,
            full: None,
        }]);
    }
    // Sized with the most parts there can be, so the final numbering
    // (shorter or as long) only makes the texts shorter.
    let most = Part {
        index: all.len(),
        of: all.len(),
    };
    let fits = |ps: &[Pair]| measure(ps, Some(most)).1.exceeds(upload);
    let mut bounds = Vec::new();
    let mut start = 0;
    let mut guess = 1;
    while start < all.len() {
        if let Some(limit) = fits(&all[start..start + 1]) {
            return Err(AlarmsError::PairTooLarge {
                pair: all[start].label(),
                limit,
            });
        }
        // The largest size that fits: gallop from the last one, then bisect.
        let rest = all.len() - start;
        let (mut lo, mut hi) = (1, rest + 1); // lo pairs fit; hi do not (or are past the end)
        let mut probe = guess.clamp(1, rest);
        while lo < rest && hi == rest + 1 {
            if probe > lo {
                match fits(&all[start..start + probe]) {
                    None => lo = probe,
                    Some(_) => hi = probe,
                }
            }
            probe = (lo * 2).min(rest);
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match fits(&all[start..start + mid]) {
                None => lo = mid,
                Some(_) => hi = mid,
            }
        }
        let mut end = start + lo;
        let full = (end < all.len())
            .then(|| fits(&all[start..end + 1]))
            .flatten();
        // Keep a target's pairs together when the template holds more than one target.
        if end < all.len() && all[end].target_index == all[end - 1].target_index {
            if let Some(b) = (start + 1..end)
                .rev()
                .find(|&b| all[b].target_index != all[b - 1].target_index)
            {
                end = b;
            }
        }
        bounds.push((start, end, full));
        guess = end - start;
        start = end;
    }
    let of = bounds.len();
    Ok(bounds
        .into_iter()
        .enumerate()
        .map(|(i, (a, b, full))| {
            let part = Part { index: i + 1, of };
            let (text, m) = measure(&all[a..b], Some(part));
            Written {
                part: Some(part),
                pairs: all[a..b].iter().map(Pair::label).collect(),
                text,
                measure: m,
                full,
            }
        })
        .collect())
}

/// The file a written template goes to in `--out-dir`: `rpo-alarms.yaml`
/// when one holds every pair, else `rpo-alarms-<n>.yaml`.
pub fn file_name(w: &Written) -> String {
    match w.part {
        None => "rpo-alarms.yaml".to_string(),
        Some(p) => format!("rpo-alarms-{}.yaml", p.index),
    }
}

/// Whether a file of `--out-dir` is one `file_name` gives (so a template
/// left from an earlier, longer plan can be removed, never deployed).
pub fn is_template_file(name: &str) -> bool {
    name == "rpo-alarms.yaml"
        || name
            .strip_prefix("rpo-alarms-")
            .and_then(|n| n.strip_suffix(".yaml"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why one template cannot hold every pair (for `--out FILE` and stdout).
pub fn why_not_one(ws: &[Written], upload: Upload) -> String {
    let pairs: usize = ws.iter().map(|w| w.pairs.len()).sum();
    let limits: Vec<String> = {
        let mut l: Vec<Limit> = ws.iter().filter_map(|w| w.full).collect();
        l.dedup();
        l.iter().map(|l| l.describe()).collect()
    };
    let s3 = match upload {
        Upload::Direct => " (or add --s3 to write templates of up to 1 MB, deployed with aws cloudformation deploy --s3-bucket: fewer of them)",
        Upload::S3 => "",
    };
    format!(
        "{pairs} (target, replica region) pairs do not fit one CloudFormation template: {}. Write {} templates with --out-dir DIR{s3}; each is its own stack with its own dashboard.",
        limits.join("; "),
        ws.len()
    )
}

/// What was written, for people: each file with its pairs, size and
/// dashboard, why it ends where it does, and how to deploy them.
pub fn summary(ws: &[Written], paths: &[String], upload: Upload) -> String {
    let mut out = String::new();
    let pairs: usize = ws.iter().map(|w| w.pairs.len()).sum();
    if ws.len() > 1 {
        out.push_str(&format!(
            "{pairs} (target, replica region) pairs in {} templates (AWS's limits do not let one hold them all):\n",
            ws.len()
        ));
    }
    for (w, path) in ws.iter().zip(paths) {
        let first = w.pairs.first().map_or("", String::as_str);
        let last = w.pairs.last().map_or("", String::as_str);
        let dashboard = match w.part {
            None => "<DashboardName>".to_string(),
            Some(p) => format!("<DashboardName>-{}", p.index),
        };
        out.push_str(&format!(
            "  {path}: {} pair(s) ({first} … {last}), {} alarms, {} bytes, {} resources, dashboard {dashboard} ({} widgets, {} metrics)",
            w.pairs.len(),
            w.measure.alarms,
            w.measure.bytes,
            w.measure.resources,
            w.measure.widgets,
            w.measure.dashboard_metrics,
        ));
        if let Some(l) = w.full {
            out.push_str(&format!("; full: {}", l.describe()));
        }
        out.push('\n');
    }
    if ws.len() > 1 {
        let s3 = match upload {
            Upload::Direct => "",
            Upload::S3 => " --s3-bucket <bucket>",
        };
        out.push_str(&format!(
            "Deploy each as its own stack, e.g. aws cloudformation deploy --stack-name rpo-agent-alarms-<n> --template-file <file>{s3} (same parameters for all). Templates are filled in config order: add targets at the end, or a pair's alarms move to another template (deploy the template that loses them first).\n"
        ));
    }
    out
}

/// The template of `pairs` (all of them, or one `part`).
fn build(cfg: &Config, emf: &EmfConfig, tm: &Timing, pairs: &[Pair], part: Option<Part>) -> Node {
    let mut resources = Vec::new();
    let mut names = Vec::new();
    for p in pairs {
        for kind in AlarmKind::ALL {
            let name = alarm_name(&emf.namespace, kind, &p.target, &p.replica_region);
            names.push(name.clone());
            resources.push((
                logical_id(kind, &p.target, &p.replica_region),
                alarm(emf, tm, p, kind, name),
            ));
        }
    }
    let dashboard_name = match part {
        None => reference("DashboardName"),
        Some(p) => map([("Fn::Sub", s(&format!("${{DashboardName}}-{}", p.index)))]),
    };
    resources.push((
        "Dashboard".to_string(),
        map([
            ("Type", s("AWS::CloudWatch::Dashboard")),
            (
                "Properties",
                map([
                    ("DashboardName", dashboard_name),
                    (
                        "DashboardBody",
                        map([("Fn::Sub", s(&dashboard_body(cfg, emf, tm, pairs, &names)))]),
                    ),
                ]),
            ),
        ]),
    ));

    let targets = {
        let mut t: Vec<usize> = pairs.iter().map(|p| p.target_index).collect();
        t.dedup();
        t.len()
    };
    let which = match part {
        None => String::new(),
        Some(p) => format!(
            " Template {} of {}: the pairs do not fit one (AWS's limits: agent/src/alarms/limits.rs).",
            p.index, p.of
        ),
    };
    let description = format!(
        "rpo-agent: CloudWatch alarms (RPO above objective, probe down, canaries lost) and a dashboard for the EMF metrics of namespace {}: {} target(s), {} (target, replica region) pair(s). Generated by `rpo-agent alarms`; regenerate it, do not edit it.{which}",
        emf.namespace,
        targets,
        pairs.len()
    );
    let (name_pattern, name_description) = match part {
        None => (
            "^[A-Za-z0-9_-]{1,255}$",
            "Name of the CloudWatch dashboard (dashboards are global: unique per account).".to_string(),
        ),
        Some(p) => (
            "^[A-Za-z0-9_-]{1,245}$",
            format!(
                "Name of the CloudWatch dashboards, each followed by its template's number (this one: <name>-{}; dashboards are global: unique per account).",
                p.index
            ),
        ),
    };
    let name_constraint = match part {
        None => "1 to 255 letters, digits, '-' or '_'",
        Some(_) => "1 to 245 letters, digits, '-' or '_'",
    };
    map([
        ("AWSTemplateFormatVersion", s("2010-09-09")),
        ("Description", s(&description)),
        (
            "Parameters",
            map([
                (
                    "AlarmTopicArn",
                    map([
                        ("Type", s("String")),
                        ("Description", s("SNS topic notified when an alarm goes to ALARM and back to OK.")),
                        ("AllowedPattern", s("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$")),
                        ("ConstraintDescription", s("an SNS topic ARN, arn:aws:sns:<region>:<account>:<name>")),
                    ]),
                ),
                (
                    "DashboardName",
                    map([
                        ("Type", s("String")),
                        ("Default", s(DEFAULT_DASHBOARD)),
                        ("Description", s(&name_description)),
                        ("AllowedPattern", s(name_pattern)),
                        ("ConstraintDescription", s(name_constraint)),
                    ]),
                ),
            ]),
        ),
        ("Resources", Node::Map(resources)),
        (
            "Outputs",
            map([(
                "DashboardUrl",
                map([
                    ("Description", s("The dashboard in the CloudWatch console")),
                    (
                        "Value",
                        map([(
                            "Fn::Sub",
                            s("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards:name=${Dashboard}"),
                        )]),
                    ),
                ]),
            )]),
        ),
    ])
}

fn alarm(emf: &EmfConfig, tm: &Timing, p: &Pair, kind: AlarmKind, name: String) -> Node {
    let from = p.source_regions.join(" and ");
    let silence = "Missing data is breaching: no datapoint means the agent is silent or measures nothing, which is a failure here (the opposite of AWS's own lag alarms: alarms on AWS/DynamoDB metrics always ignore missing data, and ReplicationLatency stops reporting when nothing replicates).";
    let (stat, op, threshold, periods, what) = match kind {
        AlarmKind::Rpo => (
            "Maximum",
            "GreaterThanThreshold",
            seconds(p.objective),
            tm.rpo_periods,
            format!(
                "RPO of {} ({}) {} -> {} above its objective of {} ({} s).",
                p.target,
                p.kind.as_str(),
                from,
                p.replica_region,
                human(p.objective),
                seconds_text(p.objective)
            ),
        ),
        AlarmKind::ProbeUp => (
            "Minimum",
            "LessThanThreshold",
            Node::Num("1".into()),
            tm.probe_periods,
            format!(
                "Probe of {} ({}) {} -> {} down: a canary write or read failed (see the agent's logs and rpo-agent check).",
                p.target,
                p.kind.as_str(),
                from,
                p.replica_region
            ),
        ),
        AlarmKind::CanariesLost => (
            "Sum",
            "GreaterThanThreshold",
            Node::Num("0".into()),
            tm.lost_periods,
            format!(
                "Canaries of {} ({}) {} -> {} lost: not seen in the replica within the target's timeout.",
                p.target,
                p.kind.as_str(),
                from,
                p.replica_region
            ),
        ),
    };
    let silence = match kind {
        AlarmKind::Rpo => silence,
        _ => "Missing data is breaching: a silent agent is a failure.",
    };
    let mut description = format!("{what} {silence}");
    if description.len() > MAX_DESCRIPTION {
        description = what;
    }
    let description = fit(&description, MAX_DESCRIPTION);
    map([
        ("Type", s("AWS::CloudWatch::Alarm")),
        (
            "Properties",
            map([
                ("AlarmName", s(&name)),
                ("AlarmDescription", s(&description)),
                ("Namespace", s(&emf.namespace)),
                ("MetricName", s(kind.metric())),
                (
                    "Dimensions",
                    Node::List(vec![
                        map([("Name", s("Target")), ("Value", s(&p.target))]),
                        map([
                            ("Name", s("ReplicaRegion")),
                            ("Value", s(&p.replica_region)),
                        ]),
                    ]),
                ),
                ("Statistic", s(stat)),
                ("Period", Node::Num(tm.period.to_string())),
                ("EvaluationPeriods", Node::Num(periods.to_string())),
                ("DatapointsToAlarm", Node::Num(periods.to_string())),
                ("Threshold", threshold),
                ("ComparisonOperator", s(op)),
                ("TreatMissingData", s("breaching")),
                ("ActionsEnabled", Node::Bool(true)),
                ("AlarmActions", Node::List(vec![reference("AlarmTopicArn")])),
                ("OKActions", Node::List(vec![reference("AlarmTopicArn")])),
            ]),
        ),
    ])
}

fn seconds_text(d: Duration) -> String {
    match seconds(d) {
        Node::Num(n) => n,
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{alarms_of, two_targets, EMF};
    use super::*;

    fn dim<'a>(props: &'a Node, name: &str) -> &'a str {
        let Some(Node::List(ds)) = props.get("Dimensions") else {
            panic!()
        };
        ds.iter()
            .find(|d| d.get("Name").and_then(Node::as_str) == Some(name))
            .and_then(|d| d.get("Value"))
            .and_then(Node::as_str)
            .unwrap()
    }

    fn num(n: &Node) -> f64 {
        match n {
            Node::Num(v) => v.parse().unwrap(),
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn one_alarm_of_each_kind_per_pair_with_the_objective_as_threshold() {
        let c = two_targets(EMF);
        let t = template(&c).unwrap();
        let alarms = alarms_of(&t);
        let ps = pairs(&c);
        assert_eq!(ps.len(), 5);
        assert_eq!(alarms.len(), 3 * ps.len());
        for p in &ps {
            for kind in AlarmKind::ALL {
                let found: Vec<&&Node> = alarms
                    .iter()
                    .map(|(_, a)| a)
                    .filter(|a| {
                        a.get("MetricName").and_then(Node::as_str) == Some(kind.metric())
                            && dim(a, "Target") == p.target
                            && dim(a, "ReplicaRegion") == p.replica_region
                    })
                    .collect();
                assert_eq!(found.len(), 1, "{kind:?} {}", p.label());
                let a = found[0];
                assert_eq!(
                    a.get("TreatMissingData").and_then(Node::as_str),
                    Some("breaching")
                );
                assert_eq!(a.get("Namespace").and_then(Node::as_str), Some("RPOAgent"));
                if kind == AlarmKind::Rpo {
                    assert_eq!(num(a.get("Threshold").unwrap()), p.objective.as_secs_f64());
                    assert_eq!(a.get("Statistic").and_then(Node::as_str), Some("Maximum"));
                    assert_eq!(
                        a.get("ComparisonOperator").and_then(Node::as_str),
                        Some("GreaterThanThreshold")
                    );
                }
            }
        }
        let threshold = |target: &str| {
            alarms
                .iter()
                .find(|(_, a)| {
                    a.get("MetricName").and_then(Node::as_str) == Some("RPO")
                        && dim(a, "Target") == target
                })
                .map(|(_, a)| a.get("Threshold").unwrap().clone())
                .unwrap()
        };
        // The agent default, a per-target override, and a fractional one.
        assert_eq!(threshold("orders"), Node::Num("60".into()));
        assert_eq!(threshold("invoices"), Node::Num("900".into()));
        assert_eq!(threshold("core-db"), Node::Num("2.5".into()));
    }

    #[test]
    fn without_emf_or_its_pair_dimensions_it_refuses_naming_the_key_and_the_fix() {
        let e = render(&two_targets("")).unwrap_err();
        assert_eq!(e, AlarmsError::NoEmf);
        let msg = e.to_string();
        assert!(
            msg.starts_with("`emf`:") && msg.contains("[emf]") && msg.contains("to = \"stdout\""),
            "{msg}"
        );
        let ce = e.config_error(&Origin::File("agent.toml".into()));
        assert_eq!((ce.key.as_str(), ce.line), ("emf", None));
        assert!(ce.to_string().starts_with("agent.toml: `emf`: "), "{ce}");

        let c = two_targets("[emf]\ndimensions = [[\"Target\"], [\"Target\", \"ReplicaRegion\", \"SourceRegion\"]]\n");
        let msg = render(&c).unwrap_err().to_string();
        assert!(msg.starts_with("`emf.dimensions`:"), "{msg}");
        assert!(
            msg.contains("[[\"Target\"], [\"Target\", \"ReplicaRegion\", \"SourceRegion\"]]"),
            "{msg}"
        );
        assert!(msg.contains("fix:"), "{msg}");

        // Order inside the set does not matter; extra sets are fine.
        let c = two_targets("[emf]\ndimensions = [[\"Kind\"], [\"ReplicaRegion\", \"Target\"]]\n");
        assert!(render(&c).is_ok());
    }
}
