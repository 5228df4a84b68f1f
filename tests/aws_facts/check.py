#!/usr/bin/env python3
"""AWS-facing facts checked against AWS's own published models, not only against our lab (issue 21).

Why it exists: every lab test passes against moto, which forgives unknown members and has no
opinion on metric names. This suite checks (1) every AWS request the real agent sends (lab request
log) against botocore's service models, and (2) every (namespace, metric, dimension set) the agent
queries in GetMetricData or names in `rpo-agent alarms` templates against aws-cdk-lib's canned
metrics (CloudWatch's metric specification) and, where that lists no dimension set, the AWS
documentation (documented_metrics.json). It installs what it needs (the lab venv via
tests/lab/setup-venv, aws-cdk-lib via `npm pack`, both cached under ~/.cache/rpo-agent/), starts
and stops its own lab, prints one ✓/✗ line per check and ends with `N passed, N failed`.

    python3 tests/aws_facts/check.py [--bin target/debug/rpo-agent]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = Path(os.environ.get("RPO_LAB_VENV", Path.home() / ".cache/rpo-agent/lab-venv"))


def _in_venv() -> None:
    """Re-run under the lab venv's Python (botocore, boto3, PyYAML, cbor2), creating it if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    r = subprocess.run([str(ROOT / "tests/lab/setup-venv")], stdout=sys.stderr)
    if r.returncode != 0:
        print("✗ setting up the lab venv (tests/lab/setup-venv)\n0 passed, 1 failed")
        sys.exit(1)
    py = VENV / "bin/python"
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


_in_venv()
sys.path.insert(0, str(HERE))

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402

import agent_run  # noqa: E402
import botocore_requests as br  # noqa: E402
import cdk_metrics  # noqa: E402
from metric_facts import MetricRef, Published, get_metric_data_refs, template_refs  # noqa: E402

# Namespaces that are the agent's own (EMF), not AWS's: never checked against AWS's lists.
OWN_NAMESPACES = {"RPOAgent"}
# Operations the run must have sent at least once (any one of each group).
MUST_SEE = [("dynamodb", ["PutItem"]), ("dynamodb", ["GetItem"]), ("s3", ["PutObject"]),
            ("s3", ["HeadObject", "GetObject"]), ("monitoring", ["GetMetricData"])]
# The config `rpo-agent alarms` is run on: the ECS task definition's (dynamodb, s3, postgres,
# fleet, [emf]) plus a Redis Global Datastore target, which deploy/ has none of.
ALARMS_SOURCE = "deploy/ecs/task-definition.json"
REDIS_TARGET = """
[[target]]
name = "sessions"
kind = "redis"
source = { region = "ap-northeast-1", url = "rediss://sessions.abc123.apne1.cache.amazonaws.com:6379", replication_group = "sessions-apne1" }
replicas = [{ region = "ap-northeast-3", url = "rediss://sessions.def456.apne3.cache.amazonaws.com:6379", replication_group = "sessions-apne3" }]
auth = { password_env = "REDIS_PASSWORD" }
"""

passed = failed = 0


def check(ok: bool, what: str, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"✓ {what}")
    else:
        failed += 1
        print(f"✗ {what}")
        for line in detail.strip().splitlines():
            print(f"    {line}")
    sys.stdout.flush()
    return ok


