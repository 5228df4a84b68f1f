"""HTTP replies the gateway builds itself, shaped like AWS's own (errors above all).

Why it exists: injected faults and the checks moto lacks (replica validation, a bucket asked for
in the wrong region) must fail exactly the way AWS fails, or the agent's SDK classifies them
wrongly (retryable vs not, throttling vs server error). Every error carries a request id header,
as AWS's do.
"""

from __future__ import annotations

import http
import json
import random
import string
from dataclasses import dataclass, field
from xml.sax.saxutils import escape


class NoAnswer(Exception):
    """Raised by the gateway instead of answering: the HTTP layer (http11.py) closes the
    connection without sending anything. `reset`: abort it (RST, the client sees a connection
    reset) instead of an orderly close (FIN, the client sees the connection closed before any
    answer). Used by `aws region-down` (a region that does not answer)."""

    def __init__(self, why: str, reset: bool = False):
        super().__init__(why)
        self.reset = reset


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def status_line(self) -> str:
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        return f"{self.status} {phrase}"


def _rid(n: int, alphabet: str) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def dynamodb_error(status: int, error_type: str, message: str) -> Reply:
    """DynamoDB's awsJson1_0 error: `__type` with the service namespace, `message`."""
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{error_type}", "message": message}
    ).encode()
    return Reply(
        status,
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-RequestId", _rid(52, string.ascii_uppercase + string.digits)),
            ("Content-Length", str(len(body))),
        ],
        body,
    )


def s3_error(status: int, code: str, message: str, method: str = "GET", **extra: str) -> Reply:
    """S3's XML error document; HEAD answers carry no body, only the status and headers."""
    rid = _rid(16, "0123456789ABCDEF")
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{rid}</RequestId><HostId>{_rid(56, string.ascii_letters + string.digits)}</HostId></Error>"
    ).encode()
    headers = [("Content-Type", "application/xml"), ("x-amz-request-id", rid), ("x-amz-id-2", _rid(56, string.ascii_letters + string.digits))]
    if method == "HEAD":
        body = b""
    headers.append(("Content-Length", str(len(body))))
    return Reply(status, headers, body)
