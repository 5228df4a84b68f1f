"""`lab awslogs`: ship stdin to the lab's CloudWatch Logs as ECS's awslogs log driver does.

Why it exists: on ECS the agent's stdout (its EMF documents) reaches CloudWatch Logs through
the awslogs driver, which CloudWatch Logs then extracts metrics from. Tests pipe the agent's
stdout through this forwarder into the lab (awsserver/logs_emf.py extracts the EMF metrics),
so what the lab's GetMetricData returns went the same way as in production.

    agent ... | lab awslogs --dir LABDIR --group /ecs/rpo-agent --stream NAME \
                            [--region R] [--tee FILE] [--flush-interval 1s]

What it does, as moby's daemon/logger/awslogs does:
- the endpoint and credentials come from LABDIR/lab.env (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY); the region is --region, else the lab's AWS_REGION;
- it creates the stream, and the group when missing (`awslogs-create-group`), before reading;
- one log event per line read, newline removed, stamped with the time it was read (ms); an
  empty line is no event; invalid UTF-8 becomes U+FFFD;
- a line longer than 262 118 bytes (256 KiB less the 26 bytes PutLogEvents counts per event)
  is split into several events of at most that many bytes, on character boundaries, all with
  the line's timestamp (the driver's `maximumBytesPerEvent` split; Docker's copier hands the
  driver lines up to that size, its BufSize, so no 16 KiB split happens in front of awslogs);
- a batch is sent when the next event would make it exceed 10 000 events or 1 MiB (message
  bytes + 26 per event), every --flush-interval (default 1 s; the driver's default is 5 s),
  and at EOF (or SIGTERM/SIGINT); its events are sorted by timestamp (stable);
- a PutLogEvents that fails is reported on stderr and its events are dropped, as the driver
  does; a ResourceNotFoundException (e.g. after `lab fault aws restart`) recreates the
  group/stream and retries once.
--tee FILE copies every line as read (before any split) to FILE, flushed per line.
Exit status: 0 at EOF after the last flush; 1 if any event could not be delivered; 2 on bad
arguments or no lab in LABDIR. A summary goes to stderr.
"""

from __future__ import annotations

import argparse
import queue
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

PER_EVENT_BYTES = 26
MAX_BYTES_PER_PUT = 1_048_576
MAX_EVENTS_PER_PUT = 10_000
MAX_BYTES_PER_EVENT = 262_144 - PER_EVENT_BYTES


