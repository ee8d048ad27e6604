"""`catalog.listing_change_approval`: a proposed change to a listing is applied only after
an operator approves it (as proposed, or edited).

Steps: read the listing (what the operator compares against), wait for an operator's
decision on a `listing_change` task, then, unless rejected, apply the approved fields
through catalog's UpdateListing with a field mask. Applying the same fields twice gives
the same listing, so the apply step is safe to repeat after a crash.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop_workflows.definitions.dependencies import as_tenant, dependencies, permanent
from hygoshop_workflows.runtime import Registry, StepCall, TaskKind, WorkflowContext

FIELDS = ("title", "description", "brand", "category")

CHANGES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 10000},
        "brand": {"type": "string", "maxLength": 200},
        "category": {"type": "string", "maxLength": 200},
    },
    "additionalProperties": False,
    "minProperties": 1,
}

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "listing_id": {"type": "string", "format": "uuid", "minLength": 36, "maxLength": 36},
        "changes": CHANGES_SCHEMA,
        "reason": {"type": "string", "maxLength": 2000},
    },
    "required": ["listing_id", "changes"],
    "additionalProperties": False,
}

TASK_KIND = TaskKind(
    "listing_change",
    edit_schema=CHANGES_SCHEMA,
    sla_seconds=4 * 3600,
    description="Approve, edit or reject a proposed change to a listing's text fields.",
)


def register(registry: Registry) -> None:
    registry.task_kind(TASK_KIND)
    registry.workflow("catalog.listing_change_approval", version=1, input_schema=INPUT_SCHEMA)(
        listing_change_approval
    )


async def listing_change_approval(ctx: WorkflowContext, input: dict[str, Any]) -> dict[str, Any]:
    listing_id = input["listing_id"]

    async def read_listing(call: StepCall) -> dict[str, Any]:
        try:
            listing = (
                await dependencies()
                .catalog()
                .GetListing(
                    catalog_pb2.GetListingRequest(listing_id=listing_id),
                    metadata=as_tenant(call.tenant_id, "catalog:read"),
                    timeout=10,
                )
            )
        except grpc.aio.AioRpcError as error:
            raise permanent(error) from None
        return {name: getattr(listing, name) for name in FIELDS}

    current = await ctx.step("read_listing", read_listing)
    outcome = await ctx.wait_for_operator(
        TASK_KIND.name,
        title=f"Change listing {current['title']!r}"[:200],
        payload={
            "listing_id": listing_id,
            "current": current,
            "proposed": input["changes"],
            "reason": input.get("reason", ""),
        },
    )
    if outcome.decision.value == "reject":
        return {"decision": "reject", "applied": False, "comment": outcome.comment}
    approved = (
        outcome.payload["proposed"] if outcome.decision.value == "approve" else outcome.payload
    )

    async def apply_change(call: StepCall) -> dict[str, Any]:
        listing = catalog_pb2.Listing(listing_id=listing_id, **approved)
        try:
            updated = (
                await dependencies()
                .catalog()
                .UpdateListing(
                    catalog_pb2.UpdateListingRequest(
                        listing=listing,
                        update_mask=field_mask_pb2.FieldMask(paths=sorted(approved)),
                    ),
                    metadata=as_tenant(call.tenant_id, "catalog:write"),
                    timeout=10,
                )
            )
        except grpc.aio.AioRpcError as error:
            raise permanent(error) from None
        return {name: getattr(updated, name) for name in FIELDS}

    applied = await ctx.step("apply_change", apply_change)
    return {
        "decision": outcome.decision.value,
        "applied": True,
        "listing": applied,
        "operator": outcome.operator,
    }
