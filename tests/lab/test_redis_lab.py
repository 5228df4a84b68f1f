#!/usr/bin/env python3
"""Self-test of the lab's Redis components (lab_redis.py, redis_relay.py, lab_redis_cluster.py).

Why: the agent's Redis lag figures are checked against the lag the lab injects, so the lab must
be shown to inject what it claims. This runs `labctl.py up --components redis` in a temporary
DIR, checks replication, TLS and the ACL user, measures the visibility lag the relay injects
(SET on the primary's plain port, GET on the replica every ~1 ms), checks every fault and the
ground-truth file, then a quick `redis-cluster` run, and that `down` leaves nothing behind.

Usage: python3 tests/lab/test_redis_lab.py [--keep] [--no-cluster]   (last line: "N passed, N failed")
Standard library only (a raw RESP client, lab_redis.Resp); plain python3 or the lab venv's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lab_redis as R  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'  — ' + detail if detail else ''}", flush=True)
    return bool(ok)


def attempt(name: str, fn) -> None:
    """Run one step; an exception is a failed check, not the end of the run."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        check(name, False, f"{type(exc).__name__}: {exc}")


def lab(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "labctl.py"), *argv], capture_output=True,
                          text=True, timeout=timeout)


def fault(directory: pathlib.Path, *argv: str) -> str:
    res = lab("fault", "--dir", str(directory), *argv)
    if res.returncode != 0:
        raise RuntimeError(f"lab fault {' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout.strip()


def lab_processes(directory: pathlib.Path) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmd:
            found.append(f"{entry}: {cmd.strip()[:100]}")
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def lag_ms(writer: R.Resp, reader: R.Resp, key: str, timeout: float = 10.0) -> float:
    """SET key on writer, poll GET on reader every ~1 ms; ms until the reader sees it."""
    value = f"{time.time():.6f}"
    t0 = time.monotonic()
    writer.call("SET", key, value)
    while True:
        if reader.call("GET", key) == value:
            return (time.monotonic() - t0) * 1000
        if time.monotonic() - t0 > timeout:
            return float("inf")
        time.sleep(0.001)


def summary(errors: list[float]) -> str:
    return (f"error vs delay: min {min(errors):+.1f} ms, median {statistics.median(errors):+.1f} ms, "
            f"max {max(errors):+.1f} ms over {len(errors)}")


def ground_truth(path: str) -> dict[str, dict]:
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        d = json.loads(line)
        out[d["key"]] = d
    return out


# ----------------------------------------------------------------- redis (primary + replica)

def test_redis(directory: pathlib.Path) -> None:
    t0 = time.monotonic()
    res = lab("up", "--dir", str(directory), "--components", "redis")
    took = time.monotonic() - t0
    if not check("redis: lab up --components redis", res.returncode == 0,
                 f"{took:.2f} s (`lab up` process){'; ' + res.stderr[-800:] if res.returncode else ''}"):
        return
    state = json.loads((directory / "lab.json").read_text())["components"]["redis"]
    env = {k: v for k, v in state.items() if k.isupper()}
    check("redis: component start time", True, f"{state['up_seconds']:.2f} s (servers + relay + replica link up)")
    expected = {"REDIS_PRIMARY_URL", "REDIS_REPLICA_URL", "REDIS_PRIMARY_PLAIN_URL", "REDIS_REPLICA_PLAIN_URL",
                "REDIS_PASSWORD", "REDIS_USER", "REDIS_USER_PASSWORD", "REDIS_CA", "REDIS_RELAY_URL",
                "REDIS_GROUND_TRUTH"}
    check("redis: every lab.env key", expected <= env.keys(),
          f"missing {sorted(expected - env.keys())}" if not expected <= env.keys() else "")
    lab_env = (directory / "lab.env").read_text()
    check("redis: lab.env written", all(f"{k}=" in lab_env for k in expected))
    nodes = state["nodes"]
    pp, rp = nodes["primary"]["port"], nodes["replica"]["port"]
    ca = env["REDIS_CA"]
    gt = env["REDIS_GROUND_TRUTH"]

    def basics():
        with R.Resp(nodes["replica"]["tls_port"], user=env["REDIS_USER"], password=env["REDIS_USER_PASSWORD"],
                    tls_ca=ca) as tls, R.Resp(pp) as w:
            w.call("SET", "rpo-canary:basic", "1")
            deadline = time.monotonic() + 5
            while tls.call("GET", "rpo-canary:basic") != "1" and time.monotonic() < deadline:
                time.sleep(0.005)
            check("redis: SET on primary visible on replica (GET as rpo over TLS, CA verified)",
                  tls.call("GET", "rpo-canary:basic") == "1")
            role = tls.call("ROLE")
            check("redis: replica ROLE says slave of the relay",
                  role[0] == "slave" and role[2] == state["ports"]["relay_port"], str(role[:4]))
            try:
                tls.call("SET", "rpo-canary:ro", "x")
                check("redis: replica is read-only", False)
            except R.RespError as e:
                check("redis: replica is read-only", "READONLY" in str(e), str(e))
        with R.Resp(nodes["primary"]["tls_port"], user="rpo", password=env["REDIS_USER_PASSWORD"], tls_ca=ca) as u:
            try:
                u.call("SET", "other-key", "x")
                check("redis: rpo user limited to rpo-canary:*", False)
            except R.RespError as e:
                check("redis: rpo user limited to rpo-canary:*", "NOPERM" in str(e), str(e))
            check("redis: rpo user may INFO, TTL, PING",
                  "role:master" in u.call("INFO", "replication") and u.call("TTL", "rpo-canary:basic") == -1
                  and u.call("PING") == "PONG")
        try:
            R.Resp(pp, password="wrong")
            check("redis: default user needs the password", False)
        except R.RespError as e:
            check("redis: default user needs the password", "WRONGPASS" in str(e))
    attempt("redis: basics", basics)

    def delays():
        w, r = R.Resp(pp), R.Resp(rp)
        base = [lag_ms(w, r, f"rpo-canary:d0-{i}") for i in range(5)]
        check("redis: no delay: replica sees a SET within a few ms", max(base) < 20,
              f"median {statistics.median(base):.1f} ms, max {max(base):.1f} ms")
        for delay, n, tol in ((300, 10, 15), (2000, 3, 30)):
            fault(directory, "redis", "delay", f"{delay}ms")
            lags = [lag_ms(w, r, f"rpo-canary:d{delay}-{i}") for i in range(n)]
            errs = [x - delay for x in lags]
            check(f"redis: delay {delay}ms: visibility lag {delay} ms ± {tol} ms", all(abs(e) <= tol for e in errs),
                  summary(errs))
            truth = ground_truth(gt)
            gerrs = [(truth[f"rpo-canary:d{delay}-{i}"]["forwarded_at"] - truth[f"rpo-canary:d{delay}-{i}"]["received_at"])
                     * 1000 - delay for i in range(n) if f"rpo-canary:d{delay}-{i}" in truth]
            check(f"redis: ground truth for delay {delay}ms: forwarded_at - received_at ≈ delay",
                  len(gerrs) == n and all(abs(e) <= 5 for e in gerrs) and
                  all(truth[f"rpo-canary:d{delay}-{i}"]["relay"] == "redis" for i in range(n)),
                  summary(gerrs) if gerrs else "no lines")
        fault(directory, "redis", "delay", "0")
        w.close()
        r.close()
    attempt("redis: delays", delays)

    def stall():
        w, r = R.Resp(pp), R.Resp(rp)
        fault(directory, "redis", "stall")
        w.call("SET", "rpo-canary:stall", "1")
        time.sleep(1.0)
        held = r.call("GET", "rpo-canary:stall") is None
        check("redis: stall holds replication (1 s)", held)
        t0 = time.monotonic()
        fault(directory, "redis", "resume")
        while r.call("GET", "rpo-canary:stall") != "1" and time.monotonic() - t0 < 5:
            time.sleep(0.001)
        took = (time.monotonic() - t0) * 1000
        check("redis: resume releases it", r.call("GET", "rpo-canary:stall") == "1",
              f"visible {took:.0f} ms after `lab fault` started (includes its Python start-up)")
        with urllib.request.urlopen(env["REDIS_RELAY_URL"] + "/status", timeout=5) as resp:
            status = json.loads(resp.read())
        check("redis: relay /status", {"delay_ms", "stalled", "bytes", "connections"} <= status.keys()
              and status["stalled"] is False and status["connections"] == 1, json.dumps(status))
        w.close()
        r.close()
    attempt("redis: stall/resume", stall)

    def restarts():
        for role in ("replica", "primary"):
            t0 = time.monotonic()
            msg = fault(directory, "redis", "restart", role)
            took = time.monotonic() - t0
            deadline = time.monotonic() + 10
            R.call(pp, "SET", f"rpo-canary:restart-{role}", "1")
            while R.call(rp, "GET", f"rpo-canary:restart-{role}") != "1" and time.monotonic() < deadline:
                time.sleep(0.01)
            check(f"redis: restart {role}: same ports, replicating again",
                  R.call(rp, "GET", f"rpo-canary:restart-{role}") == "1", f"{msg} ({took:.2f} s)")
        fault(directory, "redis", "stop", "replica")
        check("redis: stop replica closes its ports", not port_open(rp) and not port_open(nodes["replica"]["tls_port"]))
        fault(directory, "redis", "start", "replica")
        check("redis: start replica: replicating", R.info(rp).get("master_link_status") == "up")
    attempt("redis: restart/stop/start", restarts)

    def promote():
        roles_now = lambda: (R.call(pp, "ROLE")[0], R.call(rp, "ROLE")[0])  # noqa: E731
        msg = fault(directory, "redis", "promote")
        check("redis: promote swaps the roles", roles_now() == ("slave", "master"), f"{msg}; roles {roles_now()}")
        fault(directory, "redis", "delay", "300ms")
        w, r = R.Resp(rp), R.Resp(pp)
        lags = [lag_ms(w, r, f"rpo-canary:swapped-{i}") for i in range(3)]
        errs = [x - 300 for x in lags]
        check("redis: after promote, new primary -> old one through the relay (delay 300ms applies)",
              all(abs(e) <= 15 for e in errs), summary(errs))
        w.close()
        r.close()
        fault(directory, "redis", "delay", "0")
        fault(directory, "redis", "restart", "replica")  # the new master keeps its role
        check("redis: promoted node stays master across a restart", R.call(rp, "ROLE")[0] == "master")
        fault(directory, "redis", "promote")
        check("redis: promote again swaps back", roles_now() == ("master", "slave"), str(roles_now()))
        msg = fault(directory, "redis", "promote", "--split-brain")
        check("redis: promote --split-brain leaves two masters", roles_now() == ("master", "master"),
              f"{msg}; roles {roles_now()}")
        R.call(rp, "SET", "rpo-canary:split", "replica-side")
        msg = fault(directory, "redis", "promote")
        deadline = time.monotonic() + 5
        while R.call(pp, "GET", "rpo-canary:split") != "replica-side" and time.monotonic() < deadline:
            time.sleep(0.01)
        check("redis: promote after a split brain: the old primary follows the promoted node",
              roles_now() == ("slave", "master") and R.call(pp, "GET", "rpo-canary:split") == "replica-side",
              f"{msg}; roles {roles_now()}")
        fault(directory, "redis", "promote")
        check("redis: and back to the first direction", roles_now() == ("master", "slave"), str(roles_now()))
        # The replica's PSYNC now names a 6-digit offset (a longer command than the first
        # `PSYNC ? -1`): the relay must still see it and delay the link.
        big = R.Resp(pp)  # ≈ 150 kB of writes: a 6-digit offset
        for i in range(1000):
            big.call("SET", f"padding-{i}", "x" * 120)
        big.close()
        fault(directory, "redis", "promote")
        fault(directory, "redis", "promote")
        offset = int(R.info(pp, "replication").get("master_repl_offset", "0"))
        fault(directory, "redis", "delay", "300ms")
        w, r = R.Resp(pp), R.Resp(rp)
        errs = [lag_ms(w, r, f"rpo-canary:after-failovers-{i}") - 300 for i in range(3)]
        w.close()
        r.close()
        fault(directory, "redis", "delay", "0")
        check("redis: after the failovers the link is delayed again (PSYNC at offset "
              f"{offset})", offset >= 100_000 and all(abs(e) <= 15 for e in errs), summary(errs))
    attempt("redis: promote", promote)

    st = lab("status", "--dir", str(directory))
    check("redis: lab status", st.returncode == 0 and "redis relay" in st.stdout, st.stdout.strip().replace("\n", "; "))
    ports = [n[k] for n in nodes.values() for k in ("port", "tls_port")] + \
        [state["ports"]["relay_port"], state["ports"]["control_port"]]
    t0 = time.monotonic()
    res = lab("down", "--dir", str(directory))
    left = lab_processes(directory)
    check("redis: down: no process left, every port closed",
          res.returncode == 0 and not left and not any(port_open(p) for p in ports),
          f"{time.monotonic() - t0:.2f} s; " + "; ".join(left))


def test_parser() -> None:
    """The replication-stream parser, fed a synthetic stream in every possible 2-way split
    and byte by byte: disk-based and diskless RDB payloads, keepalives, PING, SELECT, GETACK."""
    import redis_relay

    def resp(*args: str) -> bytes:
        return f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
    mark = b"x" * 40
    rdb = b"REDIS0010\xfa\tredis-ver*3\r\n$3\r\nSET\r\n" + b"\x00" * 30  # looks like RESP: must be skipped
    commands = (resp("PING") + resp("SELECT", "0") + resp("SET", "rpo-canary:a", "1") + resp("SET", "other", "2")
                + resp("REPLCONF", "GETACK", "*") + resp("SET", "rpo-canary:b", "v\r\nw", "PXAT", "1") + resp("PING"))
    streams = {
        "disk": b"+PONG\r\n+OK\r\n+OK\r\n+FULLRESYNC abc 0\r\n\n\n$%d\r\n" % len(rdb) + rdb + commands,
        "diskless": b"+FULLRESYNC abc 0\r\n$EOF:" + mark + b"\r\n" + rdb + mark + commands,
        "continue": b"+CONTINUE abc\r\n" + commands,
    }
    want = [(b"rpo-canary:a", b"1"), (b"rpo-canary:b", b"v\r\nw")]
    bad = []
    for name, data in streams.items():
        splits = [[data[:i], data[i:]] for i in range(len(data) + 1)] + [[data[i:i + 1] for i in range(len(data))]]
        for chunks in splits:
            p = redis_relay.ReplStreamParser()
            got = [c for chunk in chunks for c in p.feed(chunk)]
            if got != want:
                bad.append(f"{name} split {len(chunks[0])}/{len(chunks)}: {got}")
                break
    check("relay parser: canary SETs found across every chunk boundary", not bad, "; ".join(bad[:3]))


# ----------------------------------------------------------------- redis-cluster

def test_cluster(directory: pathlib.Path) -> None:
    t0 = time.monotonic()
    res = lab("up", "--dir", str(directory), "--components", "redis-cluster")
    if not check("cluster: lab up --components redis-cluster", res.returncode == 0,
                 f"{time.monotonic() - t0:.2f} s{'; ' + res.stderr[-800:] if res.returncode else ''}"):
        return
    state = json.loads((directory / "lab.json").read_text())["components"]["redis-cluster"]
    nodes, relays = state["nodes"], state["relays"]
    ca = str(directory / "pki" / "ca.crt")
    check("cluster: component start time", True, f"{state['up_seconds']:.2f} s (4 nodes, 2 relays, state ok)")

    def topology():
        with R.Resp(nodes["m0"]["tls_port"], user="rpo", password=R.USER_PASSWORD, tls_ca=ca) as c:
            slots = c.call("CLUSTER", "SLOTS")
        ranges = sorted((s[0], s[1], s[2][1], s[3][1]) for s in slots)
        want = [(0, 8191, relays["0"]["port"], nodes["r0"]["tls_port"]),
                (8192, 16383, relays["1"]["port"], nodes["r1"]["tls_port"])]
        check("cluster: CLUSTER SLOTS (as rpo, TLS): masters at their relay, replicas at their TLS port",
              ranges == want, str(ranges))
        with R.Resp(relays["1"]["port"], user="rpo", password=R.USER_PASSWORD, tls_ca=ca) as c:
            check("cluster: TLS through a relay port reaches its master", c.call("PING") == "PONG")
        for s in ("0", "1"):
            i = R.info(nodes[f"r{s}"]["port"])
            check(f"cluster: r{s} replicates through relay shard{s}",
                  i["master_link_status"] == "up" and int(i["master_port"]) == relays[s]["port"])
    attempt("cluster: topology", topology)

    def shard_delay():
        fault(directory, "redis-cluster", "delay", "300ms", "--shard", "1")
        keys = {}
        for i in range(200):
            k = f"rpo-canary:{{c{i}}}"
            keys.setdefault(0 if R.call(nodes["m0"]["port"], "CLUSTER", "KEYSLOT", k) < 8192 else 1, k)
        out = {}
        for s in (0, 1):
            w, r = R.Resp(nodes[f"m{s}"]["port"]), R.Resp(nodes[f"r{s}"]["port"])
            r.call("READONLY")
            out[s] = [lag_ms(w, r, keys[s]) for _ in range(3)]
        check("cluster: delay 300ms --shard 1 delays shard 1 only",
              all(abs(x - 300) <= 15 for x in out[1]) and max(out[0]) < 20,
              f"shard0 {[round(x, 1) for x in out[0]]} ms, shard1 {[round(x, 1) for x in out[1]]} ms")
        truth = ground_truth(str(directory / "redis-cluster-ground-truth.jsonl"))
        check("cluster: ground truth names the shard's relay",
              truth.get(keys[0], {}).get("relay") == "shard0" and truth.get(keys[1], {}).get("relay") == "shard1")
        fault(directory, "redis-cluster", "stall", "--shard", "0")
        R.call(nodes["m0"]["port"], "SET", keys[0], "stalled")
        time.sleep(0.5)
        held = R.Resp(nodes["r0"]["port"])
        held.call("READONLY")
        ok = held.call("GET", keys[0]) != "stalled"
        fault(directory, "redis-cluster", "resume", "--shard", "0")
        deadline = time.monotonic() + 5
        while held.call("GET", keys[0]) != "stalled" and time.monotonic() < deadline:
            time.sleep(0.005)
        check("cluster: stall/resume --shard 0", ok and held.call("GET", keys[0]) == "stalled")
    attempt("cluster: shard faults", shard_delay)

    res = lab("down", "--dir", str(directory))
    left = lab_processes(directory)
    check("cluster: down: no process left", res.returncode == 0 and not left, "; ".join(left))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave DIR (logs) after the run")
    ap.add_argument("--no-cluster", action="store_true", help="skip the redis-cluster check")
    args = ap.parse_args()
    if not os.path.exists(R.REDIS_SERVER):
        print(f"{R.REDIS_SERVER} missing: run deploy/local/prereqs as root")
        print("0 passed, 1 failed")
        return 1
    directory = pathlib.Path(tempfile.mkdtemp(prefix="rpo-redis-selftest-"))
    try:  # the polling client is part of every lag figure: ahead of builds beside (root only)
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    try:
        import labctl
        check("labctl: redis is a default component, redis-cluster opt-in",
              "redis" in labctl.available_components() and
              getattr(labctl.import_component("redis-cluster", True), "DEFAULT", True) is False)
        attempt("relay parser", test_parser)
        test_redis(directory / "single")
        if not args.no_cluster:
            test_cluster(directory / "cluster")
    except Exception as exc:  # noqa: BLE001
        check("run", False, f"{type(exc).__name__}: {exc}")
    finally:
        for sub in ("single", "cluster"):
            if (directory / sub / "lab.json").exists():
                lab("down", "--dir", str(directory / sub))
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    failed = sum(1 for _, ok, _ in RESULTS if not ok)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