def lab_env(lab_dir: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (lab_dir / "lab.env").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            words = shlex.split(value)
            env[key] = words[0] if words else ""
    return env


def split_line(line: str, limit: int = MAX_BYTES_PER_EVENT) -> list[str]:
    """A line -> messages of at most `limit` UTF-8 bytes each, cut between characters."""
    if len(line.encode("utf-8")) <= limit:
        return [line] if line else []
    pieces, start, size = [], 0, 0
    for i, ch in enumerate(line):
        n = len(ch.encode("utf-8"))
        if size + n > limit:
            pieces.append(line[start:i])
            start, size = i, 0
        size += n
    if start < len(line):
        pieces.append(line[start:])
    return pieces


class Batch:
    def __init__(self) -> None:
        self.events: list[tuple[int, int, str]] = []  # (timestamp ms, insert order, message)
        self.bytes = 0

    def fits(self, message: str) -> bool:
        size = len(message.encode("utf-8")) + PER_EVENT_BYTES
        return len(self.events) < MAX_EVENTS_PER_PUT and self.bytes + size <= MAX_BYTES_PER_PUT

    def add(self, timestamp: int, message: str) -> None:
        self.events.append((timestamp, len(self.events), message))
        self.bytes += len(message.encode("utf-8")) + PER_EVENT_BYTES

    def take(self) -> list[dict[str, Any]]:
        events = sorted(self.events)  # timestamp, then the order read (stable)
        self.events, self.bytes = [], 0
        return [{"timestamp": t, "message": m} for t, _, m in events]


class Shipper:
    def __init__(self, client: Any, group: str, stream: str):
        self.client, self.group, self.stream = client, group, stream
        self.sent = self.calls = self.lost = 0

    def _code(self, e: Exception) -> str:
        return getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)

    def create(self) -> None:
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
            return
        except Exception as e:
            code = self._code(e)
            if code == "ResourceAlreadyExistsException":
                return
            if code != "ResourceNotFoundException":
                raise
        try:
            self.client.create_log_group(logGroupName=self.group)
        except Exception as e:
            if self._code(e) != "ResourceAlreadyExistsException":
                raise
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except Exception as e:
            if self._code(e) != "ResourceAlreadyExistsException":
                raise

    def publish(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for attempt in (1, 2):
            try:
                self.calls += 1
                answer = self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
            except Exception as e:
                if attempt == 1 and self._code(e) == "ResourceNotFoundException":
                    try:
                        self.create()
                        continue
                    except Exception as again:
                        e = again
                print(f"awslogs: PutLogEvents of {len(events)} event(s) failed: {e}", file=sys.stderr, flush=True)
                self.lost += len(events)
                return
            rejected = answer.get("rejectedLogEventsInfo")
            if rejected:
                print(f"awslogs: events rejected by CloudWatch Logs: {rejected}", file=sys.stderr, flush=True)
            self.sent += len(events)
            return


def read_lines(stream: BinaryIO, out: "queue.Queue[tuple[int, str] | None]", tee: BinaryIO | None) -> None:
    try:
        for raw in iter(stream.readline, b""):
            stamp = int(time.time() * 1000)
            if tee is not None:
                tee.write(raw if raw.endswith(b"\n") else raw + b"\n")
                tee.flush()
            out.put((stamp, raw.rstrip(b"\n").decode("utf-8", errors="replace")))
    finally:
        out.put(None)


class _Stop(Exception):
    pass


def parse_duration(text: str) -> float:
    t = text.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * scale
    return float(t)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lab awslogs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True, help="lab directory (its lab.env names the endpoint)")
    p.add_argument("--group", required=True, help="log group, e.g. /ecs/rpo-agent")
    p.add_argument("--stream", required=True, help="log stream")
    p.add_argument("--region", help="default: the lab's AWS_REGION")
    p.add_argument("--tee", type=Path, help="also copy every line read to this file")
    p.add_argument("--flush-interval", default="1s", help="send at least this often (default 1s)")
    args = p.parse_args(argv)
    try:
        env = lab_env(args.dir.resolve())
        endpoint = env["AWS_ENDPOINT_URL"]
    except (OSError, KeyError) as e:
        print(f"awslogs: no lab in {args.dir} (lab.env with AWS_ENDPOINT_URL): {e}", file=sys.stderr)
        return 2
    try:
        interval = parse_duration(args.flush_interval)
        if interval <= 0:
            raise ValueError(args.flush_interval)
    except ValueError:
        print(f"awslogs: --flush-interval {args.flush_interval!r}: expected e.g. 1s or 200ms", file=sys.stderr)
        return 2
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "logs",
        region_name=args.region or env.get("AWS_REGION") or "us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "lab"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "lab"),
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )
    shipper = Shipper(client, args.group, args.stream)
    try:
        shipper.create()
    except Exception as e:
        print(f"awslogs: cannot create {args.group} {args.stream}: {e}", file=sys.stderr)
        return 1

    tee = open(args.tee, "ab") if args.tee else None
    lines: queue.Queue[tuple[int, str] | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(sys.stdin.buffer, lines, tee), name="stdin", daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    batch = Batch()
    next_flush = time.monotonic() + interval
    try:
        while True:
            try:
                item = lines.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                stamp, line = item
                for message in split_line(line):
                    if not batch.fits(message):
                        shipper.publish(batch.take())
                    batch.add(stamp, message)
            if time.monotonic() >= next_flush:
                shipper.publish(batch.take())
                next_flush = time.monotonic() + interval
    except _Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # At EOF (or a stop signal): what was read and not sent yet goes now.
    while True:
        try:
            item = lines.get_nowait()
        except queue.Empty:
            break
        if item:
            for message in split_line(item[1]):
                if not batch.fits(message):
                    shipper.publish(batch.take())
                batch.add(item[0], message)
    shipper.publish(batch.take())
    if tee is not None:
        tee.close()
    print(
        f"awslogs: {shipper.sent} event(s) in {shipper.calls} PutLogEvents call(s) to {args.group} {args.stream}"
        + (f"; {shipper.lost} event(s) lost" if shipper.lost else ""),
        file=sys.stderr,
    )
    return 1 if shipper.lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
