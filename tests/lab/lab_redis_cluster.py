"""Opt-in lab component `redis-cluster`: a two-shard Redis 7.0 cluster, each shard a master and a
replica that replicates through its own relay (`redis_relay.py`, names "shard0"/"shard1").

Not started by a plain `lab up` (DEFAULT = False): `lab up --components ...,redis-cluster`.

    shard N: mN (slots 0-8191 / 8192-16383)  <--plain-- relay shardN <--plain-- rN (replica)

How the replicas end up on the relay: the cluster bus runs over TLS (`tls-cluster yes`), so a
node announces its TLS port as its client port and its *plain* port separately
(`cluster-announce-tls-port` = the real TLS port, `cluster-announce-port` = the plain port).
A replica with `tls-replication no` connects to its master's announced plain port, and each
master announces its shard's relay port there. So `CLUSTER REPLICATE` alone sends replication
through the relay; TLS clients (the agent: `CLUSTER SHARDS`/`SLOTS` over TLS) see the real TLS
ports; only plain-port clients following the topology would land on the relay.

Everything as lab_redis.py otherwise (same users, passwords, CA, helpers): DIR/redis-cluster/.
"""

from __future__ import annotations

import pathlib
import time

import lab_redis as R
from lab_sql import ensure_pki, free_ports

DEFAULT = False
FAULT_SERVICES = ["redis-cluster"]
NODES = ("m0", "r0", "m1", "r1")
SLOTS = {"m0": (0, 8191), "m1": (8192, 16383)}


def _node(base: pathlib.Path, name: str, port: int, tls_port: int, bus_port: int) -> dict:
    return {"name": name, "port": port, "tls_port": tls_port, "bus_port": bus_port,
            "dir": str(base / name), "conf": str(base / f"{name}.conf"),
            "pidfile": str(base / f"{name}.pid"), "log": str(base / f"{name}.log"), "pid": None}


def _cluster_extra(node: dict, announce_port: int) -> list[str]:
    return ["cluster-enabled yes",
            f"cluster-config-file {node['dir']}/nodes.conf",
            f"cluster-port {node['bus_port']}",
            "cluster-node-timeout 2000",  # nodes ping each other at least every second: topology in ~3 s
            "tls-cluster no",  # plain bus (a TLS bus would want client certificates)
            "cluster-announce-ip 127.0.0.1",
            f"cluster-announce-port {announce_port}",
            f"cluster-announce-bus-port {node['bus_port']}",
            # The lab never fails over by itself (a stall must not become a failover).
            "cluster-replica-no-failover yes",
            # CLUSTER SLOTS leaves out a replica whose replication offset is still 0, i.e.
            # until its master propagated anything: the master's replication PING (default
            # every 10 s) is the first thing; every second gets the topology complete sooner.
            "repl-ping-replica-period 1"]


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, R.RespError, ConnectionError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-cluster: {what} not within {timeout:g}s")


