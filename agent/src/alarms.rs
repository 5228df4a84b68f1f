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
//! The template is built as a small ordered tree (`Node`) and written as YAML
//! (and the dashboard body as JSON) by hand: serde_json's map order depends on
//! a cargo feature that other crates of the build may switch on, and the
//! checked-in file must be the same byte for byte whichever binary wrote it.

use std::time::Duration;

use crate::config::{
    Config, ConfigError, Direction, EmfConfig, EmfDimension, Kind, Origin, TargetConfig,
};

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
    NoPairDimensions { sets: String },
}

impl AlarmsError {
    pub fn key(&self) -> &'static str {
        match self {
            AlarmsError::NoEmf => "emf",
            AlarmsError::NoPairDimensions { .. } => "emf.dimensions",
        }
    }

    pub fn problem(&self) -> String {
        match self {
            AlarmsError::NoEmf => "there is no [emf] section, so the agent writes no CloudWatch metrics to alarm on".to_string(),
            AlarmsError::NoPairDimensions { sets } => format!(
                "no dimension set is [\"Target\", \"ReplicaRegion\"] (the sets are {sets}): the alarms select each (target, replica region) by exactly those two dimensions"
            ),
        }
    }

    pub fn fix(&self) -> &'static str {
        match self {
            AlarmsError::NoEmf => "add `[emf]` with `to = \"stdout\"` (on ECS the awslogs driver ships stdout to CloudWatch Logs, which extracts the metrics)",
            AlarmsError::NoPairDimensions { .. } => "leave emf.dimensions out (the default is [[\"Target\", \"ReplicaRegion\"]]), or add [\"Target\", \"ReplicaRegion\"] as one of its sets",
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

/// One (target, replica region) series of the EMF metrics: what one set of
/// alarms watches. Two routes that end in the same region (the reverse
/// routes of `direction = "both"` with several replicas) share the series,
/// because `Target` and `ReplicaRegion` are its only dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub target: String,
    pub kind: Kind,
    pub replica_region: String,
    /// The regions whose canaries this series measures (one, except for the
    /// shared reverse series above).
    pub source_regions: Vec<String>,
    pub objective: Duration,
    /// Index of the target in `Config::targets`.
    pub target_index: usize,
}

impl Pair {
    /// `orders ap-northeast-1→ap-northeast-3`, for labels.
    pub fn label(&self) -> String {
        format!(
            "{} {}→{}",
            self.target,
            self.source_regions.join("+"),
            self.replica_region
        )
    }
}

/// Every (target, replica region) of the configuration, in config order:
/// the forward pairs of a target first, then its reverse pairs.
pub fn pairs(cfg: &Config) -> Vec<Pair> {
    let mut out: Vec<Pair> = Vec::new();
    for (i, t) in cfg.targets.iter().enumerate() {
        let mut routes: Vec<(&str, &str)> = t
            .replicas
            .iter()
            .map(|r| (t.source.region.as_str(), r.region.as_str()))
            .collect();
        // The reverse routes exist for DynamoDB only (dynamodb::routes), but
        // validation already refuses "both" for the other kinds.
        if t.direction == Direction::Both {
            routes.extend(
                t.replicas
                    .iter()
                    .map(|r| (r.region.as_str(), t.source.region.as_str())),
            );
        }
        for (from, to) in routes {
            match out
                .iter_mut()
                .find(|p| p.target == t.name && p.replica_region == to)
            {
                Some(p) => {
                    if !p.source_regions.iter().any(|s| s == from) {
                        p.source_regions.push(from.to_string());
                    }
                }
                None => out.push(Pair {
                    target: t.name.clone(),
                    kind: t.kind,
                    replica_region: to.to_string(),
                    source_regions: vec![from.to_string()],
                    objective: t.objective,
                    target_index: i,
                }),
            }
        }
    }
    out
}

/// The alarms' timing, derived from `[emf]`.
///
/// * `period`: the shortest alarm period that holds at least one document
///   per pair: `every` rounded up to what CloudWatch allows. 10 s and 30 s
///   exist only for high-resolution metrics (`storage_resolution = 1`);
///   standard metrics have one datapoint a minute, so their alarms use
///   multiples of 60 s. A period shorter than `every` would see empty
///   periods between documents, and empty periods breach (below).
/// * `rpo_periods`: 2 consecutive breaching periods. `RPO` already
///   integrates time (it exceeds the objective only after the replica has
///   missed data for that long, it keeps rising during a stall, and it is the
///   period's maximum, so a short breach is not averaged away): the second
///   period adds at most one period on top of the objective. One period
///   would page at every agent start: the partial period the agent starts
///   in has no `RPO` yet (nothing measured), and missing is breaching (seen
///   on the lab: the first document of a run carries no `RPO`). It also
///   keeps one document delivered late (awslogs batches for seconds,
///   extraction adds a few) from paging, as the Prometheus rule's `for: 5s`
///   (two evaluations) does.
/// * `probe_periods`: `ProbeUp` is 0 when the probe was down at any moment
///   of the period, and a start shows 0 in up to two periods (the partial
///   one it starts in, and the one in which the probes are prepared: seen
///   on the lab). So at least 3 consecutive periods, and at least 60 s, as
///   the Prometheus rule's `for: 1m` does: a restart or a credential
///   refresh does not page.
/// * `lost_periods`: 1. A lost canary is a discrete event the agent has
///   already confirmed (unseen for the target's whole timeout).
///
/// Every alarm treats missing data as breaching: no datapoint means the
/// agent is silent (stopped, its logs not shipped) or measures nothing,
/// which for an RPO monitor is a failure, not an absence of news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub period: u64,
    pub rpo_periods: u64,
    pub probe_periods: u64,
    pub lost_periods: u64,
    pub high_resolution: bool,
}

