"""Shared helpers of the benchmarks in bench/: the lab, its stores, the agent
process, its /metrics and logs, and /proc figures.

Not a benchmark itself. Import it from a script in bench/ (same directory):

    import benchlib as bl
    lab = bl.Lab.up()                       # tests/lab/lab up --components aws
    bl.global_table("t1"); lab.fault("dynamodb", "delay", "200ms", "--table", "t1")
    agent = bl.Agent.start(bl.ROOT / "target/release/rpo-agent", targets, lab, "run.log")
    m = agent.metrics()                     # [Sample(name, labels, value)]
    bl.total(m, "rpo_canaries_observed_total")
    agent.stop(); lab.down()
"""
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "tests/lab/lab"
SRC, DST = "ap-northeast-1", "ap-northeast-3"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def default_agent():
    return str(ROOT / "target/release/rpo-agent")


def describe_build(agent):
    """'HEAD abc1234 (+ local changes), rpo-agent 0.1.0 at PATH, built <mtime>' for the report."""
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    head = run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD") or "?"
    dirty = " + local changes" if run("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no") else ""
    version = run(str(agent), "--version") or "rpo-agent ?"
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(agent)))
    return f"lab and scripts: {ROOT} at {head}{dirty}; agent: {version} at {agent} (built {built})"


def check_agent(path):
    if not os.access(path, os.X_OK):
        sys.exit(f"{path} is missing: run `cargo build --release -p rpo-agent` (or pass --agent PATH)")


def parse_duration(text):
    """'30m', '90s', '1500ms', '2h' or a bare number of seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 90s, 1500ms)")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def fmt_duration(seconds):
    """Seconds -> the agent's config syntax ('1500ms', '30s', '45m')."""
    ms = int(round(seconds * 1000))
    if ms % 60000 == 0:
        return f"{ms // 60000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


# ---------------------------------------------------------------- the lab

class Lab:
    """A lab with the `aws` component in a fresh directory under /tmp. It stops
    itself when this Python process dies (`--exit-with`)."""

    def __init__(self, d):
        self.dir = d
        self.env = {}
        for line in open(os.path.join(d, "lab.env")):
            k, _, v = line.strip().partition("=")
            if k:
                self.env[k] = v.strip("'")
        os.environ.update(self.env)  # boto3 talks to the lab from here on

    @classmethod
    def up(cls):
        d = tempfile.mkdtemp(prefix="rpo-bench-", dir="/tmp")
        subprocess.run([LAB, "up", "--dir", d, "--components", "aws", "--exit-with", str(os.getpid()),
                        "--", "--aws-quiet"], check=True, stdout=subprocess.DEVNULL)
        return cls(d)

    def down(self):
        subprocess.run([LAB, "down", "--dir", self.dir], stdout=subprocess.DEVNULL)

    def fault(self, *args):
        subprocess.run([LAB, "fault", "--dir", self.dir, *args], check=True, stdout=subprocess.DEVNULL)

    def server_pid(self):
        """PID of the AWS stand-in (a single Python process); from DIR/lab.json."""
        state = json.load(open(os.path.join(self.dir, "lab.json")))
        return state["components"]["aws"]["pids"][0]

    def status(self):
        url = self.env["LAB_CONTROL_URL"] + "/status"
        return json.loads(urllib.request.urlopen(url, timeout=10).read())

    def queued(self, name=None):
        """Changes waiting for replication (of table/bucket `name`, or all)."""
        return sum(q["queued"] for q in self.status().get("replication", [])
                   if name is None or q["name"] == name)

    def wait_drained(self, name=None, timeout=120):
        end = time.time() + timeout
        while self.queued(name) and time.time() < end:
            time.sleep(0.5)

    def ground_truth(self):
        """Every ground-truth line so far (dicts)."""
        out = []
        try:
            with open(self.env["LAB_GROUND_TRUTH"]) as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a line being written
        except FileNotFoundError:
            pass
        return out


def global_table(name, src=SRC, dst=DST):
    """A global table `name` (partition key `pk`) in `src` with a replica in `dst`."""
    import boto3
    c = boto3.client("dynamodb", region_name=src)
    c.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   BillingMode="PAY_PER_REQUEST")
    c.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": dst}}])


def replicated_buckets(src_bucket, dst_bucket, src=SRC, dst=DST, prefix="rpo-canary/"):
    """Versioned `src_bucket` in `src` replicating `prefix` to versioned
    `dst_bucket` in `dst`, with replication metrics on (so S3 publishes
    ReplicationLatency to CloudWatch, and the agent reads it)."""
    import boto3
    from botocore.config import Config
    cfg = Config(s3={"addressing_style": "path"})
    for bucket, region in ((src_bucket, src), (dst_bucket, dst)):
        s3 = boto3.client("s3", region_name=region, config=cfg)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("s3", region_name=src, config=cfg).put_bucket_replication(
        Bucket=src_bucket,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/s3-replication",
            "Rules": [{
                "ID": f"to-{dst_bucket}", "Priority": 1, "Status": "Enabled",
                "Filter": {"Prefix": prefix},
                "DeleteMarkerReplication": {"Status": "Disabled"},
                "Destination": {"Bucket": f"arn:aws:s3:::{dst_bucket}", "Metrics": {"Status": "Enabled"}},
            }],
        })


