#!/usr/bin/env python3
"""TCP relay between a Redis replica and its primary, with injectable replication lag.

Why: Redis has no `recovery_min_apply_delay`/`MASTER_DELAY`; a replica applies what it reads at
once. So the lab puts this relay on the replication link (the replica's `replicaof` points at
it) and delays the primary→replica bytes. Started by tests/lab/lab_redis.py (and
lab_redis_cluster.py, one relay per shard); standard library only.

* Every accepted connection gets its own connection to the upstream (the primary's plain port;
  a connection that starts with a TLS ClientHello goes to --upstream-tls-port instead, as an
  undelayed pipe: in the cluster the masters announce the relay port, so clients following
  CLUSTER SLOTS come through here too).
* A plain connection is a replication link from the moment the downstream side sends
  PSYNC/SYNC; before that (PING, AUTH, REPLCONF) and for any other client it is a plain pipe.
  On a replication link:
* replica→primary bytes are forwarded at once (held only while stalled).
* primary→replica bytes: each chunk is stamped on arrival and written at arrival + delay
  (the delay in force when it is due, so lowering the delay releases overdue chunks at once),
  in order. `stall` holds everything (both directions) until `resume`.
* The primary→replica stream is parsed (PSYNC replies, the RDB payload, then RESP commands); for
  every `SET rpo-canary:*` one JSON line goes to the ground-truth file:
  {"key","value","received_at","forwarded_at","relay"} (unix seconds; received_at = when the
  chunk completing the command arrived from the primary, forwarded_at = when it was written to
  the replica's socket; the line is written just before those bytes, so whoever sees the key on
  the replica finds its line already in the file).

Control (HTTP on 127.0.0.1:CONTROL, GET or POST, JSON answers):
  /delay?ms=700   set the delay (GET /delay without ms: show it)
  /stall, /resume
  /upstream?port=N[&tls_port=T][&host=H]   new connections go there (a promote swaps the direction)
  /status         {"delay_ms","stalled","bytes","bytes_to_primary","connections",...}
  /healthz

Usage: redis_relay.py --listen PORT --upstream-port PORT --control PORT --name NAME
                      --ground-truth FILE [--delay-ms N]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.parse

EOF = object()  # queue marker: the sending side closed


class Relay:
    def __init__(self, args: argparse.Namespace):
        self.name = args.name
        self.upstream = (args.upstream_host, args.upstream_port)
        self.upstream_tls = args.upstream_tls_port
        self.delay = args.delay_ms / 1000.0
        self.stalled = False
        self.changed = asyncio.Event()  # set (then replaced) on delay/stall/resume changes
        self.gt = open(args.ground_truth, "a", buffering=1)
        self.bytes_down = 0  # primary -> replica, forwarded
        self.bytes_up = 0
        self.connections = 0
        self.connections_total = 0
        self.canaries = 0
        self.links: set[Link] = set()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def status(self) -> dict:
        return {"relay": self.name, "delay_ms": round(self.delay * 1000, 3), "stalled": self.stalled,
                "bytes": self.bytes_down, "bytes_to_primary": self.bytes_up,
                "connections": self.connections, "connections_total": self.connections_total,
                "queued_bytes": sum(l.queued_bytes() for l in self.links),
                "canaries": self.canaries, "upstream": f"{self.upstream[0]}:{self.upstream[1]}"}

    def record(self, key: bytes, value: bytes, received_at: float, forwarded_at: float) -> None:
        self.canaries += 1
        self.gt.write(json.dumps({
            "key": key.decode(errors="replace"), "value": value.decode(errors="replace"),
            "received_at": received_at, "forwarded_at": forwarded_at, "relay": self.name}) + "\n")

    async def handle(self, r_reader: asyncio.StreamReader, r_writer: asyncio.StreamWriter) -> None:
        # A Redis client always speaks first: a TLS ClientHello (0x16) goes, untouched and
        # undelayed, to the upstream's TLS port (cluster clients following CLUSTER SLOTS land
        # here); anything else to the plain port.
        try:
            first = await r_reader.read(65536)
        except (ConnectionError, OSError):
            first = b""
        if not first:
            r_writer.close()
            return
        tls = first[:1] == b"\x16"
        if tls and not self.upstream_tls:
            r_writer.close()
            return
        try:
            p_reader, p_writer = await asyncio.open_connection(
                self.upstream[0], self.upstream_tls if tls else self.upstream[1])
        except OSError:
            r_writer.close()  # the primary is down: the replica retries (every second)
            return
        for w in (r_writer, p_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self, r_reader, r_writer, p_reader, p_writer, passthrough=tls)
        link.up_bytes(first)
        self.links.add(link)
        self.connections += 1
        self.connections_total += 1
        try:
            await link.run()
        finally:
            self.connections -= 1
            self.links.discard(link)


class Link:
    """One accepted connection and its upstream connection. It is a replication link (delayed,
    stalled, parsed) from the moment the downstream side sends PSYNC/SYNC; before that (the
    replica's PING/AUTH/REPLCONF, or any other client) and for TLS it is a plain pipe."""

    def __init__(self, relay: Relay, r_reader, r_writer, p_reader, p_writer, passthrough=False):
        self.relay = relay
        self.passthrough = passthrough
        self.replication = False
        self.sniff = b""
        self.r_reader, self.r_writer = r_reader, r_writer
        self.p_reader, self.p_writer = p_reader, p_writer
        self.down_q: collections.deque = collections.deque()  # (arrival, bytes|EOF, canaries)
        self.up_q: collections.deque = collections.deque()
        self.down_wake = asyncio.Event()
        self.up_wake = asyncio.Event()
        self.parser = ReplStreamParser()

    def up_bytes(self, chunk: bytes) -> None:
        """Queue downstream->upstream bytes; notice a PSYNC/SYNC (the link turns replication)."""
        if not self.passthrough and not self.replication:
            # Searched before trimming: `PSYNC <40-byte replid> <offset>` runs past 64 bytes
            # once the offset has 6 digits, so a trimmed window would miss the command.
            seen = self.sniff + chunk
            if re.search(rb"(?i)\r\n(p?sync)\r\n|^(p?sync)\b", seen):
                self.replication = True
            self.sniff = seen[-64:]
        self.up_q.append((time.time(), chunk, []))
        self.up_wake.set()

    def queued_bytes(self) -> int:
        return sum(len(c) for _, c, _ in self.down_q if c is not EOF)

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(t) for t in (
            self.pump(self.p_reader, self.down_q, self.down_wake, parse=True),
            self.pump(self.r_reader, self.up_q, self.up_wake, parse=False),
            self.release(self.down_q, self.down_wake, self.r_writer, delayed=True),
            self.release(self.up_q, self.up_wake, self.p_writer, delayed=False))]
        # Done when both writers finished (each ends after forwarding its side's EOF).
        await asyncio.wait(tasks[2:], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (self.r_writer, self.p_writer):
            try:
                w.close()
            except Exception:  # noqa: BLE001
                pass

    async def pump(self, reader, queue, wake, parse: bool) -> None:
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, OSError):
                chunk = b""
            now = time.time()
            if not chunk:
                queue.append((now, EOF, []))
                wake.set()
                return
            if not parse:
                self.up_bytes(chunk)
                continue
            # Bytes from the primary: delayed only once the link is a replication link.
            canaries = []
            if self.replication and self.parser is not None:
                try:
                    canaries = self.parser.feed(chunk)
                except Exception as e:  # noqa: BLE001 — never stop forwarding over a parse error
                    print(f"redis_relay {self.relay.name}: cannot parse the replication stream "
                          f"({type(e).__name__}: {e}); no more ground truth from this link", flush=True)
                    self.parser = None
            queue.append((now if self.replication else None, chunk, canaries))
            wake.set()

    async def release(self, queue, wake, writer, delayed: bool) -> None:
        relay = self.relay
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            arrival, chunk, canaries = queue[0]
            if relay.stalled and self.replication:
                await relay.changed.wait()
                continue
            if delayed and arrival is not None:
                wait = arrival + relay.delay - time.time()
                if wait > 0:
                    changed = relay.changed
                    try:
                        # Sleep to the deadline, waking early if the delay or stall changes.
                        await asyncio.wait_for(changed.wait(), timeout=wait)
                    except asyncio.TimeoutError:
                        pass
                    if time.time() < arrival + relay.delay - 0.0002 or relay.stalled:
                        continue
            queue.popleft()
            if chunk is EOF:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except OSError:
                    pass
                return
            forwarded = time.time()
            if delayed and arrival is not None:
                # The line goes out just before the bytes (µs apart), so a reader that saw the
                # key on the replica always finds its ground truth already in the file.
                for key, value in canaries:
                    relay.record(key, value, arrival, forwarded)
            try:
                writer.write(chunk)
            except (ConnectionError, OSError, RuntimeError):
                return
            if delayed and arrival is not None:
                relay.bytes_down += len(chunk)
            elif not delayed:
                relay.bytes_up += len(chunk)
            if writer.transport.get_write_buffer_size() > 1 << 20:
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return