pub fn timing(emf: &EmfConfig) -> Timing {
    let every = emf.every.as_secs().max(1);
    let high = emf.storage_resolution == 1;
    let period = if high && every <= 10 {
        10
    } else if high && every <= 30 {
        30
    } else {
        every.div_ceil(60) * 60
    };
    let rpo_periods = 2;
    let probe_periods = 60u64.div_ceil(period).max(3);
    Timing {
        period,
        rpo_periods,
        probe_periods,
        lost_periods: 1,
        high_resolution: period < 60,
    }
}

/// The three alarms of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    Rpo,
    ProbeUp,
    CanariesLost,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 3] = [AlarmKind::Rpo, AlarmKind::ProbeUp, AlarmKind::CanariesLost];

    pub fn metric(self) -> &'static str {
        match self {
            AlarmKind::Rpo => "RPO",
            AlarmKind::ProbeUp => "ProbeUp",
            AlarmKind::CanariesLost => "CanariesLost",
        }
    }

    /// The last part of the alarm name and of the logical id.
    fn what(self) -> &'static str {
        match self {
            AlarmKind::Rpo => "RPOAboveObjective",
            AlarmKind::ProbeUp => "ProbeDown",
            AlarmKind::CanariesLost => "CanariesLost",
        }
    }
}

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

// --------------------------------------------------------------------------
// Names
// --------------------------------------------------------------------------

/// FNV-1a, 32 bits: a hash that never changes between builds or platforms,
/// so logical ids and shortened names stay the same.
fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `core-db` → `CoreDb`, `ap-northeast-3` → `ApNortheast3`.
fn camel(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            let first = cs.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(cs).collect::<String>()
        })
        .collect()
}

/// A CloudFormation logical id: letters and digits only, starting with a
/// letter, at most 255 characters. The readable part may collide after the
/// punctuation is dropped (`orders-1` and `orders1`), so a hash of the exact
/// target name and region follows it. It depends on nothing else: adding or
/// removing other targets never renames (and so never replaces) an alarm.
pub fn logical_id(kind: AlarmKind, target: &str, replica_region: &str) -> String {
    let mut t = camel(target);
    t.truncate(150);
    format!(
        "{}{}{}{:08X}",
        kind.what(),
        t,
        camel(replica_region),
        fnv32(&format!("{target}\u{0}{replica_region}"))
    )
}

/// The alarm's name: `<namespace>-<target>-to-<region>-<what>`, unique per
/// account and region as long as two deployments use different namespaces.
/// A name over CloudWatch's 255 characters keeps its start and ends with a
/// hash of the whole name, so it stays unique.
pub fn alarm_name(namespace: &str, kind: AlarmKind, target: &str, replica_region: &str) -> String {
    let full = format!("{namespace}-{target}-to-{replica_region}-{}", kind.what());
    fit(&full, MAX_ALARM_NAME)
}

