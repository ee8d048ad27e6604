"""`python -m tests.bench [NAME ...]`: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from tests.bench import (
    bus,
    gateway_read,
    ingest,
    router_route,
    workflow_claims,
    workflow_steps,
)
from tests.bench.common import Result

BENCHMARKS: dict[str, Callable[[], Result]] = {
    "gateway_read": gateway_read.run,
    "router_route": router_route.run,
    "bus": bus.run,
    "ingest": ingest.run,
    "workflow_steps": workflow_steps.run,
    "workflow_claims": workflow_claims.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.exit(2, f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}\n")
    for name in args.names or list(BENCHMARKS):
        result = BENCHMARKS[name]()
        path = result.write()
        print(result.summary(), f"({path.relative_to(path.parents[1])})", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
