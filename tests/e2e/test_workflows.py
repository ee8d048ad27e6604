"""Workflows through Envoy (REST/JSON): the built-in `catalog.listing_change_approval` end to
end with an operator's decision, concurrent claims of one task, idempotent start,
validation and scopes, cancel and signal, and listing runs page by page.

The stack's workflows service and its one worker run the built-in definitions; the worker
reads and changes listings through catalog's gRPC API as the run's tenant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from deploy.stack import Stack

from .workflow_api import (
    APPROVAL,
    CONFLICT,
    WORKFLOWS_RW,
    Tenant,
    at,
    bearer,
    claim,
    complete,
    create_key,
    create_listing,
    field_violations,
    get_run,
    get_task,
    key_id,
    new_tenant,
    page_through,
    reason,
    start,
    start_approval,
    steps_by_name,
    task_of,
    wait_run,
    waiting_task,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant(http: httpx.Client, admin_key: str) -> Tenant:
    return new_tenant(http, admin_key)


@pytest.fixture(scope="module")
def other(http: httpx.Client, admin_key: str) -> Tenant:
    return new_tenant(http, admin_key)


# --- the built-in approval workflow ----------------------------------------------------------


def test_an_edited_change_is_applied_after_the_operator_decides(
    http: httpx.Client, tenant: Tenant
) -> None:
    listing = create_listing(http, tenant, title="Linen shirt")
    listing_id = listing["listingId"]
    run = start_approval(http, tenant, listing_id, "Linen shirt, washed")
    assert run["workflowType"] == APPROVAL
    assert run["state"] == "WORKFLOW_RUN_STATE_PENDING"
    waiting = wait_run(http, tenant.key, run["runId"], "WAITING")
    task = task_of(http, tenant.operator, run["runId"])
    assert waiting["waitingOn"] == f"task:{task['taskId']}"
    assert task["state"] == "OPERATOR_TASK_STATE_OPEN"
    assert task["payload"]["current"]["title"] == "Linen shirt"
    assert task["payload"]["proposed"] == {"title": "Linen shirt, washed"}
    assert task["payload"]["listing_id"] == listing_id
    assert at(task["dueTime"]) > at(task["createTime"])

    claimed = claim(http, tenant.operator, task["taskId"])
    assert claimed.status_code == 200, claimed.text
    operator_id = key_id(http, tenant, tenant.operator)
    assert claimed.json()["state"] == "OPERATOR_TASK_STATE_CLAIMED"
    assert claimed.json()["claimedBy"] == operator_id

    # An edit outside the task kind's schema: refused naming what is wrong, nothing changes.
    bad = complete(
        http, tenant.operator, task["taskId"], decision="DECISION_EDIT", payload={"price": 1}
    )
    violations = field_violations(bad)
    assert "price" in violations.get("payload", ""), violations
    assert get_task(http, tenant.reader, task["taskId"])["state"] == "OPERATOR_TASK_STATE_CLAIMED"
    assert get_run(http, tenant.key, run["runId"])["state"] == "WORKFLOW_RUN_STATE_WAITING"
    assert http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant.key)).json() == listing

    # Another operator cannot decide a task someone else holds.
    other_operator = create_key(http, tenant.admin_key, tenant.tenant_id, WORKFLOWS_RW)
    stolen = complete(http, other_operator, task["taskId"], decision="DECISION_APPROVE")
    assert stolen.status_code == CONFLICT, stolen.text

    done = complete(
        http,
        tenant.operator,
        task["taskId"],
        decision="DECISION_EDIT",
        payload={"title": "Washed linen shirt"},
        comment="shorter",
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "OPERATOR_TASK_STATE_COMPLETED"
    assert done.json()["decision"] == "DECISION_EDIT"
    assert done.json()["outcomePayload"] == {"title": "Washed linen shirt"}
    assert done.json()["completedBy"] == operator_id

    finished = wait_run(http, tenant.key, run["runId"], "SUCCEEDED", "FAILED")
    assert finished["state"] == "WORKFLOW_RUN_STATE_SUCCEEDED", finished
    assert finished["result"]["decision"] == "edit"
    assert finished["result"]["applied"] is True
    assert finished["result"]["operator"] == operator_id
    assert at(finished["endTime"]) >= at(finished["createTime"])
    after = http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant.key)).json()
    assert after["title"] == "Washed linen shirt"
    assert after["brand"] == listing["brand"]  # only the approved field changed

    assert [s["name"] for s in finished["steps"]] == [
        "read_listing",
        "listing_change",
        "apply_change",
    ]
    steps = steps_by_name(finished)
    assert steps["read_listing"]["kind"] == "WORKFLOW_STEP_KIND_STEP"
    assert steps["listing_change"]["kind"] == "WORKFLOW_STEP_KIND_OPERATOR_TASK"
    assert steps["listing_change"]["taskId"] == task["taskId"]
    assert steps["read_listing"]["result"]["title"] == "Linen shirt"
    assert steps["apply_change"]["result"]["title"] == "Washed linen shirt"
    for step in finished["steps"]:
        assert step["state"] == "WORKFLOW_STEP_STATE_SUCCEEDED", step
        assert at(step["startTime"]) <= at(step["endTime"]), step
    for name in ("read_listing", "apply_change"):
        assert steps[name]["attempts"] == 1, steps[name]

    # A finished run takes no signals and no cancels.
    signal = http.post(
        f"/v1/workflowRuns/{run['runId']}:signal",
        json={"signal_name": "late", "payload": {}},
        headers=bearer(tenant.key),
    )
    assert signal.status_code == CONFLICT, signal.text
    assert reason(signal) == "RUN_FINISHED"
    cancel = http.post(
        f"/v1/workflowRuns/{run['runId']}:cancel", json={}, headers=bearer(tenant.key)
    )
    assert cancel.status_code == CONFLICT, cancel.text


def test_a_rejected_change_leaves_the_listing_alone(http: httpx.Client, tenant: Tenant) -> None:
    listing, run, task = waiting_task(http, tenant)
    assert claim(http, tenant.operator, task["taskId"]).status_code == 200
    # REJECT takes no payload.
    with_payload = complete(
        http, tenant.operator, task["taskId"], decision="DECISION_REJECT", payload={"title": "x"}
    )
    assert "payload" in field_violations(with_payload)
    rejected = complete(
        http, tenant.operator, task["taskId"], decision="DECISION_REJECT", comment="off brand"
    )
    assert rejected.status_code == 200, rejected.text
    finished = wait_run(http, tenant.key, run["runId"], "SUCCEEDED", "FAILED")
    assert finished["state"] == "WORKFLOW_RUN_STATE_SUCCEEDED", finished
    assert finished["result"] == {"decision": "reject", "applied": False, "comment": "off brand"}
    assert [s["name"] for s in finished["steps"]] == ["read_listing", "listing_change"]
    after = http.get(f"/v1/listings/{listing['listingId']}", headers=bearer(tenant.key)).json()
    assert after == listing


# --- operator tasks: one claim wins ----------------------------------------------------------


async def claim_at_once(gateway_url: str, task_id: str, keys: list[str]) -> list[httpx.Response]:
    """One claim per key, all in flight together (one connection each)."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as gateway:
        return await asyncio.gather(
            *(
                gateway.post(f"/v1/operatorTasks/{task_id}:claim", json={}, headers=bearer(key))
                for key in keys
            )
        )