fn fit(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    // Names are ASCII (validated target names, regions and namespaces).
    let keep: String = s.chars().take(max - 9).collect();
    format!("{keep}-{:08x}", fnv32(s))
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

// --------------------------------------------------------------------------
// The template
// --------------------------------------------------------------------------

/// The template as a tree.
pub fn template(cfg: &Config) -> Result<Node, AlarmsError> {
    let emf = emf_of(cfg)?;
    let tm = timing(emf);
    let pairs = pairs(cfg);

    let mut resources = Vec::new();
    let mut names = Vec::new();
    for p in &pairs {
        for kind in AlarmKind::ALL {
            let name = alarm_name(&emf.namespace, kind, &p.target, &p.replica_region);
            names.push(name.clone());
            resources.push((
                logical_id(kind, &p.target, &p.replica_region),
                alarm(emf, &tm, p, kind, name),
            ));
        }
    }
    resources.push((
        "Dashboard".to_string(),
        map([
            ("Type", s("AWS::CloudWatch::Dashboard")),
            (
                "Properties",
                map([
                    ("DashboardName", reference("DashboardName")),
                    (
                        "DashboardBody",
                        map([("Fn::Sub", s(&dashboard_body(cfg, emf, &tm, &pairs, &names)))]),
                    ),
                ]),
            ),
        ]),
    ));

    let description = format!(
        "rpo-agent: CloudWatch alarms (RPO above objective, probe down, canaries lost) and a dashboard for the EMF metrics of namespace {}: {} target(s), {} (target, replica region) pair(s). Generated by `rpo-agent alarms`; regenerate it, do not edit it.",
        emf.namespace,
        cfg.targets.len(),
        pairs.len()
    );
    Ok(map([
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
                        ("Description", s("Name of the CloudWatch dashboard (dashboards are global: unique per account).")),
                        ("AllowedPattern", s("^[A-Za-z0-9_-]{1,255}$")),
                        ("ConstraintDescription", s("1 to 255 letters, digits, '-' or '_'")),
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
    ]))
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

// --------------------------------------------------------------------------
// The dashboard
// --------------------------------------------------------------------------

/// Lays widgets out left to right on CloudWatch's 24-column grid.
struct Grid {
    x: u32,
    y: u32,
    row_h: u32,
    widgets: Vec<Node>,
}

impl Grid {
    fn add(&mut self, kind: &str, w: u32, h: u32, properties: Node) {
        if self.x + w > 24 {
            self.x = 0;
            self.y += self.row_h;
            self.row_h = 0;
        }
        self.widgets.push(map([
            ("type", s(kind)),
            ("x", Node::Num(self.x.to_string())),
            ("y", Node::Num(self.y.to_string())),
            ("width", Node::Num(w.to_string())),
            ("height", Node::Num(h.to_string())),
            ("properties", properties),
        ]));
        self.x += w;
        self.row_h = self.row_h.max(h);
    }
}

/// The region of the EMF metrics: where the agent's log group is, which is
/// where the stack is deployed (alarms can only watch their own region).
const HERE: &str = "${AWS::Region}";

fn emf_metric(ns: &str, metric: &str, p: &Pair, stat: &str, label: &str) -> Node {
    Node::List(vec![
        s(ns),
        s(metric),
        s("Target"),
        s(&p.target),
        s("ReplicaRegion"),
        s(&p.replica_region),
        map([("stat", s(stat)), ("label", s(label)), ("region", s(HERE))]),
    ])
}

fn graph(
    title: &str,
    region: &str,
    period: u64,
    metrics: Vec<Node>,
    extra: Vec<(&str, Node)>,
) -> Node {
    let mut props = vec![
        ("title".to_string(), s(title)),
        ("view".to_string(), s("timeSeries")),
        ("stacked".to_string(), Node::Bool(false)),
        ("region".to_string(), s(region)),
        ("period".to_string(), Node::Num(period.to_string())),
        ("metrics".to_string(), Node::List(metrics)),
    ];
    let mut has_axis = false;
    for (k, v) in extra {
        has_axis |= k == "yAxis";
        props.push((k.to_string(), v));
    }
    if !has_axis {
        props.push((
            "yAxis".to_string(),
            map([(
                "left",
                map([
                    ("min", Node::Num("0".into())),
                    ("showUnits", Node::Bool(true)),
                ]),
            )]),
        ));
    }
    Node::Map(props)
}

/// An Aurora cluster id from a cluster endpoint URL
/// (`…@<id>.cluster-ro-<hash>.<region>.rds.amazonaws.com:5432/…`); `None` for
/// other hosts (plain PostgreSQL/MySQL replicas have no AWS figure).
pub fn aurora_cluster_id(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host_port.split(['/', '?', ':']).next()?;
    let mut labels = host.split('.');
    let id = labels.next()?;
    let second = labels.next()?;
    (second.starts_with("cluster-") && host.ends_with(".rds.amazonaws.com") && !id.is_empty())
        .then(|| id.to_string())
}

fn dashboard_body(
    cfg: &Config,
    emf: &EmfConfig,
    tm: &Timing,
    pairs: &[Pair],
    alarms: &[String],
) -> String {
    let ns = emf.namespace.as_str();
    let per = tm.period;
    let mut g = Grid {
        x: 0,
        y: 0,
        row_h: 0,
        widgets: Vec::new(),
    };
    g.add(
        "text",
        24,
        2,
        map([(
            "markdown",
            s(&format!(
                "## rpo-agent: RPO against objective\nEMF metrics of namespace `{ns}` (one document per target and replica region every {}), alarm period {per} s. The alarms treat missing data as **breaching**: a silent agent is a failure. Generated by `rpo-agent alarms`.",
                human(emf.every)
            )),
        )]),
    );
    let arns: Vec<Node> = alarms
        .iter()
        .map(|n| {
            s(&format!(
                "arn:aws:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:{n}"
            ))
        })
        .collect();
    for (i, chunk) in arns.chunks(100).enumerate() {
        g.add(
            "alarm",
            24,
            4,
            map([
                (
                    "title",
                    s(&if i == 0 {
                        "Alarms".to_string()
                    } else {
                        format!("Alarms ({})", i + 1)
                    }),
                ),
                ("alarms", Node::List(chunk.to_vec())),
                ("sortBy", s("stateUpdatedTimestamp")),
            ]),
        );
    }

    // RPO against objective, per target: the objective is the target's own.
    for (i, t) in cfg.targets.iter().enumerate() {
        let ps: Vec<&Pair> = pairs.iter().filter(|p| p.target_index == i).collect();
        let metrics = ps
            .iter()
            .map(|p| emf_metric(ns, "RPO", p, "Maximum", &format!("RPO {}", p.label())))
            .collect();
        let objective = map([
            ("label", s(&format!("objective {}", human(t.objective)))),
            ("value", seconds(t.objective)),
            ("color", s("#d62728")),
        ]);
        g.add(
            "metric",
            12,
            6,
            graph(
                &format!("RPO vs objective: {} ({})", t.name, t.kind.as_str()),
                HERE,
                per,
                metrics,
                vec![(
                    "annotations",
                    map([("horizontal", Node::List(vec![objective]))]),
                )],
            ),
        );
    }
    let all = |metric: &str, stat: &str, what: &str| -> Vec<Node> {
        pairs
            .iter()
            .map(|p| emf_metric(ns, metric, p, stat, &format!("{what}{}", p.label())))
            .collect()
    };
    g.x = 24; // a new row
    g.add(
        "metric",
        12,
        6,
        graph(
            "Data at risk if you fail over now (RPO upper bound)",
            HERE,
            per,
            all("RPOUpperBound", "Maximum", ""),
            vec![],
        ),
    );
    let mut lag = all("ReplicationLag", "p50", "p50 ");
    lag.extend(all("ReplicationLag", "p99", "p99 "));
    g.add(
        "metric",
        12,
        6,
        graph(
            "Replication lag per canary, p50 and p99",
            HERE,
            per,
            lag,
            vec![],
        ),
    );
    let mut canaries = all("CanariesLost", "Sum", "lost ");
    canaries.extend(all("CanariesFailed", "Sum", "failed "));
    g.add(
        "metric",
        12,
        6,
        graph("Canaries lost and failed", HERE, per, canaries, vec![]),
    );
    g.add(
        "metric",
        12,
        6,
        graph(
            "Probe up (1 up, 0 down at some moment of the period)",
            HERE,
            per,
            all("ProbeUp", "Minimum", ""),
            vec![(
                "yAxis",
                map([(
                    "left",
                    map([
                        ("min", Node::Num("0".into())),
                        ("max", Node::Num("1".into())),
                    ]),
                )]),
            )],
        ),
    );

    // AWS's own figures beside ours, per target.
    let ms_axes = || {
        map([
            (
                "left",
                map([
                    ("min", Node::Num("0".into())),
                    ("label", s("seconds (ours)")),
                    ("showUnits", Node::Bool(false)),
                ]),
            ),
            (
                "right",
                map([
                    ("min", Node::Num("0".into())),
                    ("label", s("milliseconds (AWS)")),
                    ("showUnits", Node::Bool(false)),
                ]),
            ),
        ])
    };
    for (i, t) in cfg.targets.iter().enumerate() {
        let ours: Vec<Node> = pairs
            .iter()
            .filter(|p| p.target_index == i)
            .map(|p| emf_metric(ns, "RPO", p, "Maximum", &format!("ours: RPO {}", p.label())))
            .collect();
        match t.kind {
            Kind::Dynamodb => {
                let Some(table) = &t.table else { continue };
                let mut metrics = ours;
                for (src, dst) in aws_directions(t) {
                    metrics.push(Node::List(vec![
                        s("AWS/DynamoDB"),
                        s("ReplicationLatency"),
                        s("TableName"),
                        s(table),
                        s("ReceivingRegion"),
                        s(dst),
                        map([
                            ("stat", s("Average")),
                            ("period", Node::Num("60".into())),
                            ("region", s(src)),
                            ("yAxis", s("right")),
                            (
                                "label",
                                s(&format!("AWS: ReplicationLatency {src}→{dst} (ms)")),
                            ),
                        ]),
                    ]));
                }
                g.add(
                    "metric",
                    12,
                    6,
                    graph(
                        &format!("AWS-reported lag vs ours: {} (DynamoDB {table})", t.name),
                        HERE,
                        per,
                        metrics,
                        vec![("yAxis", ms_axes())],
                    ),
                );
            }
            Kind::S3 => {
                // The rule id is discovered from the bucket's replication
                // configuration at run time: a search finds every rule.
                let mut metrics = ours;
                let src = t.source.bucket.as_deref().unwrap_or_default();
                for (n, r) in t.replicas.iter().enumerate() {
                    let dst = r.bucket.as_deref().unwrap_or_default();
                    metrics.push(map([
                        (
                            "expression",
                            s(&format!(
                                "SEARCH('{{AWS/S3,DestinationBucket,RuleId,SourceBucket}} MetricName=\"ReplicationLatency\" SourceBucket=\"{src}\" DestinationBucket=\"{dst}\"', 'Maximum', 60)"
                            )),
                        ),
                        ("id", s(&format!("s3e{n}"))),
                        ("label", s(&format!("AWS: ReplicationLatency {src}→{dst} (s)"))),
                    ]));
                }
                g.add(
                    "metric",
                    12,
                    6,
                    graph(
                        &format!("AWS-reported lag vs ours: {} (S3 {src})", t.name),
                        &t.source.region,
                        per,
                        metrics,
                        vec![],
                    ),
                );
            }
            Kind::Postgres | Kind::Mysql => {
                // Aurora publishes both figures for the secondary cluster, in
                // the secondary's region.
                for (n, r) in t.replicas.iter().enumerate() {
                    let Some(id) = r.url.as_deref().and_then(aurora_cluster_id) else {
                        continue;
                    };
                    let mut metrics: Vec<Node> = pairs
                        .iter()
                        .filter(|p| p.target_index == i && p.replica_region == r.region)
                        .map(|p| {
                            emf_metric(ns, "RPO", p, "Maximum", &format!("ours: RPO {}", p.label()))
                        })
                        .collect();
                    for (m, metric) in ["AuroraGlobalDBRPOLag", "AuroraGlobalDBReplicationLag"]
                        .iter()
                        .enumerate()
                    {
                        metrics.push(map([
                            (
                                "expression",
                                s(&format!(
                                    "SEARCH('Namespace=\"AWS/RDS\" MetricName=\"{metric}\" DBClusterIdentifier=\"{id}\"', 'Maximum', 60)"
                                )),
                            ),
                            ("id", s(&format!("rds{n}m{m}"))),
                            ("label", s(&format!("AWS: {metric} {id} (ms)"))),
                            ("yAxis", s("right")),
                        ]));
                    }
                    g.add(
                        "metric",
                        12,
                        6,
                        graph(
                            &format!("AWS-reported lag vs ours: {} (Aurora {id})", t.name),
                            &r.region,
                            per,
                            metrics,
                            vec![("yAxis", ms_axes())],
                        ),
                    );
                }
            }
        }
    }
    let body = map([
        ("start", s("-PT6H")),
        ("periodOverride", s("inherit")),
        ("widgets", Node::List(g.widgets)),
    ]);
    to_json(&body)
}

/// The (sending, receiving) regions of a DynamoDB target, as AWS reports
/// `ReplicationLatency`: in the sending region, per `ReceivingRegion`.
fn aws_directions(t: &TargetConfig) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = t
        .replicas
        .iter()
        .map(|r| (t.source.region.as_str(), r.region.as_str()))
        .collect();
    if t.direction == Direction::Both {
        out.extend(
            t.replicas
                .iter()
                .map(|r| (r.region.as_str(), t.source.region.as_str())),
        );
    }
    out
}

// --------------------------------------------------------------------------
// An ordered tree, and its YAML and JSON text
// --------------------------------------------------------------------------

/// A JSON-shaped value whose maps keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Str(String),
    /// A number, already formatted.
    Num(String),
    Bool(bool),
}

