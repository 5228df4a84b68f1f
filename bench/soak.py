"""Soak benchmark: one agent process observes >= --canaries (10^5) canaries,
with a replication stall (--stall, 30 min) in the middle; does its memory
stay flat, and does RPO rise during the stall and fall back after it?

--targets DynamoDB targets on one global table, each writing a canary every
--interval, with an injected delay (--delay, 200 ms). At --stall-at (default:
so that the stall sits in the middle of the run) the lab stalls the table's
replication (`lab fault dynamodb stall --table soak`), and resumes it --stall
later; the queued changes then apply at once. Every target's timeout and
max_pending are set so that no canary written during the stall is lost or
evicted: they are all observed after the resume. The run ends once
--canaries have been observed and --settle has passed since the resume.

Every minute it prints: minute, the agent's RSS (VmRSS), canaries observed so
far, pending (sum of rpo_canaries_pending), max rpo_seconds, lost; at the end:
RSS after warm-up (minute 2) vs max vs final, the growth (final - minute 2,
goal <= 2 MiB), the highest RPO during the stall (should come close to the
stall's length) and the RPO once the backlog has drained (median of the
samples from 2 min after the resume: should be back near the delay), and the
agent's CPU per observed canary.

The lab's AWS stand-in (one Python process, ~500 requests/s at most, see
/work/shared/LAB-FACTS.md) limits the canary rate. `--calibrate 10,20,30,40,50`
runs each number of targets for a minute and prints what the lab sustains
(observed/s against written/s, the lab's CPU), to choose --targets. The
default, 35 targets at 1 s (≈ 48 min for 10^5, the stall from minute 9 to
39), comes from such a run (2026-12-01, 2 cores, HEAD 6a2edf3): 20/30/40
targets were observed at 20/30/40 per second with the lab at 31/48/61 % CPU
(max RPO 218/226/342 ms at a 200 ms delay); at 50 the lab was at 86 %,
writes fell to 41/s and RPO rose to 8–9 s.

Run (from the repository root):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/soak.py [--targets 35] [--interval 1s] [--canaries 100000] [--stall 30m]
    ~/.cache/rpo-agent/lab-venv/bin/python bench/soak.py --calibrate 10,20,30,40,50
A quick try: --targets 20 --canaries 4000 --stall 1m (≈ 5 min).
"""
import argparse
import math
import os
import sys
import time

import benchlib as bl

GROWTH_GOAL_MIB = 2.0
WANT = {"rpo_canaries_observed_total", "rpo_canaries_written_total", "rpo_canaries_pending", "rpo_seconds",
        "rpo_canaries_lost_total", "rpo_canaries_pending_limit_total", "rpo_api_requests_total", "rpo_probe_up"}


def snapshot(agent):
    m = agent.metrics(WANT)
    rpo = bl.values(m, "rpo_seconds")
    return {
        "observed": bl.total(m, "rpo_canaries_observed_total"),
        "written": bl.total(m, "rpo_canaries_written_total"),
        "pending": bl.total(m, "rpo_canaries_pending"),
        "rpo_max": max(rpo) if rpo else float("nan"),
        "lost": bl.total(m, "rpo_canaries_lost_total"),
        "evicted": bl.total(m, "rpo_canaries_pending_limit_total"),
        "requests": bl.total(m, "rpo_api_requests_total", lambda l: l.get("service") != "cloudwatch"),
        "up": sum(1 for v in bl.values(m, "rpo_probe_up") if v == 1),
    }


