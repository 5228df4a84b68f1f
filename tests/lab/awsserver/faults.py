"""Fault state of the AWS stand-in, and the one parser of the fault grammar.

Why it exists: tests, benchmarks and the `lab fault` CLI all change the lab's behaviour at run
time (replication delay, stalls, dropped changes, API errors). Keeping the grammar and the state
in one module means the CLI, the control API and the replication workers agree on what
`delay 1500ms --table orders` means.

Faults live in *scopes*: (service, name) where service is "dynamodb" or "s3" and name is a table
(dynamodb) or a source bucket (s3), or None for the global scope of that service. A scoped
setting wins over the global one, so tests sharing one lab can each scope their own faults.
The state is saved to a file after every change so an `aws kill` / `aws start` keeps it, as a
real region keeps its behaviour across our simulated outage.

Besides the scopes, whole regions can be down (`aws region-down REGION [--refuse]`): every API
request signed for that region is held without an answer ("hang") or its connection reset
("refuse") by the gateway, and replication into or out of the region is held like a stall.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

SERVICES = ("dynamodb", "s3")

# Region outage modes (`aws region-down REGION [--refuse]`).
REGION_HANG, REGION_REFUSE = "hang", "refuse"
_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")

# Error kinds per service: what `error KIND ...` accepts. "latency" takes a duration, the others
# a rate (probability 0..1 per request).
ERROR_KINDS = {
    "dynamodb": ("throttle", "503", "500", "latency"),
    "s3": ("slowdown", "503", "500", "latency"),
}


class FaultError(ValueError):
    """A fault command that does not parse; the message says what is expected."""


def parse_duration(text: str) -> float:
    """'1500ms' / '2s' / '1.5s' / '3m' / bare seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if not m:
        raise FaultError(f"bad duration {text!r}: expected e.g. 300ms, 2s, 1.5s, 1m")
    value = float(m.group(1))
    unit = m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def parse_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise FaultError(f"bad rate {text!r}: expected a probability between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultError(f"bad rate {text!r}: expected a probability between 0 and 1")
    return rate


@dataclass
class ErrorRule:
    kind: str  # see ERROR_KINDS
    op: str | None = None  # API operation name (PutItem, HeadObject...), None = every operation
    rate: float = 0.0  # probability, for error kinds
    seconds: float = 0.0  # for latency

    def matches_op(self, op: str | None) -> bool:
        return self.op is None or (op is not None and self.op.lower() == op.lower())


@dataclass
class ScopeFaults:
    delay: float | None = None  # None: inherit from the global scope (0 there)
    jitter: float | None = None
    stalled: bool = False
    drop: int = 0  # next N changes are not replicated at all
    fail: int = 0  # s3 only: next N objects end FAILED
    errors: list[ErrorRule] = field(default_factory=list)

    def is_empty(self) -> bool:
        return self == ScopeFaults()


@dataclass
class ReplicationPlan:
    """What the faults decide for one change at the moment it is committed."""

    delay: float
    dropped: bool = False
    failed: bool = False


class FaultState:
    """Thread-safe fault settings. Listeners are called after every change (workers wake up)."""

    def __init__(self, path: Path | None = None):
        self._lock = threading.Lock()
        self._scopes: dict[tuple[str, str | None], ScopeFaults] = {}
        self._regions_down: dict[str, str] = {}  # region -> REGION_HANG | REGION_REFUSE
        # Requests held by a hanging region wait on this; every region-down/up wakes them.
        self._region_cond = threading.Condition(self._lock)
        self._listeners: list[Callable[[], None]] = []
        self._path = path
        self._rng = random.Random()
        if path is not None and path.exists():
            self._load(path)

    # ---- persistence -------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for entry in data.get("scopes", []):
            errors = [ErrorRule(**e) for e in entry["faults"].pop("errors", [])]
            self._scopes[(entry["service"], entry["name"])] = ScopeFaults(
                **entry["faults"], errors=errors
            )
        for region, mode in (data.get("regions_down") or {}).items():
            if mode in (REGION_HANG, REGION_REFUSE):
                self._regions_down[region] = mode

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(
            {"scopes": self._snapshot_locked(), "regions_down": dict(sorted(self._regions_down.items()))}, indent=1
        ))
        tmp.replace(self._path)

    def _snapshot_locked(self) -> list[dict]:
        return [
            {"service": s, "name": n, "faults": asdict(f)}
            for (s, n), f in sorted(self._scopes.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
            if not f.is_empty()
        ]

    def snapshot(self) -> list[dict]:
        with self._lock:
            return self._snapshot_locked()

    def regions_down(self) -> dict[str, str]:
        """{region: "hang" | "refuse"} for every region that is down."""
        with self._lock:
            return dict(sorted(self._regions_down.items()))

    def add_listener(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def _changed(self) -> None:
        self._save()

    def _notify(self) -> None:
        for fn in self._listeners:
            fn()

    # ---- queries used by the request path and the replication workers -------------------
    def _scope(self, service: str, name: str | None) -> ScopeFaults:
        return self._scopes.setdefault((service, name), ScopeFaults())

    def plan(self, service: str, name: str) -> ReplicationPlan:
        """Decide delay/drop/fail for one change; consumes one unit of drop/fail counters."""
        with self._lock:
            scoped, glob = self._scope(service, name), self._scope(service, None)
            delay = scoped.delay if scoped.delay is not None else (glob.delay or 0.0)
            jitter = scoped.jitter if scoped.jitter is not None else (glob.jitter or 0.0)
            if jitter > 0:
                delay += self._rng.uniform(0.0, jitter)
            plan = ReplicationPlan(delay=delay)
            changed = False
            # A dropped change never reaches the point where it could fail, so it uses up a
            # drop only; the scoped counter is used up before the global one.
            for counter, flag in (("drop", "dropped"), ("fail", "failed")):
                scope = next((s for s in (scoped, glob) if getattr(s, counter) > 0), None)
                if scope is not None:
                    setattr(scope, counter, getattr(scope, counter) - 1)
                    setattr(plan, flag, True)
                    changed = True
                    break
            if changed:
                self._changed()
            return plan

    def stalled(self, service: str, name: str) -> bool:
        with self._lock:
            return self._scope(service, name).stalled or self._scope(service, None).stalled

    def held(self, service: str, name: str, src_region: str, dst_region: str) -> bool:
        """May a change of this pair not be applied now? (stalled, or either region down)"""
        with self._lock:
            return (
                self._scope(service, name).stalled
                or self._scope(service, None).stalled
                or src_region in self._regions_down
                or dst_region in self._regions_down
            )

    def region_down(self, region: str) -> str | None:
        """The outage mode of `region`, None when it is up. Called for every request: no lock
        when no region is down (a dict read is atomic under the GIL)."""
        if not self._regions_down:
            return None
        with self._lock:
            return self._regions_down.get(region)

    def wait_region(self, region: str, timeout: float) -> str | None:
        """Wait up to `timeout` while `region` hangs (woken at once by `region-up` /
        `region-down`); returns the region's mode afterwards."""
        with self._region_cond:
            if self._regions_down.get(region) == REGION_HANG:
                self._region_cond.wait(timeout)
            return self._regions_down.get(region)

    def error_rules(self, service: str, names: list[str], op: str | None) -> list[ErrorRule]:
        """Rules that apply to a request touching `names` (tables/buckets) with operation `op`."""
        with self._lock:
            rules = []
            for name in [None, *names]:
                scope = self._scopes.get((service, name))
                if scope:
                    rules.extend(r for r in scope.errors if r.matches_op(op))
            return rules

    def roll(self, rate: float) -> bool:
        with self._lock:
            return self._rng.random() < rate

    # ---- the grammar -------------------------------------------------------------------
    def apply_command(self, argv: list[str]) -> str:
        """Apply one fault command, e.g. ["dynamodb", "delay", "1500ms", "--table", "orders"].

        Returns a one-line human description of what changed.
        """
        args = list(argv)
        if not args:
            raise FaultError("expected: <dynamodb|s3> <fault> [args] [--table T | --bucket B]")
        if args[0] == "aws":
            with self._lock:
                msg = self._apply_region(args[1:])
                self._changed()
                self._region_cond.notify_all()
            self._notify()
            return msg
        service = args.pop(0)
        if service not in SERVICES:
            raise FaultError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")
        scope_flag = "--table" if service == "dynamodb" else "--bucket"
        name = None
        for flag in ("--table", "--bucket"):
            if flag in args:
                i = args.index(flag)
                if flag != scope_flag:
                    raise FaultError(f"{service} faults are scoped with {scope_flag}, not {flag}")
                if i + 1 >= len(args):
                    raise FaultError(f"{flag} needs a name")
                name = args[i + 1]
                del args[i : i + 2]
        if not args:
            raise FaultError(f"expected a fault after {service!r}")
        verb, rest = args[0], args[1:]
        where = f"{service} {scope_flag[2:]} {name}" if name else f"{service} (global)"
        with self._lock:
            msg = self._apply_locked(service, name, verb, rest, where)
            self._changed()
        self._notify()
        return msg

    def _apply_region(self, args: list[str]) -> str:
        verb, rest = (args[0], args[1:]) if args else ("", [])
        if verb in ("kill", "start", "restart"):
            raise FaultError(f"aws {verb} is a process fault: use `lab fault --dir DIR aws {verb}`")
        refuse = "--refuse" in rest
        rest = [a for a in rest if a != "--refuse"]
        if verb not in ("region-down", "region-up") or len(rest) != 1 or (refuse and verb == "region-up"):
            raise FaultError("usage: aws region-down REGION [--refuse] | aws region-up REGION")
        region = rest[0]
        if not _REGION_NAME.fullmatch(region):
            raise FaultError(f"bad region {region!r}: expected e.g. ap-northeast-3")
        if verb == "region-up":
            was = self._regions_down.pop(region, None)
            return f"aws region {region}: up" + ("" if was else " (was not down)")
        mode = REGION_REFUSE if refuse else REGION_HANG
        self._regions_down[region] = mode
        what = "connections reset" if refuse else "requests hang"
        return f"aws region {region}: down ({what}, replication into/out of it held)"

    def _apply_locked(self, service: str, name: str | None, verb: str, rest: list[str], where: str) -> str:
        scope = self._scope(service, name)

        def want(n: int, usage: str) -> None:
            if len(rest) != n:
                raise FaultError(f"usage: {service} {usage} [{'--table T' if service == 'dynamodb' else '--bucket B'}]")

        if verb == "delay":
            want(1, "delay DURATION")
            scope.delay = parse_duration(rest[0])
            return f"{where}: replication delay {scope.delay:g}s"
        if verb == "jitter":
            want(1, "jitter DURATION")
            scope.jitter = parse_duration(rest[0])
            return f"{where}: replication jitter 0..{scope.jitter:g}s"
        if verb == "stall":
            want(0, "stall")
            scope.stalled = True
            return f"{where}: replication stalled"
        if verb == "resume":
            want(0, "resume")
            # Unscoped resume means "let everything of this service flow again".
            targets = [scope] if name else [f for (s, _), f in self._scopes.items() if s == service]
            for f in targets:
                f.stalled = False
            return f"{where}: replication resumed"
        if verb in ("drop", "fail"):
            if verb == "fail" and service != "s3":
                raise FaultError("fail N is an s3 fault (objects end FAILED); use drop N for dynamodb")
            want(1, f"{verb} N")
            try:
                n = int(rest[0])
            except ValueError:
                raise FaultError(f"{verb} needs a whole number, got {rest[0]!r}") from None
            setattr(scope, verb, n)
            what = "not replicated" if verb == "drop" else "replicated as FAILED"
            return f"{where}: next {n} change(s) {what}"
        if verb == "error":
            return self._apply_error(service, name, scope, rest, where)
        if verb == "reset":
            want(0, "reset")
            keys = [(service, name)] if name else [k for k in self._scopes if k[0] == service]
            for k in keys:
                self._scopes[k] = ScopeFaults()
            return f"{where}: all faults cleared"
        raise FaultError(
            f"unknown fault {verb!r}: expected delay, jitter, stall, resume, drop"
            + (", fail" if service == "s3" else "")
            + ", error or reset"
        )

    def _apply_error(self, service: str, name: str | None, scope: ScopeFaults, rest: list[str], where: str) -> str:
        kinds = ERROR_KINDS[service]
        if not rest:
            raise FaultError(f"usage: {service} error <{'|'.join(kinds)}|clear> ...")
        kind = rest[0]
        if kind == "clear":
            if len(rest) != 1:
                raise FaultError(f"usage: {service} error clear")
            targets = [scope] if name else [f for (s, _), f in self._scopes.items() if s == service]
            for f in targets:
                f.errors.clear()
            return f"{where}: API errors cleared"
        if kind == "throttling":
            kind = "throttle"
        if kind not in kinds:
            raise FaultError(f"unknown {service} error {kind!r}: expected one of {', '.join(kinds)}, clear")
        if len(rest) not in (2, 3):
            arg = "DURATION" if kind == "latency" else "RATE"
            raise FaultError(f"usage: {service} error {kind} {arg} [OPERATION]")
        op = rest[2] if len(rest) == 3 else None
        rule = ErrorRule(kind=kind, op=op)
        if kind == "latency":
            rule.seconds = parse_duration(rest[1])
        else:
            rule.rate = parse_rate(rest[1])
        # One rule per (kind, op): setting it again replaces it, rate 0 removes it.
        scope.errors = [r for r in scope.errors if (r.kind, r.op) != (kind, op)]
        if rule.rate > 0 or rule.seconds > 0:
            scope.errors.append(rule)
        value = f"{rule.seconds:g}s" if kind == "latency" else f"rate {rule.rate:g}"
        return f"{where}: error {kind} {value} on {op or 'every operation'}"