def selftest(models: br.Models) -> None:
    """Crafted requests with a member botocore's models lack must be caught (no vacuous pass)."""
    ua = {"user-agent": "aws-sdk-rust/selftest"}
    cases = [
        ("DynamoDB PutItem with `ConsistentReads`", "ConsistentReads",
         {"service": "dynamodb", "operation": "PutItem", "method": "POST", "path": "/", "query": "", "protocol": "json",
          "headers": {**ua, "x-amz-target": "DynamoDB_20120810.PutItem", "content-type": "application/x-amz-json-1.0"},
          "params": {"TableName": "t", "Item": {"pk": {"S": "a"}}, "ConsistentReads": True}}),
        ("DynamoDB GetItem with a nested `Key.pk.SS` of the wrong type", "Key.pk.SS",
         {"service": "dynamodb", "operation": "GetItem", "method": "POST", "path": "/", "query": "", "protocol": "json",
          "headers": {**ua, "x-amz-target": "DynamoDB_20120810.GetItem", "content-type": "application/x-amz-json-1.0"},
          "params": {"TableName": "t", "Key": {"pk": {"SS": "a"}}}}),
        ("CloudWatch GetMetricData (CBOR) with `MetricStat.Metric.Dimension`", "Dimension",
         {"service": "monitoring", "operation": "GetMetricData", "method": "POST", "protocol": "smithy-rpc-v2-cbor",
          "path": "/service/GraniteServiceVersion20100801/operation/GetMetricData", "query": "", "headers": ua,
          "params": {"StartTime": "2026-01-01T00:00:00+00:00", "EndTime": "2026-01-01T00:05:00+00:00",
                     "MetricDataQueries": [{"Id": "q0", "MetricStat": {"Period": 60, "Stat": "Average", "Metric": {
                         "Namespace": "AWS/DynamoDB", "MetricName": "ReplicationLatency",
                         "Dimension": [{"Name": "TableName", "Value": "t"}]}}}]}}),
        ("S3 HeadObject with query `versionIds`", "versionIds",
         {"service": "s3", "method": "HEAD", "path": "/b/k", "query": "versionIds=1", "protocol": "rest-xml", "headers": ua}),
        ("S3 PutObject with header `x-amz-storage-klass`", "x-amz-storage-klass",
         {"service": "s3", "method": "PUT", "path": "/b/k", "query": "x-id=PutObject", "protocol": "rest-xml",
          "headers": {**ua, "x-amz-storage-klass": "STANDARD"}}),
        ("S3 PutBucketVersioning with XML element `Statuss`", "Statuss",
         {"service": "s3", "method": "PUT", "path": "/b", "query": "versioning", "protocol": "rest-xml", "headers": ua,
          "xml": '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Statuss>Enabled</Statuss></VersioningConfiguration>'}),
        ("ElastiCache DescribeReplicationGroups (query) with `ReplicationGroupIds`", "ReplicationGroupIds",
         {"service": "elasticache", "method": "POST", "path": "/", "query": "", "protocol": "query", "headers": ua,
          "form": "Action=DescribeReplicationGroups&Version=2015-02-02&ReplicationGroupIds=g"}),
        ("DynamoDB operation `PutItems`", "PutItems",
         {"service": "dynamodb", "operation": "PutItems", "method": "POST", "path": "/", "query": "", "protocol": "json",
          "headers": {**ua, "x-amz-target": "DynamoDB_20120810.PutItems", "content-type": "application/x-amz-json-1.0"},
          "params": {}}),
    ]
    for what, needle, entry in cases:
        found = br.problems(models, entry)
        check(any(needle in p for p in found), f"self-test: the validator refuses {what}",
              "\n".join(found) or "no problem reported")
    good = [("a correct DynamoDB PutItem", dict(cases[0][2], params={"TableName": "t", "Item": {"pk": {"S": "a"}}})),
            ("an S3 PUT with x-amz-copy-source as CopyObject",
             {"service": "s3", "operation": "CopyObject", "method": "PUT", "path": "/b/k", "query": "", "protocol": "rest-xml",
              "headers": {**ua, "x-amz-copy-source": "/a/b", "x-amz-metadata-directive": "COPY"}}),
            ("a correct ElastiCache DescribeReplicationGroups",
             {"service": "elasticache", "method": "POST", "path": "/", "query": "", "protocol": "query", "headers": ua,
              "form": "Action=DescribeReplicationGroups&Version=2015-02-02&ReplicationGroupId=g&MaxRecords=20"})]
    for what, entry in good:
        found = br.problems(models, entry)
        check(not found, f"self-test: the validator accepts {what}", "\n".join(found))


