"""gateway_read: GET one listing through Envoy (REST + auth) vs GetListing directly over gRPC.

Same load generator style and concurrency, same run, two catalog processes behind
Envoy (and the direct client spread over the same two). ratio = gateway req/s / direct
req/s. Also p50/p99 and the CPU per request of Envoy, the catalog and tenancy.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from deploy.services import StackOptions
from deploy.stack import start_stack
from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_platform.infra import ManagedProcess
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER
from tests.bench.common import REPO, Result, cpu_seconds, ms_per_request, scratch_database

CONCURRENCY = 32
DURATION = 10.0


def _load(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.loadgen",
            *args,
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
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _cpu(processes: list[ManagedProcess]) -> float:
    return sum(cpu_seconds(p.pid) for p in processes if p.pid is not None)


UNTHROTTLED = {f"RATE_LIMIT_{tier}": "1000000" for tier in ("FREE", "GROWTH", "ENTERPRISE")}
"""The per-tenant rate limit is checked on every request (its cost is measured) but set far
above what one tenant sends here."""


def run() -> Result:
    admin_key = "hyg_admin_" + secrets.token_urlsafe(32)
    with scratch_database("gateway_read") as db, tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(
            db,
            Path(tmp),
            StackOptions(
                platform_admin_key=admin_key,
                auth_cache_ttl_seconds=30,
                processes={"catalog": 2},
                rate_limits=UNTHROTTLED,
            ),
        )
        try:
            admin = {"Authorization": f"Bearer {admin_key}"}
            with httpx.Client(base_url=stack.gateway_url, timeout=10) as http:
                tenant_id = http.post(
                    "/v1/tenants", json={"displayName": "bench"}, headers=admin
                ).json()["tenantId"]
                key = http.post(
                    f"/v1/tenants/{tenant_id}/apiKeys",
                    json={"scopes": ["catalog:read", "catalog:write"]},
                    headers=admin,
                ).json()["secret"]
                listing = http.post(
                    "/v1/listings",
                    json={
                        "title": "Bench shirt",
                        "brand": "Acme",
                        "variants": [
                            {"sku": "B-1", "price": {"currencyCode": "USD", "units": "10"}}
                        ],
                    },
                    headers={"Authorization": f"Bearer {key}"},
                ).json()
            listing_id = listing["listingId"]
            envoy, catalog, tenancy = (
                stack.processes["envoy"],
                stack.processes["catalog"],
                stack.processes["tenancy"],
            )

            request = catalog_pb2.GetListingRequest(listing_id=listing_id).SerializeToString().hex()
            before = (_cpu(catalog), _cpu(envoy), _cpu(tenancy))
            direct = _load(
                [
                    "--mode",
                    "grpc",
                    "--targets",
                    *stack.grpc_targets["catalog"],
                    "--path",
                    "/hygoshop.catalog.v1.CatalogService/GetListing",
                    "--request-hex",
                    request,
                    "--metadata",
                    f"{TENANT_HEADER}={tenant_id}",
                    f"{SCOPES_HEADER}=catalog:read",
                ]
            )
            middle = (_cpu(catalog), _cpu(envoy), _cpu(tenancy))
            gateway = _load(
                [
                    "--mode",
                    "http",
                    "--targets",
                    stack.gateway_url.removeprefix("http://"),
                    "--path",
                    f"/v1/listings/{listing_id}",
                    "--key",
                    key,
                ]
            )
            after = (_cpu(catalog), _cpu(envoy), _cpu(tenancy))
        finally:
            stack.stop()
    for name, figures in (("direct", direct), ("gateway", gateway)):
        if figures["errors"] or not figures["requests"]:
            raise RuntimeError(
                f"{name} run had {figures['errors']} errors of {figures['requests']}"
            )

    return Result(
        name="gateway_read",
        value=gateway["rps"],
        unit="req/s",
        baseline="direct gRPC GetListing",
        baseline_value=direct["rps"],
        extra={
            "concurrency": CONCURRENCY,
            "duration_s": DURATION,
            "catalog_processes": 2,
            "gateway": {
                "p50_ms": round(gateway["p50_ms"], 3),
                "p99_ms": round(gateway["p99_ms"], 3),
                "cpu_ms_per_request": {
                    "envoy": ms_per_request(after[1] - middle[1], gateway),
                    "catalog": ms_per_request(after[0] - middle[0], gateway),
                    "tenancy_authz": ms_per_request(after[2] - middle[2], gateway),
                    "load_generator": round(gateway["client_cpu_ms_per_request"], 4),
                },
            },
            "direct": {
                "p50_ms": round(direct["p50_ms"], 3),
                "p99_ms": round(direct["p99_ms"], 3),
                "cpu_ms_per_request": {
                    "catalog": ms_per_request(middle[0] - before[0], direct),
                    "load_generator": round(direct["client_cpu_ms_per_request"], 4),
                },
            },
            "target_ratio": 0.8,
        },
    )
