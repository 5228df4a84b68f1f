"""Benchmark: how well the agent measures the FIRST THREE canaries of a target
after it starts (a cold start: no lag learned yet), against the lab's ground
truth.

For each injected DynamoDB replication lag (--lags, default 1s,2.6s,30s; lab
fault `dynamodb delay LAG --table T`), it starts a fresh agent --runs times
(default 3) on one target of a global table of its own. Each run has a new
agent id, as a new ECS task has after a deploy: run 1 is the target's first
start ever (nothing is known), the later runs start from the target's lag
hint that the agent before them kept in the table (`rpo-lag-hint#<target>`).
The summary shows the two apart: a first start has nothing to aim at, so
only the hinted starts are held to the goal. Each run lasts until the
agent has observed three canaries, then the agent gets SIGTERM.

Per canary, the measured lag, the uncertainty and the number of reads come
from the agent's "canary observed" debug log line (RPO_LOG
rpo_agent::scheduler=debug, as tests/dynamodb.rs reads it); the true lag is
readable_at - committed_at of the ground-truth line with the same seq
(DIR/ground-truth.jsonl). It prints, per lag and run, the error of canary
1/2/3 (measured - true, ms and % of the true lag) and its reads, and PASS
when every canary is within max(5 % of the lag, 50 ms) at <= 8 reads; then
a summary per lag (worst of the runs) as a markdown table.

Run (from the repository root):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/cold_start.py [--lags 1s,2.6s,30s] [--runs 3] [--interval 5s]
A quick try: --lags 1s --runs 2 (≈ 1 min). All defaults: ≈ 8 min.
"""
import argparse
import os
import sys
import time

import benchlib as bl

FIRST = 3
MAX_READS = 8
REL_TOL, ABS_TOL = 0.05, 0.050


def tolerance(lag):
    return max(REL_TOL * lag, ABS_TOL)


def one_run(a, lab, table, lag_s, interval_s, log, run):
    """A fresh agent until it has observed FIRST canaries: [(seq, measured, true, uncertainty, reads)]."""
    target = bl.dynamodb_target(table, table, a.interval, 'timeout = "5m"')
    agent = bl.Agent.start(a.agent, [target], lab, log, agent_id=f"cold-{run}",
                           rpo_log="warn,rpo_agent=info,rpo_agent::scheduler=debug")
    deadline = time.time() + 60 + 3 * (lag_s + interval_s) * 2
    try:
        while True:
            seen = agent.logs("canary observed")
            if len(seen) >= FIRST or time.time() > deadline or not agent.running():
                break
            time.sleep(0.2)
    finally:
        agent.stop()
    seen = sorted(agent.logs("canary observed"), key=lambda v: v["seq"])[:FIRST]
    truth = bl.true_lags(lab, table)
    return [(v["seq"], v["lag_seconds"], truth.get(v["seq"]), v["uncertainty_seconds"], v["reads"]) for v in seen]


def canary_ok(c):
    _, measured, true, _, reads = c
    return true is not None and abs(measured - true) <= tolerance(true) and reads <= MAX_READS


def describe(c):
    _, measured, true, unc, reads = c
    if true is None:
        return f"{measured * 1e3:.0f} ms, no truth, {reads} reads"
    err = measured - true
    return f"{err * 1e3:+.1f} ms ({err / true * 100:+.2f} %), {reads} reads"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=bl.default_agent(), help="the rpo-agent binary (default target/release/rpo-agent)")
    ap.add_argument("--lags", default="1s,2.6s,30s", help="injected lags, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="fresh agents per lag")
    ap.add_argument("--interval", default="5s", help="canary interval of the target (the agent's default is 5s)")
    a = ap.parse_args()
    bl.check_agent(a.agent)
    interval_s = bl.parse_duration(a.interval)
    lab = bl.Lab.up()
    print(f"# rpo-agent cold-start benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {bl.describe_build(a.agent)}")
    print(f"# interval {a.interval}; PASS: each of the first {FIRST} canaries within max({REL_TOL * 100:.0f} % of the lag, "
          f"{ABS_TOL * 1e3:.0f} ms) at <= {MAX_READS} reads; lab {lab.dir}\n")
    print("lag | run | canary 1 | canary 2 | canary 3 | result", flush=True)
    summary = []
    try:
        for lag in a.lags.split(","):
            lag_s = bl.parse_duration(lag)
            table = f"cold-{int(lag_s * 1000)}ms"
            bl.global_table(table)
            lab.fault("dynamodb", "delay", bl.fmt_duration(lag_s), "--table", table)
            runs = []
            for run in range(1, a.runs + 1):
                lab.wait_drained(table)  # the previous agent's last canaries have arrived
                got = one_run(a, lab, table, lag_s, interval_s, os.path.join(lab.dir, f"agent-{table}-{run}.log"), run)
                runs.append(got)
                cols = [describe(c) for c in got] + ["(not observed)"] * (FIRST - len(got))
                ok = len(got) == FIRST and all(canary_ok(c) for c in got)
                verdict = bl.pass_fail(ok) if run > 1 else ("(first start: " + ("within" if ok else "outside") + " the goal)")
                print(f"{lag} | {run} | " + " | ".join(cols) + f" | {verdict}", flush=True)
            summary.append((lag, lag_s, runs))
    finally:
        lab.down()

    print(f"\n## Cold start: the first {FIRST} canaries after a start (interval {a.interval}, {a.runs} fresh agents per lag; "
          f"worst of the runs; goal: within max({REL_TOL * 100:.0f} %, {ABS_TOL * 1e3:.0f} ms) at <= {MAX_READS} reads)\n")
    header = ["lag", "start"] + [f"canary {i + 1}: max error, max reads" for i in range(FIRST)] + ["result"]
    rows = []
    for lag, lag_s, all_runs in summary:
        for what, runs in (("first start, no hint", all_runs[:1]), ("new agent, lag hint", all_runs[1:])):
            if not runs:
                continue
            row, ok = [lag, what], all(len(r) == FIRST for r in runs)
            for i in range(FIRST):
                cs = [r[i] for r in runs if len(r) > i and r[i][2] is not None]
                if not cs:
                    row.append("—")
                    continue
                worst = max(cs, key=lambda c: abs(c[1] - c[2]))
                err = worst[1] - worst[2]
                row.append(f"{err * 1e3:+.1f} ms ({err / worst[2] * 100:+.2f} %), {max(c[4] for c in cs)} reads")
                ok = ok and all(canary_ok(c) for c in cs) and len(cs) == len(runs)
            rows.append(row + [bl.pass_fail(ok) if what.startswith("new") else ("within" if ok else "outside")])
    print(bl.markdown_table(header, rows))
    print(f"\nCommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