# A template in the shape `rpo-agent alarms` writes, with what git HEAD's dashboard.rs put there for
# Redis (ElastiCache by ReplicationGroupId, which AWS does not document), a SEARCH on a dimension
# S3 does not publish, an alarm on a misspelt metric, and a correct row.
BAD_TEMPLATE = """
Resources:
  Dash:
    Type: AWS::CloudWatch::Dashboard
    Properties:
      DashboardBody: !Sub |
        {"widgets": [{"type": "metric", "properties": {"title": "t", "metrics": [
          ["AWS/ElastiCache", "GlobalDatastoreReplicationLag", "ReplicationGroupId", "g", {"stat": "Maximum"}],
          [{"expression": "SEARCH('{AWS/S3,DestinationBucket,SourceBucket} MetricName=\\"ReplicationLatency\\"', 'Maximum', 60)", "id": "e"}],
          ["AWS/DynamoDB", "ReplicationLatency", "TableName", "t", "ReceivingRegion", "r", {"stat": "Average"}],
          [".", ".", ".", "t2", ".", "r2"]]}}]}
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/DynamoDB
      MetricName: ReplicationLatencyMs
      Statistic: Maximum
      Dimensions: [{Name: TableName, Value: t}, {Name: ReceivingRegion, Value: r}]
"""


def selftest_metrics(published: Published) -> None:
    """Metric references AWS does not publish must be refused, published ones accepted."""
    refs = {(r.namespace, r.metric, tuple(sorted(r.dims))): r for r in template_refs(BAD_TEMPLATE, "self-test")}
    cases = [
        (("AWS/ElastiCache", "GlobalDatastoreReplicationLag", ("ReplicationGroupId",)), False,
         "ElastiCache GlobalDatastoreReplicationLag by ReplicationGroupId (git HEAD's dashboard row)"),
        (("AWS/S3", "ReplicationLatency", ("DestinationBucket", "SourceBucket")), False,
         "an S3 SEARCH schema without RuleId"),
        (("AWS/DynamoDB", "ReplicationLatencyMs", ("ReceivingRegion", "TableName")), False,
         "an alarm on a metric DynamoDB does not publish"),
        (("AWS/DynamoDB", "ReplicationLatency", ("ReceivingRegion", "TableName")), True,
         "DynamoDB ReplicationLatency {TableName, ReceivingRegion} (and the \".\" shorthand row)"),
    ]
    for key, ok, what in cases:
        r = refs.get(key)
        p = published.problem(r) if r else f"the template parser did not find {key} in {sorted(refs)}"
        check(r is not None and (p is None) == ok, f"self-test: {'accepts' if ok else 'refuses'} {what}", p or "accepted")
    gmd = MetricRef("AWS/ElastiCache", "GlobalDatastoreReplicationLag", frozenset({"ReplicationGroupId"}),
                    "self-test GetMetricData", "Maximum")
    check(published.problem(gmd) is not None,
          "self-test: refuses a GetMetricData MetricStat on ElastiCache by ReplicationGroupId (git HEAD's probe)")


