"""Benchmark: rpo-agent side by side with what a Redis user would otherwise watch,
on the lab's real redis-server 7.0 primary -> replica pair (replicating through
the lab's delaying relay), with the same injected faults.

What is compared, each sampled from both nodes:
 - `INFO replication`, every 100 ms (a raw RESP client on the nodes' plain ports):
   on the primary `slave0:...,offset=O,lag=L` (L = seconds since the replica's last
   REPLCONF ACK, which it sends every second) and `master_repl_offset`; on the
   replica `master_last_io_seconds_ago`, `master_link_status`, `slave_repl_offset`.
   Bytes behind = primary master_repl_offset - slave0 offset (the primary's view,
   from ACKs) and primary master_repl_offset - replica slave_repl_offset (both
   nodes read within a millisecond of each other).
 - Debian's prometheus-redis-exporter (oliver006 redis_exporter), one per node over
   TLS with the lab CA, scraped 1/s: `redis_connected_slave_lag_seconds`,
   `redis_connected_slave_offset_bytes` vs `redis_master_repl_offset` (primary),
   `redis_master_last_io_seconds_ago`, `redis_master_link_up` (replica).
 - rpo-agent, a `redis` target (TLS, ca_bundle, AUTH from REDIS_PASSWORD), interval
   1 s: per-canary lag from its "canary observed" debug lines, `rpo_seconds` scraped
   1/s, checked per canary against the relay's ground truth (forwarded_at -
   received_at of the same canary SET).

Scenarios (all with `lab fault redis delay 700ms` except the stall):
 1. delay 700ms with the agent writing a canary per second (its SETs are the only
    writes), all three tools in the same window;
 2. delay 700ms with an idle primary: window A INFO + exporter with nothing writing,
    window B the agent alone (its canaries are writes);
 3. `redis stall` for 20 s then `resume` (no delay): time series of every figure.
Plus what each tool costs the replica: commands/s from INFO stats
total_commands_processed and INFO commandstats deltas on the replica (the agent
alone in window B; the exporter from window A, less this script's own INFO calls).

Installs prometheus-redis-exporter if missing (as root, apt-get; the lab needs
Debian's redis-server), starts its own lab in a temp dir (`--exit-with` this
process) and stops every process it starts.

Run (from the repository root, as root):
    cargo build -p rpo-agent      # default --bin: target/release, else target/debug
    ~/.cache/rpo-agent/lab-venv/bin/python bench/redis_side_by_side.py [--seconds 40] [--idle 30] [--stall 20]
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib as bl
import sql_side_by_side as sbs  # process plumbing: spawn/stop_all, free_port, ensure_packages, sample_series

sys.path.insert(0, str(bl.ROOT / "tests/lab"))
from lab_redis import Resp  # noqa: E402  (the lab's stdlib RESP2 client)

EXPORTER = "/usr/bin/prometheus-redis-exporter"
TARGET = "cache"
WARMUP = 10.0


# --------------------------------------------------------------------------- INFO replication

def parse_info(text):
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def slave0(info):
    """{'offset': int, 'lag': int, 'state': str} of the primary's first replica, or {}."""
    if "slave0" not in info:
        return {}
    kv = dict(p.split("=", 1) for p in info["slave0"].split(","))
    return {"offset": int(kv["offset"]), "lag": int(kv["lag"]), "state": kv["state"]}


class InfoSampler:
    """`INFO replication` on both nodes every `period` s, in a thread, on one connection each
    (so each sample is one INFO command on each node). Keeps (wall, figures) tuples."""

    def __init__(self, env, period=0.1):
        self.ports = [int(env[k].rsplit(":", 1)[1]) for k in ("REDIS_PRIMARY_PLAIN_URL", "REDIS_REPLICA_PLAIN_URL")]
        self.password = env["REDIS_PASSWORD"]
        self.period = period
        self.samples = []
        self.replica_calls = {"auth": 0, "info": 0}
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        p, r = (Resp(port, password=self.password) for port in self.ports)
        self.replica_calls["auth"] += 1
        nxt = time.monotonic()
        while not self._stop.is_set():
            pi = parse_info(p.call("INFO", "replication"))
            ri = parse_info(r.call("INFO", "replication"))
            self.replica_calls["info"] += 1
            s0 = slave0(pi)
            mo = int(pi["master_repl_offset"])
            self.samples.append((time.time(), {
                "p_lag": s0.get("lag"),
                "p_behind": mo - s0["offset"] if s0 else None,
                "r_last_io": int(ri.get("master_last_io_seconds_ago", -1)),
                "r_link_up": ri.get("master_link_status") == "up",
                "behind": mo - int(ri["slave_repl_offset"]),
                "p_offset": mo,
                "r_offset": int(ri["slave_repl_offset"]),
            }))
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))
        p.close()
        r.close()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def between(self, t0, t1, key):
        return [f[key] for t, f in self.samples if t0 <= t <= t1 and f[key] is not None]

    def at(self, t, key):
        """The last sample at or before wall time t."""
        prior = [f[key] for ts, f in self.samples if ts <= t]
        return prior[-1] if prior else None