class ReplStreamParser:
    """Incremental parser of what a primary sends a replica: `+...` lines (PONG, OK,
    FULLRESYNC, CONTINUE), newline keepalives, the RDB payload (`$<len>\\r\\n<bytes>` without
    a trailing CRLF, or diskless `$EOF:<40-byte mark>\\r\\n<bytes><mark>`), then RESP
    multibulk commands. feed() returns the (key, value) of every complete canary SET."""

    def __init__(self):
        self.buf = bytearray()
        self.state = "lines"  # lines | rdb_len | rdb_eof | stream
        self.rdb_left = 0
        self.eof_mark = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while self.buf:
            if self.state == "lines":
                if self.buf[:1] == b"\n":  # keepalive while the primary prepares the RDB
                    del self.buf[:1]
                    continue
                if self.buf[:1] == b"$":  # RDB header (after +FULLRESYNC)
                    end = self.buf.find(b"\r\n")
                    if end < 0:
                        break
                    header = bytes(self.buf[1:end])
                    del self.buf[:end + 2]
                    if header.startswith(b"EOF:"):
                        self.eof_mark, self.state = header[4:], "rdb_eof"
                    else:
                        self.rdb_left, self.state = int(header), "rdb_len"
                    continue
                if self.buf[:1] == b"*":
                    self.state = "stream"
                    continue
                end = self.buf.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                if line.startswith(b"+CONTINUE"):
                    self.state = "stream"
                continue  # +PONG, +OK, +FULLRESYNC ..., -ERR ...
            if self.state == "rdb_len":
                n = min(self.rdb_left, len(self.buf))
                del self.buf[:n]
                self.rdb_left -= n
                if self.rdb_left == 0:
                    self.state = "stream"
                continue
            if self.state == "rdb_eof":
                i = self.buf.find(self.eof_mark)
                if i < 0:  # keep a mark's length, it may straddle chunks
                    keep = len(self.eof_mark) - 1
                    if len(self.buf) > keep:
                        del self.buf[:len(self.buf) - keep]
                    break
                del self.buf[:i + len(self.eof_mark)]
                self.state = "stream"
                continue
            # stream: RESP commands
            if self.buf[:1] != b"*":
                if self.buf[:1] == b"\n":
                    del self.buf[:1]
                    continue
                end = self.buf.find(b"\r\n")  # inline / unexpected: skip the line
                if end < 0:
                    break
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                if line.startswith(b"+FULLRESYNC"):  # a new sync on the same link
                    self.state = "lines"
                continue
            cmd = self._multibulk()
            if cmd is None:
                break
            out.extend(self._canaries(cmd))
        return out

    def _multibulk(self) -> list[bytes] | None:
        """One complete `*N` array of bulk strings off the buffer, or None (need more)."""
        buf = self.buf
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        n = int(buf[1:end])
        pos, args = end + 2, []
        for _ in range(n):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            if buf[pos:pos + 1] != b"$":
                raise ValueError(f"unexpected RESP {bytes(buf[pos:pos + 20])!r}")
            ln = int(buf[pos + 1:end])
            start = end + 2
            if len(buf) < start + ln + 2:
                return None
            args.append(bytes(buf[start:start + ln]))
            pos = start + ln + 2
        del buf[:pos]
        return args

    @staticmethod
    def _canaries(cmd: list[bytes]) -> list[tuple[bytes, bytes]]:
        name = cmd[0].upper() if cmd else b""
        if name == b"SET" and len(cmd) >= 3 and cmd[1].startswith(b"rpo-canary:"):
            return [(cmd[1], cmd[2])]
        if name in (b"SETEX", b"PSETEX") and len(cmd) >= 4 and cmd[1].startswith(b"rpo-canary:"):
            return [(cmd[1], cmd[3])]
        return []