def calibrate(a, lab, sizes):
    """A minute per size: what canary rate does the lab sustain?"""
    print("targets | written/s | observed/s | API req/canary | agent CPU | lab CPU | median / max rpo_seconds")
    rows = []
    for n in sizes:
        table = f"calib-{n}"
        bl.global_table(table)
        lab.fault("dynamodb", "delay", a.delay, "--table", table)
        targets = [bl.dynamodb_target(f"c{i:03d}", table, a.interval) for i in range(n)]
        agent = bl.Agent.start(a.agent, targets, lab, os.path.join(lab.dir, f"agent-calib-{n}.log"), agent_id="soak")
        try:
            time.sleep(20)
            s0, t0, c0, l0 = snapshot(agent), time.time(), bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab.server_pid())
            time.sleep(60)
            s1, t1, c1, l1 = snapshot(agent), time.time(), bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab.server_pid())
            rpo = sorted(bl.values(agent.metrics({"rpo_seconds"}), "rpo_seconds"))
        finally:
            agent.stop()
        dt = t1 - t0
        obs = s1["observed"] - s0["observed"]
        row = [n, f"{(s1['written'] - s0['written']) / dt:.1f}", f"{obs / dt:.1f}",
               f"{(s1['requests'] - s0['requests']) / max(obs, 1):.2f}",
               f"{(c1 - c0) / dt * 100:.1f} %", f"{(l1 - l0) / dt * 100:.1f} %",
               f"{bl.median(rpo) * 1e3:.0f} / {rpo[-1] * 1e3:.0f} ms"]
        rows.append(row)
        print(" | ".join(str(c) for c in row), flush=True)
        lab.fault("dynamodb", "reset", "--table", table)
    header = ["targets", "written/s", "observed/s", "API req/canary", "agent CPU", "lab CPU", "median / max rpo_seconds"]
    print(f"\n## What the lab sustains (interval {a.interval}, delay {a.delay}, 60 s after 20 s warm-up)\n")
    print(bl.markdown_table(header, rows))