def check_requests(models: br.Models, requests: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for e in requests:
        groups.setdefault((e.get("service"), e.get("operation") or f"{e['method']} {e['path']}"), []).append(e)
    for (service, op), entries in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        found: dict[str, int] = {}
        for e in entries:
            for p in br.problems(models, e):
                found[p] = found.get(p, 0) + 1
        detail = "\n".join(f"{p}  ({n}×)" for p, n in sorted(found.items()))
        check(not found, f"{service} {op}: {len(entries)} request(s) match botocore {models.version}'s model", detail)
    seen = {(e.get("service"), e.get("operation")) for e in requests}
    for service, ops in MUST_SEE:
        check(any((service, o) in seen for o in ops), f"the agent sent {' or '.join(ops)} ({service}) at least once",
              f"seen: {sorted(o for s, o in seen if s == service and o)}")


def check_refs(published: Published, refs: list[MetricRef], source: str) -> None:
    own = [r for r in refs if r.namespace in OWN_NAMESPACES]
    if own:
        print(f"  (skipped: {len(own)} reference(s) in the agent's own EMF namespace(s) "
              f"{', '.join(sorted({r.namespace for r in own}))}, not AWS's)")
    distinct: dict[tuple, list[MetricRef]] = {}
    for r in refs:
        if r.namespace not in OWN_NAMESPACES:
            distinct.setdefault((r.namespace, r.metric, tuple(sorted(r.dims)), r.exact, r.stat), []).append(r)
    check(bool(distinct), f"{source}: names at least one AWS metric",
          "no AWS metric referenced: nothing to check")
    for (ns, metric, dims, exact, stat), rs in sorted(distinct.items(), key=str):
        p = published.problem(rs[0])
        how = "" if exact else " (SEARCH, dimensions as a subset)"
        where = "; ".join(sorted({r.where for r in rs})[:3]) + (" …" if len(rs) > 3 else "")
        check(p is None, f"{source}: {ns} {metric} {{{', '.join(dims)}}} {stat or ''}{how} is published "
              f"({len(rs)} use(s))", f"{p}\nused in: {where}" if p else "")


def alarms_refs(binary: Path) -> list[MetricRef]:
    task = json.loads((ROOT / ALARMS_SOURCE).read_text())
    text = next(e["value"] for c in task["containerDefinitions"] for e in c.get("environment", [])
                if e["name"] == "RPO_AGENT_CONFIG")
    text += REDIS_TARGET
    OWN_NAMESPACES.add(tomllib.loads(text).get("emf", {}).get("namespace", "RPOAgent"))
    with tempfile.TemporaryDirectory(prefix="rpo-aws-facts-alarms-") as d:
        cfg = Path(d) / "config.toml"
        cfg.write_text(text)
        out = Path(d) / "out"
        r = subprocess.run([str(binary), "alarms", "--config", str(cfg), "--out-dir", str(out)],
                           capture_output=True, text=True, timeout=60)
        files = sorted(out.glob("rpo-alarms*.yaml"))
        if not check(r.returncode == 0 and bool(files), f"rpo-agent alarms writes templates for {ALARMS_SOURCE}'s "
                     "config + a Redis Global Datastore target", r.stderr[-1500:]):
            return []
        refs = []
        for f in files:
            refs += template_refs(f.read_text(), f.name)
        return refs


def main() -> int:
    started = time.monotonic()
    binary = Path(sys.argv[sys.argv.index("--bin") + 1]) if "--bin" in sys.argv else ROOT / "target/debug/rpo-agent"
    if not check(binary.exists(), f"the agent binary {binary} exists", "build it first (cargo build)"):
        print(f"{passed} passed, {failed} failed")
        return 1
    models = br.Models()
    print(f"== 1. the agent's AWS requests against botocore {models.version}'s service models")
    selftest(models)
    try:
        got = agent_run.run(binary, print)
    except Exception as e:  # the lab or the set-up failed: one failure, the rest still runs
        check(False, "a lab run of the agent (lab up, set-up, init, check, run)", repr(e))
        got = {"requests": [], "steps": [], "setup": 0, "others": 0}
    for what, rc, tail in got["steps"]:
        print(f"  ({what}: exit {rc})")
        if rc not in (0, None) and what.startswith("rpo-agent run"):
            check(False, f"{what} exits 0", tail)
    print(f"  ({len(got['requests'])} requests from the agent; {got['setup']} boto3 set-up requests and "
          f"{got['others'] - got['setup']} other non-agent ones not checked)")
    check_requests(models, got["requests"])

    print(f"== 2. metrics against aws-cdk-lib {cdk_metrics.VERSION}'s canned metrics + tests/aws_facts/documented_metrics.json")
    try:
        published = Published()
    except Exception as e:
        check(False, f"loading {cdk_metrics.PACKAGE}'s canned metrics (npm pack into {cdk_metrics.CACHE})", repr(e))
        print(f"{passed} passed, {failed} failed")
        return 1
    selftest_metrics(published)
    check_refs(published, get_metric_data_refs(got["requests"]), "GetMetricData sent by the agent")
    check_refs(published, alarms_refs(binary), "rpo-agent alarms templates")
    checked_in = "deploy/cloudformation/cloudwatch-alarms.yaml"
    check_refs(published, template_refs((ROOT / checked_in).read_text(), checked_in), f"{checked_in} (checked in)")
    if got.get("lab_dir"):  # the lab's files (aws.log, requests.jsonl) are kept when something failed
        if failed:
            print(f"(lab files kept for a look: {got['lab_dir']})")
        else:
            shutil.rmtree(got["lab_dir"], ignore_errors=True)
    print(f"({time.monotonic() - started:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
