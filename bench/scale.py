"""Benchmark (issue 8): what one agent process costs with many targets.

Runs, one agent process each, against the lab's AWS stand-in:
  * N DynamoDB targets (for N in --sizes) on ONE global table: each target is
    a [[target]] of its own name, so the agent writes one item per target;
  * --s3 S3 targets on ONE replicated bucket pair (replication metrics on, so
    the agent also reads S3's ReplicationLatency from CloudWatch);
every target at --interval (30 s) with an injected replication delay
(--delay, 200 ms). For each run it waits for the warm-up (every target
rpo_probe_up 1; reports how long that took, or how many were up at
--warmup-timeout), then measures a steady window (--window, 180 s):

  RSS            VmRSS of the agent every 5 s: median and max
  CPU/canary     Δ(utime+stime) / Δ sum rpo_canaries_observed_total
  API/canary     Δ sum rpo_api_requests_total{service!="cloudwatch"} / Δ observed
  GMD/min        Δ rpo_api_requests_total{service="cloudwatch",op="GetMetricData"} per minute
  lab CPU        the AWS stand-in's own CPU % of one core (is the lab the bottleneck?)
  observed/s     against targets/interval (what the agent should observe)
  scrape         the slowest and largest /metrics answer (scraped every
                 --scrape-every s, 15 s, during the window, as Prometheus would)

and prints PASS/FAIL against issue 8's goals: RSS <= 40 MiB (meant for 1000
DynamoDB targets, applied to every row), <= 0.5 ms CPU per observed canary,
GetMetricData calls per minute <= number of source regions (here 1).
One row per run as it ends, then a markdown table for BENCHMARKS.md.

Run (from the repository root):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/scale.py [--sizes 1,100,1000] [--s3 200] [--window 180]
A quick try: --sizes 1,10 --s3 5 --window 60 (≈ 5 min).
"""
import argparse
import math
import os
import sys
import time

import benchlib as bl

SOURCE_REGIONS = 1  # every target writes in bl.SRC
RSS_GOAL_MIB = 40.0
CPU_GOAL_MS = 0.5
WANT = {"rpo_probe_up", "rpo_canaries_observed_total", "rpo_canaries_written_total", "rpo_api_requests_total",
        "rpo_probe_errors_total", "rpo_canaries_lost_total", "rpo_replica_reads_total"}


def is_gmd(labels):
    return labels.get("service") == "cloudwatch" and labels.get("op") == "GetMetricData"


def not_cloudwatch(labels):
    return labels.get("service") != "cloudwatch"


def warm_up(agent, n, timeout):
    """Waits until all n pairs have rpo_probe_up 1; returns (seconds since start, up)."""
    up = 0
    while True:
        m = agent.metrics({"rpo_probe_up"})
        up = sum(1 for v in bl.values(m, "rpo_probe_up") if v == 1)
        elapsed = time.time() - agent.started_at
        if up >= n or elapsed >= timeout or not agent.running():
            return elapsed, up
        time.sleep(2 if n < 100 else 5)


def measure(a, lab, label, n, targets, interval_s, log):
    """One agent run: warm-up, then the steady window. Returns a result dict."""
    extra = f'aws_reported_every = "{a.aws_reported_every}"\n'
    if a.emf:
        # EMF documents to stdout (the bench's agent writes stdout to /dev/null, as cheap as a pipe).
        extra += f'\n[emf]\nto = "stdout"\nevery = "{a.emf}"\n'
    agent = bl.Agent.start(a.agent, targets, lab, log, agent_id="scale", extra_agent=extra)
    lab_pid = lab.server_pid()
    try:
        warm_s, up = warm_up(agent, n, a.warmup_timeout)
        m0 = agent.metrics(WANT)
        t0, c0, l0 = time.time(), bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab_pid)
        rss = [bl.rss_mib(agent.pid)]
        scrapes = []  # (seconds, bytes) of each scrape of /metrics, as Prometheus would make
        next_rss = next_scrape = t0
        while time.time() - t0 < a.window:
            now = time.time()
            if a.scrape_every and now >= next_scrape:
                s0 = time.time()
                size = len(agent.metrics_text())
                scrapes.append((time.time() - s0, size))
                next_scrape += a.scrape_every
            if now >= next_rss:
                rss.append(bl.rss_mib(agent.pid))
                next_rss += 5
            time.sleep(max(0.0, min(next_rss, next_scrape if a.scrape_every else next_rss, t0 + a.window) - time.time()))
        rss.append(bl.rss_mib(agent.pid))
        t1, c1, l1 = time.time(), bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab_pid)
        m1 = agent.metrics(WANT)
    finally:
        agent.stop()
    dt = t1 - t0
    d = lambda name, where=None: bl.total(m1, name, where) - bl.total(m0, name, where)
    observed = d("rpo_canaries_observed_total")
    per = lambda x: x / observed if observed else float("nan")
    return {
        "run": label, "n": n, "warm_s": warm_s, "up": up,
        "rss_med": bl.median(rss), "rss_max": max(rss),
        "cpu_ms": per((c1 - c0) * 1e3),
        "api": per(d("rpo_api_requests_total", not_cloudwatch)),
        "reads": per(d("rpo_replica_reads_total")),
        "gmd": d("rpo_api_requests_total", is_gmd), "gmd_min": d("rpo_api_requests_total", is_gmd) / (dt / 60),
        # One call per source region per minute fits SOURCE_REGIONS calls in
        # each (started) minute of the window, wherever its boundaries fall.
        "gmd_allowed": SOURCE_REGIONS * math.ceil(dt / 60 - 0.05),
        "lab_cpu": (l1 - l0) / dt * 100, "agent_cpu": (c1 - c0) / dt * 100,
        "obs_s": observed / dt, "want_s": n / interval_s,
        "errors": d("rpo_probe_errors_total"), "lost": d("rpo_canaries_lost_total"),
        "scrape_ms": max((t for t, _ in scrapes), default=0) * 1e3,
        "scrape_kib": max((b for _, b in scrapes), default=0) / 1024,
    }


