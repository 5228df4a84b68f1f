"""Entry point of the lab's AWS stand-in: one process, every region, one port.

Why it exists: wires moto's own WSGI app (in-process, unmodified) behind our gateway, replays
the control-plane journal so a restart finds its tables and buckets again, then serves the AWS
API on --port (HTTP/1.1 keep-alive: http11.py) and the control API on --control-port. The
control API starts last, so "control answers /healthz" means "everything is ready" (that is
what `lab up` waits for).

    python -m awsserver.server --dir DIR --port P --control-port C
Files in DIR: ground-truth.jsonl (LAB_GROUND_TRUTH), aws-journal.jsonl, aws-faults.json; logs go
to stderr (the lab points it at DIR/aws.log).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
import werkzeug.serving
from werkzeug.serving import make_server

from .cloudwatch import CloudWatch
from .control import make_control_server, serve_in_thread
from .dynamodb_global import DynamoDBGlobalTables
from .faults import FaultState
from .gateway import Gateway
from .ground_truth import GroundTruth
from .http11 import KeepAliveRequestHandler
from .journal import Journal
from .logs_emf import CloudWatchLogs
from .replication import Replicator
from .request_log import RequestLog
from .s3_replication import S3Replication
from . import speedups

log = logging.getLogger("server")

# moto creates one Flask app per service on its first request; build ours up front so the
# first real request is not the slow one.
_WARM_BACKENDS = ("dynamodb", "dynamodbstreams", "s3")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="awsserver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, type=Path, help="lab directory (state files)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="AWS API port (all regions)")
    p.add_argument("--control-port", type=int, required=True, help="control API port")
    p.add_argument("--ground-truth", type=Path, help="default: DIR/ground-truth.jsonl")
    p.add_argument("--quiet", action="store_true", help="do not log every request")
    p.add_argument("--request-log", type=Path, help="append one JSON line per AWS request (request_log.py)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # werkzeug colours its request lines with ANSI codes even into a file; aws.log is for grep.
    werkzeug.serving._log_add_style = False  # type: ignore[attr-defined]
    started = time.monotonic()
    args.dir.mkdir(parents=True, exist_ok=True)
    speedups.apply()  # moto's per-request work that gives the same answer every time, cached

    faults = FaultState(args.dir / "aws-faults.json")
    ground_truth = GroundTruth(args.ground_truth or args.dir / "ground-truth.jsonl")
    journal = Journal(args.dir / "aws-journal.jsonl")
    moto_lock = threading.RLock()
    replicator = Replicator(faults, moto_lock)
    cloudwatch = CloudWatch()  # ReplicationLatency datapoints in moto + GetMetricData over CBOR
    dynamodb = DynamoDBGlobalTables(replicator, ground_truth, metrics=cloudwatch)
    s3 = S3Replication(replicator, ground_truth, metrics=cloudwatch)
    logs = CloudWatchLogs(cloudwatch)  # EMF documents in PutLogEvents -> moto's CloudWatch
    # Keyed by SigV4 signing name; a service missing here reaches moto untouched.
    extensions = {"dynamodb": dynamodb, "s3": s3, "monitoring": cloudwatch, "logs": logs}

    moto_app = DomainDispatcherApplication(create_backend_app)
    for backend in _WARM_BACKENDS:
        moto_app.app_instances[backend] = create_backend_app(backend)
    request_log = RequestLog(args.request_log) if args.request_log else None
    gateway = Gateway(moto_app, faults, extensions, journal, moto_lock, request_log)

    replayed = journal.replay(gateway.replay)
    if replayed:
        log.info("replayed %d control-plane request(s) from the journal", replayed)

    def status() -> dict:
        return {
            "pid": os.getpid(),
            "aws_port": args.port,
            "faults": faults.snapshot(),
            "regions_down": gateway.outage_status(),
            "replication": replicator.status(),
            "dynamodb_global_tables": dynamodb.status(),
            "s3_replication": s3.status(),
            "cloudwatch_published": cloudwatch.status(),
            "logs_emf": logs.status(),
        }

    # HTTP/1.1 keep-alive (werkzeug's own handler closes every connection): http11.py.
    aws = make_server(args.host, args.port, gateway, threaded=True, request_handler=KeepAliveRequestHandler)
    control = make_control_server(args.host, args.control_port, faults, status)
    serve_in_thread(control)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "AWS API on http://%s:%d, control on http://%s:%d (ready in %.2fs)",
        args.host, args.port, args.host, args.control_port, time.monotonic() - started,
    )
    try:
        aws.serve_forever()
    finally:
        control.server_close()
        aws.server_close()


if __name__ == "__main__":
    main()
