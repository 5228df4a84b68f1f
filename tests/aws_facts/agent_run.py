"""Runs the real agent against a lab of its own and returns every AWS request it sent.

Why it exists: check 1 and check 2(a) judge what the agent really puts on the wire, not what its
source seems to say. This starts `tests/lab/lab up --components aws,redis` on free ports with the
gateway's request log on, creates one DynamoDB global table, one replicated S3 bucket pair (with
replication metrics, so the agent asks CloudWatch for S3's ReplicationLatency) and uses the lab's
Redis pair with a Global Datastore `replication_group` (so it asks for ElastiCache's figure too),
then runs `rpo-agent init`, `check` and `run` (fleet mode: lease calls too) until the first
GetMetricData went out (≈ 10 s after start), stops it with SIGTERM and stops the lab. The set-up
requests come from boto3 and are told apart by their User-Agent.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests/lab/lab"
SRC, DST = "ap-northeast-1", "ap-northeast-3"
TABLE, SRC_BUCKET, DST_BUCKET = "facts-orders", "facts-tokyo", "facts-osaka"
AGENT_UA = "aws-sdk-rust"


def _env(lab_dir: Path) -> dict[str, str]:
    env = {}
    for line in (lab_dir / "lab.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = shlex.split(v)[0] if v else ""
    return env


def _setup(env: dict[str, str]) -> None:
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="lab", aws_secret_access_key="lab",
              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
    ddb = boto3.client("dynamodb", region_name=SRC, **kw)
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    ddb.update_table(TableName=TABLE, ReplicaUpdates=[{"Create": {"RegionName": DST}}])
    for region in (SRC, DST):
        boto3.client("dynamodb", region_name=region, **kw).update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    for bucket, region in ((SRC_BUCKET, SRC), (DST_BUCKET, DST)):
        s3 = boto3.client("s3", region_name=region, **kw)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "rpo-canary-expire", "Status": "Enabled", "Filter": {"Prefix": "rpo-canary/"},
            "Expiration": {"Days": 1}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    boto3.client("s3", region_name=SRC, **kw).put_bucket_replication(Bucket=SRC_BUCKET, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/s3-replication",
        "Rules": [{"ID": f"to-{DST_BUCKET}", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "rpo-canary/"},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{DST_BUCKET}", "Metrics": {"Status": "Enabled"}}}]})
    _setup_elasticache(kw)


def _setup_elasticache(kw: dict) -> None:
    """The replica's replication group, so the agent finds its member clusters (CacheClusterId)."""
    boto3.client("elasticache", region_name=DST, **kw).create_replication_group(
        ReplicationGroupId="facts-apne3", ReplicationGroupDescription="aws_facts", Engine="redis",
        CacheNodeType="cache.r7g.large", NumCacheClusters=1)


def config(env: dict[str, str]) -> str:
    return f"""[agent]
id = "facts"
listen = "127.0.0.1:0"
objective = "60s"
shutdown_grace = "2s"

[fleet]
name = "facts"
table = "facts-leases"
region = "{DST}"

[[target]]
name = "orders"
kind = "dynamodb"
table = "{TABLE}"
source = {{ region = "{SRC}" }}
replicas = [{{ region = "{DST}" }}]
interval = "1s"

[[target]]
name = "invoices"
kind = "s3"
source = {{ region = "{SRC}", bucket = "{SRC_BUCKET}" }}
replicas = [{{ region = "{DST}", bucket = "{DST_BUCKET}" }}]
prefix = "rpo-canary/"
interval = "1s"

[[target]]
name = "sessions"
kind = "redis"
source = {{ region = "{SRC}", url = "{env['REDIS_PRIMARY_URL']}", replication_group = "facts-apne1" }}
replicas = [{{ region = "{DST}", url = "{env['REDIS_REPLICA_URL']}", replication_group = "facts-apne3" }}]
ca_bundle = "{env['REDIS_CA']}"
auth = {{ password_env = "REDIS_PASSWORD" }}
interval = "1s"
"""


def _read(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(l) for l in log.read_text().splitlines() if l.strip()]


def run(binary: Path, say) -> dict:
    """{"requests": agent's logged requests, "setup": boto3's count, "steps": [(what, rc, tail)]}"""
    lab_dir = Path(tempfile.mkdtemp(prefix="rpo-aws-facts-"))
    log = lab_dir / "requests.jsonl"
    up = subprocess.run([str(LAB), "up", "--dir", str(lab_dir), "--components", "aws,redis",
                         "--exit-with", str(os.getpid()), "--", "--aws-request-log", str(log)],
                        capture_output=True, text=True, timeout=120)
    if up.returncode != 0:
        raise RuntimeError(f"lab up failed: {up.stderr[-1500:]}")
    steps = []
    try:
        env = _env(lab_dir)
        _setup(env)
        setup_count = len(_read(log))
        cfg = lab_dir / "agent.toml"
        cfg.write_text(config(env))
        agent_env = {**os.environ, **env, "RPO_LOG": "warn"}
        for sub in ("init", "check"):
            r = subprocess.run([str(binary), sub, "--config", str(cfg)], env=agent_env,
                               capture_output=True, text=True, timeout=60)
            steps.append((f"rpo-agent {sub}", r.returncode, (r.stdout + r.stderr)[-800:]))
        proc = subprocess.Popen([str(binary), "run", "--config", str(cfg)], env=agent_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        # Until both source regions' GetMetricData went out (the first read is 10 s after start),
        # at least 12 s (canaries, reads, lease renewals), at most 25 s.
        while time.monotonic() - started < 25 and proc.poll() is None:
            regions = {e.get("region") for e in _read(log) if e.get("operation") == "GetMetricData"}
            if time.monotonic() - started >= 12 and {SRC, DST} <= regions:
                break
            time.sleep(0.5)
        ran = time.monotonic() - started
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        steps.append((f"rpo-agent run ({ran:.0f} s, then SIGTERM)", proc.returncode, err[-800:]))
        entries = _read(log)
    finally:
        subprocess.run([str(LAB), "down", "--dir", str(lab_dir)], capture_output=True, timeout=60)
    agent = [e for e in entries if AGENT_UA in (e.get("headers") or {}).get("user-agent", "")
             or AGENT_UA in (e.get("headers") or {}).get("x-amz-user-agent", "")]
    return {"requests": agent, "setup": setup_count, "others": len(entries) - len(agent), "steps": steps,
            "lab_dir": str(lab_dir)}
