"""`python -m hygoshop_platform.healthcheck TARGET...`: exit 0 when every target is healthy.

A target is `HOST:PORT` (grpc.health.v1, the server's overall status must be SERVING)
or an `http://` URL (must answer 200). The Helm chart's `helm test` pod and the compose
file's health checks run it from the service image, so no extra tool is needed.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, timeout: float) -> str | None:
    """None when `target` is healthy, else what is wrong with it."""
    if target.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(target, timeout=timeout) as reply:  # noqa: S310 - http(s) only
                status: int = reply.status
        except (urllib.error.URLError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status == 200 else f"HTTP {status}"
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hygoshop_platform.healthcheck", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="HOST:PORT or http:// URL")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per check")
    parser.add_argument(
        "--retry-for", type=float, default=0.0, help="keep retrying failed targets this long"
    )
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.retry_for
    pending = list(args.targets)
    while True:
        failures = {t: problem for t in pending if (problem := check(t, args.timeout))}
        for target in pending:
            if target not in failures:
                print(f"ok    {target}", flush=True)
        pending = list(failures)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    for target, problem in failures.items():
        print(f"FAIL  {target}: {problem}", file=sys.stderr, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
