//! AWS's limits on what `rpo-agent alarms` writes, and the measure of a
//! written template against them (`Measure`, `Limit`). A template that
//! breaks one is refused by CloudFormation or by CloudWatch in the middle of
//! a deployment, so `plan` (in `mod.rs`) splits the pairs into templates
//! that each pass all of them, and never writes one that does not.

use super::node::Node;

/// Template body passed in the request (`CreateStack`, `UpdateStack`;
/// `aws cloudformation deploy --template-file` without `--s3-bucket`).
/// AWS CloudFormation User Guide, "Understand CloudFormation quotas"
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html>):
/// "Template body size in a request: 51,200 bytes".
pub const MAX_TEMPLATE_BYTES: usize = 51_200;
/// Template body read from an S3 object (`--s3-bucket`). Same page:
/// "Template body size in an Amazon S3 object: 1 MB" (counted here as
/// 1,000,000 bytes, the smaller reading).
pub const MAX_TEMPLATE_BYTES_S3: usize = 1_000_000;
/// Resources one template (stack) declares. Same page: "Resources: 500".
pub const MAX_RESOURCES: usize = 500;
/// Widgets of one dashboard. Amazon CloudWatch User Guide, "CloudWatch
/// service quotas"
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html>),
/// Dashboards: "Up to 500 widgets per dashboard"; the CloudWatch API
/// Reference's "Dashboard Body Structure and Syntax" says the same ("an
/// array of between 0 and 500 widget objects").
pub const MAX_DASHBOARD_WIDGETS: usize = 500;
/// Entries of one widget's `metrics` array (metrics and expressions). Same
/// quotas page: "Up to 500 metrics per widget".
pub const MAX_METRICS_PER_WIDGET: usize = 500;
/// Entries of all the `metrics` arrays of one dashboard. Same quotas page:
/// "Up to 2500 metrics per dashboard". PutDashboard refuses a body above it.
pub const MAX_DASHBOARD_METRICS: usize = 2_500;
/// Alarms of one alarm status widget (the `alarms` array of ARNs):
/// "Dashboard Body Structure and Syntax", Properties of an Alarm Status
/// Widget Object: up to 100.
pub const MAX_ALARMS_PER_WIDGET: usize = 100;
/// An alarm's Period × EvaluationPeriods. CloudWatch service quotas, "Alarm
/// evaluation period": "The maximum value, calculated by multiplying the
/// alarm period by the number of evaluation periods used, is one day
/// (86,400 seconds)" (PutMetricAlarm, EvaluationPeriods). The API reference
/// now allows 7 days for periods of an hour or more; one day holds for every
/// period, and it is what `[emf] every` is bounded by (`config::emf`).
pub const MAX_ALARM_EVALUATION_SECONDS: u64 = 86_400;

/// How the templates reach CloudFormation, which sets their size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// In the request: `aws cloudformation deploy --template-file` alone.
    Direct,
    /// Through an S3 bucket: `--template-file … --s3-bucket …`.
    S3,
}

impl Upload {
    pub fn max_bytes(self) -> usize {
        match self {
            Upload::Direct => MAX_TEMPLATE_BYTES,
            Upload::S3 => MAX_TEMPLATE_BYTES_S3,
        }
    }
}

/// What a written template holds, in the units of AWS's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    pub bytes: usize,
    pub resources: usize,
    pub alarms: usize,
    pub widgets: usize,
    /// The largest `metrics` array of one widget.
    pub widget_metrics: usize,
    /// All the `metrics` entries of the dashboard.
    pub dashboard_metrics: usize,
    /// The largest `alarms` array of one alarm widget.
    pub widget_alarms: usize,
    /// The largest Period × EvaluationPeriods of an alarm, in seconds.
    pub evaluation_seconds: u64,
}

/// The first of AWS's limits that a template breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes { max: usize, upload: Upload },
    Resources,
    Widgets,
    WidgetMetrics,
    DashboardMetrics,
    WidgetAlarms,
    Evaluation,
}