def dynamodb_target(name, table, interval, extra=""):
    return (f'[[target]]\nname = "{name}"\nkind = "dynamodb"\ntable = "{table}"\n'
            f'source = {{ region = "{SRC}" }}\nreplicas = [{{ region = "{DST}" }}]\n'
            f'interval = "{interval}"\n{extra}\n')


def s3_target(name, src_bucket, dst_bucket, interval, extra=""):
    return (f'[[target]]\nname = "{name}"\nkind = "s3"\n'
            f'source = {{ region = "{SRC}", bucket = "{src_bucket}" }}\n'
            f'replicas = [{{ region = "{DST}", bucket = "{dst_bucket}" }}]\n'
            f'interval = "{interval}"\n{extra}\n')


def true_lags(lab, table, replica=DST):
    """{seq: readable_at - committed_at} of DynamoDB table `table` (ground truth)."""
    out = {}
    for g in lab.ground_truth():
        if (g.get("service") == "dynamodb" and g.get("table") == table and g.get("replica_region") == replica
                and not g.get("dropped") and g.get("seq") is not None and g.get("readable_at") is not None):
            out[g["seq"]] = g["readable_at"] - g["committed_at"]
    return out


# ---------------------------------------------------------------- the agent

@dataclass
class Sample:
    name: str
    labels: dict
    value: float


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text, names=None):
    """Prometheus text -> [Sample]; only families in `names` if given."""
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        if names is not None and name not in names:
            continue
        out.append(Sample(name, dict(_LABEL.findall(labels)), float(value)))
    return out


def total(samples, name, where=None):
    """Sum of `name` over the samples whose labels satisfy `where(labels)`."""
    return sum(s.value for s in samples if s.name == name and (where is None or where(s.labels)))


def values(samples, name):
    return [s.value for s in samples if s.name == name]


class Agent:
    """`rpo-agent --log-format json run --config FILE`, its JSON logs in
    `log`; the listen address is taken from its "rpo-agent starting" line."""

    def __init__(self, proc, log, cfg):
        self.proc, self.log, self.cfg = proc, log, cfg
        self.pid = proc.pid
        self.addr = None
        self.started_at = time.time()

    @classmethod
    def start(cls, binary, targets, lab, log, agent_id="bench", rpo_log="warn,rpo_agent=info", extra_agent=""):
        cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="rpo-bench-", dir=lab.dir, delete=False)
        cfg.write(f'[agent]\nid = "{agent_id}"\nlisten = "127.0.0.1:0"\n{extra_agent}\n' + "".join(targets))
        cfg.close()
        env = dict(os.environ, **lab.env, RPO_LOG=rpo_log)
        # RPO_BENCH_WRAP="heaptrack -o /tmp/h" runs the agent under a profiler (figures are then the profiler's).
        wrap = os.environ.get("RPO_BENCH_WRAP", "").split()
        proc = subprocess.Popen([*wrap, str(binary), "--log-format", "json", "run", "--config", cfg.name], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        a = cls(proc, log, cfg.name)
        end = time.time() + 60
        while a.addr is None:
            if proc.poll() is not None:
                sys.exit(f"the agent exited with {proc.returncode}; its log {log}:\n" + open(log).read()[-3000:])
            if time.time() > end:
                a.stop()
                sys.exit(f"the agent did not log 'rpo-agent starting' within 60 s; see {log}")
            for line in a.logs():
                if line.get("message") == "rpo-agent starting":
                    a.addr = line["listen"]
            time.sleep(0.05)
        return a

    def logs(self, message=None):
        """The JSON log lines so far (dicts), only those with `message` if given."""
        out = []
        with open(self.log) as f:
            for line in f:
                if message is not None and message not in line:
                    continue
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if message is None or v.get("message") == message:
                    out.append(v)
        return out

    def metrics_text(self):
        return urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=60).read().decode()

    def metrics(self, names=None):
        return parse_metrics(self.metrics_text(), names)

    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM (the agent drains its reads), SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ---------------------------------------------------------------- /proc

def cpu_seconds(pid):
    """utime + stime of process `pid` (all its threads), in seconds."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def rss_mib(pid):
    """VmRSS of process `pid`, MiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pass_fail(ok):
    return "PASS" if ok else "FAIL"


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
