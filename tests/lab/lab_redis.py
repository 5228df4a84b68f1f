"""Redis component of the two-region lab: a redis-server 7.0 primary and a replica.

Why this exists: the agent's `redis` probe must be tested against real Redis replication
(what ElastiCache/MemoryDB global datastores and plain `replicaof` replicas do). Redis has no
apply delay, so the replica replicates *through a relay* (`redis_relay.py`) that delays the
primary→replica bytes, stalls them, and logs every canary SET it forwards (the ground truth).

    client (agent) --TLS--> primary :TLS   replica :TLS <--TLS-- client
                            primary :plain <-- relay <-- replica (replicaof 127.0.0.1 RELAY)

Each node listens on a TLS port (the lab CA's server certificate from `lab_sql.ensure_pki`, no
client certificates) and a plain port (replication, the relay, the lab's own admin calls).
Users (config `user` lines, so they survive a restart): `default` with the lab password
(`masterauth` the same), and `rpo`, limited to what the agent needs on `rpo-canary:*`.

    DIR/redis/primary.conf, replica.conf, primary/, replica/ (dir), *.pid, *.log, relay.log
    DIR/redis-ground-truth.jsonl

This file is a pluggable component of `tests/lab/labctl.py` (`FAULT_SERVICES`, `up()`,
`down()`, `fault()`, `status()`); lab_redis_cluster.py reuses its helpers. Standard library
only: `Resp` below is a tiny RESP2 client (plain or TLS).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from labctl import spawn, stop_pids, wait_http, pid_alive  # noqa: E402
from lab_sql import ensure_pki, free_ports, parse_duration_ms  # noqa: E402  (the shared lab CA)

FAULT_SERVICES = ["redis"]

REDIS_SERVER = "/usr/bin/redis-server"
PASSWORD = "rpo-lab-redis-secret"
USER = "rpo"
USER_PASSWORD = "rpo-lab-user-secret"
USER_ACL = (f"user {USER} on >{USER_PASSWORD} ~rpo-canary:* +set +get +ttl +role +info +ping "
            "+readonly +cluster|shards +cluster|slots")
ROLES = ("primary", "replica")


# --------------------------------------------------------------------------- RESP client

class RespError(Exception):
    pass


class Resp:
    """Minimal blocking RESP2 client: Resp(port).call("SET", "k", "v")."""

    def __init__(self, port: int, host: str = "127.0.0.1", password: str | None = PASSWORD,
                 user: str | None = None, tls_ca: str | None = None, timeout: float = 5.0):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            sock = ctx.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.f = sock.makefile("rb")
        if password is not None:
            self.call("AUTH", *([user] if user else []), password)

    def close(self) -> None:
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *args) -> None:
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError(f"bad reply {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.read()


def call(port: int, *args, timeout: float = 5.0):
    """One command as `default` on a plain port."""
    with Resp(port, timeout=timeout) as c:
        return c.call(*args)


def info(port: int, section: str = "replication") -> dict:
    text = call(port, "INFO", section)
    return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


# --------------------------------------------------------------------------- nodes

def node_config(node: dict, pki: dict, extra: list[str] = ()) -> str:
    """redis.conf text for one node (dict: name, port, tls_port, dir, pidfile, replicaof?)."""
    lines = [
        "# rpo-agent lab (tests/lab/lab_redis.py)",
        "bind 127.0.0.1",
        "protected-mode no",
        f"port {node['port']}",
        f"tls-port {node['tls_port']}",
        f"tls-cert-file {pki['cert']}",
        f"tls-key-file {pki['key']}",
        f"tls-ca-cert-file {pki['ca']}",
        "tls-auth-clients no",
        "tls-replication no",
        f"dir {node['dir']}",
        f"pidfile {node['pidfile']}",
        'logfile ""',
        "daemonize no",
        "set-proc-title no",  # keep DIR in /proc/PID/cmdline (labctl's safety net matches it)
        'save ""',
        "appendonly no",
        f"user default on >{PASSWORD} ~* &* +@all",
        USER_ACL,
        f"masterauth {PASSWORD}",
        "replica-read-only yes",
        "repl-diskless-load disabled",
        # Diskless full sync without the default 5 s wait for more replicas.
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "repl-timeout 60",
        # SIGTERM stops at once (7.0 otherwise waits up to 10 s for replicas to acknowledge).
        "shutdown-timeout 0",
        *extra,
    ]
    if node.get("replicaof"):
        lines.append(f"replicaof {node['replicaof'][0]} {node['replicaof'][1]}")
    return "\n".join(lines) + "\n"


def write_node(base: pathlib.Path, node: dict, pki: dict, extra: list[str] = ()) -> None:
    pathlib.Path(node["dir"]).mkdir(parents=True, exist_ok=True)
    pathlib.Path(node["conf"]).write_text(node_config(node, pki, extra))


def start_node(node: dict, timeout: float = 15.0) -> int:
    """Start redis-server on its config (DIR in the command line: labctl's safety net)."""
    pid = spawn([REDIS_SERVER, node["conf"]], pathlib.Path(node["log"]))
    node["pid"] = pid
    try:  # as the relay: lag figures must not depend on a build running beside (root only)
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            if call(node["port"], "PING", timeout=1) == "PONG":
                return pid
        except (OSError, RespError, ConnectionError):
            pass
        if not pid_alive(pid):
            raise RuntimeError(f"redis-server {node['name']} exited; {node['log']}:\n{_tail(node['log'])}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server {node['name']} not ready in {timeout:g}s")
        time.sleep(0.01)


def stop_node(node: dict) -> None:
    pids = [p for p in (node.get("pid"), _read_pid(node["pidfile"])) if p]
    stop_pids(list(dict.fromkeys(pids)), match=node["conf"])
    node["pid"] = None


def node_running(node: dict) -> bool:
    pid = node.get("pid") or _read_pid(node["pidfile"])
    return bool(pid) and pid_alive(pid)


def wait_link_up(port: int, timeout: float = 20.0, what: str = "replica") -> None:
    deadline = time.monotonic() + timeout
    last = {}
    while time.monotonic() < deadline:
        try:
            last = info(port)
            if last.get("role") == "slave" and last.get("master_link_status") == "up" \
                    and last.get("master_sync_in_progress") == "0":
                return
        except (OSError, RespError, ConnectionError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{what} (127.0.0.1:{port}) replication link not up in {timeout:g}s: "
                       f"{ {k: v for k, v in last.items() if 'master' in k or k == 'role'} }")


# --------------------------------------------------------------------------- relay

def start_relay(base: pathlib.Path, name: str, listen: int, upstream: int, control: int,
                ground_truth: pathlib.Path, delay_ms: float = 0, tls_port: int = 0) -> int:
    log = base / f"relay-{name}.log"
    pid = spawn([sys.executable, str(HERE / "redis_relay.py"), "--listen", str(listen),
                 "--upstream-port", str(upstream), "--upstream-tls-port", str(tls_port), "--control", str(control), "--name", name,
                 "--ground-truth", str(ground_truth), "--delay-ms", str(delay_ms)], log)
    wait_http(f"http://127.0.0.1:{control}/healthz", 10, pid=pid, log_path=log)
    return pid


def relay_call(control: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{control}{path}", data=b"", timeout=5) as r:
        return json.loads(r.read())


def relay_fault(control: int, service: str, action: str, rest: list[str]) -> str | None:
    """delay DUR | stall | resume on one relay; None if `action` is none of those."""
    if action == "delay":
        if len(rest) != 1:
            raise ValueError(f"usage: {service} delay DURATION (e.g. 700ms, 2s, 0)")
        ms = parse_duration_ms(rest[0])
        relay_call(control, f"/delay?ms={ms}")
        return f"{service}: replication delayed by {ms} ms (relay 127.0.0.1:{control})"
    if action == "stall":
        relay_call(control, "/stall")
        return f"{service}: replication stalled (relay holds everything until resume)"
    if action == "resume":
        relay_call(control, "/resume")
        return f"{service}: replication resumed"
    return None


# --------------------------------------------------------------------------- helpers

def _read_pid(path) -> int | None:
    try:
        return int(pathlib.Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path, n: int = 20) -> str:
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _nodes(base: pathlib.Path, ports: dict) -> dict:
    nodes = {}
    for role in ROLES:
        nodes[role] = {"name": role, "port": ports[f"{role}_port"], "tls_port": ports[f"{role}_tls_port"],
                       "dir": str(base / role), "conf": str(base / f"{role}.conf"),
                       "pidfile": str(base / f"{role}.pid"), "log": str(base / f"{role}.log"),
                       "pid": None}
    return nodes


# --------------------------------------------------------------------------- component API

def up(dir: pathlib.Path, env: dict, args=None) -> dict:  # noqa: A002 (labctl's contract)
    directory = pathlib.Path(dir).resolve()
    if not os.path.exists(REDIS_SERVER):
        raise RuntimeError(f"{REDIS_SERVER} missing: run deploy/local/prereqs as root (redis-server)")
    base = directory / "redis"
    old = [p for p in base.glob("*.pid") if pid_alive(_read_pid(p) or 0)] if base.exists() else []
    if old:
        raise RuntimeError(f"redis servers already run in {base}; run down first")
    if base.exists():
        for p in base.glob("*"):
            if p.is_file():
                p.unlink()
    base.mkdir(parents=True, exist_ok=True)
    gt = directory / "redis-ground-truth.jsonl"
    gt.write_text("")
    pki = ensure_pki(directory)
    p = free_ports(6)
    ports = {"primary_port": p[0], "primary_tls_port": p[1], "replica_port": p[2],
             "replica_tls_port": p[3], "relay_port": p[4], "control_port": p[5]}
    nodes = _nodes(base, ports)
    nodes["replica"]["replicaof"] = ["127.0.0.1", ports["relay_port"]]
    state = {"ports": ports, "nodes": nodes, "pids": [], "roles": {"primary": "master", "replica": "replica"}}
    t0 = time.monotonic()
    try:
        for role in ROLES:
            write_node(base, nodes[role], pki)
        state["relay_pid"] = start_relay(base, "redis", ports["relay_port"], ports["primary_port"],
                                         ports["control_port"], gt, tls_port=ports["primary_tls_port"])
        for role in ROLES:
            start_node(nodes[role])
        _refresh_pids(state)
        wait_link_up(ports["replica_port"])
    except BaseException:
        _refresh_pids(state)
        down(directory, state)
        raise
    state["up_seconds"] = round(time.monotonic() - t0, 3)
    state.update({
        "REDIS_PRIMARY_URL": f"rediss://127.0.0.1:{ports['primary_tls_port']}",
        "REDIS_REPLICA_URL": f"rediss://127.0.0.1:{ports['replica_tls_port']}",
        "REDIS_PRIMARY_PLAIN_URL": f"redis://127.0.0.1:{ports['primary_port']}",
        "REDIS_REPLICA_PLAIN_URL": f"redis://127.0.0.1:{ports['replica_port']}",
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_USER": USER,
        "REDIS_USER_PASSWORD": USER_PASSWORD,
        "REDIS_CA": str(pki["ca"]),
        "REDIS_RELAY_URL": f"http://127.0.0.1:{ports['control_port']}",
        "REDIS_GROUND_TRUTH": str(gt),
    })
    return state


def _refresh_pids(state: dict) -> None:
    pids = [state.get("relay_pid")] + [n.get("pid") for n in state.get("nodes", {}).values()]
    state["pids"] = [p for p in pids if p]


def down(dir: pathlib.Path, state: dict | None = None) -> None:  # noqa: A002
    directory = pathlib.Path(dir).resolve()
    state = state or {}
    base = directory / "redis"
    nodes = state.get("nodes") or {}
    for node in nodes.values():
        stop_node(node)
    # Without state: whatever pid file under DIR/redis still names a live redis-server.
    for pidfile in base.glob("*.pid") if base.exists() else []:
        stop_pids([_read_pid(pidfile) or 0], match=str(base))
    if state.get("relay_pid"):
        stop_pids([state["relay_pid"]], match="redis_relay.py")
        state["relay_pid"] = None
    _refresh_pids(state)


def fault(dir: pathlib.Path, state: dict, argv: list[str]) -> str:  # noqa: A002
    """redis delay DUR | stall | resume | restart|stop|start primary|replica | promote [--split-brain]."""
    if len(argv) < 2:
        raise ValueError("usage: redis delay DUR|stall|resume|restart|stop|start primary|replica|promote [--split-brain]")
    action, rest = argv[1], argv[2:]
    ports, nodes = state["ports"], state["nodes"]
    try:
        msg = relay_fault(ports["control_port"], "redis", action, rest)
        if msg:
            return msg
        if action in ("restart", "stop", "start"):
            if len(rest) != 1 or rest[0] not in ROLES:
                raise ValueError("usage: redis restart|stop|start primary|replica")
            node = nodes[rest[0]]
            if action in ("restart", "stop"):
                stop_node(node)
            if action in ("restart", "start"):
                if node_running(node):
                    raise RuntimeError(f"redis {node['name']} already runs")
                start_node(node)
                if state["roles"][node["name"]] == "replica":
                    wait_link_up(node["port"], what=f"redis {node['name']}")
                else:  # a master: its replica (if any, and not stalled) reconnects within ~1 s
                    other = nodes["replica" if node["name"] == "primary" else "primary"]
                    if state["roles"][other["name"]] == "replica" and node_running(other) \
                            and not relay_call(ports["control_port"], "/status")["stalled"]:
                        wait_link_up(other["port"], what=f"redis {other['name']}")
            verb = {"restart": "restarted", "stop": "stopped", "start": "started"}[action]
            return f"redis: {node['name']} (127.0.0.1:{node['tls_port']} tls, {node['port']} plain) {verb}"
        if action == "promote":
            return _promote(state, split_brain=rest == ["--split-brain"])
        raise ValueError(f"redis fault: unknown action {action!r}")
    finally:
        _refresh_pids(state)


def _promote(state: dict, split_brain: bool) -> str:
    """The replica becomes a master (`REPLICAOF NO ONE`).

    Without --split-brain the old master then replicates from it through the same relay (the
    relay is re-pointed at the new master: the direction swaps, delay/stall still apply). With
    it the old master stays a master (two masters); a later `promote` ends the split brain the
    managed way: the old master follows the promoted one (Global Datastore's failover)."""
    ports, nodes, roles = state["ports"], state["nodes"], state["roles"]
    split = state.get("split_brain")
    if split:
        if split_brain:
            raise RuntimeError("redis: already split brain (two masters); `promote` ends it")
        new, old = split["new"], split["old"]
    else:
        new = next((n for n in ROLES if roles[n] == "replica"), None)
        if new is None:
            raise RuntimeError("redis: no replica to promote")
        old = "primary" if new == "replica" else "replica"
        call(nodes[new]["port"], "REPLICAOF", "NO", "ONE")
        roles[new] = "master"
        nodes[new]["replicaof"] = None
        call(nodes[new]["port"], "CONFIG", "REWRITE")  # a restart keeps the new role
    if split_brain:
        state["split_brain"] = {"new": new, "old": old}
        return f"redis: {new} promoted; {old} stays a master (split brain: two masters)"
    relay_call(ports["control_port"], f"/upstream?port={nodes[new]['port']}&tls_port={nodes[new]['tls_port']}")
    if node_running(nodes[old]):
        call(nodes[old]["port"], "REPLICAOF", "127.0.0.1", ports["relay_port"])
        call(nodes[old]["port"], "CONFIG", "REWRITE")
        if not relay_call(ports["control_port"], "/status")["stalled"]:
            wait_link_up(nodes[old]["port"], what=f"redis {old}")
    else:  # it will come back as a replica of the relay
        text = pathlib.Path(nodes[old]["conf"]).read_text()
        if "\nreplicaof " not in text:
            pathlib.Path(nodes[old]["conf"]).write_text(text + f"replicaof 127.0.0.1 {ports['relay_port']}\n")
    roles[old] = "replica"
    nodes[old]["replicaof"] = ["127.0.0.1", ports["relay_port"]]
    state["split_brain"] = None
    how = "the split brain ends: " if split else ""
    return f"redis: {how}{new} is the master; {old} now replicates from it through the relay"


def status(dir: pathlib.Path, state: dict) -> str:  # noqa: A002
    lines = []
    for role, node in state.get("nodes", {}).items():
        try:
            i = info(node["port"])
            extra = f", link {i.get('master_link_status')}" if i.get("role") == "slave" else \
                f", {i.get('connected_slaves')} replica(s)"
            lines.append(f"redis {role}: {i.get('role')}{extra}")
        except Exception as e:  # noqa: BLE001 — a stopped node
            lines.append(f"redis {role}: {e}".splitlines()[0])
    try:
        s = relay_call(state["ports"]["control_port"], "/status")
        lines.append(f"redis relay: delay {s['delay_ms']} ms{', STALLED' if s['stalled'] else ''}, "
                     f"{s['connections']} connection(s), {s['bytes']} bytes forwarded, {s['canaries']} canaries")
    except Exception as e:  # noqa: BLE001
        lines.append(f"redis relay: {e}")
    return "\n".join(lines)