def soak(a, lab):
    interval_s = bl.parse_duration(a.interval)
    stall_s = bl.parse_duration(a.stall)
    settle_s = bl.parse_duration(a.settle)
    rate = a.targets / interval_s
    expected_s = a.canaries / rate
    stall_at = bl.parse_duration(a.stall_at) if a.stall_at else max(180.0, (expected_s - stall_s) / 2)
    resume_at = stall_at + stall_s
    # No canary of the stall may be lost (timeout) or evicted (max_pending).
    timeout_s = stall_s + 600
    max_pending = math.ceil(timeout_s / interval_s * 1.1) + 100
    extra = f'timeout = "{bl.fmt_duration(timeout_s)}"\nmax_pending = {max_pending}\n'
    table = "soak"
    bl.global_table(table)
    lab.fault("dynamodb", "delay", a.delay, "--table", table)
    targets = [bl.dynamodb_target(f"k{i:03d}", table, a.interval, extra) for i in range(a.targets)]
    print(f"# {a.targets} targets x {a.interval} = {rate:.1f} canaries/s; {a.canaries} canaries ≈ {expected_s / 60:.0f} min; "
          f"stall {stall_s / 60:g} min from minute {stall_at / 60:.1f}; delay {a.delay}; target timeout "
          f"{bl.fmt_duration(timeout_s)}, max_pending {max_pending}\n")
    print("minute | RSS MiB | observed | pending | rpo_seconds max | lost | phase", flush=True)
    agent = bl.Agent.start(a.agent, targets, lab, os.path.join(lab.dir, "agent-soak.log"), agent_id="soak")
    lab_pid = lab.server_pid()
    t0, c0, l0 = agent.started_at, bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab_pid)
    curve, stalled, resumed, minute = [], False, False, 0
    try:
        while True:
            minute += 1
            next_tick = t0 + minute * 60
            while time.time() < next_tick:
                now = time.time() - t0
                if not stalled and now >= stall_at:
                    lab.fault("dynamodb", "stall", "--table", table)
                    stalled = True
                if stalled and not resumed and now >= resume_at:
                    lab.fault("dynamodb", "resume", "--table", table)
                    resumed = True
                if not agent.running():
                    sys.exit(f"the agent exited ({agent.proc.returncode}); see {agent.log}")
                time.sleep(max(0.0, min(1.0, next_tick - time.time())))
            s = snapshot(agent)
            s["minute"], s["rss"] = minute, bl.rss_mib(agent.pid)
            s["phase"] = "stall" if stalled and not resumed else ("after" if resumed else "before")
            curve.append(s)
            print(f"{minute} | {s['rss']:.1f} | {s['observed']:.0f} | {s['pending']:.0f} | {s['rpo_max']:.1f} | "
                  f"{s['lost']:.0f} | {s['phase']}", flush=True)
            elapsed = time.time() - t0
            if s["observed"] >= a.canaries and resumed and elapsed >= resume_at + settle_s:
                break
            if elapsed >= a.max_minutes * 60:
                print(f"# giving up after {a.max_minutes} min", flush=True)
                break
        c1, l1, t1 = bl.cpu_seconds(agent.pid), bl.cpu_seconds(lab_pid), time.time()
    finally:
        agent.stop()

    warm = next((s for s in curve if s["minute"] == 2), curve[0])
    final = curve[-1]
    peak = max(curve, key=lambda s: s["rss"])
    growth = final["rss"] - warm["rss"]
    during = [s for s in curve if s["phase"] == "stall"]
    stall_rpo = max((s["rpo_max"] for s in during), default=float("nan"))
    before = [s["rpo_max"] for s in curve if s["phase"] == "before" and s["minute"] >= 2]
    # After the backlog has drained (from 2 min after the resume): one slow
    # answer of the lab can spike a single sample, so the median decides.
    settled = [s["rpo_max"] for s in curve if s["phase"] == "after" and s["minute"] * 60 >= resume_at + 120] \
        or [final["rpo_max"]]
    fell_to = bl.median(settled)
    # Sampled once a minute, the highest RPO seen during the stall is at least
    # the stall's length minus a minute.
    rose = stall_rpo >= stall_s - 60 - 1
    fell = fell_to <= max(5.0, 3 * interval_s)
    cpu_ms = (c1 - c0) * 1e3 / max(final["observed"], 1)
    rows = [
        ["canaries observed / written / lost / evicted",
         f"{final['observed']:.0f} / {final['written']:.0f} / {final['lost']:.0f} / {final['evicted']:.0f}",
         bl.pass_fail(final["observed"] >= a.canaries)],
        ["RSS after warm-up (minute 2) / max (minute) / final", f"{warm['rss']:.1f} / {peak['rss']:.1f} ({peak['minute']}) / {final['rss']:.1f} MiB", ""],
        [f"RSS growth, final - minute 2 (goal <= {GROWTH_GOAL_MIB:g} MiB)", f"{growth:+.1f} MiB (max - minute 2: {peak['rss'] - warm['rss']:+.1f})",
         bl.pass_fail(growth <= GROWTH_GOAL_MIB)],
        ["rpo_seconds max before the stall", f"{max(before, default=float('nan')):.2f} s", ""],
        [f"rpo_seconds max during the {stall_s / 60:g} min stall (rose?)", f"{stall_rpo:.1f} s", bl.pass_fail(rose)],
        [f"rpo_seconds max from 2 min after the resume to the end (fell back?): median (max) of {len(settled)} samples; final",
         f"{fell_to:.2f} s ({max(settled):.1f} s); {final['rpo_max']:.2f} s", bl.pass_fail(fell)],
        ["agent CPU per observed canary, whole run", f"{cpu_ms:.2f} ms", ""],
        ["lab CPU, whole run", f"{(l1 - l0) / (t1 - t0) * 100:.1f} % of a core", ""],
        ["run length", f"{(t1 - t0) / 60:.1f} min", ""],
    ]
    print(f"\n## Soak: {a.targets} DynamoDB targets at {a.interval}, delay {a.delay}, a {stall_s / 60:g} min stall "
          f"from minute {stall_at / 60:.1f}\n")
    print(bl.markdown_table(["figure", "value", "check"], rows))
    print("\nRSS curve (minute: MiB):", ", ".join(f"{s['minute']}: {s['rss']:.1f}" for s in curve))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default=bl.default_agent(), help="the rpo-agent binary (default target/release/rpo-agent)")
    ap.add_argument("--targets", type=int, default=35, help="DynamoDB targets on the one global table")
    ap.add_argument("--interval", default="1s", help="canary interval of every target")
    ap.add_argument("--canaries", type=int, default=100000, help="observed canaries to reach")
    ap.add_argument("--delay", default="200ms", help="injected replication delay")
    ap.add_argument("--stall", default="30m", help="length of the replication stall")
    ap.add_argument("--stall-at", default=None, help="when the stall begins, after the agent's start (default: mid-run)")
    ap.add_argument("--settle", default="3m", help="time to keep running after the resume")
    ap.add_argument("--max-minutes", type=float, default=180, help="stop after this long whatever was reached")
    ap.add_argument("--calibrate", default=None, metavar="N,N,...", help="only measure the rate the lab sustains")
    a = ap.parse_args()
    bl.check_agent(a.agent)
    lab = bl.Lab.up()
    print(f"# rpo-agent soak benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"{bl.describe_build(a.agent)}, lab {lab.dir}")
    try:
        if a.calibrate:
            calibrate(a, lab, [int(x) for x in a.calibrate.split(",")])
        else:
            soak(a, lab)
    finally:
        lab.down()
    print(f"\nCommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
