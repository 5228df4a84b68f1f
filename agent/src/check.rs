//! `rpo-agent check`: the preflight for a deployment. Before the agent runs
//! (or when it reports a configuration problem), it tells in one ✓/✗ list
//! whether each target is reachable with these credentials, set up for
//! replication the way the probe needs, writable where it should be, and
//! cleaned up by TTL or lifecycle rules, with the fix beside every ✗.
//!
//! It makes the probe's own read-only set-up calls (`prepare`, `roles`,
//! `housekeeping`) and never writes a canary; `once` does that.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::config::{EmfConfig, EmfTo, FleetConfig};
use crate::fleet::lease::LeaseTable;
use crate::probe::{Finding, Roles};
use crate::route::Route;

/// One line of the preflight.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub target: String,
    pub finding: Finding,
}

impl Line {
    pub fn ok(&self) -> bool {
        self.finding.problem.is_none()
    }
}

/// Checks every route, in order. Targets measured in both directions are
/// checked once per direction; identical lines are reported once.
pub async fn run(routes: &[Route]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut shown = HashSet::new();
    for route in routes {
        for finding in one_route(route).await {
            if shown.insert((route.target.clone(), finding.what.clone())) {
                lines.push(Line {
                    target: route.target.clone(),
                    finding,
                });
            }
        }
    }
    lines
}

async fn one_route(route: &Route) -> Vec<Finding> {
    let what = format!(
        "{} {} → {}: reachable and set up for replication",
        route.kind.as_str(),
        route.source_region,
        route.replica_regions.join(", ")
    );
    if let Err(e) = route.probe.prepare().await {
        // Nothing further can be checked without a working set-up.
        return vec![Finding::problem(what, e.to_string())];
    }
    let mut out = vec![Finding::ok(what)];
    if route.kind.single_writer() {
        let what = format!("{} is the writer", route.source_region);
        out.push(match route.probe.roles().await {
            Ok(Roles::AsConfigured) => Finding::ok(what),
            Ok(Roles::Swapped { replica }) => Finding::problem(
                what,
                format!(
                    "the configured source is read-only and {} accepts writes (a switchover or failover happened); the agent follows it at run time, but swap source and replicas in the configuration",
                    route.replica_regions[replica]
                ),
            ),
            Ok(Roles::NoWriter(e)) | Err(e) => Finding::problem(
                what,
                e.to_string(),
            ),
            Ok(Roles::SplitBrain { replicas }) => Finding::problem(
                what,
                format!(
                    "the source and {} all accept writes (split brain): the replica must be read-only; check which node the application writes to before anything else",
                    replicas
                        .iter()
                        .map(|&i| route.replica_regions[i].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        });
    }
    out.extend(route.probe.housekeeping().await);
    out
}

/// The fleet's lease table: it exists, with the key the leases need.
pub async fn fleet_line(table: &LeaseTable, f: &FleetConfig) -> Line {
    let what = format!("fleet {}: lease table {} in {}", f.name, f.table, f.region);
    let finding = match table.problem().await {
        Ok(None) => Finding::ok(what),
        Ok(Some(p)) => Finding::problem(what, p),
        Err(e) => Finding::problem(what, e.to_string()),
    };
    Line {
        target: "[fleet]".to_string(),
        finding,
    }
}

/// `[emf]`: where the documents go. A TCP listener (the CloudWatch agent)
/// must accept a connection; a UDP address must resolve (UDP cannot say
/// more); stdout needs nothing but a log driver that ships it.
pub async fn emf_line(e: &EmfConfig) -> Line {
    let line = |finding| Line {
        target: "[emf]".to_string(),
        finding,
    };
    let fix = "start the CloudWatch agent with its EMF listener (\"logs\": {\"metrics_collected\": {\"emf\": {}}}, port 25888), or change [emf] to";
    match &e.to {
        EmfTo::Stdout => line(Finding::ok(
            "EMF documents go to stdout (the awslogs log driver ships them to CloudWatch Logs)",
        )),
        EmfTo::Tcp(addr) => {
            let what = format!("EMF destination tcp://{addr} accepts connections");
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            match tokio::time::timeout(EMF_CONNECT_TIMEOUT, connect).await {
                Ok(Ok(_)) => line(Finding::ok(what)),
                Ok(Err(err)) => line(Finding::problem(what, format!("{err}; {fix}"))),
                Err(_) => line(Finding::problem(
                    what,
                    format!("no answer within {EMF_CONNECT_TIMEOUT:?}; {fix}"),
                )),
            }
        }
        EmfTo::Udp(addr) => {
            let what = format!("EMF destination udp://{addr} resolves");
            match tokio::net::lookup_host(addr.as_str())
                .await
                .map(|mut a| a.next())
            {
                Ok(Some(_)) => line(Finding::ok(what)),
                Ok(None) => line(Finding::problem(what, format!("no address; {fix}"))),
                Err(err) => line(Finding::problem(what, format!("{err}; {fix}"))),
            }
        }
    }
}

const EMF_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Renders the lines: `✓ target: what`, and for a problem `✗ target: what`
/// followed by the problem and its fix, indented.
pub fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        let mark = if l.ok() { '✓' } else { '✗' };
        let _ = writeln!(out, "{mark} {}: {}", l.target, l.finding.what);
        if let Some(p) = &l.finding.problem {
            let _ = writeln!(out, "    {p}");
        }
    }
    let bad = lines.iter().filter(|l| !l.ok()).count();
    let _ = writeln!(
        out,
        "{} checks, {} problem{}",
        lines.len(),
        bad,
        if bad == 1 { "" } else { "s" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_emf_listener_that_is_not_there_is_a_problem_with_its_fix() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let cfg = |to| EmfConfig {
            to,
            namespace: "RPOAgent".into(),
            every: std::time::Duration::from_secs(60),
            storage_resolution: 60,
            dimensions: vec![],
        };
        assert!(emf_line(&cfg(EmfTo::Tcp(addr.clone()))).await.ok());
        drop(l);
        let bad = emf_line(&cfg(EmfTo::Tcp(addr))).await;
        assert!(!bad.ok());
        assert!(bad.finding.problem.unwrap().contains("CloudWatch agent"));
        assert!(emf_line(&cfg(EmfTo::Stdout)).await.ok());
        assert!(emf_line(&cfg(EmfTo::Udp("127.0.0.1:25888".into())))
            .await
            .ok());
    }

    #[test]
    fn problems_are_marked_and_followed_by_their_fix() {
        let lines = vec![
            Line {
                target: "orders".into(),
                finding: Finding::ok("dynamodb a → b: reachable"),
            },
            Line {
                target: "invoices".into(),
                finding: Finding::problem("lifecycle rule", "no lifecycle rule: add one"),
            },
        ];
        let text = render(&lines);
        assert_eq!(
            text,
            "✓ orders: dynamodb a → b: reachable\n✗ invoices: lifecycle rule\n    no lifecycle rule: add one\n2 checks, 1 problem\n"
        );
    }
}