impl Node {
    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn s(v: &str) -> Node {
    Node::Str(v.to_string())
}

fn map<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn reference(name: &str) -> Node {
    map([("Ref", s(name))])
}

fn quoted(v: &str) -> String {
    serde_json::to_string(v).expect("a string serializes")
}

/// JSON: scalars and arrays of scalars on one line, everything else indented
/// by two spaces per level.
pub fn to_json(n: &Node) -> String {
    let mut out = String::new();
    json_into(n, 0, &mut out);
    out
}

fn is_scalar(n: &Node) -> bool {
    !matches!(n, Node::Map(_) | Node::List(_))
}

fn is_flat(n: &Node) -> bool {
    match n {
        Node::List(items) => items.iter().all(|i| {
            is_scalar(i) || matches!(i, Node::Map(m) if m.iter().all(|(_, v)| is_scalar(v)))
        }),
        Node::Map(m) => m.iter().all(|(_, v)| is_scalar(v)) && m.len() <= 6,
        _ => true,
    }
}

fn json_into(n: &Node, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match n {
        Node::Str(v) => out.push_str(&quoted(v)),
        Node::Num(v) => out.push_str(v),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::Map(m) if m.is_empty() => out.push_str("{}"),
        // A metric line or a small options object: one line.
        _ if is_flat(n) && depth > 0 && flat_len(n) < 200 => flat_json(n, out),
        Node::List(items) => {
            out.push_str("[\n");
            for (i, it) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                json_into(it, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Node::Map(m) => {
            out.push_str("{\n");
            for (i, (k, v)) in m.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&quoted(k));
                out.push_str(": ");
                json_into(v, depth + 1, out);
                out.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
    }
}

fn flat_len(n: &Node) -> usize {
    let mut s = String::new();
    flat_json(n, &mut s);
    s.len()
}

fn flat_json(n: &Node, out: &mut String) {
    match n {
        Node::Str(v) => out.push_str(&quoted(v)),
        Node::Num(v) => out.push_str(v),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::List(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flat_json(it, out);
            }
            out.push(']');
        }
        Node::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quoted(k));
                out.push_str(": ");
                flat_json(v, out);
            }
            out.push('}');
        }
    }
}