def up(dir: pathlib.Path, env: dict, args=None) -> dict:  # noqa: A002 (labctl's contract)
    directory = pathlib.Path(dir).resolve()
    base = directory / "redis-cluster"
    if base.exists():
        if any(R.pid_alive(R._read_pid(p) or 0) for p in base.glob("*.pid")):
            raise RuntimeError(f"redis-cluster servers already run in {base}; run down first")
        for p in base.rglob("*"):
            if p.is_file():
                p.unlink()
    base.mkdir(parents=True, exist_ok=True)
    gt = directory / "redis-cluster-ground-truth.jsonl"
    gt.write_text("")
    pki = ensure_pki(directory)
    p = iter(free_ports(16))
    nodes = {n: _node(base, n, next(p), next(p), next(p)) for n in NODES}
    relays = {str(s): {"name": f"shard{s}", "port": next(p), "control_port": next(p), "pid": None} for s in (0, 1)}
    state = {"nodes": nodes, "relays": relays, "pids": []}
    t0 = time.monotonic()
    try:
        for n, node in nodes.items():
            shard = int(n[1])
            # Masters: their shard's relay (replication and TLS clients); replicas: their TLS port.
            announce = relays[str(shard)]["port"] if n.startswith("m") else node["tls_port"]
            R.write_node(base, node, pki, _cluster_extra(node, announce))
        for s, relay in relays.items():
            relay["pid"] = R.start_relay(base, relay["name"], relay["port"], nodes[f"m{s}"]["port"],
                                         relay["control_port"], gt, tls_port=nodes[f"m{s}"]["tls_port"])
        for node in nodes.values():
            R.start_node(node)
        _refresh_pids(state)
        ids = {n: R.call(node["port"], "CLUSTER", "MYID") for n, node in nodes.items()}
        for n, (lo, hi) in SLOTS.items():
            R.call(nodes[n]["port"], "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for n in NODES[1:]:
            R.call(nodes["m0"]["port"], "CLUSTER", "MEET", "127.0.0.1", nodes[n]["port"], nodes[n]["bus_port"])

        def all_known() -> bool:
            return all(R.call(node["port"], "CLUSTER", "NODES").count("connected") >= 4 for node in nodes.values())
        _wait(all_known, 20, "every node knowing the 4 nodes")
        for s in (0, 1):
            R.call(nodes[f"r{s}"]["port"], "CLUSTER", "REPLICATE", ids[f"m{s}"])
        for s in (0, 1):
            R.wait_link_up(nodes[f"r{s}"]["port"], timeout=20, what=f"redis-cluster r{s}")
            got = int(R.info(nodes[f"r{s}"]["port"])["master_port"])
            if got != relays[str(s)]["port"]:
                raise RuntimeError(f"redis-cluster r{s} replicates from port {got}, not from its relay "
                                   f"{relays[str(s)]['port']} (cluster-announce-port ignored?)")
        _wait(lambda: all("cluster_state:ok" in R.call(node["port"], "CLUSTER", "INFO") for node in nodes.values()),
              20, "cluster_state:ok on every node")

        def topology_complete() -> bool:  # every node's CLUSTER SLOTS shows both replicas
            return all(len(e) == 4 for node in nodes.values() for e in R.call(node["port"], "CLUSTER", "SLOTS"))
        _wait(topology_complete, 20, "every node's CLUSTER SLOTS listing one replica per shard")
    except BaseException:
        _refresh_pids(state)
        down(directory, state)
        raise
    state["up_seconds"] = round(time.monotonic() - t0, 3)
    state["ids"] = ids
    state.update({
        "REDIS_CLUSTER_PRIMARY_URL": f"rediss://127.0.0.1:{nodes['m0']['tls_port']}",
        "REDIS_CLUSTER_REPLICA_URL": f"rediss://127.0.0.1:{nodes['r0']['tls_port']}",
        "REDIS_CLUSTER_RELAY0_URL": f"http://127.0.0.1:{relays['0']['control_port']}",
        "REDIS_CLUSTER_RELAY1_URL": f"http://127.0.0.1:{relays['1']['control_port']}",
        "REDIS_CLUSTER_GROUND_TRUTH": str(gt),
        # The same secrets and CA as the `redis` component's (a lab of this component alone needs them).
        "REDIS_PASSWORD": R.PASSWORD,
        "REDIS_CA": str(pki["ca"]),
    })
    return state


def _refresh_pids(state: dict) -> None:
    pids = [r.get("pid") for r in state.get("relays", {}).values()]
    pids += [n.get("pid") for n in state.get("nodes", {}).values()]
    state["pids"] = [p for p in pids if p]


def down(dir: pathlib.Path, state: dict | None = None) -> None:  # noqa: A002
    directory = pathlib.Path(dir).resolve()
    state = state or {}
    base = directory / "redis-cluster"
    for node in (state.get("nodes") or {}).values():
        R.stop_node(node)
    for pidfile in base.glob("*.pid") if base.exists() else []:
        R.stop_pids([R._read_pid(pidfile) or 0], match=str(base))
    for relay in (state.get("relays") or {}).values():
        if relay.get("pid"):
            R.stop_pids([relay["pid"]], match="redis_relay.py")
            relay["pid"] = None
    _refresh_pids(state)


def fault(dir: pathlib.Path, state: dict, argv: list[str]) -> str:  # noqa: A002
    """redis-cluster delay DUR|stall|resume [--shard N] (no --shard: both shards)."""
    args = list(argv[1:])
    shards = [0, 1]
    if "--shard" in args:
        i = args.index("--shard")
        try:
            shards = [int(args[i + 1])]
        except (IndexError, ValueError):
            raise ValueError("usage: --shard 0|1") from None
        del args[i:i + 2]
        if shards[0] not in (0, 1):
            raise ValueError("redis-cluster has shards 0 and 1")
    if not args:
        raise ValueError("usage: redis-cluster delay DUR|stall|resume [--shard N]")
    msgs = []
    for s in shards:
        relay = state["relays"][str(s)]
        msg = R.relay_fault(relay["control_port"], f"redis-cluster shard {s}", args[0], args[1:])
        if msg is None:
            raise ValueError(f"redis-cluster fault: unknown action {args[0]!r} (delay, stall, resume)")
        msgs.append(msg)
    return "; ".join(msgs)


def status(dir: pathlib.Path, state: dict) -> str:  # noqa: A002
    lines = []
    nodes = state.get("nodes", {})
    try:
        ci = R.call(nodes["m0"]["port"], "CLUSTER", "INFO")
        lines.append("redis-cluster: " + next(l for l in ci.splitlines() if l.startswith("cluster_state")))
    except Exception as e:  # noqa: BLE001
        lines.append(f"redis-cluster: {e}")
    for key, relay in state.get("relays", {}).items():
        try:
            s = R.relay_call(relay["control_port"], "/status")
            lines.append(f"redis-cluster relay {relay['name']}: delay {s['delay_ms']} ms"
                         f"{', STALLED' if s['stalled'] else ''}, {s['connections']} connection(s), "
                         f"{s['canaries']} canaries")
        except Exception as e:  # noqa: BLE001
            lines.append(f"redis-cluster relay {relay['name']}: {e}")
    return "\n".join(lines)