def test_twenty_concurrent_claims_one_wins_and_other_tenants_see_nothing(
    http: httpx.Client, stack: Stack, tenant: Tenant, other: Tenant
) -> None:
    _, _, task = waiting_task(http, tenant)
    task_id = task["taskId"]
    operators = [
        create_key(http, tenant.admin_key, tenant.tenant_id, ["workflows:write"]) for _ in range(20)
    ]
    replies = asyncio.run(claim_at_once(stack.gateway_url, task_id, operators))
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] + [CONFLICT] * 19, [r.text for r in replies]
    for refused in (r for r in replies if r.status_code == CONFLICT):
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json()["message"]
        assert reason(refused) == "TASK_CLAIMED"
    winner = next(op for op, r in zip(operators, replies, strict=True) if r.status_code == 200)
    held = get_task(http, tenant.reader, task_id)
    assert held["claimedBy"] == key_id(http, tenant, winner)

    # Another tenant's key: the same answer as for a task that does not exist at all.
    foreign = claim(http, other.operator, task_id)
    missing = claim(http, other.operator, str(uuid.uuid4()))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    foreign_get = http.get(f"/v1/operatorTasks/{task_id}", headers=bearer(other.reader))
    missing_get = http.get(f"/v1/operatorTasks/{uuid.uuid4()}", headers=bearer(other.reader))
    assert foreign_get.status_code == missing_get.status_code == 404
    assert foreign_get.content == missing_get.content
    assert get_task(http, tenant.reader, task_id) == held


