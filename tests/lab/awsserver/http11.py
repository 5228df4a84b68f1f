"""HTTP/1.1 keep-alive for the AWS API port.

Why it exists: werkzeug's development server (3.x) answers every request with
`Connection: close`, whatever the protocol version, because its `run_wsgi` cannot tell where a
request body ends (it drains the socket after each answer). So every AWS SDK request to the
lab was a new TCP connection, and a client's profile (the agent's) showed TCP connect/teardown
instead of its own work. AWS endpoints keep connections alive; so does the lab now.

`KeepAliveRequestHandler` replaces werkzeug's `run_wsgi` (moto's header handling in
`make_environ` is kept) with one that frames both directions itself:
- request bodies: read exactly `Content-Length` bytes, or de-chunk `Transfer-Encoding: chunked`
  up to and including the trailer section (werkzeug's de-chunker fails on trailers); whatever
  the application left unread is drained before the answer, so the next request (pipelined or
  not) starts at its request line;
- answers: the application's body is buffered (the gateway buffers anyway) and sent with a
  `Content-Length` computed from it; HEAD, 1xx, 204 and 304 answers send no body (HEAD and 304
  keep the application's `Content-Length`, the length a GET would have); headers and body go
  out in one write, with TCP_NODELAY (no Nagle/delayed-ACK stall between the two);
- the connection stays open unless the client asked otherwise (`Connection: close`, HTTP/1.0
  without `keep-alive`), the request could not be framed, or the application failed.
One thread per connection (the server is threaded); a connection idle for `IDLE_TIMEOUT`
seconds is closed, which is longer than the SDKs' own pool idle timeouts (hyper: 90 s), so a
client never sends on a connection the lab is closing. A request held by a latency fault only
holds its own connection's thread.

When the application raises `replies.NoAnswer` (a region that is down: gateway.py), nothing is
sent: the connection is closed (FIN), or with `reset` aborted (SO_LINGER 0, so the kernel sends
a RST and the client sees "connection reset", the closest to "refused" one port for every
region can do).
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler

from .replies import NoAnswer

log = logging.getLogger("http")
_werkzeug_log = logging.getLogger("werkzeug")

IDLE_TIMEOUT = 300.0  # seconds without a byte from the client (idle or mid-request)
MAX_DRAIN = 64 * 1024 * 1024  # unread request body beyond this: close instead of reading it
_MAX_LINE = 65536
_SINGLE_WRITE = 256 * 1024  # header + body joined into one send below this size
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class BadFraming(Exception):
    """The request body cannot be delimited; the connection must close."""


class RequestBody:
    """`wsgi.input` for one request: never reads past the end of this request's body."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool):
        self._rfile = rfile
        self._chunked = chunked
        self._left = length or 0  # Content-Length: bytes left; chunked: left in this chunk
        self._done = not chunked and not self._left
        self.truncated = False  # the client closed before the body's end
        self.broken = False  # bad chunked framing: the rest of the stream is unknown

    # ---- io-like interface (what WSGI applications use) ------------------------------------
    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while True:
                part = self.read(1 << 20)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        out = []
        while size > 0 and not self._done:
            if self._chunked and self._left == 0:
                self._next_chunk()
                continue
            data = self._rfile.read(min(size, self._left))
            if not data:
                self.truncated = True
                self._done = True
                break
            out.append(data)
            size -= len(data)
            self._left -= len(data)
            if self._left == 0:
                if self._chunked:
                    self._expect_crlf()
                else:
                    self._done = True
        return b"".join(out)

    def readline(self, size: int | None = -1) -> bytes:
        line = []
        while size is None or size < 0 or len(line) < size:
            c = self.read(1)
            if not c:
                break
            line.append(c)
            if c == b"\n":
                break
        return b"".join(line)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:  # the connection's stream is not the application's to close
        pass

    # ---- framing ---------------------------------------------------------------------------
    def _broken(self, why: str) -> BadFraming:
        self.broken = self._done = True
        return BadFraming(why)

    def _line(self) -> bytes:
        line = self._rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise self._broken("chunk header or trailer line too long")
        if not line:
            self.truncated = True
            raise self._broken("connection closed inside a chunked body")
        return line

    def _expect_crlf(self) -> None:
        if self._line() not in (b"\r\n", b"\n"):
            raise self._broken("missing CRLF after a chunk")

    def _next_chunk(self) -> None:
        size = self._line().split(b";", 1)[0].strip()  # chunk extensions are ignored
        try:
            self._left = int(size, 16)
        except ValueError:
            raise self._broken(f"bad chunk size {size[:20]!r}") from None
        if self._left < 0:
            raise self._broken("negative chunk size")
        if self._left == 0:
            while self._line() not in (b"\r\n", b"\n"):  # trailer fields, then the empty line
                pass
            self._done = True

    def drain(self, limit: int = MAX_DRAIN) -> bool:
        """Skip what the application left unread. False: the connection cannot be reused."""
        if self.broken or self.truncated:
            return False
        total = 0
        try:
            while not self._done:
                part = self.read(min(1 << 20, limit - total + 1))
                total += len(part)
                if total > limit:
                    return False
        except BadFraming:
            return False
        return not (self.truncated or self.broken)


class KeepAliveRequestHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # StreamRequestHandler: socket timeout for every read and write

    def setup(self) -> None:
        super().setup()
        self._abort = False  # finish() resets the connection instead of closing it
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _body_reader(self) -> RequestBody:
        te = [t.strip().lower() for t in self.headers.get("Transfer-Encoding", "").split(",") if t.strip()]
        if te:
            if te[-1] != "chunked":
                raise BadFraming(f"unsupported Transfer-Encoding {','.join(te)}")
            return RequestBody(self.rfile, None, chunked=True)  # chunked wins over Content-Length
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return RequestBody(self.rfile, 0, chunked=False)
        values = {v.strip() for item in lengths for v in item.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise BadFraming(f"bad Content-Length {lengths!r}")
        return RequestBody(self.rfile, int(values.pop()), chunked=False)

    def run_wsgi(self) -> None:  # called for every method (werkzeug maps do_* here)
        try:
            body_in = self._body_reader()
        except BadFraming as e:
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], f"{e}\n".encode())
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = body_in
        environ["wsgi.input_terminated"] = True  # reading to EOF is safe: it ends with the body
        if body_in._chunked:
            environ.pop("CONTENT_LENGTH", None)  # chunked wins (RFC 9112 6.3)

        try:
            status, headers, body = self._call_app(environ)
        except NoAnswer as e:
            self.close_connection = True
            self._abort = e.reset
            if not e.reset:
                body_in.drain()  # an orderly close: no unread data (that would make it a reset)
            return
        # Whatever the application left unread, even when closing (unread data at close makes
        # the kernel answer with a reset, which can destroy the answer in flight).
        if not body_in.drain():
            self.close_connection = True
        self._send(status, headers, body)

    def _call_app(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}
        parts: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            # Nothing is sent before the application returns, so an error answer (exc_info)
            # simply replaces what was started (PEP 3333).
            if exc_info:
                parts.clear()
            captured["status"], captured["headers"] = status, list(headers)
            return parts.append

        try:
            app_iter = self.server.app(environ, start_response)
            try:
                for part in app_iter:
                    parts.append(part)
            finally:
                if hasattr(app_iter, "close"):
                    app_iter.close()
            code = int(str(captured["status"]).split(None, 1)[0])
            return code, captured["headers"], b"".join(parts)
        except (ConnectionError, TimeoutError, NoAnswer):
            raise  # the client is gone or silent (werkzeug's handle() drops the connection), or no answer
        except Exception as e:
            self.close_connection = True
            if isinstance(e, BadFraming):
                return 400, [("Content-Type", "text/plain")], f"{e}\n".encode()
            log.exception("error on request %s %s", self.command, self.path)
            return 500, [("Content-Type", "text/plain")], b"Internal Server Error: see aws.log\n"

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._abort:
                # Close it here, with linger 0: the server's own shutdown(SHUT_WR) would send a
                # FIN first (it then fails harmlessly on the closed socket).
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

    def _send(self, code: int, headers: list[tuple[str, str]], body: bytes) -> None:
        no_body = self.command == "HEAD" or 100 <= code < 200 or code in (204, 304)
        keep_length = self.command == "HEAD" or code == 304  # the length a GET would answer
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
        names = set()
        lines = [f"{self.protocol_version} {code} {reason}\r\n"]
        for k, v in headers:
            lk = k.lower()
            names.add(lk)
            if lk in _HOP_BY_HOP and not (lk == "content-length" and keep_length):
                continue
            lines.append(f"{k}: {v}\r\n")
        if "server" not in names:
            lines.append(f"Server: {self.server_version}\r\n")
        if "date" not in names:
            lines.append(f"Date: {formatdate(time.time(), usegmt=True)}\r\n")
        if no_body:
            body = b""
        else:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1", "replace")
        if len(body) < _SINGLE_WRITE:
            self.wfile.write(head + body)
        else:
            self.wfile.write(head)
            self.wfile.write(body)
        if _werkzeug_log.isEnabledFor(logging.INFO):  # one line per request unless --quiet
            self.log_request(code, len(body))

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):  # an idle keep-alive connection: normal
            log.debug("closing idle connection from %s", self.address_string())
            return
        super().log_error(format, *args)


def _selfcheck() -> None:  # python -m awsserver.http11: framing of a chunked body with trailers
    import io

    raw = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\nGET / HTTP/1.1\r\n"
    r = RequestBody(io.BufferedReader(io.BytesIO(raw)), None, chunked=True)
    assert r.read() == b"hello world" and r.drain()
    assert r._rfile.read() == b"GET / HTTP/1.1\r\n"
    print("ok", file=sys.stderr)


if __name__ == "__main__":
    _selfcheck()
