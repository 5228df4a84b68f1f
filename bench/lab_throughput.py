"""Benchmark: what the lab's AWS stand-in itself can serve, so an agent benchmark can tell
the agent's figures from the lab's.

Starts a lab (component aws, quiet), creates a DynamoDB global table and an S3 replicated
bucket pair, then for GetItem, PutItem (replicated) and HeadObject with 1 and 8 client threads
prints requests/s, the server process's CPU seconds per 1000 requests, and how many TCP
connections the clients opened while measured (keep-alive: 0, the warm-up call opened one per
thread; `Connection: close`: one per request). boto3 keeps connections alive, so the figures are the server's, up to the client's
own CPU (printed too: on 2 cores the Python client competes with the server).

Run (from the repository root, with the lab venv's python):
    ~/.cache/rpo-agent/lab-venv/bin/python bench/lab_throughput.py [--seconds 5] [--threads 1,8]
Before/after a lab change: `git archive OLD tests/lab | tar -x -C /tmp/old` and run once with
`--lab /tmp/old/tests/lab/lab`, once without.
"""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "tests/lab/lab"  # --lab: another copy of the lab (e.g. an older commit's, for before/after)
SRC, DST = "ap-northeast-1", "ap-northeast-3"
TABLE, BUCKET, DEST_BUCKET, KEY = "tp-table", "tp-src", "tp-dst", "tp/object"


def lab_up(d):
    subprocess.run([LAB, "up", "--dir", d, "--components", "aws", "--exit-with", str(os.getpid()), "--", "--aws-quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    env = {}
    for line in open(os.path.join(d, "lab.env")):
        k, _, v = line.strip().partition("=")
        env[k] = v.strip("'")
    return env


def server_pid(d):
    state = json.load(open(os.path.join(d, "lab.json")))
    return state["components"]["aws"]["pids"][0]


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def client(service, region):
    # No retries: a benchmark must count what the server answered; a pool per client.
    return boto3.client(service, region_name=region,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=4))


def global_table(name):
    c = client("dynamodb", SRC)
    c.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    c.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": DST}}])


def replicated_buckets(src, dst):
    s, d = client("s3", SRC), client("s3", DST)
    s.create_bucket(Bucket=src, CreateBucketConfiguration={"LocationConstraint": SRC})
    d.create_bucket(Bucket=dst, CreateBucketConfiguration={"LocationConstraint": DST})
    for c, b in ((s, src), (d, dst)):
        c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s.put_bucket_replication(Bucket=src, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/lab",
        "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}],
    })


class ConnCounter:
    """Counts new TCP connections urllib3 opens (keep-alive check), process-wide."""

    def __init__(self):
        import urllib3.connection
        self.n = 0
        self._lock = threading.Lock()
        orig = urllib3.connection.HTTPConnection.connect
        counter = self

        def connect(conn):
            with counter._lock:
                counter.n += 1
            return orig(conn)

        urllib3.connection.HTTPConnection.connect = connect


def op_fn(op, thread_no):
    if op == "GetItem":
        c = client("dynamodb", SRC)
        key = {"pk": {"S": f"item-{thread_no}"}}
        return lambda i: c.get_item(TableName=TABLE, Key=key, ConsistentRead=True)
    if op == "PutItem":
        c = client("dynamodb", SRC)
        return lambda i: c.put_item(TableName=TABLE, Item={"pk": {"S": f"item-{thread_no}"}, "seq": {"N": str(i)},
                                                           "payload": {"S": "x" * 64}})
    if op == "HeadObject":
        c = client("s3", SRC)
        return lambda i: c.head_object(Bucket=BUCKET, Key=KEY)
    raise ValueError(op)


def run(op, threads, seconds, pid, conns):
    fns = [op_fn(op, t) for t in range(threads)]
    for f in fns:  # warm: connect, first-call overheads
        f(0)
    counts, errors, headers = [0] * threads, [0] * threads, {}
    stop = threading.Event()
    start_gate = threading.Barrier(threads + 1)

    def worker(t):
        start_gate.wait()
        i = 1
        while not stop.is_set():
            try:
                r = fns[t](i)
                headers.setdefault("connection", r["ResponseMetadata"]["HTTPHeaders"].get("connection", "(none)"))
                counts[t] += 1
            except Exception as e:  # counted, not fatal
                errors[t] += 1
                headers.setdefault("error", repr(e)[:200])
            i += 1

    ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    c0, n0, me0 = cpu_seconds(pid), conns.n, resource.getrusage(resource.RUSAGE_SELF)
    start_gate.wait()
    t0 = time.monotonic()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    t1 = time.monotonic()
    c1, n1, me1 = cpu_seconds(pid), conns.n, resource.getrusage(resource.RUSAGE_SELF)
    n = sum(counts)
    client_cpu = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
    return {
        "op": op, "threads": threads, "requests": n, "errors": sum(errors),
        "rps": n / (t1 - t0), "server_cpu_per_1000": (c1 - c0) / max(n, 1) * 1000,
        "server_cpu_pct": (c1 - c0) / (t1 - t0) * 100, "client_cpu_per_1000": client_cpu / max(n, 1) * 1000,
        "connections": n1 - n0, "connection_header": headers.get("connection", "?"), "error": headers.get("error"),
    }


def main():
    global LAB
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per case (default 5)")
    ap.add_argument("--threads", default="1,8", help="client thread counts (default 1,8)")
    ap.add_argument("--ops", default="GetItem,PutItem,HeadObject")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per case")
    ap.add_argument("--lab", default=str(LAB), help="the lab's entry point (default: this tree's tests/lab/lab)")
    a = ap.parse_args()
    LAB = pathlib.Path(a.lab)
    d = tempfile.mkdtemp(prefix="rpo-bench-lab-", dir="/tmp")
    env = lab_up(d)
    os.environ.update(env)
    pid = server_pid(d)
    conns = ConnCounter()
    try:
        global_table(TABLE)
        c = client("dynamodb", SRC)
        for t in range(max(int(x) for x in a.threads.split(","))):
            c.put_item(TableName=TABLE, Item={"pk": {"S": f"item-{t}"}, "seq": {"N": "0"}})
        replicated_buckets(BUCKET, DEST_BUCKET)
        client("s3", SRC).put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * 1024)
        print(f"# lab AWS stand-in throughput ({LAB}), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}, {a.seconds:g} s per case\n")
        print("| operation | client threads | requests/s | server CPU s / 1000 req | server CPU | "
              "client CPU s / 1000 req | TCP connections | Connection header | errors |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for op in a.ops.split(","):
            for threads in (int(x) for x in a.threads.split(",")):
                r = run(op, threads, a.seconds, pid, conns)
                print(f"| {op} | {threads} | {r['rps']:.0f} | {r['server_cpu_per_1000']:.3f} | "
                      f"{r['server_cpu_pct']:.0f} % | {r['client_cpu_per_1000']:.3f} | {r['connections']} | "
                      f"{r['connection_header']} | {r['errors']}" + (f" ({r['error']})" if r["error"] else "") + " |",
                      flush=True)
                if a.json:
                    print(json.dumps(r), flush=True)
    finally:
        subprocess.run([LAB, "down", "--dir", d], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