# --- runs: idempotent start, validation, scopes -------------------------------------------


def test_start_is_idempotent_per_business_key(
    http: httpx.Client, tenant: Tenant, other: Tenant
) -> None:
    listing_id = create_listing(http, tenant)["listingId"]
    business_key = f"same-{uuid.uuid4().hex[:8]}"
    input = {"listing_id": listing_id, "changes": {"title": "Once"}}
    first = start(http, tenant.key, business_key, input)
    again = start(http, tenant.key, business_key, input)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["runId"] == again.json()["runId"]
    conflict = start(http, tenant.key, business_key, {**input, "changes": {"title": "Twice"}})
    assert conflict.status_code == 409, conflict.text
    assert reason(conflict) == "RUN_EXISTS"
    # The same key in another tenant is another run.
    other_input = {
        "listing_id": create_listing(http, other)["listingId"],
        "changes": {"title": "x"},
    }
    elsewhere = start(http, other.key, business_key, other_input)
    assert elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["runId"] != first.json()["runId"]


def test_bad_requests_are_refused_naming_the_field(http: httpx.Client, tenant: Tenant) -> None:
    listing_id = create_listing(http, tenant)["listingId"]
    input = {"listing_id": listing_id, "changes": {"title": "x"}}
    missing_type = http.post(
        "/v1/workflowRuns", json={"business_key": "k", "input": input}, headers=bearer(tenant.key)
    )
    assert "workflow_type" in field_violations(missing_type)
    unknown = start(http, tenant.key, "k", input, workflow_type="catalog.no_such_workflow")
    assert "workflow_type" in field_violations(unknown)
    bad_input = start(http, tenant.key, "k", {"listing_id": listing_id, "changes": {"sku": 1}})
    assert "input.changes" in field_violations(bad_input)
    for path in ("/v1/workflowRuns", "/v1/operatorTasks"):
        bad_token = http.get(path, params={"pageToken": "garbage"}, headers=bearer(tenant.reader))
        assert bad_token.status_code == 400, bad_token.text
    missing = http.get(f"/v1/workflowRuns/{uuid.uuid4()}", headers=bearer(tenant.reader))
    assert missing.status_code == 404

    read_only = start(http, tenant.reader, "k", input)
    assert read_only.status_code == 403, read_only.text
    assert reason(read_only) == "PERMISSION_DENIED"
    catalog_only = create_key(http, tenant.admin_key, tenant.tenant_id, ["catalog:read"])
    assert http.get("/v1/workflowRuns", headers=bearer(catalog_only)).status_code == 403
    for reply in (
        http.post("/v1/workflowRuns", json={"workflow_type": APPROVAL}),
        http.get("/v1/operatorTasks"),
        http.get("/v1/workflowRuns", headers=bearer("hyg_nope_nope")),
    ):
        assert reply.status_code == 401, reply.text
        assert reply.json()["message"]
    # Nothing above started a run.
    listed = http.get(
        "/v1/workflowRuns", params={"pageSize": 100}, headers=bearer(tenant.reader)
    ).json()
    assert "k" not in {r["businessKey"] for r in listed.get("runs", [])}


# --- cancel and signal ------------------------------------------------------------------------


