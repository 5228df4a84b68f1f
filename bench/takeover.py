"""Benchmark: how fast a fleet of agents takes a target over, and what the
figures do while the source region is down.

Part 1, takeovers. A fleet of --agents agents ([fleet], lease --lease) on one
DynamoDB target of its own global table (interval --interval, lab delay
--delay). For --trials rounds each of SIGKILL and SIGTERM: find the holder
(rpo_fleet_leader 1), signal it, and time until another agent's
rpo_canaries_written_total grows (its first canary). The killed agent is
replaced by a new one (a new task id), so the fleet keeps its size. For each
successor it also reports its first observed canary's error against the lab's
ground truth and its reads, from the "canary observed" log line. Figures:
takeover time min / median / max per signal, against the bounds lease +
lease/4 (SIGKILL) and lease/4 + one table read (SIGTERM).

Part 2, a region outage (--outage DUR, 0 skips it). Two agents on a
DynamoDB target whose source region goes down (lab `aws region-down`) and on
a healthy DynamoDB target between two other regions (the lease table is in
one of them). It samples the
holder's rpo_upper_bound_seconds (the data at risk) every second and reports
its growth per second; the healthy target's lag p50 before and during the
outage; then SIGKILLs the holder and reports the takeover time and the
successor's data at risk against the outage's age.

Run (from the repository root):
    cargo build --release -p rpo-agent
    ~/.cache/rpo-agent/lab-venv/bin/python bench/takeover.py [--agents 3] [--lease 20s] [--interval 5s] [--trials 3] [--outage 60s]
A quick try: --lease 4s --interval 1s --trials 3 --outage 20s (≈ 2 min). The defaults
(lease 20 s, interval 5 s, the agent's defaults): ≈ 8 min.
"""
import argparse
import statistics
import sys
import time

import boto3

import benchlib as bl

# Part 2's regions (no other part uses them): DOWN goes down; the healthy
# target writes in UP and is read in THIRD, both healthy.
DOWN, UP, THIRD = "us-west-2", "eu-west-1", "eu-central-1"


