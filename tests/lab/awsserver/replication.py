"""Timed, ordered delivery of replicated changes: one FIFO queue and worker per table/bucket pair.

Why it exists: both DynamoDB global tables and S3 replication need the same machinery: a change
committed in one region becomes visible in another after the injected delay (+ jitter), in
commit order per source/destination pair, and not at all while replication is stalled or either
region of the pair is down (`aws region-down`: the queue holds and applies in order once it is up). The
services decide *what* a change does (`run`); this module decides *when* it runs.

Order: a change whose jittered due time is earlier than its predecessor's waits for it (FIFO),
as a real replication log would; so jitter can only delay, never reorder.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .faults import FaultState, ReplicationPlan

log = logging.getLogger("replication")


@dataclass
class Change:
    due: float  # time.monotonic() when it may be applied
    plan: ReplicationPlan
    run: Callable[[ReplicationPlan], None]


class _PairQueue:
    def __init__(self, key: tuple[str, str, str, str], faults: FaultState, apply_lock):
        self.key = key
        self.apply_lock = apply_lock
        self.service, self.name, self.src, self.dst = key
        self.faults = faults
        self.cond = threading.Condition()
        self.items: collections.deque[Change] = collections.deque()
        self.applied = 0
        self.thread = threading.Thread(target=self._work, name=f"repl-{'-'.join(key)}", daemon=True)
        self.thread.start()

    def put(self, change: Change) -> None:
        with self.cond:
            self.items.append(change)
            self.cond.notify()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def _next(self) -> Change:
        with self.cond:
            while True:
                if not self.items:
                    self.cond.wait()
                elif self.faults.held(self.service, self.name, self.src, self.dst):
                    # Woken by the fault listener on resume / region-up; the timeout is only a
                    # safety net.
                    self.cond.wait(1.0)
                else:
                    wait = self.items[0].due - time.monotonic()
                    if wait <= 0:
                        return self.items.popleft()
                    self.cond.wait(wait)

    def _work(self) -> None:
        while True:
            change = self._next()
            try:
                with self.apply_lock:  # the gateway's moto lock: no request sees half a write
                    change.run(change.plan)
            except Exception:  # a replica table/bucket deleted meanwhile, a moto error...
                log.exception("replication %s failed", "/".join(self.key))
            self.applied += 1


class Replicator:
    def __init__(self, faults: FaultState, apply_lock):
        self.faults = faults
        self.apply_lock = apply_lock
        self._queues: dict[tuple[str, str, str, str], _PairQueue] = {}
        self._lock = threading.Lock()
        faults.add_listener(self._wake_all)

    def _wake_all(self) -> None:
        with self._lock:
            queues = list(self._queues.values())
        for q in queues:
            q.wake()

    def submit(
        self,
        service: str,
        name: str,
        src_region: str,
        dst_region: str,
        committed_mono: float,
        run: Callable[[ReplicationPlan], None],
    ) -> ReplicationPlan:
        """Plan one change (faults decide delay/drop/fail) and queue it unless it is dropped.

        `name` is the fault scope (table, or source bucket). The caller records dropped changes.
        """
        plan = self.faults.plan(service, name)
        if plan.dropped:
            return plan
        key = (service, name, src_region, dst_region)
        with self._lock:
            q = self._queues.get(key) or self._queues.setdefault(key, _PairQueue(key, self.faults, self.apply_lock))
        q.put(Change(due=committed_mono + plan.delay, plan=plan, run=run))
        return plan

    def status(self) -> list[dict]:
        with self._lock:
            queues = list(self._queues.values())
        down = self.faults.regions_down()
        return [
            {
                "service": q.service,
                "name": q.name,
                "source_region": q.key[2],
                "replica_region": q.key[3],
                "queued": len(q.items),
                "applied": q.applied,
                "stalled": self.faults.stalled(q.service, q.name),
                "region_down": [r for r in (q.src, q.dst) if r in down],  # held by an outage
            }
            for q in queues
        ]