impl Limit {
    /// Why a template ends where it does, for people.
    pub fn describe(self) -> String {
        match self {
            Limit::Bytes { max, upload: Upload::Direct } => format!(
                "CloudFormation takes a template body of at most {max} bytes in the request (aws cloudformation deploy --template-file without --s3-bucket)"
            ),
            Limit::Bytes { max, upload: Upload::S3 } => {
                format!("CloudFormation reads a template of at most {max} bytes from S3")
            }
            Limit::Resources => {
                format!("a CloudFormation stack holds at most {MAX_RESOURCES} resources (3 alarms per pair and the dashboard)")
            }
            Limit::Widgets => format!("a CloudWatch dashboard holds at most {MAX_DASHBOARD_WIDGETS} widgets"),
            Limit::WidgetMetrics => {
                format!("a CloudWatch dashboard widget holds at most {MAX_METRICS_PER_WIDGET} metrics")
            }
            Limit::DashboardMetrics => {
                format!("a CloudWatch dashboard holds at most {MAX_DASHBOARD_METRICS} metrics")
            }
            Limit::WidgetAlarms => {
                format!("an alarm status widget holds at most {MAX_ALARMS_PER_WIDGET} alarms")
            }
            Limit::Evaluation => format!(
                "an alarm's Period × EvaluationPeriods is at most {MAX_ALARM_EVALUATION_SECONDS} s"
            ),
        }
    }
}

impl Measure {
    /// Measures a template tree and its YAML text.
    pub fn of(template: &Node, yaml: &str) -> Measure {
        let mut m = Measure {
            bytes: yaml.len(),
            ..Measure::default()
        };
        let Some(Node::Map(resources)) = template.get("Resources") else {
            return m;
        };
        m.resources = resources.len();
        for (_, r) in resources {
            let props = r.get("Properties");
            match r.get("Type").and_then(Node::as_str) {
                Some("AWS::CloudWatch::Alarm") => {
                    m.alarms += 1;
                    let num = |k: &str| match props.and_then(|p| p.get(k)) {
                        Some(Node::Num(n)) => n.parse::<u64>().unwrap_or(u64::MAX),
                        _ => 0,
                    };
                    m.evaluation_seconds = m
                        .evaluation_seconds
                        .max(num("Period").saturating_mul(num("EvaluationPeriods")));
                }
                Some("AWS::CloudWatch::Dashboard") => {
                    let body = props
                        .and_then(|p| p.get("DashboardBody"))
                        .and_then(|b| b.get("Fn::Sub").or(Some(b)))
                        .and_then(Node::as_str)
                        .unwrap_or("{}");
                    m.add_dashboard(body);
                }
                _ => {}
            }
        }
        m
    }

    fn add_dashboard(&mut self, body: &str) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let widgets = v["widgets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.widgets += widgets.len();
        for w in widgets {
            let n = w["properties"]["metrics"].as_array().map_or(0, Vec::len);
            self.widget_metrics = self.widget_metrics.max(n);
            self.dashboard_metrics += n;
            let a = w["properties"]["alarms"].as_array().map_or(0, Vec::len);
            self.widget_alarms = self.widget_alarms.max(a);
        }
    }

