"""The router's API over gRPC: who may do what, validation, overrides, budgets, catalog edits."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hygoshop.router.v1 import router_pb2
from hygoshop.tenancy.v1 import tenancy_pb2
from hygoshop_platform.db import open_pool
from hygoshop_platform.migrations import upgrade
from hygoshop_platform.money import decimal_to_money
from hygoshop_platform.testing.postgres import MakeDatabase
from hygoshop_router.config import SCHEMA
from hygoshop_router.seed import load_seed
from hygoshop_router.store import ProviderStore, SeedVersionError
from tests.support import APP_PASSWORD, PlatformDatabase

from .conftest import ADMIN, Platform, tenant_md

pytestmark = pytest.mark.integration


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field for v in bad.field_violations}
    return set()


def override(provider_id: str, action: int, **kw: Any) -> router_pb2.CreateRoutingOverrideRequest:
    return router_pb2.CreateRoutingOverrideRequest(
        routing_override=router_pb2.RoutingOverride(
            category=provider_id.split(".", maxsplit=1)[0],
            provider_id=provider_id,
            action=action,
            **kw,
        )
    )


PIN, EXCLUDE = router_pb2.OVERRIDE_ACTION_PIN, router_pb2.OVERRIDE_ACTION_EXCLUDE


async def test_who_may_call_what(platform: Platform) -> None:
    tenant = await platform.new_tenant()
    stub = platform.stub
    explain = router_pb2.ExplainRouteRequest(category="llm", capability="generate_text")
    nobody = await rpc_error(stub.ExplainRoute(explain))
    assert nobody.code() == grpc.StatusCode.UNAUTHENTICATED
    catalog_key = await rpc_error(
        stub.ExplainRoute(explain, metadata=tenant_md(tenant, "catalog:read"))
    )
    assert catalog_key.code() == grpc.StatusCode.PERMISSION_DENIED
    read_only = await rpc_error(
        stub.CreateRoutingOverride(
            override("llm.openai", EXCLUDE), metadata=tenant_md(tenant, "routing:read")
        )
    )
    assert read_only.code() == grpc.StatusCode.PERMISSION_DENIED
    # The platform admin reads the catalog and health but has no tenant to route for.
    admin = await stub.ListProviders(router_pb2.ListProvidersRequest(), metadata=ADMIN)
    assert len(admin.providers) == 30
    assert (await rpc_error(stub.ExplainRoute(explain, metadata=ADMIN))).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # Route (internal) needs the caller's tenant, whatever its scopes.
    route = router_pb2.RouteRequest(category="llm", capability="generate_text")
    assert (await rpc_error(stub.Route(route, metadata=ADMIN))).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert (await stub.Route(route, metadata=tenant_md(tenant, "catalog:write"))).decision
    # A tenant `admin` key holds every scope of its tenant.
    assert (await stub.ExplainRoute(explain, metadata=tenant_md(tenant, "admin"))).decision


async def test_route_inputs_are_validated(platform: Platform) -> None:
    tenant = await platform.new_tenant()
    md = tenant_md(tenant, "routing:read")
    error = await rpc_error(
        platform.stub.ExplainRoute(router_pb2.ExplainRouteRequest(category="fax"), metadata=md)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == {"category", "capability"}
    error = await rpc_error(
        platform.stub.Route(
            router_pb2.RouteRequest(
                category="llm",
                capability="generate_text",
                hints=router_pb2.RouteHints(max_candidates=-1),
            ),
            metadata=md,
        )
    )
    assert violations(error) == {"hints.max_candidates"}


async def test_overrides_lifecycle_rules_and_isolation(platform: Platform) -> None:
    a, b = await platform.new_tenant(), await platform.new_tenant()
    write_a, read_a = tenant_md(a, "routing:write"), tenant_md(a, "routing:read")
    write_b, read_b = tenant_md(b, "routing:write"), tenant_md(b, "routing:read")
    stub = platform.stub
    pin = await stub.CreateRoutingOverride(
        override("llm.openai", PIN, reason="contract"), metadata=write_a
    )
    assert uuid.UUID(pin.override_id)
    assert (pin.action, pin.reason) == (PIN, "contract")
    second_pin = await rpc_error(
        stub.CreateRoutingOverride(override("llm.anthropic", PIN), metadata=write_a)
    )
    assert second_pin.code() == grpc.StatusCode.ALREADY_EXISTS
    same_provider = await rpc_error(
        stub.CreateRoutingOverride(override("llm.openai", EXCLUDE), metadata=write_a)
    )
    assert same_provider.code() == grpc.StatusCode.ALREADY_EXISTS
    past = timestamp_pb2.Timestamp(seconds=1_000_000_000)
    bad = await rpc_error(
        stub.CreateRoutingOverride(
            router_pb2.CreateRoutingOverrideRequest(
                routing_override=router_pb2.RoutingOverride(
                    category="llm",
                    provider_id="email.resend",
                    expire_time=past,
                    reason="x" * 501,
                )
            ),
            metadata=write_a,
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(bad) == {
        "routing_override.provider_id",
        "routing_override.action",
        "routing_override.expire_time",
        "routing_override.reason",
    }
    exclude = await stub.CreateRoutingOverride(
        override("llm.anthropic", EXCLUDE, reason="data residency"), metadata=write_a
    )
    listed = await stub.ListRoutingOverrides(
        router_pb2.ListRoutingOverridesRequest(page_size=1), metadata=read_a
    )
    assert [o.override_id for o in listed.routing_overrides] == [pin.override_id]
    page_2 = await stub.ListRoutingOverrides(
        router_pb2.ListRoutingOverridesRequest(page_size=1, page_token=listed.next_page_token),
        metadata=read_a,
    )
    assert [o.override_id for o in page_2.routing_overrides] == [exclude.override_id]
    assert not page_2.next_page_token

    decision = (
        await stub.ExplainRoute(
            router_pb2.ExplainRouteRequest(category="llm", capability="generate_text"),
            metadata=read_a,
        )
    ).decision
    assert decision.candidates[0].provider_id == "llm.openai"
    assert decision.candidates[0].reason == "pinned by override: contract"
    assert "llm.anthropic" in {r.provider_id for r in decision.rejections}

    # Tenant B: A's overrides answer exactly like missing ones, and shape nothing of B's.
    missing = await rpc_error(
        stub.GetRoutingOverride(
            router_pb2.GetRoutingOverrideRequest(override_id=str(uuid.uuid4())), metadata=read_b
        )
    )
    theirs = await rpc_error(
        stub.GetRoutingOverride(
            router_pb2.GetRoutingOverrideRequest(override_id=pin.override_id), metadata=read_b
        )
    )
    assert (theirs.code(), theirs.details()) == (missing.code(), missing.details())
    assert theirs.code() == grpc.StatusCode.NOT_FOUND
    deleted_by_b = await rpc_error(
        stub.DeleteRoutingOverride(
            router_pb2.DeleteRoutingOverrideRequest(override_id=pin.override_id), metadata=write_b
        )
    )
    assert deleted_by_b.code() == grpc.StatusCode.NOT_FOUND
    assert not (
        await stub.ListRoutingOverrides(router_pb2.ListRoutingOverridesRequest(), metadata=read_b)
    ).routing_overrides
    decision_b = (
        await stub.ExplainRoute(
            router_pb2.ExplainRouteRequest(category="llm", capability="generate_text"),
            metadata=read_b,
        )
    ).decision
    assert all(c.score.override == router_pb2.OVERRIDE_EFFECT_NONE for c in decision_b.candidates)
    assert "llm.anthropic" in [c.provider_id for c in decision_b.candidates]

    await stub.DeleteRoutingOverride(
        router_pb2.DeleteRoutingOverrideRequest(override_id=pin.override_id), metadata=write_a
    )
    gone = await rpc_error(
        stub.GetRoutingOverride(
            router_pb2.GetRoutingOverrideRequest(override_id=pin.override_id), metadata=read_a
        )
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND


async def test_budgets_need_allow_missing_to_be_created_and_are_per_tenant(
    platform: Platform,
) -> None:
    a, b = await platform.new_tenant(), await platform.new_tenant()
    stub = platform.stub
    five = router_pb2.Budget(category="email", monthly_limit=decimal_to_money(Decimal(5), "USD"))
    missing = await rpc_error(
        stub.UpdateBudget(
            router_pb2.UpdateBudgetRequest(budget=five), metadata=tenant_md(a, "routing:write")
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    bad = await rpc_error(
        stub.UpdateBudget(
            router_pb2.UpdateBudgetRequest(
                budget=router_pb2.Budget(
                    category="email",
                    monthly_limit=decimal_to_money(Decimal(-1), "EUR"),
                    near_cap_ratio=1.5,
                ),
                allow_missing=True,
            ),
            metadata=tenant_md(a, "routing:write"),
        )
    )
    assert violations(bad) == {"budget.monthly_limit", "budget.monthly_limit.currency_code"}
    created = await stub.UpdateBudget(
        router_pb2.UpdateBudgetRequest(budget=five, allow_missing=True),
        metadata=tenant_md(a, "routing:write"),
    )
    assert (created.monthly_limit.units, created.state) == (5, router_pb2.BUDGET_STATE_UNDER)
    ratio = await stub.UpdateBudget(
        router_pb2.UpdateBudgetRequest(
            budget=router_pb2.Budget(category="email", near_cap_ratio=0.5),
            update_mask=field_mask_pb2.FieldMask(paths=["near_cap_ratio"]),
        ),
        metadata=tenant_md(a, "routing:write"),
    )
    assert (ratio.monthly_limit.units, ratio.near_cap_ratio) == (5, 0.5)
    out_of_range = await rpc_error(
        stub.UpdateBudget(
            router_pb2.UpdateBudgetRequest(
                budget=router_pb2.Budget(category="email", near_cap_ratio=1.5),
                update_mask=field_mask_pb2.FieldMask(paths=["near_cap_ratio"]),
            ),
            metadata=tenant_md(a, "routing:write"),
        )
    )
    assert violations(out_of_range) == {"budget.near_cap_ratio"}

    listed_b = await stub.ListBudgets(
        router_pb2.ListBudgetsRequest(), metadata=tenant_md(b, "routing:read")
    )
    assert list(listed_b.budgets) == []
    for call in (
        stub.GetBudget(
            router_pb2.GetBudgetRequest(category="email"), metadata=tenant_md(b, "routing:read")
        ),
        stub.DeleteBudget(
            router_pb2.DeleteBudgetRequest(category="email"),
            metadata=tenant_md(b, "routing:write"),
        ),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    listed_a = await stub.ListBudgets(
        router_pb2.ListBudgetsRequest(), metadata=tenant_md(a, "routing:read")
    )
    assert [x.category for x in listed_a.budgets] == ["email"]
    await stub.DeleteBudget(
        router_pb2.DeleteBudgetRequest(category="email"), metadata=tenant_md(a, "routing:write")
    )
    assert not (
        await stub.ListBudgets(router_pb2.ListBudgetsRequest(), metadata=tenant_md(a, "admin"))
    ).budgets


async def test_catalog_edits_are_validated_admin_only_and_route_at_once(
    platform: Platform,
) -> None:
    tenant = await platform.new_tenant(tenancy_pb2.TIER_FREE)
    stub = platform.stub
    mask = field_mask_pb2.FieldMask(paths=["tiers", "weight"])
    edit = router_pb2.UpdateProviderRequest(
        provider=router_pb2.Provider(
            provider_id="social.ayrshare",
            tiers=[tenancy_pb2.TIER_FREE, tenancy_pb2.TIER_GROWTH, tenancy_pb2.TIER_ENTERPRISE],
            weight=200,
        ),
        update_mask=mask,
    )
    denied = await rpc_error(stub.UpdateProvider(edit, metadata=tenant_md(tenant, "admin")))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = router_pb2.UpdateProviderRequest(
        provider=router_pb2.Provider(provider_id="social.ayrshare", weight=0, tiers=[]),
        update_mask=field_mask_pb2.FieldMask(paths=["tiers", "weight", "category"]),
    )
    assert violations(await rpc_error(stub.UpdateProvider(bad, metadata=ADMIN))) == {"update_mask"}
    bad.update_mask.paths.remove("category")
    assert violations(await rpc_error(stub.UpdateProvider(bad, metadata=ADMIN))) == {
        "provider.tiers",
        "provider.weight",
    }
    unknown = await rpc_error(
        stub.UpdateProvider(
            router_pb2.UpdateProviderRequest(
                provider=router_pb2.Provider(provider_id="social.nope", weight=5),
                update_mask=field_mask_pb2.FieldMask(paths=["weight"]),
            ),
            metadata=ADMIN,
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND

    route = router_pb2.RouteRequest(category="social", capability="publish_post")
    before = (await stub.Route(route, metadata=tenant_md(tenant))).decision
    assert [c.provider_id for c in before.candidates] == ["social.offline"]
    updated = await stub.UpdateProvider(edit, metadata=ADMIN)
    assert updated.weight == 200
    assert list(updated.edited_fields) == ["tiers", "weight"]
    after = (await stub.Route(route, metadata=tenant_md(tenant))).decision
    assert [c.provider_id for c in after.candidates] == ["social.ayrshare", "social.offline"]


async def test_seed_is_idempotent_keeps_api_edits_and_refuses_an_older_version(
    make_database: MakeDatabase,
) -> None:
    url = make_database("router_seed")
    upgrade(url, SCHEMA, app_password=APP_PASSWORD)
    pool = await open_pool(PlatformDatabase(url).app_url(SCHEMA), size=1)
    try:
        store = ProviderStore(pool)
        seed = load_seed()
        await store.apply_seed(seed)
        await store.apply_seed(seed)  # twice: same catalog
        first = {p.provider_id: p for p in await store.list_providers()}
        assert set(first) == {p.provider_id for p in seed.providers}

        await store.update_provider("email.resend", lambda p: replace(p, weight=7), ("weight",))
        # Version 2 changes resend's weight (edited: kept) and its price (not edited: taken).
        v2 = replace(
            seed,
            version=2,
            providers=tuple(
                replace(p, weight=50, unit_costs={"send_email": Decimal("0.0009")}, seed_version=2)
                if p.provider_id == "email.resend"
                else replace(p, seed_version=2)
                for p in seed.providers
            ),
        )
        await store.apply_seed(v2)
        resend = {p.provider_id: p for p in await store.list_providers()}["email.resend"]
        assert (resend.weight, resend.unit_costs, resend.seed_version) == (
            7,
            {"send_email": Decimal("0.0009")},
            2,
        )
        with pytest.raises(SeedVersionError):
            await store.apply_seed(seed)
    finally:
        await pool.close()