def lease_table(name, region):
    boto3.client("dynamodb", region_name=region).create_table(
        TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")


def fleet_table(fleet, region, lease):
    return f'[fleet]\nname = "{fleet}"\ntable = "leases-{fleet}"\nregion = "{region}"\nlease = "{lease}"\n\n'


def value(agent, name, target):
    """`name` of `target` on the agent's /metrics (None: not exported, or no answer)."""
    try:
        samples = [s for s in agent.metrics([name]) if s.labels.get("target") == target]
    except OSError:
        return None
    return sum(s.value for s in samples) if samples else None


def holder_of(agents, target, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        leaders = [a for a in agents if a.running() and value(a, "rpo_fleet_leader", target) == 1]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.1)
    sys.exit(f"{target}: no single holder within {timeout} s")


def first_write_after(agents, target, since, timeout):
    """(agent, seconds since `since`) of the first agent whose written count grows."""
    base = {id(a): value(a, "rpo_canaries_written_total", target) or 0 for a in agents}
    end = time.time() + timeout
    while time.time() < end:
        for a in agents:
            w = value(a, "rpo_canaries_written_total", target)
            if w is not None and w > base[id(a)]:
                return a, time.time() - since
        time.sleep(0.02)
    return None, None


def first_canary(agent, target, lab, table, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        seen = [l for l in agent.logs("canary observed") if l.get("target") == target]
        if seen:
            l = seen[0]
            truth = {g["seq"]: g["readable_at"] - g["committed_at"] for g in lab.ground_truth()
                     if g.get("table") == table and g.get("replica_region") == bl.DST}
            t = truth.get(l["seq"])
            return l["lag_seconds"], t, l["reads"]
        time.sleep(0.2)
    return None, None, None


def summary(xs):
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} s" if xs else "—"


def takeovers(args, lab, binary, lease, interval):
    fleet, target = "bench-takeover", "bench-takeover"
    bl.global_table(target)
    lab.fault("dynamodb", "delay", args.delay, "--table", target)
    lease_table(f"leases-{fleet}", bl.DST)
    log = lambda n: f"{lab.dir}/agent-{n}.log"
    started = 0

    def new_agent():
        nonlocal started
        started += 1
        return bl.Agent.start(binary, [fleet_table(fleet, bl.DST, args.lease),
                                        bl.dynamodb_target(target, target, args.interval)],
                              lab, log(started), agent_id=f"task-{started}", rpo_log="warn,rpo_agent=debug")

    agents = [new_agent() for _ in range(args.agents)]
    results = {"SIGKILL": [], "SIGTERM": []}
    firsts = []
    for trial in range(args.trials):
        for sig in ("SIGKILL", "SIGTERM"):
            h = holder_of(agents, target)
            time.sleep(interval * 3)  # a few warm canaries, lags kept in the lease
            others = [a for a in agents if a is not h]
            t0 = time.time()
            if sig == "SIGKILL":
                h.proc.kill()
                h.proc.wait()
            else:
                h.stop()
            succ, took = first_write_after(others, target, t0, lease * 2 + interval * 2 + 10)
            if succ is None:
                sys.exit(f"{sig}: no successor wrote within {lease * 2 + interval * 2 + 10:.0f} s")
            results[sig].append(took)
            lag, truth, reads = first_canary(succ, target, lab, target)
            err = None if lag is None or truth is None else (lag - truth) * 1e3
            firsts.append((sig, err, reads))
            print(f"trial {trial + 1} {sig}: successor {succ.cfg.rsplit('/', 1)[-1]} first canary {took:.2f} s after the signal; "
                  f"its first observation {'?' if err is None else f'{err:+.1f} ms'} in {reads} reads", flush=True)
            agents = others + [new_agent()]
    for a in agents:
        a.stop()
    print()
    print(bl.markdown_table(
        ["signal", "trials", "takeover min / median / max", "bound"],
        [["SIGKILL", len(results["SIGKILL"]), summary(results["SIGKILL"]), f"lease + lease/4 = {lease * 1.25:.1f} s"],
         ["SIGTERM", len(results["SIGTERM"]), summary(results["SIGTERM"]), f"lease/4 + a read = {lease / 4:.1f} s + ε"]]))
    errs = [abs(e) for _, e, _ in firsts if e is not None]
    reads = [r for _, _, r in firsts if r is not None]
    if errs:
        print(f"\nsuccessors' first canaries: |error| max {max(errs):.1f} ms, reads max {max(reads)} "
              f"(lab delay {args.delay}; warm bar: 50 ms)")


def outage(args, lab, binary, lease, interval):
    fleet, down_t, healthy = "bench-outage", "bench-outage", "bench-outage-healthy"
    bl.global_table(down_t, src=DOWN, dst=UP)
    bl.global_table(healthy, src=UP, dst=THIRD)
    lease_table(f"leases-{fleet}", UP)

    def target(name, src, dst):
        return (f'[[target]]\nname = "{name}"\nkind = "dynamodb"\ntable = "{name}"\n'
                f'source = {{ region = "{src}" }}\nreplicas = [{{ region = "{dst}" }}]\ninterval = "{args.interval}"\n')

    cfg = [fleet_table(fleet, UP, args.lease), target(down_t, DOWN, UP), target(healthy, UP, THIRD)]
    agents = [bl.Agent.start(binary, cfg, lab, f"{lab.dir}/outage-{i}.log", agent_id=f"outage-{i}",
                             rpo_log="warn,rpo_agent=debug") for i in range(2)]
    holder_of(agents, down_t)
    # Two lease periods: the fleet spreads the two targets over the two agents.
    time.sleep(max(interval * 4, lease * 2) + 2)
    h = holder_of(agents, down_t)

    def healthy_lags(since):
        out = []
        for a in agents:
            if a.running():
                out += [l["lag_seconds"] for l in a.logs("canary observed")
                        if l.get("target") == healthy and l.get("timestamp", "") >= since]
        return out

    before = healthy_lags("")
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    lab.fault("aws", "region-down", DOWN)
    t0 = time.time()
    samples = []
    while time.time() - t0 < args_seconds(args.outage):
        u = value(h, "rpo_upper_bound_seconds", down_t)
        samples.append((time.time() - t0, u))
        time.sleep(1)
    during = healthy_lags(iso)
    grow = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:]) if a[1] is not None and b[1] is not None]
    h.proc.kill()
    h.proc.wait()
    k = time.time()
    succ = holder_of([a for a in agents if a is not h], down_t, timeout=lease * 3 + 10)
    took = time.time() - k
    # It reads the replica's canary at once, the dead source for 3 s at most.
    end = time.time() + 10
    at_risk = None
    while time.time() < end:
        at_risk = value(succ, "rpo_upper_bound_seconds", down_t)
        if at_risk is not None and at_risk >= time.time() - t0 - 5:
            break
        time.sleep(0.2)
    age = time.time() - t0
    lab.fault("aws", "region-up", DOWN)
    for a in agents:
        a.stop()
    print()
    print(bl.markdown_table(
        ["figure", "value"],
        [["data at risk (upper bound) growth during the outage, per second of outage (median, min–max)",
          f"{statistics.median(grow):.3f} ({min(grow):.3f}–{max(grow):.3f})" if grow else "—"],
         ["healthy target's lag p50 before / during the outage",
          f"{statistics.median(before) * 1e3:.1f} / {statistics.median(during) * 1e3:.1f} ms ({len(before)} / {len(during)} canaries)"
          if before and during else "—"],
         ["takeover after SIGKILL of the holder, source region down", f"{took:.2f} s (lease {lease:.0f} s)"],
         ["successor's data at risk / outage age at that moment", f"{at_risk or 0:.1f} s / {age:.1f} s"]]))


def args_seconds(d):
    return bl.parse_duration(d)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default=bl.default_agent())
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--lease", default="20s")
    p.add_argument("--interval", default="5s")
    p.add_argument("--delay", default="300ms")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--outage", default="60s")
    args = p.parse_args()
    bl.check_agent(args.agent)
    lease, interval = bl.parse_duration(args.lease), bl.parse_duration(args.interval)
    print(bl.describe_build(args.agent))
    print(f"fleet of {args.agents}, lease {args.lease}, interval {args.interval}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    lab = bl.Lab.up()
    try:
        if args.trials:
            takeovers(args, lab, args.agent, lease, interval)
        if bl.parse_duration(args.outage) > 0:
            outage(args, lab, args.agent, lease, interval)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
