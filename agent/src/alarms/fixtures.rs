//! Test fixtures shared by the tests of `alarms`: a configuration with one
//! target of each shape (DynamoDB both ways, S3, Aurora PostgreSQL), and
//! accessors into the template tree.

use super::Node;
use crate::config::{parse, Config, Origin};

pub(super) const EMF: &str = "[emf]\nto = \"stdout\"\n";

fn cfg(text: &str) -> Config {
    parse(&Origin::Inline, text).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn two_targets(emf: &str) -> Config {
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

pub(super) fn resources(t: &Node) -> &Vec<(String, Node)> {
    match t.get("Resources") {
        Some(Node::Map(m)) => m,
        _ => panic!("no Resources"),
    }
}

pub(super) fn alarms_of(t: &Node) -> Vec<(&str, &Node)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Node::as_str) == Some("AWS::CloudWatch::Alarm"))
        .map(|(k, r)| (k.as_str(), r.get("Properties").unwrap()))
        .collect()
}

/// A configuration of `n` (target, replica region) pairs, in targets of
/// every shape the dashboard draws: DynamoDB both ways (3 pairs: two
/// replicas and the shared way back), S3 and Aurora PostgreSQL (one each).
pub(super) fn pairs_config(n: usize) -> Config {
    let mut text = String::from("[agent]\nobjective = \"60s\"\n[emf]\nto = \"stdout\"\n");
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let name = format!("target-{i:04}");
        let t = if left >= 3 && i % 3 == 0 {
            left -= 3;
            format!(
                "[[target]]\nname = \"{name}\"\nkind = \"dynamodb\"\ntable = \"{name}-table\"\nsource = {{ region = \"ap-northeast-1\" }}\nreplicas = [{{ region = \"ap-northeast-3\" }}, {{ region = \"us-west-2\" }}]\ndirection = \"both\"\n"
            )
        } else if i % 3 == 1 {
            left -= 1;
            format!(
                "[[target]]\nname = \"{name}\"\nkind = \"s3\"\nsource = {{ region = \"ap-northeast-1\", bucket = \"{name}-tokyo\" }}\nreplicas = [{{ region = \"ap-northeast-3\", bucket = \"{name}-osaka\" }}]\nobjective = \"15m\"\n"
            )
        } else {
            left -= 1;
            format!(
                "[[target]]\nname = \"{name}\"\nkind = \"postgres\"\nsource = {{ region = \"ap-northeast-1\", url = \"postgres://u@{name}.cluster-abc.ap-northeast-1.rds.amazonaws.com:5432/app\" }}\nreplicas = [{{ region = \"ap-northeast-3\", url = \"postgres://u@{name}-osaka.cluster-ro-def.ap-northeast-3.rds.amazonaws.com:5432/app\" }}]\n"
            )
        };
        text.push_str(&t);
        i += 1;
    }
    cfg(&text)
}