/// YAML in block style. Strings are JSON-quoted (YAML 1.2 reads JSON
/// strings as they are), except multi-line ones, which become literal
/// blocks (`|-`) so the dashboard's JSON reads as JSON.
pub fn to_yaml(n: &Node) -> String {
    let mut out = String::from(
        "# Generated by `rpo-agent alarms`: CloudWatch alarms and a dashboard for the\n\
         # agent's EMF metrics. Regenerate it from the configuration; do not edit it.\n",
    );
    if let Node::Map(m) = n {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            yaml_entry(k, v, 0, &mut out);
        }
    }
    out
}

fn yaml_key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_')
        && !k.ends_with(':');
    if plain {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn block_ok(v: &str) -> bool {
    v.contains('\n')
        && !v.ends_with('\n')
        && !v.starts_with([' ', '\n'])
        && v.lines().all(|l| !l.ends_with(' '))
        && !v.chars().any(|c| c.is_control() && c != '\n')
}

fn yaml_scalar(n: &Node) -> String {
    match n {
        Node::Str(v) => quoted(v),
        Node::Num(v) => v.clone(),
        Node::Bool(b) => b.to_string(),
        Node::List(l) if l.is_empty() => "[]".into(),
        Node::Map(m) if m.is_empty() => "{}".into(),
        _ => unreachable!("not a scalar"),
    }
}

fn is_empty_or_scalar(n: &Node) -> bool {
    match n {
        Node::List(l) => l.is_empty(),
        Node::Map(m) => m.is_empty(),
        _ => true,
    }
}

fn yaml_entry(k: &str, v: &Node, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    out.push_str(&pad);
    out.push_str(&yaml_key(k));
    out.push(':');
    yaml_value(v, depth, out);
}

/// Writes what follows `key:` or `- `, up to and including the newline.
fn yaml_value(v: &Node, depth: usize, out: &mut String) {
    match v {
        Node::Str(text) if block_ok(text) => {
            out.push_str(" |-\n");
            let pad = "  ".repeat(depth + 1);
            for line in text.lines() {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        n if is_empty_or_scalar(n) => {
            out.push(' ');
            out.push_str(&yaml_scalar(n));
            out.push('\n');
        }
        Node::Map(m) => {
            out.push('\n');
            for (k, v) in m {
                yaml_entry(k, v, depth + 1, out);
            }
        }
        Node::List(items) => {
            out.push('\n');
            for it in items {
                yaml_item(it, depth + 1, out);
            }
        }
        _ => unreachable!(),
    }
}

fn yaml_item(it: &Node, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match it {
        Node::Map(m) if !m.is_empty() => {
            for (i, (k, v)) in m.iter().enumerate() {
                if i == 0 {
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&yaml_key(k));
                    out.push(':');
                    yaml_value(v, depth + 1, out);
                } else {
                    yaml_entry(k, v, depth + 1, out);
                }
            }
        }
        Node::List(l) if !l.is_empty() => {
            out.push_str(&pad);
            out.push('-');
            yaml_value(it, depth, out);
        }
        n => {
            out.push_str(&pad);
            out.push_str("- ");
            out.push_str(&yaml_scalar(n));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const EMF: &str = "[emf]\nto = \"stdout\"\n";

    fn cfg(text: &str) -> Config {
        parse(&Origin::Inline, text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn two_targets(emf: &str) -> Config {
        cfg(&format!(
            r#"
[agent]
objective = "60s"
[[target]]
name = "orders"
kind = "dynamodb"
table = "orders-table"
source = {{ region = "ap-northeast-1" }}
replicas = [{{ region = "ap-northeast-3" }}, {{ region = "us-west-2" }}]
direction = "both"
[[target]]
name = "invoices"
kind = "s3"
source = {{ region = "ap-northeast-1", bucket = "invoices-tokyo" }}
replicas = [{{ region = "ap-northeast-3", bucket = "invoices-osaka" }}]
objective = "15m"
[[target]]
name = "core-db"
kind = "postgres"
source = {{ region = "ap-northeast-1", url = "postgres://u@core.cluster-abc.ap-northeast-1.rds.amazonaws.com:5432/app" }}
replicas = [{{ region = "ap-northeast-3", url = "postgres://u@core-osaka.cluster-ro-def.ap-northeast-3.rds.amazonaws.com:5432/app" }}]
objective = "2.5s"
{emf}"#
        ))
    }

    fn resources(t: &Node) -> &Vec<(String, Node)> {
        match t.get("Resources") {
            Some(Node::Map(m)) => m,
            _ => panic!("no Resources"),
        }
    }

    fn alarms_of(t: &Node) -> Vec<(&str, &Node)> {
        resources(t)
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Node::as_str) == Some("AWS::CloudWatch::Alarm"))
            .map(|(k, r)| (k.as_str(), r.get("Properties").unwrap()))
            .collect()
    }

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
    fn one_way_pairs_are_one_per_replica_region() {
        let c = two_targets(EMF);
        let p: Vec<(String, String, Vec<String>)> = pairs(&c)
            .into_iter()
            .filter(|p| p.target == "invoices")
            .map(|p| (p.target, p.replica_region, p.source_regions))
            .collect();
        assert_eq!(
            p,
            vec![(
                "invoices".into(),
                "ap-northeast-3".into(),
                vec!["ap-northeast-1".to_string()]
            )]
        );
    }

    #[test]
    fn both_directions_add_the_reverse_pairs_which_share_the_source_region() {
        let c = two_targets(EMF);
        let p: Vec<(String, Vec<String>)> = pairs(&c)
            .into_iter()
            .filter(|p| p.target == "orders")
            .map(|p| (p.replica_region, p.source_regions))
            .collect();
        assert_eq!(
            p,
            vec![
                (
                    "ap-northeast-3".to_string(),
                    vec!["ap-northeast-1".to_string()]
                ),
                ("us-west-2".to_string(), vec!["ap-northeast-1".to_string()]),
                // Both reverse routes end in the source region: one series.
                (
                    "ap-northeast-1".to_string(),
                    vec!["ap-northeast-3".to_string(), "us-west-2".to_string()]
                ),
            ]
        );
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

    #[test]
    fn logical_ids_and_alarm_names_are_valid_unique_and_stable() {
        let c = two_targets(EMF);
        let t = template(&c).unwrap();
        let ids: Vec<&str> = resources(&t).iter().map(|(k, _)| k.as_str()).collect();
        let names: Vec<&str> = alarms_of(&t)
            .iter()
            .map(|(_, a)| a.get("AlarmName").and_then(Node::as_str).unwrap())
            .collect();
        for id in &ids {
            assert!(
                id.len() <= MAX_LOGICAL_ID
                    && id.chars().all(|c| c.is_ascii_alphanumeric())
                    && id.starts_with(|c: char| c.is_ascii_alphabetic()),
                "{id}"
            );
        }
        for n in &names {
            assert!(
                n.len() <= MAX_ALARM_NAME && n.is_ascii() && !n.contains(' '),
                "{n}"
            );
        }
        let mut u = ids.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), ids.len());
        let mut u = names.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), names.len());
        // Punctuation dropped would collide; the hash keeps them apart.
        assert_ne!(
            logical_id(AlarmKind::Rpo, "orders-1", "us-east-1"),
            logical_id(AlarmKind::Rpo, "orders1", "us-east-1")
        );
        // Stable: a pinned value (changing it replaces deployed alarms).
        assert_eq!(
            logical_id(AlarmKind::Rpo, "orders", "ap-northeast-3"),
            format!(
                "RPOAboveObjectiveOrdersApNortheast3{:08X}",
                fnv32("orders\u{0}ap-northeast-3")
            )
        );
        assert_eq!(fnv32("a"), 0xe40c292c);
        // Long names are cut to the limits, still distinct.
        let long = "t".repeat(300);
        let a = alarm_name("RPOAgent", AlarmKind::Rpo, &long, "us-east-1");
        let b = alarm_name("RPOAgent", AlarmKind::ProbeUp, &long, "us-east-1");
        assert!(a.len() <= MAX_ALARM_NAME && b.len() <= MAX_ALARM_NAME && a != b);
        let id = logical_id(AlarmKind::CanariesLost, &long, "us-east-1");
        assert!(id.len() <= MAX_LOGICAL_ID && id.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn periods_fit_every_and_the_storage_resolution() {
        let t = |every: &str, res: u32| {
            let c = two_targets(&format!(
                "[emf]\nevery = \"{every}\"\nstorage_resolution = {res}\n"
            ));
            timing(c.emf.as_ref().unwrap())
        };
        let std = t("60s", 60);
        assert_eq!(
            (
                std.period,
                std.rpo_periods,
                std.probe_periods,
                std.lost_periods
            ),
            (60, 2, 3, 1)
        );
        assert!(!std.high_resolution);
        // Standard metrics never get a high-resolution alarm.
        assert_eq!(t("10s", 60).period, 60);
        assert_eq!(t("90s", 60).period, 120);
        assert_eq!(t("5m", 1).period, 300);
        let hi = t("5s", 1);
        assert_eq!((hi.period, hi.rpo_periods, hi.probe_periods), (10, 2, 6));
        assert!(hi.high_resolution);
        let hi = t("20s", 1);
        assert_eq!((hi.period, hi.rpo_periods, hi.probe_periods), (30, 2, 3));
        assert_eq!(t("45s", 1).period, 60);
    }

    #[test]
    fn the_dashboard_body_is_json_with_the_overview_panels() {
        let c = two_targets(EMF);
        let t = template(&c).unwrap();
        let body = resources(&t)
            .iter()
            .find(|(k, _)| k == "Dashboard")
            .and_then(|(_, d)| {
                d.get("Properties")?
                    .get("DashboardBody")?
                    .get("Fn::Sub")?
                    .as_str()
            })
            .unwrap()
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        let widgets = v["widgets"].as_array().unwrap();
        let titles: Vec<&str> = widgets
            .iter()
            .filter_map(|w| w["properties"]["title"].as_str())
            .collect();
        for want in [
            "RPO vs objective: orders (dynamodb)",
            "RPO vs objective: invoices (s3)",
            "Data at risk if you fail over now (RPO upper bound)",
            "Replication lag per canary, p50 and p99",
            "Canaries lost and failed",
            "Probe up (1 up, 0 down at some moment of the period)",
            "AWS-reported lag vs ours: orders (DynamoDB orders-table)",
            "AWS-reported lag vs ours: invoices (S3 invoices-tokyo)",
            "AWS-reported lag vs ours: core-db (Aurora core-osaka)",
            "Alarms",
        ] {
            assert!(titles.contains(&want), "no widget {want:?} in {titles:?}");
        }
        let by_title = |t: &str| {
            widgets
                .iter()
                .find(|w| w["properties"]["title"] == t)
                .unwrap()
        };
        // The objective is a horizontal annotation at the target's own value.
        let w = by_title("RPO vs objective: invoices (s3)");
        assert_eq!(
            w["properties"]["annotations"]["horizontal"][0]["value"],
            900
        );
        // p50 and p99 of the histogram, for every pair.
        let stats: Vec<&str> = by_title("Replication lag per canary, p50 and p99")["properties"]
            ["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m.as_array().unwrap().last().unwrap()["stat"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(stats.iter().filter(|s| **s == "p50").count(), 5);
        assert_eq!(stats.iter().filter(|s| **s == "p99").count(), 5);
        // AWS's DynamoDB figure: the dimensions the agent reads, in the sending region.
        let ddb = by_title("AWS-reported lag vs ours: orders (DynamoDB orders-table)");
        let aws: Vec<&serde_json::Value> = ddb["properties"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m[0] == "AWS/DynamoDB")
            .collect();
        assert_eq!(aws.len(), 4);
        assert_eq!(aws[0][1], "ReplicationLatency");
        assert_eq!(
            (&aws[0][2], &aws[0][3], &aws[0][4], &aws[0][5]),
            (
                &"TableName".into(),
                &"orders-table".into(),
                &"ReceivingRegion".into(),
                &"ap-northeast-3".into()
            )
        );
        assert_eq!(aws[0][6]["region"], "ap-northeast-1");
        assert_eq!(aws[2][6]["region"], "ap-northeast-3");
        assert_eq!(aws[2][5], "ap-northeast-1");
        let s3 = by_title("AWS-reported lag vs ours: invoices (S3 invoices-tokyo)");
        assert_eq!(s3["properties"]["region"], "ap-northeast-1");
        assert!(s3["properties"]["metrics"].to_string().contains(
            "SourceBucket=\\\"invoices-tokyo\\\" DestinationBucket=\\\"invoices-osaka\\\""
        ));
        let alarms = by_title("Alarms")["properties"]["alarms"]
            .as_array()
            .unwrap();
        assert_eq!(alarms.len(), 15);
        assert!(alarms[0].as_str().unwrap().starts_with(
            "arn:aws:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:RPOAgent-orders-to-"
        ));
        // Widgets stay on the 24-column grid.
        assert!(widgets
            .iter()
            .all(|w| w["x"].as_u64().unwrap() + w["width"].as_u64().unwrap() <= 24));
    }

    #[test]
    fn aurora_cluster_ids_come_from_cluster_endpoints_only() {
        assert_eq!(
            aurora_cluster_id("postgres://u:p@core-db-osaka.cluster-ro-mnop.ap-northeast-3.rds.amazonaws.com:5432/app?sslmode=verify-full"),
            Some("core-db-osaka".to_string())
        );
        assert_eq!(
            aurora_cluster_id("mysql://u@db.cluster-xyz.us-east-1.rds.amazonaws.com/app"),
            Some("db".to_string())
        );
        assert_eq!(
            aurora_cluster_id("postgres://u@replica.example:5432/app"),
            None
        );
        assert_eq!(
            aurora_cluster_id("postgres://u@mydb.abc.us-east-1.rds.amazonaws.com/app"),
            None
        );
    }

    #[test]
    fn the_yaml_is_block_style_with_the_dashboard_as_a_literal_block() {
        let y = render(&two_targets(EMF)).unwrap();
        assert!(y.starts_with("# Generated by `rpo-agent alarms`"));
        assert!(y.contains("\nResources:\n"));
        assert!(
            y.contains("      DashboardBody:\n        Fn::Sub: |-\n          {\n"),
            "{y}"
        );
        assert!(y.contains("      TreatMissingData: \"breaching\"\n"));
        assert!(y.contains("      AlarmActions:\n        - Ref: \"AlarmTopicArn\"\n"));
        assert!(y.contains("        - Name: \"Target\"\n          Value: \"orders\"\n"));
        assert!(y.ends_with('\n') && !y.contains(" \n"));
    }
}
