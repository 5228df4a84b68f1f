"""The control-plane journal: the requests that shaped tables and buckets, for replay.

Why it exists: `lab fault aws kill` SIGKILLs the server to simulate a regional outage, and moto
keeps everything in memory. So that `aws start` brings back the same tables, replicas and
buckets (as a real region would), every successful control-plane request (CreateTable,
UpdateTable, CreateBucket, PutBucketReplication, ...) is appended here as the raw HTTP request,
and replayed through the same request pipeline on start. Data items are not journaled.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("journal")

# Headers that matter to how moto and our gateway interpret a request. The rest (dates,
# signatures' other parts, user agents) are noise for a replay.
_KEEP_HEADERS = ("authorization", "content-type", "x-amz-target", "host")


class Journal:
    def __init__(self, path: Path | None):
        self._path = path
        self._lock = threading.Lock()

    def record(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> None:
        if self._path is None:
            return
        entry = {
            "method": method,
            "path": path,
            "query": query,
            "headers": {k: v for k, v in headers.items() if k.lower() in _KEEP_HEADERS or k.lower().startswith("x-amz-bucket") or k.lower() == "x-amz-acl"},
            "body": base64.b64encode(body).decode("ascii"),
        }
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        if self._path is None or not self._path.exists():
            return []
        out = []
        for line in self._path.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL mid-write
            e["body"] = base64.b64decode(e["body"])
            out.append(e)
        return out

    def replay(self, send: Callable[[dict[str, Any]], int]) -> int:
        """Feed every entry to `send` (returns the HTTP status); returns how many succeeded."""
        ok = 0
        for e in self.entries():
            status = send(e)
            if 200 <= status < 300:
                ok += 1
            else:
                log.warning("replay of %s %s answered %s", e["method"], e["path"], status)
        return ok