def replica_counters(conn):
    """total_commands_processed and calls per command (INFO commandstats) on the replica."""
    info = parse_info(conn.call("INFO", "stats", "commandstats"))
    out = {"total": int(info["total_commands_processed"])}
    for k, v in info.items():
        if k.startswith("cmdstat_"):
            out[k[len("cmdstat_"):]] = int(dict(p.split("=", 1) for p in v.split(","))["calls"])
    return out


def counter_delta(c0, c1):
    return {k: c1.get(k, 0) - c0.get(k, 0) for k in c1 if c1.get(k, 0) != c0.get(k, 0)}


def net_commands(delta, secs, base, base_secs, own):
    """Per-command increase on the replica caused by the tool under test: the window's `delta` less
    this script's own calls in it (`own`: the counter read's INFO, the sampler's calls) and the
    background rate of the baseline window (the primary's replicated PING every 10 s), whose own
    single INFO read is not background."""
    bg = dict(base)
    bg["info"] = bg.get("info", 0) - 1
    bg["total"] = bg.get("total", 0) - 1
    out = {}
    for k in set(delta) | set(bg):
        v = delta.get(k, 0) - own.get(k, 0) - bg.get(k, 0) * secs / base_secs
        if round(v) > 0:
            out[k] = v
    return out


# --------------------------------------------------------------------------- redis_exporter

class Exporter:
    """prometheus-redis-exporter for one node (rediss:// with the lab CA; the AUTH password in its
    environment, not on its command line)."""

    def __init__(self, d, env, role):
        self.port = sbs.free_port()
        url = env[f"REDIS_{role.upper()}_URL"]
        self.log = os.path.join(d, f"redis-exporter-{role}.log")
        # It takes REDIS_USER / REDIS_PASSWORD / REDIS_ADDR from its environment as flag defaults: drop
        # the lab's REDIS_* (REDIS_USER is the agent's limited user) and pass only the password.
        e = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        e["REDIS_PASSWORD"] = env["REDIS_PASSWORD"]
        self.proc = sbs.spawn([EXPORTER, f"-redis.addr={url}", f"-tls-ca-cert-file={env['REDIS_CA']}",
                               f"-web.listen-address=127.0.0.1:{self.port}", "-redis-only-metrics"],
                              self.log, env=e)
        self.scrapes = 0
        for _ in range(100):
            try:
                if bl.total(self.scrape(), "redis_up") == 1:
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis_exporter exited; see {self.log}")
            time.sleep(0.1)
        raise RuntimeError(f"redis_exporter did not report redis_up 1; see {self.log}")

    def scrape(self):
        self.scrapes += 1
        return bl.parse_metrics(sbs.http_get(f"http://127.0.0.1:{self.port}/metrics"))

    def stop(self):
        sbs.stop(self.proc)


def exporter_figures(ep, er):
    """One scrape of both exporters -> the figures a dashboard would plot."""
    p, r = ep.scrape(), er.scrape()
    lag = bl.values(p, "redis_connected_slave_lag_seconds")
    off = bl.values(p, "redis_connected_slave_offset_bytes")
    return {
        "x_lag": lag[0] if lag else None,
        "x_behind": bl.total(p, "redis_master_repl_offset") - off[0] if off else None,
        "x_last_io": bl.total(r, "redis_master_last_io_seconds_ago"),
        "x_link_up": bl.total(r, "redis_master_link_up"),
    }


