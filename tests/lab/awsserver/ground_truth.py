"""The ground-truth log: one JSON line per replicated (or dropped/failed) change.

Why it exists: accuracy tests compare what the agent measured against what really happened.
Only the lab knows when a change was committed at the source and when it became readable at the
replica, so it writes both times here (LAB_GROUND_TRUTH), flushed per line so a reader tailing
the file sees each change as soon as it is applied.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class GroundTruth:
    def __init__(self, path: Path | None):
        self._lock = threading.Lock()
        # Line-buffered append: each record reaches the file as one write, whole.
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def record(self, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps(fields, separators=(",", ":"), default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