# ------------------------------------------------------------------------------- control (HTTP)

async def control(relay: Relay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        request_line = head.split(b"\r\n", 1)[0].decode()
        method, target = request_line.split()[:2]
        url = urllib.parse.urlsplit(target)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        code, body = 200, None
        if url.path == "/delay":
            if "ms" in q:
                ms = float(q["ms"])
                if ms < 0:
                    raise ValueError("ms must be >= 0")
                relay.delay = ms / 1000.0
                relay.notify()
        elif url.path == "/stall":
            relay.stalled = True
            relay.notify()
        elif url.path == "/resume":
            relay.stalled = False
            relay.notify()
        elif url.path == "/upstream":
            relay.upstream = (q.get("host", "127.0.0.1"), int(q["port"]))
            relay.upstream_tls = int(q.get("tls_port", 0))
        elif url.path == "/healthz":
            body = {"ok": True}
        elif url.path != "/status":
            code, body = 404, {"ok": False, "error": f"unknown path {url.path}"}
        if body is None:
            body = relay.status()
    except (ValueError, KeyError) as e:
        code, body = 400, {"ok": False, "error": str(e)}
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, asyncio.LimitOverrunError):
        writer.close()
        return
    data = json.dumps(body).encode() + b"\n"
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[code]
    writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main_async(args: argparse.Namespace) -> None:
    relay = Relay(args)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", args.listen, reuse_address=True)
    ctl = await asyncio.start_server(lambda r, w: control(relay, r, w), "127.0.0.1", args.control,
                                     reuse_address=True)
    print(f"redis_relay {relay.name}: 127.0.0.1:{args.listen} -> {relay.upstream[0]}:{relay.upstream[1]}, "
          f"control 127.0.0.1:{args.control}, pid {os.getpid()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server, ctl:
        await stop.wait()


def raise_priority() -> None:
    """Timing is the relay's product: run ahead of builds and tests sharing the CPU (root only;
    elsewhere it just runs at normal priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    try:  # a real-time class wakes the relay at its deadlines even on a saturated CPU
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--upstream-tls-port", type=int, default=0, help="where TLS clients go (0: refused)")
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--name", default="redis")
    ap.add_argument("--ground-truth", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args(argv)
    raise_priority()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
