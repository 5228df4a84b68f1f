"""The opt-in request log: one JSON line per AWS API request the gateway sees.

Why it exists: tests/aws_facts/ checks every request the agent really sends against botocore's
published service models (operation, member names, types, HTTP bindings). The gateway is the one
place that sees them all, already parsed (apirequest.py), so it writes them down here, decoded
as far as the wire protocol allows: the JSON body of JSON-protocol services (DynamoDB, Streams,
CloudWatch Logs, Secrets Manager), the Smithy RPC v2 CBOR body of CloudWatch (the Rust SDK's
protocol, see cloudwatch.py), the XML text of an S3 request whose body is XML (object bodies are
not logged, only their length). Off unless the server gets `--request-log PATH` (the lab passes
`lab up ... -- --aws-request-log PATH`); a failure to log never fails the request.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .apirequest import AwsRequest

log = logging.getLogger("request_log")

# Never written: the signature (and the lab's fake credentials in it).
_SECRET_HEADERS = frozenset({"authorization", "x-amz-security-token"})


def _plain(value: Any) -> Any:
    """CBOR-decoded values as JSON: timestamps as ISO 8601 text, blobs as base64 text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    return value


def decode_body(req: AwsRequest) -> dict[str, Any]:
    """What the body says, by wire protocol: {"protocol", "params"} or {"protocol", "xml"}."""
    ctype = req.headers.get("content-type", "")
    if req.headers.get("smithy-protocol") == "rpc-v2-cbor" or "cbor" in ctype:
        import cbor2  # the lab venv has it (setup-venv)

        return {"protocol": "smithy-rpc-v2-cbor", "params": _plain(cbor2.loads(req.body)) if req.body else {}}
    if "x-amz-target" in req.headers or "amz-json" in ctype:
        try:
            return {"protocol": "json", "params": json.loads(req.body or b"{}")}
        except ValueError:
            return {"protocol": "json", "undecodable": len(req.body)}
    if req.service == "s3":
        text = req.body.lstrip()[:1].decode("latin-1") if req.body else ""
        if text == "<":
            return {"protocol": "rest-xml", "xml": req.body.decode("utf-8", "replace")}
        return {"protocol": "rest-xml"}
    if "x-www-form-urlencoded" in ctype:
        return {"protocol": "query", "form": req.body.decode("utf-8", "replace")}
    return {"protocol": "unknown"}


def operation(req: AwsRequest) -> str | None:
    """apirequest.py names DynamoDB and S3 operations; the others come from the wire: the
    JSON protocol's `X-Amz-Target: Prefix.Operation`, RPC v2 CBOR's `.../operation/NAME` path,
    the query protocol's `Action=NAME` form field."""
    if req.op:
        return req.op
    if "x-www-form-urlencoded" in req.headers.get("content-type", ""):
        action = parse_qs(req.body.decode("utf-8", "replace")).get("Action")
        return action[0] if action else None
    target = req.headers.get("x-amz-target", "")
    if "." in target:
        return target.rsplit(".", 1)[1]
    if "/operation/" in req.path:
        return req.path.rsplit("/operation/", 1)[1] or None
    return None


class RequestLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, req: AwsRequest) -> None:
        try:
            entry = {
                "service": req.service,
                "region": req.region,
                "operation": operation(req),
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "headers": {k: v for k, v in req.headers.items() if k not in _SECRET_HEADERS},
                "body_length": len(req.body),
                **decode_body(req),
            }
            line = json.dumps(entry, sort_keys=True, default=str)
        except Exception:
            log.exception("request log: could not encode %s %s", req.method, req.path)
            return
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
