"""Benchmark (issue 12): what Redis targets cost one agent process.

Starts a lab with the `redis` component (a TLS primary -> replica pair through
the lab's relay, `delay` --delay), then for each N in --sizes runs one agent
with N `kind = "redis"` targets on that pair (each target its own canary key,
TLS verified with the lab CA, AUTH from the environment; --interval apart).
After the warm-up (every target rpo_probe_up 1) it measures a --window:

  RSS            VmRSS of the agent every 5 s: median and max
  CPU/canary     Δ(utime+stime) / Δ sum rpo_canaries_observed_total
  reads/canary   Δ sum rpo_replica_reads_total / Δ observed
  conns          TCP connections the agent holds (from /proc/PID/fd sockets)
  error          median |lag − 0.7 s| of the window's canaries, from the debug log

One row per run, then a Markdown table for BENCHMARKS.md.

Run (from the repository root):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/redis_scale.py [--sizes 1,50,200] [--window 60]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import benchlib as bl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "tests/lab/lab")


def redis_lab(delay):
    d = tempfile.mkdtemp(prefix="rpo-bench-redis-", dir="/tmp")
    subprocess.run([LAB, "up", "--dir", d, "--components", "redis", "--exit-with", str(os.getpid())],
                   check=True, stdout=subprocess.DEVNULL)
    lab = bl.Lab(d)
    lab.fault("redis", "delay", delay)
    return lab


def redis_target(lab, name, interval):
    e = lab.env
    return (f'[[target]]\nname = "{name}"\nkind = "redis"\n'
            f'source = {{ region = "{bl.SRC}", url = "{e["REDIS_PRIMARY_URL"]}" }}\n'
            f'replicas = [{{ region = "{bl.DST}", url = "{e["REDIS_REPLICA_URL"]}" }}]\n'
            f'interval = "{interval}"\nca_bundle = "{e["REDIS_CA"]}"\n'
            'auth = { password_env = "REDIS_PASSWORD" }\n\n')


def sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def run(binary, lab, n, interval, window, delay_s, warmup_timeout):
    log = os.path.join(lab.dir, f"agent-{n}.log")
    targets = [redis_target(lab, f"r{i:04d}", interval) for i in range(n)]
    agent = bl.Agent.start(binary, targets, lab, log, rpo_log="warn,rpo_agent=debug")
    t0 = time.time()
    up = 0
    while time.time() - t0 < warmup_timeout:
        up = int(bl.total(agent.metrics(["rpo_probe_up"]), "rpo_probe_up"))
        if up >= n:
            break
        time.sleep(1)
    warm = time.time() - t0
    time.sleep(bl.parse_duration(interval) * 3)  # the first canaries are cold
    m0 = agent.metrics()
    cpu0, obs0 = bl.cpu_seconds(agent.pid), bl.total(m0, "rpo_canaries_observed_total")
    reads0 = bl.total(m0, "rpo_replica_reads_total")
    seen_before = len(agent.logs("canary observed"))
    rss = []
    end = time.time() + window
    while time.time() < end:
        rss.append(bl.rss_mib(agent.pid))
        time.sleep(5)
    m1 = agent.metrics()
    cpu1, obs1 = bl.cpu_seconds(agent.pid), bl.total(m1, "rpo_canaries_observed_total")
    reads1 = bl.total(m1, "rpo_replica_reads_total")
    conns = sockets(agent.pid)
    lags = [v["lag_seconds"] for v in agent.logs("canary observed")[seen_before:]]
    agent.stop()
    d_obs = max(obs1 - obs0, 1)
    errors = sorted(abs(x - delay_s) for x in lags)
    return {
        "targets": n,
        "warm-up": f"{warm:.1f} s ({up}/{n} up)",
        "RSS median": f"{bl.median(rss):.1f} MiB",
        "RSS max": f"{max(rss):.1f} MiB",
        "CPU/canary": f"{(cpu1 - cpu0) / d_obs * 1e3:.2f} ms",
        "reads/canary": f"{(reads1 - reads0) / d_obs:.2f}",
        "observed/s": f"{d_obs / window:.1f} (of {n / bl.parse_duration(interval):.1f})",
        "sockets": str(conns),
        "|error| median": f"{errors[len(errors) // 2] * 1e3:.1f} ms" if errors else "–",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=None, help="the agent binary (default: target/release, else target/debug)")
    ap.add_argument("--sizes", default="1,50,200")
    ap.add_argument("--interval", default="5s")
    ap.add_argument("--delay", default="700ms")
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--warmup-timeout", type=float, default=120)
    a = ap.parse_args()
    binary = a.bin or bl.default_agent()
    bl.check_agent(binary)
    lab = redis_lab(a.delay)
    print(f"# rpo-agent Redis scale benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"agent {bl.describe_build(binary)}; interval {a.interval}, delay {a.delay}, window {a.window:.0f} s",
          flush=True)
    rows = []
    try:
        for n in [int(x) for x in a.sizes.split(",")]:
            r = run(binary, lab, n, a.interval, a.window, bl.parse_duration(a.delay), a.warmup_timeout)
            print(r, flush=True)
            rows.append(r)
    finally:
        lab.down()
    header = list(rows[0].keys()) if rows else []
    print(bl.markdown_table(header, [[r[h] for h in header] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