def exporter_version():
    out = subprocess.run([EXPORTER, "-version"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    i = text.find("Redis Metrics Exporter")
    return text[i:].split("build date")[0].strip().strip('"') if i >= 0 else "redis_exporter"


# --------------------------------------------------------------------------- the agent

def agent_target(env):
    return (f'[[target]]\nname = "{TARGET}"\nkind = "redis"\n'
            f'source = {{ region = "{bl.SRC}", url = "{env["REDIS_PRIMARY_URL"]}" }}\n'
            f'replicas = [{{ region = "{bl.DST}", url = "{env["REDIS_REPLICA_URL"]}" }}]\n'
            f'interval = "1s"\ntimeout = "2m"\nca_bundle = "{env["REDIS_CA"]}"\n'
            f'auth = {{ password_env = "REDIS_PASSWORD" }}\n')


def observed(agent, since=0, until=None):
    """[(seq, lag_seconds, reads)] of the agent's "canary observed" lines[since:until]."""
    lines = [o for o in agent.logs("canary observed") if o.get("target") == TARGET]
    return [(int(o["seq"]), o["lag_seconds"], o.get("reads")) for o in lines[since:until]]


def n_observed(agent):
    return len(observed(agent))


def relay_truth(env):
    """{seq: forwarded_at - received_at} of the agent's canary SETs (the relay's ground truth)."""
    out = {}
    prefix = f"rpo-canary:bench:{TARGET}"
    try:
        lines = open(env["REDIS_GROUND_TRUTH"]).read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            g = json.loads(line)
            if g["key"].startswith(prefix):
                out[int(g["value"].split(":")[0])] = g["forwarded_at"] - g["received_at"]
        except (ValueError, KeyError):
            pass
    return out


def agent_counters(agent):
    m = agent.metrics()
    return {k: bl.total(m, k) for k in ("rpo_replica_reads_total", "rpo_canaries_observed_total",
                                        "rpo_canaries_written_total")}


# --------------------------------------------------------------------------- report helpers

def mmm(xs, unit="s", scale=1.0, digits=3):
    if not xs:
        return ["0", "–", "–", "–"]
    med, lo, hi = sbs.stats([x * scale for x in xs])
    f = (lambda v: f"{v:.{digits}f} {unit}") if unit != "B" else (lambda v: f"{v:.0f} B")
    return [str(len(xs)), f(med), f(lo), f(hi)]


def share_nonzero(xs):
    return f"{100 * sum(1 for x in xs if x) / len(xs):.0f} %" if xs else "–"


def agent_rows(obs, truth, rpo):
    lags = [lag for _, lag, _ in obs]
    pairs = [(lag, truth[seq]) for seq, lag, _ in obs if seq in truth]
    errs = [lag - t for lag, t in pairs]
    return [
        ["rpo-agent: per-canary lag (`canary observed`, = rpo_replication_lag_seconds)", "agent", *mmm(lags), "–"],
        ["rpo-agent: `rpo_seconds`, scraped 1/s", "agent", *mmm(rpo), "–"],
        ["relay ground truth of the same canaries (forwarded_at − received_at)", "relay",
         *mmm([t for _, t in pairs]), "–"],
        ["rpo-agent error per canary (lag − ground truth)", "agent", *mmm(errs, "ms", 1e3, 1), "–"],
    ], errs


def info_rows(info, t0, t1):
    g = lambda k: info.between(t0, t1, k)  # noqa: E731
    return [
        ["INFO replication `slave0 lag` (s since last REPLCONF ACK)", "primary", *mmm(g("p_lag"), digits=0), "–"],
        ["INFO: `master_repl_offset` − `slave0 offset` (bytes, primary's view)", "primary",
         *mmm(g("p_behind"), "B"), share_nonzero(g("p_behind"))],
        ["INFO: primary `master_repl_offset` − replica `slave_repl_offset` (bytes)", "both",
         *mmm(g("behind"), "B"), share_nonzero(g("behind"))],
        ["INFO replication `master_last_io_seconds_ago`", "replica", *mmm(g("r_last_io"), digits=0), "–"],
        ["INFO replication `master_link_status` up", "replica", str(len(g("r_link_up"))),
         share_nonzero(g("r_link_up")), "–", "–", "–"],
    ]


def exporter_rows(xs):
    g = lambda k: [x[k] for x in xs if x[k] is not None]  # noqa: E731
    return [
        ["redis_exporter `redis_connected_slave_lag_seconds`", "primary", *mmm(g("x_lag"), digits=0), "–"],
        ["redis_exporter `redis_master_repl_offset` − `redis_connected_slave_offset_bytes`", "primary",
         *mmm(g("x_behind"), "B"), share_nonzero(g("x_behind"))],
        ["redis_exporter `redis_master_last_io_seconds_ago`", "replica", *mmm(g("x_last_io"), digits=0), "–"],
    ]


HEADER = ["tool / figure", "node", "n", "median", "min", "max", "samples > 0"]


# --------------------------------------------------------------------------- scenarios

def run(bin_, d, lab, seconds, idle, stall):
    env = lab.env
    rport = int(env["REDIS_REPLICA_PLAIN_URL"].rsplit(":", 1)[1])
    counters = Resp(rport, password=env["REDIS_PASSWORD"])
    info = InfoSampler(env)
    lab.fault("redis", "delay", "700ms")
    time.sleep(2)

    # Baseline: nothing runs but the replica-counter reads (and the primary's PING every 10 s).
    c0, m0 = replica_counters(counters), time.monotonic()
    time.sleep(10)
    c1, m1 = replica_counters(counters), time.monotonic()
    base, base_secs = counter_delta(c0, c1), m1 - m0

    # 2A: idle primary, INFO + exporters, nothing writes.
    ep, er = Exporter(d, env, "primary"), Exporter(d, env, "replica")
    info.start()
    time.sleep(2)
    c0, t0, m0 = replica_counters(counters), time.time(), time.monotonic()
    calls0, scr0 = dict(info.replica_calls), er.scrapes
    (idle_x,) = sbs.sample_series([lambda: exporter_figures(ep, er)], idle)
    calls1, scr1 = dict(info.replica_calls), er.scrapes
    c1, t1, m1 = replica_counters(counters), time.time(), time.monotonic()
    info.stop()
    idle_info_rows = info_rows(info, t0, t1)
    own = {k: calls1[k] - calls0[k] for k in calls0}
    own["info"] += 1
    own["total"] = sum(own.values())
    ex_net = net_commands(counter_delta(c0, c1), m1 - m0, base, base_secs, own)
    ex_scrapes = scr1 - scr0
    ep.stop()
    er.stop()

    # 2B: the agent alone (its canaries are the only writes): its figure and its cost on the replica.
    agent = bl.Agent.start(bin_, [agent_target(env)], lab, os.path.join(d, "agent.log"),
                           rpo_log="warn,rpo_agent=debug")
    try:
        time.sleep(WARMUP)
        k0, a0, c0, m0 = n_observed(agent), agent_counters(agent), replica_counters(counters), time.monotonic()
        (idle_rpo,) = sbs.sample_series([lambda: bl.total(agent.metrics(), "rpo_seconds")], idle)
        k1, a1, c1, m1 = n_observed(agent), agent_counters(agent), replica_counters(counters), time.monotonic()
        ag_secs = m1 - m0
        ag_net = net_commands(counter_delta(c0, c1), ag_secs, base, base_secs, {"info": 1, "total": 1})
        ag_reads = a1["rpo_replica_reads_total"] - a0["rpo_replica_reads_total"]
        ag_seen = a1["rpo_canaries_observed_total"] - a0["rpo_canaries_observed_total"]
        idle_obs = observed(agent, k0, k1)

        # 1: the same delay, agent writing, INFO + exporters in the same window.
        ep, er = Exporter(d, env, "primary"), Exporter(d, env, "replica")
        info.samples.clear()
        info.start()
        time.sleep(3)
        k0, t0 = n_observed(agent), time.time()
        busy = sbs.sample_series([lambda: exporter_figures(ep, er),
                                  lambda: bl.total(agent.metrics(), "rpo_seconds")], seconds)
        k1, t1 = n_observed(agent), time.time()
        busy_x, busy_rpo = busy
        busy_obs = observed(agent, k0, k1)
        busy_info_rows = info_rows(info, t0, t1)

        # 3: stall for `stall` s (no delay), everything sampled.
        lab.fault("redis", "delay", "0")
        time.sleep(3)
        pre, post = 5, 15
        series = []
        stall_at = resume_at = None
        start = time.monotonic()
        for i in range(pre + stall + post + 1):
            time.sleep(max(0.0, start + i - time.monotonic()))
            if i == pre:
                lab.fault("redis", "stall")
                stall_at = time.time()
            if i == pre + stall:
                lab.fault("redis", "resume")
                resume_at = time.time()
            x = exporter_figures(ep, er)
            now = time.time()
            series.append((i, now, x, bl.total(agent.metrics(), "rpo_seconds")))
        info.stop()
        ep.stop()
        er.stop()
        truth = relay_truth(env)
    finally:
        agent.stop()
        counters.close()

    # ------------------------------------------------------------------- report
    print(f"\n## 1. `lab fault redis delay 700ms`, the agent writing 1 canary/s, all tools in one "
          f"{seconds} s window\n")
    print("INFO sampled every 100 ms; redis_exporter and rpo_seconds scraped 1/s. True lag of every write: "
          "the relay's hold, 700 ms + ≈1 ms.\n")
    rows1, errs1 = agent_rows(busy_obs, truth, busy_rpo)
    print(bl.markdown_table(HEADER, busy_info_rows + exporter_rows(busy_x) + rows1))
    abs1 = sorted(abs(e) for e in errs1)
    if abs1:
        print(f"\nrpo-agent against the relay's ground truth: {len(abs1)} canaries, |error| median "
              f"{statistics.median(abs1) * 1e3:.1f} ms, max {abs1[-1] * 1e3:.1f} ms.")
    print("\nINFO's `lag` (and the exporter's `redis_connected_slave_lag_seconds`) is the age in whole seconds "
          "of the replica's last REPLCONF ACK, which it sends every second and the relay passes at once: 0–1 s "
          "whatever the replication lag. Offsets are bytes of the replication stream (one canary SET: 112 B here), "
          "not time; 'samples > 0' is how often the replica was behind at all.")

    print(f"\n## 2. `delay 700ms`, idle primary: window A INFO + redis_exporter with nothing writing "
          f"({idle} s), window B rpo-agent alone ({idle} s)\n")
    rows2, _ = agent_rows(idle_obs, truth, idle_rpo)
    print(bl.markdown_table(HEADER, idle_info_rows + exporter_rows(idle_x) + rows2))
    print("\nWith nothing written, the only replication traffic is the primary's PING every 10 s (14 B), itself "
          "delayed 700 ms: offsets are 0 B behind except then, and `master_last_io_seconds_ago` counts the "
          "seconds since that PING (0–10 s). No INFO figure or exporter metric shows the 0.7 s a write would take.")

    print(f"\n## 3. `lab fault redis stall` for {stall} s (no delay), then `resume`; agent writing, "
          f"stall at t = {pre} s, resume at t = {pre + stall} s\n")
    head = ["t (s)", "INFO `slave0 lag`", "INFO primary offset − slave0 offset", "INFO primary − replica offset",
            "INFO replica `master_last_io_seconds_ago`", "link", "exporter `slave_lag_seconds`",
            "exporter `master_last_io_seconds_ago`", "exporter offset diff", "rpo-agent `rpo_seconds`"]
    rows3 = []
    for i, now, x, rpo in series:
        if i % 2 and i not in (pre + 1, pre + stall + 1):
            continue
        f = lambda k: info.at(now, k)  # noqa: E731
        rows3.append([i, f("p_lag"), f"{f('p_behind')} B", f"{f('behind')} B", f("r_last_io"),
                      "up" if f("r_link_up") else "down", x["x_lag"], x["x_last_io"],
                      f"{x['x_behind']:.0f} B" if x["x_behind"] is not None else "–", f"{rpo:.2f} s"])
    print(bl.markdown_table(head, rows3))
    during = [(now - stall_at, rpo) for i, now, x, rpo in series if pre + 2 <= i <= pre + stall]
    slope = _slope(during)
    after = [(now - resume_at, rpo) for i, now, x, rpo in series if i > pre + stall]
    rec = next((t for t, r in after if r < 1.5), None)
    st_info = [f for t, f in info.samples if stall_at <= t <= resume_at]
    back = f"back under 1.5 s {rec:.1f} s after resume" if rec is not None else \
        f"not back under 1.5 s within {post} s of resume"
    print(f"\nDuring the stall: rpo_seconds grew {slope:.3f} s/s (least squares over t = {pre + 2}…{pre + stall} s), "
          f"max {max(r for _, r in during):.2f} s; {back}. ", end="")
    print(f"INFO max during the stall: slave0 lag {max(f['p_lag'] or 0 for f in st_info)} s, "
          f"master_last_io_seconds_ago {max(f['r_last_io'] for f in st_info)} s, primary − replica offset "
          f"{max(f['behind'] for f in st_info)} B, link down in "
          f"{sum(1 for f in st_info if not f['r_link_up'])} of {len(st_info)} samples.")

    print("\n## Cost on the replica\n")
    def per(net, n, unit):
        cmds = ", ".join(f"`{k}` {v / n:.2f}".replace("|", "\\|") for k, v in sorted(net.items(), key=lambda kv: -kv[1]) if k != "total")
        return f"{net.get('total', 0) / n:.2f} {unit}", cmds
    ag_tot, ag_cmds = per(ag_net, ag_secs, "/s")
    ex_tot, ex_cmds = per(ex_net, ex_scrapes, "per scrape")
    print(bl.markdown_table(
        ["tool", "replica commands (total_commands_processed)", "by command (INFO commandstats)",
         "reads per canary"],
        [[f"rpo-agent, interval 1 s (window B, alone, {ag_secs:.0f} s)", ag_tot, ag_cmds + " (`set`: its canaries, "
          "replicated from the primary)",
          f"{ag_reads / max(ag_seen, 1):.2f} ({ag_reads:.0f} rpo_replica_reads_total / {ag_seen:.0f} canaries)"],
         [f"redis_exporter on the replica (window A, {ex_scrapes} scrapes at 1/s)", ex_tot, ex_cmds, "–"]]))
    print(f"\nCounted as the increase over the window on the replica, less this script's own calls in it (the "
          f"counter reads' INFO, one per window; the 100 ms INFO sampler's calls, counted) and the background of a {base_secs:.0f} s "
          f"window with nothing running (besides the counter read: {base.get('total', 0) - 1} command(s), the "
          f"primary's replicated PING every 10 s). The replica's `set`/`ping` are the replication stream, not "
          f"client calls. The exporter reconnects (AUTH, CLIENT SETNAME) and runs CONFIG GET * on every scrape.")


def _slope(pts):
    n = len(pts)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=40, help="window of scenario 1")
    ap.add_argument("--idle", type=int, default=30, help="windows A and B of scenario 2")
    ap.add_argument("--stall", type=int, default=20, help="length of the stall in scenario 3")
    default_bin = bl.ROOT / "target/release/rpo-agent"
    if not default_bin.exists():
        default_bin = bl.ROOT / "target/debug/rpo-agent"
    ap.add_argument("--bin", default=str(default_bin))
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs) afterwards")
    a = ap.parse_args()
    bl.check_agent(a.bin)
    sbs.PACKAGES = ["prometheus-redis-exporter"]  # what ensure_packages installs when missing
    sbs.ensure_packages()
    d = tempfile.mkdtemp(prefix="rpo-redis-", dir="/tmp")
    build = bl.describe_build(a.bin)
    a.bin = shutil.copy2(a.bin, os.path.join(d, "rpo-agent"))  # a concurrent cargo build cannot swap it
    py = sys.executable
    home = str(pathlib.Path.home())
    py = "~/" + os.path.relpath(py, home) if py.startswith(home) else os.path.relpath(py)
    cmd = " ".join([py, "bench/redis_side_by_side.py", *sys.argv[1:]])
    lab = None
    try:
        up = subprocess.run([bl.LAB, "up", "--dir", d, "--components", "redis", "--exit-with", str(os.getpid())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if up.returncode != 0:
            sys.exit(f"lab up failed:\n{up.stderr}")
        lab = bl.Lab(d)
        ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
        print(f"# rpo-agent Redis side-by-side benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
        print(f"\nReproduce (repository root, as root): `{cmd}`; {build}; "
              f"redis-server {ver[2].split('=')[1] if len(ver) > 2 else '?'}; {exporter_version()}; lab in {d}.")
        run(a.bin, d, lab, a.seconds, a.idle, a.stall)
    finally:
        sbs.stop_all()
        if lab:
            lab.down()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
