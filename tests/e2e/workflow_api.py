"""Calls of the workflows REST API through Envoy for the e2e tests: tenants with the keys a
run's starter, its operator and a reader hold; starting, reading and polling runs; claiming
and completing operator tasks; reading error replies; paging through run lists."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

APPROVAL = "catalog.listing_change_approval"
WAIT = 30.0
"""Upper bound of every poll; each normally ends in well under a second."""
CATALOG_RW = ["catalog:read", "catalog:write"]
WORKFLOWS_RW = ["workflows:read", "workflows:write"]
CONFLICT = 409
"""FAILED_PRECONDITION over REST (a task someone else holds, a finished run), as issue 4 asks."""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    admin_key: str
    """the tenant's `admin` key: mints more keys"""
    key: str
    """catalog and workflows, read and write: starts runs, creates listings"""
    operator: str
    """workflows read and write: the operator who decides tasks"""
    reader: str
    """workflows:read only"""


def create_key(http: httpx.Client, admin_key: str, tenant_id: str, scopes: list[str]) -> str:
    reply = http.post(
        f"/v1/tenants/{tenant_id}/apiKeys", json={"scopes": scopes}, headers=bearer(admin_key)
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["secret"])


def new_tenant(http: httpx.Client, platform_admin_key: str) -> Tenant:
    reply = http.post(
        "/v1/tenants",
        json={"displayName": "workflows e2e", "tier": "TIER_GROWTH"},
        headers=bearer(platform_admin_key),
    )
    assert reply.status_code == 200, reply.text
    tenant_id = reply.json()["tenantId"]
    admin = create_key(http, platform_admin_key, tenant_id, ["admin"])
    return Tenant(
        tenant_id,
        admin_key=admin,
        key=create_key(http, admin, tenant_id, CATALOG_RW + WORKFLOWS_RW),
        operator=create_key(http, admin, tenant_id, WORKFLOWS_RW),
        reader=create_key(http, admin, tenant_id, ["workflows:read"]),
    )


def key_id(http: httpx.Client, tenant: Tenant, secret: str) -> str:
    """The id a key's calls are recorded under (operators are API keys)."""
    keys = http.get(
        f"/v1/tenants/{tenant.tenant_id}/apiKeys",
        params={"pageSize": 100},
        headers=bearer(tenant.admin_key),
    ).json()["apiKeys"]
    return str(next(k["keyId"] for k in keys if secret.split("_")[1] == k["prefix"]))


def create_listing(
    http: httpx.Client, tenant: Tenant, title: str = "Linen shirt"
) -> dict[str, Any]:
    reply = http.post(
        "/v1/listings",
        json={
            "title": title,
            "brand": "Acme",
            "description": "Breathable linen.",
            "variants": [
                {
                    "sku": f"WF-{uuid.uuid4().hex[:10]}",
                    "price": {"currencyCode": "USD", "units": "49"},
                    "inventoryQuantity": 3,
                }
            ],
        },
        headers=bearer(tenant.key),
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def start(
    http: httpx.Client,
    key: str,
    business_key: str,
    input: dict[str, Any],
    workflow_type: str = APPROVAL,
) -> httpx.Response:
    return http.post(
        "/v1/workflowRuns",
        json={"workflow_type": workflow_type, "business_key": business_key, "input": input},
        headers=bearer(key),
    )


def start_approval(
    http: httpx.Client, tenant: Tenant, listing_id: str, title: str
) -> dict[str, Any]:
    reply = start(
        http,
        tenant.key,
        f"change-{uuid.uuid4().hex[:8]}",
        {"listing_id": listing_id, "changes": {"title": title}, "reason": "seasonal copy"},
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def get_run(http: httpx.Client, key: str, run_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/workflowRuns/{run_id}", headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def wait_run(http: httpx.Client, key: str, run_id: str, *states: str) -> dict[str, Any]:
    """Poll the run (bounded) until it is in one of `states` (WAITING, SUCCEEDED, ...)."""
    wanted = {f"WORKFLOW_RUN_STATE_{s}" for s in states}
    deadline = time.monotonic() + WAIT
    while True:
        run = get_run(http, key, run_id)
        if run["state"] in wanted:
            return run
        assert time.monotonic() < deadline, f"run never reached {states}: {run}"
        time.sleep(0.05)


def task_of(http: httpx.Client, key: str, run_id: str) -> dict[str, Any]:
    """The run's listing_change task, as the operators' list shows it."""
    reply = http.get(
        "/v1/operatorTasks", params={"kind": "listing_change", "pageSize": 100}, headers=bearer(key)
    )
    assert reply.status_code == 200, reply.text
    tasks = [t for t in reply.json().get("tasks", []) if t["runId"] == run_id]
    assert len(tasks) == 1, reply.json()
    return dict(tasks[0])


def waiting_task(
    http: httpx.Client, tenant: Tenant, title: str = "Linen shirt, washed"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A new listing, an approval run for it waiting on its operator, and that task."""
    listing = create_listing(http, tenant)
    run = start_approval(http, tenant, listing["listingId"], title)
    wait_run(http, tenant.key, run["runId"], "WAITING")
    return listing, run, task_of(http, tenant.operator, run["runId"])


def get_task(http: httpx.Client, key: str, task_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/operatorTasks/{task_id}", headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def claim(http: httpx.Client, key: str, task_id: str) -> httpx.Response:
    return http.post(f"/v1/operatorTasks/{task_id}:claim", json={}, headers=bearer(key))


def complete(http: httpx.Client, key: str, task_id: str, **body: Any) -> httpx.Response:
    return http.post(f"/v1/operatorTasks/{task_id}:complete", json=body, headers=bearer(key))


def field_violations(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    details = reply.json()["details"]
    bad_request = next(d for d in details if d["@type"].endswith("BadRequest"))
    return {v["field"]: v["description"] for v in bad_request["fieldViolations"]}


def reason(reply: httpx.Response) -> str:
    info = next(d for d in reply.json()["details"] if d["@type"].endswith("ErrorInfo"))
    return str(info["reason"])


def at(timestamp: str) -> datetime:
    """An RFC 3339 timestamp of the JSON (compared as times, not as strings)."""
    return datetime.fromisoformat(timestamp)


def steps_by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def page_through(
    http: httpx.Client, key: str, params: dict[str, Any], check: Callable[[dict[str, Any]], None]
) -> list[str]:
    """Every run id of the listing, one per page, following next_page_token (bounded)."""
    seen: list[str] = []
    token = ""
    for _ in range(50):
        reply = http.get(
            "/v1/workflowRuns",
            params={**params, "pageSize": 1, **({"pageToken": token} if token else {})},
            headers=bearer(key),
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        runs = body.get("runs", [])
        assert len(runs) <= 1
        for run in runs:
            check(run)
            seen.append(run["runId"])
        token = body.get("nextPageToken", "")
        if not token:
            return seen
    raise AssertionError("pagination did not end")
