"""The lab's control API (JSON over HTTP on its own port, LAB_CONTROL_URL).

Why it exists: tests and benchmarks change faults at run time without spawning a process per
change (Rust tests can call it directly with any HTTP client), and `lab status` asks it what
runs. It is separate from the AWS port so a fault that stalls or breaks the AWS API never
blocks the way to undo it.

    GET  /healthz                  {"ok": true}
    GET  /status                   faults, replication queues, global tables, buckets
    POST /fault  {"argv": [...]}   e.g. ["dynamodb","delay","1500ms","--table","orders"]
                                   -> {"ok": true, "message": "..."} | 400 {"ok": false, "error"}
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .faults import FaultError, FaultState

log = logging.getLogger("control")


def make_control_server(
    host: str, port: int, faults: FaultState, status: Callable[[], dict[str, Any]]
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload, indent=1, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/healthz":
                self._send(200, {"ok": True})
            elif self.path == "/status":
                self._send(200, status())
            else:
                self._send(404, {"ok": False, "error": f"no such path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/fault":
                self._send(404, {"ok": False, "error": f"no such path {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                argv = payload["argv"] if isinstance(payload, dict) else payload
                if isinstance(argv, str):
                    argv = argv.split()
                message = faults.apply_command([str(a) for a in argv])
            except FaultError as e:
                self._send(400, {"ok": False, "error": str(e)})
                return
            except (ValueError, KeyError, TypeError) as e:
                self._send(400, {"ok": False, "error": f'expected {{"argv": [...]}}: {e}'})
                return
            log.info("fault: %s", message)
            self._send(200, {"ok": True, "message": message})

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("control %s", fmt % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="control", daemon=True)
    t.start()
    return t
