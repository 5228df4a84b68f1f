"""The WSGI layer in front of moto: faults, service extensions, journaling.

Why it exists: every AWS API request passes here once, so this is the one place that
1. reads what the request is (service, region, operation, resources: apirequest.py),
2. holds or refuses every request signed for a region that is down (`aws region-down`), and
   injects API faults (latency, throttling, 5xx) for the matching scope and operation,
3. lets a service extension answer or prepare (`before`), e.g. create DynamoDB replicas or
   refuse an S3 bucket asked for in the wrong region,
4. calls moto, buffered, so the extension can look at the outcome (`after`): queue replication,
   stamp headers, and
5. journals successful control-plane calls for replay after a restart, and
6. when asked (`--request-log`), writes every request down for tests/aws_facts (request_log.py).

Service extensions are looked up by the request's SigV4 signing name ("dynamodb", "s3",
"monitoring" for CloudWatch); a service without one goes to moto untouched.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Protocol

from werkzeug.test import EnvironBuilder

from .apirequest import AwsRequest, read_request
from .faults import REGION_HANG, FaultState
from .journal import Journal
from .replies import NoAnswer, Reply

log = logging.getLogger("gateway")

# A request to a hanging region is held at most this long, then closed without an answer.
REGION_HANG_CAP = 120.0
# How often a held request checks whether its client is gone (then its thread is freed).
_PEER_CHECK = 0.25


def _peer_closed(sock: socket.socket | None) -> bool:
    """Has the client closed its side (EOF or reset)? Never blocks (the connection's socket has
    a timeout, so a plain recv would first wait for data)."""
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""  # readable: data (pipelined) or EOF
    except (OSError, ValueError):
        return True


class ServiceExtension(Protocol):
    """What a service module offers the gateway (see dynamodb_global.py)."""

    # Operations that only look up one key (no iteration over moto's dicts): served without
    # the moto lock, so a replica poll never delays a replica apply.
    UNLOCKED_OPS: frozenset[str]

    def journaled(self, req: AwsRequest) -> bool: ...
    def error_reply(self, req: AwsRequest, kind: str) -> Reply: ...
    def before(self, req: AwsRequest) -> Reply | None: ...
    def after(self, req: AwsRequest, reply: Reply) -> Reply: ...


class Gateway:
    def __init__(
        self,
        moto_app: Callable,
        faults: FaultState,
        extensions: dict[str, ServiceExtension],
        journal: Journal,
        moto_lock: Any,
        request_log: Any = None,
    ):
        # moto's models are plain dicts: a replication worker inserting into a table or bucket
        # while a request thread scans it would break the scan. One lock around every moto
        # call and every replica apply (moto is GIL-bound anyway, so little is lost). It also
        # makes "commit, then queue the change" atomic, so queue order = commit order.
        self.moto_lock = moto_lock
        self.moto_app = moto_app
        self.faults = faults
        self.extensions = extensions  # keyed by SigV4 signing name
        self.journal = journal
        self.request_log = request_log  # request_log.RequestLog, or None (off)
        # Per down region: requests held right now, and closed/reset without answer so far.
        self._outage_lock = threading.Lock()
        self._outage_counts: dict[str, dict[str, int]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        reply = self.handle(environ, replaying=False)
        start_response(reply.status_line(), reply.headers)
        return [reply.body]

    def handle(self, environ: dict[str, Any], replaying: bool) -> Reply:
        req = read_request(environ)
        if self.request_log is not None and not replaying:
            self.request_log.write(req)
        if not replaying and req.region and self.faults.region_down(req.region):
            self._region_outage(req, environ)  # raises NoAnswer (unless the region came back)
        ext = self.extensions.get(req.service or "")
        if ext is not None and not replaying:
            injected = self._inject_faults(req, ext)
            if injected is not None:
                log.info("fault: %s %s %s -> %s", req.service, req.region, req.op, injected.status)
                return injected
        if ext is None:
            with self.moto_lock:
                return self._call_moto(environ)
        lock = contextlib.nullcontext() if req.op in ext.UNLOCKED_OPS else self.moto_lock
        with lock:
            early = self._guarded("before", ext.before, req)
            if early is not None:
                return early
            reply = self._call_moto(environ)
            # A failing extension must not turn moto's success into an error.
            reply = self._guarded("after", ext.after, req, reply) or reply
        if not replaying and 200 <= reply.status < 300 and ext.journaled(req):
            self.journal.record(req.method, req.path, req.query, req.headers, req.body)
        return reply

    # ---- region outage (`aws region-down REGION [--refuse]`) -----------------------------
    def _count(self, region: str, what: str, delta: int) -> None:
        with self._outage_lock:
            counts = self._outage_counts.setdefault(region, {"hanging": 0, "unanswered": 0})
            counts[what] += delta

    def _region_outage(self, req: AwsRequest, environ: dict[str, Any]) -> None:
        """The request has been read; now it gets no answer. Hang: hold it (its own connection's
        thread only, never the moto lock) until the region is up again, the client gives up, or
        REGION_HANG_CAP passes, then close. Refuse: reset the connection at once. The request is
        never executed either way."""
        region = req.region or ""
        mode = self.faults.region_down(region)
        held_for = 0.0
        if mode == REGION_HANG:
            sock = environ.get("werkzeug.socket")
            started = time.monotonic()
            deadline = started + REGION_HANG_CAP
            self._count(region, "hanging", 1)
            try:
                while mode == REGION_HANG:
                    left = deadline - time.monotonic()
                    if left <= 0 or _peer_closed(sock):
                        break
                    mode = self.faults.wait_region(region, min(_PEER_CHECK, left))
            finally:
                self._count(region, "hanging", -1)
            held_for = time.monotonic() - started
        if mode is None and held_for == 0.0:
            return  # came back up between the two looks: serve it
        self._count(region, "unanswered", 1)
        reset = mode not in (None, REGION_HANG)  # refuse (also when it turned refuse while held)
        how = "connection reset" if reset else f"closed without answer after {held_for:.2f}s"
        log.info("region %s down: %s %s -> %s", region, req.service, req.op or req.method, how)
        raise NoAnswer(f"region {region} is down", reset=reset)

    def outage_status(self) -> list[dict[str, Any]]:
        down = self.faults.regions_down()
        with self._outage_lock:
            counts = {r: dict(c) for r, c in self._outage_counts.items()}
        return [
            {"region": r, "mode": m, **counts.get(r, {"hanging": 0, "unanswered": 0})}
            for r, m in down.items()
        ]

    @staticmethod
    def _guarded(what: str, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.exception("extension %s failed for %s", what, getattr(args[0], "op", "?"))
            return None

    def _inject_faults(self, req: AwsRequest, ext: ServiceExtension) -> Reply | None:
        rules = self.faults.error_rules(req.service or "", req.names, req.op)
        # Latency first (it delays whatever answer follows), then at most one error.
        for rule in rules:
            if rule.kind == "latency":
                time.sleep(rule.seconds)
        for rule in rules:
            if rule.kind != "latency" and self.faults.roll(rule.rate):
                return ext.error_reply(req, rule.kind)
        return None

    def _call_moto(self, environ: dict[str, Any]) -> Reply:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            captured["status"], captured["headers"] = status, list(headers)
            return lambda data: None

        app_iter = self.moto_app(environ, start_response)
        try:
            body = b"".join(app_iter)
        finally:
            if hasattr(app_iter, "close"):
                app_iter.close()
        return Reply(int(captured["status"].split(" ", 1)[0]), captured["headers"], body)

    def replay(self, entry: dict[str, Any]) -> int:
        """Run one journaled request through the pipeline again (no faults, not re-journaled)."""
        builder = EnvironBuilder(
            path=entry["path"],
            method=entry["method"],
            query_string=entry["query"],
            headers=entry["headers"],
            data=entry["body"],
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        return self.handle(environ, replaying=True).status