def test_cancel_stops_a_waiting_run_and_cancels_its_task(
    http: httpx.Client, tenant: Tenant, other: Tenant
) -> None:
    listing, run, task = waiting_task(http, tenant)
    foreign = http.post(
        f"/v1/workflowRuns/{run['runId']}:cancel", json={}, headers=bearer(other.key)
    )
    missing = http.post(
        f"/v1/workflowRuns/{uuid.uuid4()}:cancel", json={}, headers=bearer(other.key)
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    foreign_get = http.get(f"/v1/workflowRuns/{run['runId']}", headers=bearer(other.reader))
    assert foreign_get.status_code == 404
    missing_get = http.get(f"/v1/workflowRuns/{uuid.uuid4()}", headers=bearer(other.reader))
    assert foreign_get.content == missing_get.content

    requested = http.post(
        f"/v1/workflowRuns/{run['runId']}:cancel", json={}, headers=bearer(tenant.key)
    )
    assert requested.status_code == 200, requested.text
    assert requested.json()["cancelRequested"] is True
    cancelled = wait_run(http, tenant.key, run["runId"], "CANCELLED", "FAILED", "SUCCEEDED")
    assert cancelled["state"] == "WORKFLOW_RUN_STATE_CANCELLED", cancelled
    decision = cancelled["steps"][-1]
    assert decision["kind"] == "WORKFLOW_STEP_KIND_OPERATOR_TASK"
    assert decision["state"] == "WORKFLOW_STEP_STATE_CANCELLED"  # the wait never ended
    after = get_task(http, tenant.reader, task["taskId"])
    assert after["state"] == "OPERATOR_TASK_STATE_CANCELLED"
    late_claim = claim(http, tenant.operator, task["taskId"])
    assert late_claim.status_code == CONFLICT, late_claim.text
    assert reason(late_claim) == "TASK_NOT_OPEN"

    again = http.post(
        f"/v1/workflowRuns/{run['runId']}:cancel", json={}, headers=bearer(tenant.key)
    )
    assert again.status_code == 200  # cancelling a cancelled run changes nothing
    signal = http.post(
        f"/v1/workflowRuns/{run['runId']}:signal",
        json={"signal_name": "go", "payload": {"n": 1}},
        headers=bearer(tenant.key),
    )
    assert signal.status_code == CONFLICT, signal.text
    assert signal.json()["message"]
    assert (
        http.get(f"/v1/listings/{listing['listingId']}", headers=bearer(tenant.key)).json()
        == listing
    )


# --- listing runs ------------------------------------------------------------------------------


def test_list_runs_filters_by_state_and_type_page_by_page(
    http: httpx.Client, admin_key: str
) -> None:
    tenant = new_tenant(http, admin_key)
    waiting = []
    for _ in range(3):
        listing_id = create_listing(http, tenant)["listingId"]
        waiting.append(start_approval(http, tenant, listing_id, "Renamed")["runId"])
    # A listing that does not exist: catalog says NOT_FOUND, the run fails without retrying.
    failed = start_approval(http, tenant, str(uuid.uuid4()), "Renamed")["runId"]
    for run_id in waiting:
        wait_run(http, tenant.key, run_id, "WAITING")
    failure = wait_run(http, tenant.key, failed, "FAILED", "SUCCEEDED")
    assert failure["state"] == "WORKFLOW_RUN_STATE_FAILED", failure
    assert "NOT_FOUND" in failure["errorMessage"]
    assert steps_by_name(failure)["read_listing"]["attempts"] == 1
    cancelled = waiting.pop()
    http.post(f"/v1/workflowRuns/{cancelled}:cancel", json={}, headers=bearer(tenant.key))
    wait_run(http, tenant.key, cancelled, "CANCELLED")

    def has(state: str) -> Callable[[dict[str, Any]], None]:
        def check(run: dict[str, Any]) -> None:
            assert run["state"] == f"WORKFLOW_RUN_STATE_{state}"
            assert run["workflowType"] == APPROVAL
            assert not run.get("steps")  # lists leave the step history out

        return check

    filters = {"workflowType": APPROVAL, "state": "WORKFLOW_RUN_STATE_WAITING"}
    assert page_through(http, tenant.reader, filters, has("WAITING")) == waiting[::-1]
    assert page_through(
        http, tenant.reader, {"state": "WORKFLOW_RUN_STATE_FAILED"}, has("FAILED")
    ) == [failed]
    assert page_through(
        http, tenant.reader, {"state": "WORKFLOW_RUN_STATE_CANCELLED"}, has("CANCELLED")
    ) == [cancelled]
    everything = page_through(http, tenant.reader, {"workflowType": APPROVAL}, lambda _: None)
    assert sorted(everything) == sorted([*waiting, failed, cancelled])
    assert (
        page_through(http, tenant.reader, {"workflowType": "catalog.other"}, lambda _: None) == []
    )

    # A page token belongs to its query: reusing it under another filter is refused.
    first = http.get(
        "/v1/workflowRuns", params={**filters, "pageSize": 1}, headers=bearer(tenant.reader)
    ).json()
    reused = http.get(
        "/v1/workflowRuns",
        params={"state": "WORKFLOW_RUN_STATE_FAILED", "pageToken": first["nextPageToken"]},
        headers=bearer(tenant.reader),
    )
    assert reused.status_code == 400, reused.text
