#!/usr/bin/env python3
"""Alertmanager webhook receiver for the lab (stdlib only).

    webhook_receiver.py --port PORT --out DIR/alerts.jsonl [--bind 127.0.0.1]

Appends every notification POSTed to it (any path) as one JSON line to --out: Alertmanager's
webhook payload unchanged (version, status, receiver, groupLabels, commonLabels, alerts[...]),
plus "lab_received_at" (unix seconds, when this receiver got it). Lines are flushed and
fsync'd one by one, under an exclusive lock, so readers never see half a line.
GET /healthz answers 200 (readiness); GET / returns the file so far.
"""
import argparse
import fcntl
import http.server
import json
import os
import sys
import time


def make_handler(out_path):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "rpo-lab-webhook/1"

        def log_message(self, fmt, *a):
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % a))

        def _reply(self, code, body=b"", ctype="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/healthz"):
                return self._reply(200, b"ok\n")
            try:
                with open(out_path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""
            return self._reply(200, data, "application/x-ndjson")

        def do_POST(self):
            received = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                doc = json.loads(raw)
                if not isinstance(doc, dict):
                    doc = {"payload": doc}
            except ValueError:
                doc = {"raw": raw.decode("utf-8", "replace")}
            doc["lab_received_at"] = received
            line = (json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n").encode()
            with open(out_path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
                fcntl.flock(f, fcntl.LOCK_UN)
            self._reply(200, b"ok\n")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    a = ap.parse_args()
    open(a.out, "ab").close()
    srv = http.server.ThreadingHTTPServer((a.bind, a.port), make_handler(a.out))
    srv.daemon_threads = True
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
