"""router_route: Route decisions/s and p99 over gRPC (no client cache) and through the
client's cache, against a gRPC health check on the same router process as the baseline.

Same load generator, concurrency and duration for Route and the health check, on the
real stack (the router process with its database, tenancy for the tier). ratio = Route
calls/s / health-check calls/s (target >= 0.7).

The router reuses a decision while recomputing it would give the same one (its decision
memo; any outcome of the category ends it). With no outcomes flowing during the run, the
headline figure is that path. `route_grpc_recomputed` is a second router process on the
same database with the memo off (ROUTER_DECISION_MEMO=0): the full ranking on every call,
its own health-check baseline measured the same way. The cached figure is
RouterClient.route() in one process: what an adapter pays once its decision is cached.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from deploy.services import StackOptions
from deploy.stack import start_stack
from hygoshop.router.v1 import router_pb2
from hygoshop_platform.infra import ManagedProcess, free_port
from hygoshop_platform.migrations import app_url
from hygoshop_platform.routing import RouterClient
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER, Caller
from hygoshop_router.config import SCHEMA as ROUTER_SCHEMA
from tests.bench.common import (
    REPO,
    Result,
    cpu_seconds,
    ms_per_request,
    percentile,
    scratch_database,
)

CONCURRENCY = 32
DURATION = 10.0
CATEGORY, CAPABILITY = "llm", "generate_text"


def _load(target: str, path: str, request: bytes, metadata: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.loadgen",
            "--mode",
            "grpc",
            "--targets",
            target,
            "--path",
            path,
            "--request-hex",
            request.hex(),
            "--metadata",
            *metadata,
            "--concurrency",
            str(CONCURRENCY),
            "--duration",
            str(DURATION),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=DURATION + 60,
    )
    figures = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if figures["errors"] or not figures["requests"]:
        raise RuntimeError(f"{path}: {figures['errors']} errors of {figures['requests']}")
    return figures


async def _cached_route(target: str, tenant_id: str) -> dict[str, float]:
    """RouterClient.route() with its cache on, CONCURRENCY workers, in this process."""
    client = RouterClient(target, cache_seconds=1.0)
    caller = Caller(tenant_id=uuid.UUID(tenant_id), scopes=frozenset({"bench"}))
    latencies: list[float] = []
    try:
        await client.route(CATEGORY, CAPABILITY, caller=caller)
        stop_at = time.perf_counter() + DURATION

        async def worker() -> None:
            while (started := time.perf_counter()) < stop_at:
                decision = await client.route(CATEGORY, CAPABILITY, caller=caller)
                assert decision.candidates
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        await client.close()
    latencies.sort()
    return {
        "rps": len(latencies) / DURATION,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def run() -> Result:
    admin_key = "hyg_admin_" + secrets.token_urlsafe(32)
    with scratch_database("router_route") as db, tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(db, Path(tmp), StackOptions(platform_admin_key=admin_key))
        try:
            with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
                tenant_id = http.post(
                    "/v1/tenants",
                    json={"displayName": "bench", "tier": "TIER_GROWTH"},
                    headers={"Authorization": f"Bearer {admin_key}"},
                ).json()["tenantId"]
            target = stack.grpc_targets["router"][0]
            router = stack.processes["router"][0]
            assert router.pid is not None
            metadata = [f"{TENANT_HEADER}={tenant_id}", f"{SCOPES_HEADER}=bench"]
            route_request = router_pb2.RouteRequest(category=CATEGORY, capability=CAPABILITY)

            cpu_0 = cpu_seconds(router.pid)
            health = _load(target, "/grpc.health.v1.Health/Check", b"", metadata)
            cpu_1 = cpu_seconds(router.pid)
            route = _load(
                target,
                "/hygoshop.router.v1.RouterService/Route",
                route_request.SerializeToString(),
                metadata,
            )
            cpu_2 = cpu_seconds(router.pid)
            cached = asyncio.run(_cached_route(target, tenant_id))

            port = free_port()
            recomputing = ManagedProcess(
                "router-recomputing",
                [sys.executable, "-m", "hygoshop_router"],
                env={
                    "GRPC_HOST": "127.0.0.1",
                    "GRPC_PORT": str(port),
                    "DATABASE_URL": app_url(db, ROUTER_SCHEMA),
                    "TENANCY_GRPC_TARGET": stack.grpc_targets["tenancy"][0],
                    "ROUTER_DECISION_MEMO": "0",
                },
                log_path=Path(tmp) / "logs" / "router-recomputing.log",
            ).start()
            try:
                other = f"127.0.0.1:{port}"
                recomputing.wait_for_grpc_health(other, timeout=60)
                assert recomputing.pid is not None
                cpu_3 = cpu_seconds(recomputing.pid)
                health_2 = _load(other, "/grpc.health.v1.Health/Check", b"", metadata)
                cpu_4 = cpu_seconds(recomputing.pid)
                recomputed = _load(
                    other,
                    "/hygoshop.router.v1.RouterService/Route",
                    route_request.SerializeToString(),
                    metadata,
                )
                cpu_5 = cpu_seconds(recomputing.pid)
            finally:
                recomputing.stop()
        finally:
            stack.stop()

    return Result(
        name="router_route",
        value=route["rps"],
        unit="calls/s",
        baseline="gRPC health check on the same router process",
        baseline_value=health["rps"],
        extra={
            "concurrency": CONCURRENCY,
            "duration_s": DURATION,
            "route_grpc": {
                "p50_ms": round(route["p50_ms"], 3),
                "p99_ms": round(route["p99_ms"], 3),
                "router_cpu_ms_per_call": ms_per_request(cpu_2 - cpu_1, route),
                "load_generator_cpu_ms_per_call": round(route["client_cpu_ms_per_request"], 4),
            },
            "health_check_grpc": {
                "p50_ms": round(health["p50_ms"], 3),
                "p99_ms": round(health["p99_ms"], 3),
                "router_cpu_ms_per_call": ms_per_request(cpu_1 - cpu_0, health),
            },
            "route_grpc_recomputed": {
                "calls_per_s": round(recomputed["rps"], 1),
                "health_check_calls_per_s": round(health_2["rps"], 1),
                "ratio": round(recomputed["rps"] / health_2["rps"], 3),
                "p50_ms": round(recomputed["p50_ms"], 3),
                "p99_ms": round(recomputed["p99_ms"], 3),
                "router_cpu_ms_per_call": ms_per_request(cpu_5 - cpu_4, recomputed),
                "health_check_router_cpu_ms_per_call": ms_per_request(cpu_4 - cpu_3, health_2),
            },
            "route_client_cache": {
                "calls_per_s": round(cached["rps"], 1),
                "p50_ms": round(cached["p50_ms"], 4),
                "p99_ms": round(cached["p99_ms"], 4),
            },
            "target_ratio": 0.7,
        },
    )
