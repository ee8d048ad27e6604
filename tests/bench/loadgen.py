"""A small closed-loop load generator, run as its own process: N workers, each sending the
next request as soon as the previous one answered, for a fixed time.

Two transports with the same shape so their figures compare: raw HTTP/1.1 keep-alive
(pre-encoded request bytes, one connection per worker) and gRPC (pre-serialized request,
one HTTP/2 channel per target, workers spread over targets). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.bench.common import percentile

_TICKS = os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _http_worker_factory(
    host: str, port: int, raw_request: bytes
) -> Callable[[], Awaitable[bool]]:
    reader, writer = await asyncio.open_connection(host, port)

    async def call() -> bool:
        writer.write(raw_request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        return status == 200

    return call


async def run(args: argparse.Namespace) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    factories: list[Callable[[], Awaitable[Callable[[], Awaitable[bool]]]]] = []
    if args.mode == "http":
        host, _, port = args.targets[0].rpartition(":")
        raw = (
            f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {args.key}\r\n\r\n"
        ).encode()
        factories = [lambda: _http_worker_factory(host, int(port), raw)] * args.concurrency
    else:
        import grpc

        metadata = tuple(tuple(m.split("=", 1)) for m in args.metadata)
        request = bytes.fromhex(args.request_hex)
        channels = [grpc.aio.insecure_channel(t) for t in args.targets]
        methods = [ch.unary_unary(args.path) for ch in channels]

        def grpc_factory(index: int) -> Callable[[], Awaitable[Callable[[], Awaitable[bool]]]]:
            method = methods[index % len(methods)]

            async def make() -> Callable[[], Awaitable[bool]]:
                async def call() -> bool:
                    await method(request, metadata=metadata)
                    return True

                return call

            return make

        factories = [grpc_factory(i) for i in range(args.concurrency)]

    calls = [await make() for make in factories]
    warm_until = time.perf_counter() + args.warmup
    stop_at = warm_until + args.duration
    cpu_start = 0.0
    started = asyncio.Event()

    async def worker(call: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                ok = await call()
            except Exception:
                ok = False
            t1 = time.perf_counter()
            if t0 >= warm_until:
                latencies.append(t1 - t0)
                errors += not ok

    async def mark_start() -> None:
        nonlocal cpu_start
        await asyncio.sleep(max(0.0, warm_until - time.perf_counter()))
        cpu_start = _own_cpu()
        started.set()

    await asyncio.gather(mark_start(), *(worker(c) for c in calls))
    client_cpu = _own_cpu() - cpu_start
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "errors": errors,
        "rps": count / args.duration,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "client_cpu_ms_per_request": client_cpu / max(count, 1) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["http", "grpc"], required=True)
    parser.add_argument("--targets", nargs="+", required=True, help="host:port ...")
    parser.add_argument("--path", required=True, help="HTTP path or gRPC method")
    parser.add_argument("--key", default="")
    parser.add_argument("--metadata", nargs="*", default=[])
    parser.add_argument("--request-hex", default="")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