    /// The first limit this template breaks, if any.
    pub fn exceeds(&self, upload: Upload) -> Option<Limit> {
        let max = upload.max_bytes();
        if self.bytes > max {
            Some(Limit::Bytes { max, upload })
        } else if self.resources > MAX_RESOURCES {
            Some(Limit::Resources)
        } else if self.widgets > MAX_DASHBOARD_WIDGETS {
            Some(Limit::Widgets)
        } else if self.widget_metrics > MAX_METRICS_PER_WIDGET {
            Some(Limit::WidgetMetrics)
        } else if self.dashboard_metrics > MAX_DASHBOARD_METRICS {
            Some(Limit::DashboardMetrics)
        } else if self.widget_alarms > MAX_ALARMS_PER_WIDGET {
            Some(Limit::WidgetAlarms)
        } else if self.evaluation_seconds > MAX_ALARM_EVALUATION_SECONDS {
            Some(Limit::Evaluation)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::pairs_config;
    use super::super::{pairs, plan};
    use super::*;
    use crate::config::Config;

    /// What `rpo-agent alarms` writes for a configuration.
    fn written(c: &Config, upload: Upload) -> Vec<String> {
        plan(c, upload)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    /// The template as read back from its YAML text alone (not from the
    /// tree it was written from): resources, the alarms' Period and
    /// EvaluationPeriods, and the dashboard body (the literal block under
    /// `Fn::Sub: |-`), parsed as JSON.
    struct ReadBack {
        resources: Vec<String>,
        evaluations: Vec<u64>,
        dashboards: Vec<serde_json::Value>,
        alarm_names: Vec<String>,
    }

    fn read_back(yaml: &str) -> ReadBack {
        let mut r = ReadBack {
            resources: vec![],
            evaluations: vec![],
            dashboards: vec![],
            alarm_names: vec![],
        };
        let lines: Vec<&str> = yaml.lines().collect();
        let start = lines
            .iter()
            .position(|l| *l == "Resources:")
            .expect("Resources:")
            + 1;
        let mut period = None;
        let mut i = start;
        while i < lines.len() {
            let l = lines[i];
            if !l.is_empty() && !l.starts_with(' ') {
                break;
            }
            if let Some(id) = l.strip_prefix("  ").and_then(|k| k.strip_suffix(':')) {
                if !id.starts_with(' ') {
                    r.resources.push(id.to_string());
                }
            }
            if let Some(v) = l.strip_prefix("      Period: ") {
                period = Some(v.parse::<u64>().unwrap());
            }
            if let Some(v) = l.strip_prefix("      EvaluationPeriods: ") {
                r.evaluations
                    .push(period.take().expect("Period first") * v.parse::<u64>().unwrap());
            }
            if let Some(v) = l.strip_prefix("      AlarmName: ") {
                r.alarm_names.push(serde_json::from_str(v).unwrap());
            }
            if l == "        Fn::Sub: |-" && lines[i - 1] == "      DashboardBody:" {
                let mut body = String::new();
                i += 1;
                while i < lines.len() && (lines[i].is_empty() || lines[i].starts_with("          "))
                {
                    body.push_str(lines[i].get(10..).unwrap_or(""));
                    body.push('\n');
                    i += 1;
                }
                r.dashboards
                    .push(serde_json::from_str(&body).expect("the dashboard body is JSON"));
                continue;
            }
            i += 1;
        }
        r
    }

    fn assert_within_limits(n: usize, upload: Upload) {
        let c = pairs_config(n);
        assert_eq!(pairs(&c).len(), n);
        let texts = written(&c, upload);
        let mut alarms = Vec::new();
        let mut figures = Vec::new();
        for (k, y) in texts.iter().enumerate() {
            let what = format!(
                "{n} pairs ({upload:?}), template {} of {}",
                k + 1,
                texts.len()
            );
            let r = read_back(y);
            figures.push(format!("{} B, {} resources", y.len(), r.resources.len()));
            assert!(
                y.len() <= upload.max_bytes(),
                "{what}: {} bytes, over CloudFormation's {}",
                y.len(),
                upload.max_bytes()
            );
            assert!(
                r.resources.len() <= MAX_RESOURCES,
                "{what}: {} resources, over {MAX_RESOURCES}",
                r.resources.len()
            );
            assert!(
                r.evaluations
                    .iter()
                    .all(|s| *s <= MAX_ALARM_EVALUATION_SECONDS),
                "{what}: Period × EvaluationPeriods {:?}",
                r.evaluations.iter().max()
            );
            assert_eq!(r.dashboards.len(), 1, "{what}: one dashboard");
            let widgets = r.dashboards[0]["widgets"].as_array().unwrap();
            assert!(
                widgets.len() <= MAX_DASHBOARD_WIDGETS,
                "{what}: {} widgets",
                widgets.len()
            );
            let per: Vec<usize> = widgets
                .iter()
                .map(|w| w["properties"]["metrics"].as_array().map_or(0, Vec::len))
                .collect();
            let most = per.iter().copied().max().unwrap_or(0);
            assert!(
                most <= MAX_METRICS_PER_WIDGET,
                "{what}: a widget of {most} metrics"
            );
            let total: usize = per.iter().sum();
            assert!(
                total <= MAX_DASHBOARD_METRICS,
                "{what}: {total} metrics in the dashboard"
            );
            let most_alarms = widgets
                .iter()
                .map(|w| w["properties"]["alarms"].as_array().map_or(0, Vec::len))
                .max()
                .unwrap_or(0);
            assert!(
                most_alarms <= MAX_ALARMS_PER_WIDGET,
                "{what}: {most_alarms} alarms in a widget"
            );
            assert!(
                !y.contains("arn:aws:cloudwatch"),
                "{what}: the alarm ARNs hard-code the aws partition"
            );
            alarms.extend(r.alarm_names);
        }
        eprintln!(
            "FIGURES {n} pairs ({upload:?}): {} template(s): {}",
            texts.len(),
            figures.join("; ")
        );
        // Every alarm of every pair, once across all the templates.
        assert_eq!(
            alarms.len(),
            3 * n,
            "{n} pairs: alarms across the templates"
        );
        alarms.sort();
        alarms.dedup();
        assert_eq!(alarms.len(), 3 * n, "{n} pairs: an alarm in two templates");
    }

    #[test]
    fn one_pair_fits_aws_limits() {
        assert_within_limits(1, Upload::Direct);
        assert_within_limits(1, Upload::S3);
    }

    #[test]
    fn ten_pairs_fit_aws_limits() {
        assert_within_limits(10, Upload::Direct);
        assert_within_limits(10, Upload::S3);
    }

    #[test]
    fn two_hundred_pairs_fit_aws_limits() {
        assert_within_limits(200, Upload::Direct);
        assert_within_limits(200, Upload::S3);
    }

    #[test]
    fn a_thousand_pairs_fit_aws_limits() {
        assert_within_limits(1000, Upload::Direct);
        assert_within_limits(1000, Upload::S3);
    }

    #[test]
    fn the_longest_emf_every_validate_takes_makes_alarms_cloudwatch_takes() {
        let text = "[emf]\nevery = \"8h\"\n[[target]]\nname = \"t\"\nkind = \"dynamodb\"\ntable = \"t\"\nsource = { region = \"ap-northeast-1\" }\nreplicas = [{ region = \"ap-northeast-3\" }]\n";
        let c = crate::config::parse(&crate::config::Origin::Inline, text).unwrap();
        let w = plan(&c, Upload::Direct).unwrap();
        assert_eq!(
            w[0].measure.evaluation_seconds,
            MAX_ALARM_EVALUATION_SECONDS
        );
        assert_eq!(w[0].measure.exceeds(Upload::Direct), None);
        // A second more (what validation refuses) would not be.
        let mut emf = c.emf.clone().unwrap();
        emf.every += std::time::Duration::from_secs(1);
        let tm = super::super::timing(&emf);
        let longest = [tm.rpo_periods, tm.probe_periods, tm.lost_periods]
            .into_iter()
            .max()
            .unwrap();
        assert!(tm.period * longest > MAX_ALARM_EVALUATION_SECONDS);
        let e = crate::config::parse(&crate::config::Origin::Inline, &text.replace("8h", "8h 1s"))
            .unwrap_err();
        assert_eq!(e.key, "emf.every", "{e}");
        assert!(
            e.to_string().contains("86,400") && e.fix.contains("8h"),
            "{e}"
        );
    }
}
