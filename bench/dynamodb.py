"""Benchmark: the DynamoDB probe against the lab's ground truth, and the
agent's cost as the number of targets grows.

Prints, for each injected delay: canaries measured, error against the lab's
ground truth (median / p90 / max, after a warm-up), reads per canary, and
mean uncertainty; then, for 1, 10 and 50 targets: the agent's CPU time per
second of wall time and its peak RSS.

Run (from the repository root, with the lab venv's python):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/dynamodb.py [--seconds 40]
"""
import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "tests/lab/lab"
SRC, DST = "ap-northeast-1", "ap-northeast-3"


def lab_up(d):
    subprocess.run([LAB, "up", "--dir", d, "--components", "aws", "--exit-with", str(os.getpid()), "--", "--aws-quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    env = {}
    for line in open(os.path.join(d, "lab.env")):
        k, _, v = line.strip().partition("=")
        env[k] = v.strip("'")
    return env


def fault(d, *args):
    subprocess.run([LAB, "fault", "--dir", d, *args], check=True, stdout=subprocess.DEVNULL)


def global_table(name):
    c = boto3.client("dynamodb", region_name=SRC)
    c.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    c.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": DST}}])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def target(name, interval):
    return (f'[[target]]\nname = "{name}"\nkind = "dynamodb"\ntable = "{name}"\n'
            f'source = {{ region = "{SRC}" }}\nreplicas = [{{ region = "{DST}" }}]\ninterval = "{interval}"\n')


def start_agent(bin_, targets, env, log):
    port = free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'[agent]\nid = "bench"\nlisten = "127.0.0.1:{port}"\n' + "".join(targets))
    cfg.close()
    e = dict(os.environ, **env, RPO_LOG="warn,rpo_agent::scheduler=debug")
    p = subprocess.Popen([bin_, "--log-format", "json", "run", "--config", cfg.name], env=e,
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    return p, port


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{")[0]
        target = name_labels.split('target="')[1].split('"')[0] if 'target="' in name_labels else ""
        out[(name, target)] = out.get((name, target), 0.0) + float(value)
    return out


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def accuracy(bin_, d, env, seconds):
    cases = [("b300", "300ms", "1s"), ("b2000", "2s", "1s"), ("b300j", "300ms", "1s")]
    for name, delay, _ in cases:
        global_table(name)
        fault(d, "dynamodb", "delay", delay, "--table", name)
    fault(d, "dynamodb", "jitter", "100ms", "--table", "b300j")
    log = os.path.join(d, "agent-accuracy.log")
    p, port = start_agent(bin_, [target(n, i) for n, _, i in cases], env, log)
    time.sleep(8)
    m0 = metrics(port)
    time.sleep(seconds)
    m1 = metrics(port)
    p.terminate()
    p.wait()
    truth = {}
    for line in open(env["LAB_GROUND_TRUTH"]):
        g = json.loads(line)
        if g.get("seq") and g.get("readable_at"):
            truth[(g["table"], g["seq"])] = g["readable_at"] - g["committed_at"]
    print(f"\n## Accuracy against the lab's ground truth ({seconds} s steady state after 8 s warm-up, interval 1 s)\n")
    print("| case | canaries | median error | p90 error | max error | mean uncertainty | reads/canary |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    obs = [json.loads(l) for l in open(log) if '"canary observed"' in l]
    for name, delay, _ in cases:
        warm = sorted(o["seq"] for o in obs if o["target"] == name)[:5]
        rows = [o for o in obs if o["target"] == name and o["seq"] not in warm and (name, o["seq"]) in truth]
        errs = sorted(abs(o["lag_seconds"] - truth[(name, o["seq"])]) * 1e3 for o in rows)
        unc = statistics.mean(o["uncertainty_seconds"] for o in rows) * 1e3
        reads = m1[("rpo_replica_reads_total", name)] - m0[("rpo_replica_reads_total", name)]
        seen = m1[("rpo_canaries_observed_total", name)] - m0[("rpo_canaries_observed_total", name)]
        label = f"delay {delay}" + (" + jitter 0–100ms" if name.endswith("j") else "")
        print(f"| {label} | {len(errs)} | {errs[len(errs)//2]:.1f} ms | {errs[int(len(errs)*0.9)]:.1f} ms | "
              f"{errs[-1]:.1f} ms | {unc:.1f} ms | {reads/seen:.2f} |")


def scaling(bin_, d, env, seconds):
    print(f"\n## Cost per target (interval 1 s, delay 200 ms, {seconds} s window)\n")
    print("| targets | CPU (% of one core) | CPU per target | peak RSS | API requests/s | reads/canary | median rpo_seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in (1, 10, 50):
        names = [f"s{n}x{i}" for i in range(n)]
        for name in names:
            global_table(name)
            fault(d, "dynamodb", "delay", "200ms", "--table", name)
        p, port = start_agent(bin_, [target(x, "1s") for x in names], env, os.path.join(d, f"agent-{n}.log"))
        time.sleep(5)
        c0, t0, m0 = cpu_seconds(p.pid), time.time(), metrics(port)
        time.sleep(seconds)
        c1, t1, m1 = cpu_seconds(p.pid), time.time(), metrics(port)
        rss = peak_rss_mib(p.pid)
        p.terminate()
        p.wait()
        cpu = (c1 - c0) / (t1 - t0) * 100
        req = sum(v for (k, _), v in m1.items() if k == "rpo_api_requests_total") - \
            sum(v for (k, _), v in m0.items() if k == "rpo_api_requests_total")
        delta = lambda k: sum(v for (m, _), v in m1.items() if m == k) - sum(v for (m, _), v in m0.items() if m == k)
        reads = delta("rpo_replica_reads_total") / max(delta("rpo_canaries_observed_total"), 1)
        rpo = statistics.median(v for (m, _), v in m1.items() if m == "rpo_seconds")
        print(f"| {n} | {cpu:.2f} % | {cpu/n:.3f} % | {rss:.1f} MiB | {req/(t1-t0):.1f} | {reads:.2f} | {rpo*1e3:.0f} ms |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--bin", default=str(ROOT / "target/release/rpo-agent"))
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} is missing: run cargo build --release -p rpo-agent")
    d = tempfile.mkdtemp(prefix="rpo-bench-", dir="/tmp")
    env = lab_up(d)
    os.environ.update(env)
    print(f"# rpo-agent DynamoDB benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    try:
        accuracy(a.bin, d, env, a.seconds)
        scaling(a.bin, d, env, a.seconds // 2)
    finally:
        subprocess.run([LAB, "down", "--dir", d], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