HEADER = ["run", "targets", "warm-up", "RSS median / max", "CPU per canary", "API req/canary", "reads/canary",
          "GetMetricData/min", "observed/s (of)", "agent CPU", "lab CPU", "errors, lost", "scrape (max)"]


def cells(r):
    ok_rss = r["rss_max"] <= RSS_GOAL_MIB
    ok_cpu = r["cpu_ms"] <= CPU_GOAL_MS
    ok_gmd = r["gmd"] <= r["gmd_allowed"]
    warm = f"{r['warm_s']:.0f} s" + ("" if r["up"] >= r["n"] else f" ({r['up']}/{r['n']} up)")
    return [r["run"], r["n"], warm,
            f"{r['rss_med']:.1f} / {r['rss_max']:.1f} MiB {bl.pass_fail(ok_rss)}",
            f"{r['cpu_ms']:.2f} ms {bl.pass_fail(ok_cpu)}",
            f"{r['api']:.2f}", f"{r['reads']:.2f}",
            f"{r['gmd_min']:.1f} {bl.pass_fail(ok_gmd)}",
            f"{r['obs_s']:.2f} ({r['want_s']:.2f})",
            f"{r['agent_cpu']:.1f} %", f"{r['lab_cpu']:.1f} %",
            f"{r['errors']:.0f}, {r['lost']:.0f}",
            f"{r['scrape_ms']:.0f} ms, {r['scrape_kib']:.0f} KiB"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=bl.default_agent(), help="the rpo-agent binary (default target/release/rpo-agent)")
    ap.add_argument("--sizes", default="1,100,1000", help="numbers of DynamoDB targets, one run each")
    ap.add_argument("--s3", type=int, default=200, help="S3 targets of the S3 run (0: no S3 run)")
    ap.add_argument("--window", type=float, default=180, help="steady window, seconds")
    ap.add_argument("--interval", default="30s", help="canary interval of every target")
    ap.add_argument("--aws-reported-every", default="1m",
                    help='[agent] aws_reported_every ("off": no CloudWatch reads, e.g. to take the lab\'s CloudWatch out of a run)')
    ap.add_argument("--delay", default="200ms", help="injected replication delay")
    ap.add_argument("--emf", default="", metavar="EVERY",
                    help='also write CloudWatch EMF documents every EVERY ("60s"; default: no [emf])')
    ap.add_argument("--scrape-every", type=float, default=15,
                    help="scrape /metrics this often during the window, as Prometheus would (0: never); "
                         "the scrapes' CPU and memory count in the figures")
    ap.add_argument("--warmup-timeout", type=float, default=300,
                    help="seconds after the start to give up waiting for every target to be up")
    a = ap.parse_args()
    bl.check_agent(a.agent)
    interval_s = bl.parse_duration(a.interval)
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    lab = bl.Lab.up()
    print(f"# rpo-agent scale benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"{bl.describe_build(a.agent)}")
    print(f"# interval {a.interval}, delay {a.delay}, window {a.window:.0f} s, lab {lab.dir}\n", flush=True)
    print(" | ".join(HEADER), flush=True)
    results = []
    try:
        for n in sizes:
            table = f"scale-d{n}"
            bl.global_table(table)
            lab.fault("dynamodb", "delay", a.delay, "--table", table)
            targets = [bl.dynamodb_target(f"d{i:04d}", table, a.interval) for i in range(n)]
            r = measure(a, lab, "dynamodb", n, targets, interval_s, os.path.join(lab.dir, f"agent-d{n}.log"))
            results.append(r)
            print(" | ".join(str(c) for c in cells(r)), flush=True)
        if a.s3:
            src, dst = f"scale-src-{a.s3}", f"scale-dst-{a.s3}"
            bl.replicated_buckets(src, dst)
            lab.fault("s3", "delay", a.delay, "--bucket", src)
            targets = [bl.s3_target(f"s{i:04d}", src, dst, a.interval) for i in range(a.s3)]
            r = measure(a, lab, "s3", a.s3, targets, interval_s, os.path.join(lab.dir, f"agent-s{a.s3}.log"))
            results.append(r)
            print(" | ".join(str(c) for c in cells(r)), flush=True)
    finally:
        lab.down()
    print(f"\n## Scale (interval {a.interval}, delay {a.delay}, {a.window:.0f} s steady window; "
          f"goals: RSS <= {RSS_GOAL_MIB:.0f} MiB, <= {CPU_GOAL_MS} ms CPU per canary, "
          f"GetMetricData/min <= {SOURCE_REGIONS} source region)\n")
    print(bl.markdown_table(HEADER, [cells(r) for r in results]))
    print(f"\nCommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
