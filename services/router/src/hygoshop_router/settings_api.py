"""RouterService methods of a tenant's routing settings: overrides, budgets, alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import empty_pb2

from hygoshop.router.v1 import router_pb2
from hygoshop_platform.access import require_tenant
from hygoshop_platform.errors import FieldViolation, InvalidArgument, NotFound, require
from hygoshop_platform.money import money_to_decimal
from hygoshop_platform.pagination import decode_time_id_token, decode_token, page_size, split_page
from hygoshop_platform.server import Context
from hygoshop_router import convert
from hygoshop_router.access import (
    DEFAULT_PAGE,
    READ,
    WRITE,
    ApiBase,
    parse_uuid,
)
from hygoshop_router.domain.model import DEFAULT_NEAR_CAP_RATIO, Budget, Override
from hygoshop_router.domain.validation import (
    BUDGET_FIELDS,
    unknown_fields,
    validate_budget,
    validate_override,
)
from hygoshop_router.tenant_store import month_of


class TenantSettingsMethods(ApiBase):
    # --- overrides -------------------------------------------------------------------------

    async def CreateRoutingOverride(
        self, request: router_pb2.CreateRoutingOverrideRequest, context: Context
    ) -> router_pb2.RoutingOverride:
        tenant_id = require_tenant(WRITE)
        o = request.routing_override
        now = datetime.now(UTC)
        expire = convert.to_datetime(o.expire_time) if o.HasField("expire_time") else None
        action = convert.ACTION_FROM_PROTO.get(o.action)
        require(
            validate_override(
                category=o.category,
                provider_id=o.provider_id,
                action=action,
                reason=o.reason,
                expire_time=expire,
                now=now,
                catalog=self._engine.catalog,
                categories=self._engine.categories,
            )
        )
        assert action is not None
        created = await self._engine.tenants.create_override(
            tenant_id,
            Override(uuid.uuid4(), o.category, o.provider_id, action, o.reason, expire),
            now,
        )
        self._engine.invalidate_tenant(tenant_id)
        return convert.override_to_proto(created)

    async def GetRoutingOverride(
        self, request: router_pb2.GetRoutingOverrideRequest, context: Context
    ) -> router_pb2.RoutingOverride:
        tenant_id = require_tenant(READ)
        override_id = parse_uuid(request.override_id, "override_id", "override not found")
        found = await self._engine.tenants.get_override(tenant_id, override_id)
        if found is None:
            raise NotFound("override not found")
        return convert.override_to_proto(found)

    async def ListRoutingOverrides(
        self, request: router_pb2.ListRoutingOverridesRequest, context: Context
    ) -> router_pb2.ListRoutingOverridesResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("overrides", request.category)
        after = decode_time_id_token(request.page_token, query)
        rows = await self._engine.tenants.list_overrides(
            tenant_id, request.category or None, limit=size + 1, after=after
        )
        page, next_token = split_page(rows, size, _override_position, query)
        return router_pb2.ListRoutingOverridesResponse(
            routing_overrides=[convert.override_to_proto(o) for o in page],
            next_page_token=next_token,
        )

    async def DeleteRoutingOverride(
        self, request: router_pb2.DeleteRoutingOverrideRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id = require_tenant(WRITE)
        override_id = parse_uuid(request.override_id, "override_id", "override not found")
        if not await self._engine.tenants.delete_override(tenant_id, override_id):
            raise NotFound("override not found")
        self._engine.invalidate_tenant(tenant_id)
        return empty_pb2.Empty()

    # --- budgets ---------------------------------------------------------------------------

    async def GetBudget(
        self, request: router_pb2.GetBudgetRequest, context: Context
    ) -> router_pb2.Budget:
        tenant_id = require_tenant(READ)
        if not request.category:
            raise InvalidArgument([FieldViolation("category", "is required")])
        month = month_of(datetime.now(UTC))
        found = await self._engine.tenants.get_budget(tenant_id, request.category, month)
        if found is None:
            raise NotFound("budget not found")
        return convert.budget_to_proto(found, month)

    async def ListBudgets(
        self, request: router_pb2.ListBudgetsRequest, context: Context
    ) -> router_pb2.ListBudgetsResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        token = decode_token(request.page_token, ("budgets",))
        month = month_of(datetime.now(UTC))
        rows = await self._engine.tenants.list_budgets(
            tenant_id, month, limit=size + 1, after=None if token is None else str(token[0])
        )
        page, next_token = split_page(rows, size, lambda b: (b.budget.category,), ("budgets",))
        return router_pb2.ListBudgetsResponse(
            budgets=[convert.budget_to_proto(b, month) for b in page], next_page_token=next_token
        )

    async def UpdateBudget(
        self, request: router_pb2.UpdateBudgetRequest, context: Context
    ) -> router_pb2.Budget:
        tenant_id = require_tenant(WRITE)
        category = self._category(request.budget.category, "budget.category")
        paths = tuple(request.update_mask.paths) or BUDGET_FIELDS
        require(unknown_fields(paths, BUDGET_FIELDS))
        violations: list[FieldViolation] = []
        limit = money_to_decimal(
            request.budget.monthly_limit, "budget.monthly_limit", violations, currency=convert.USD
        )
        require(violations)
        ratio = request.budget.near_cap_ratio or DEFAULT_NEAR_CAP_RATIO

        def change(current: Budget | None) -> Budget:
            if current is None:
                if not request.allow_missing:
                    raise NotFound("budget not found (set allow_missing to create it)")
                if "monthly_limit" not in paths or not request.budget.HasField("monthly_limit"):
                    raise InvalidArgument(
                        [FieldViolation("budget.monthly_limit", "is required to create a budget")]
                    )
                current = Budget(category, Decimal(0), DEFAULT_NEAR_CAP_RATIO)
            updated = Budget(
                category,
                limit if "monthly_limit" in paths else current.monthly_limit,
                ratio if "near_cap_ratio" in paths else current.near_cap_ratio,
            )
            require(validate_budget(updated, self._engine.categories))
            return updated

        month = month_of(datetime.now(UTC))
        found = await self._engine.tenants.put_budget(tenant_id, category, month, change)
        assert found is not None
        self._engine.invalidate_tenant(tenant_id)
        return convert.budget_to_proto(found, month)

    async def DeleteBudget(
        self, request: router_pb2.DeleteBudgetRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id = require_tenant(WRITE)
        if not request.category:
            raise InvalidArgument([FieldViolation("category", "is required")])
        if not await self._engine.tenants.delete_budget(tenant_id, request.category):
            raise NotFound("budget not found")
        self._engine.invalidate_tenant(tenant_id)
        return empty_pb2.Empty()

    # --- alerts ----------------------------------------------------------------------------

    async def ListRoutingAlerts(
        self, request: router_pb2.ListRoutingAlertsRequest, context: Context
    ) -> router_pb2.ListRoutingAlertsResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        after = decode_time_id_token(request.page_token, ("alerts",))
        rows = await self._engine.tenants.list_alerts(tenant_id, limit=size + 1, after=after)
        page, next_token = split_page(
            rows, size, lambda a: (a.create_time.isoformat(), str(a.alert_id)), ("alerts",)
        )
        return router_pb2.ListRoutingAlertsResponse(
            routing_alerts=[convert.alert_to_proto(a) for a in page], next_page_token=next_token
        )


def _override_position(override: Override) -> tuple[str, str]:
    assert override.create_time is not None  # stored overrides always have one
    return override.create_time.isoformat(), str(override.override_id)
