"""RouterService: checks who may call, maps proto <-> domain, calls the engine and stores.

Public reads need `routing:read` (or the platform admin for the catalog and health),
tenant writes `routing:write`, catalog edits the platform admin. Route and ReportOutcomes
have no HTTP rule (internal callers only) and need just a tenant in the caller metadata.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import empty_pb2

from hygoshop.router.v1 import router_pb2, router_pb2_grpc
from hygoshop_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    require,
)
from hygoshop_platform.money import money_to_decimal
from hygoshop_platform.pagination import decode_token, encode_token, page_size
from hygoshop_platform.server import Context
from hygoshop_platform.tenancy import current_caller
from hygoshop_router import convert
from hygoshop_router.domain.model import (
    DEFAULT_NEAR_CAP_RATIO,
    Budget,
    Outcome,
    Override,
    Provider,
)
from hygoshop_router.domain.validation import (
    BUDGET_FIELDS,
    MAX_OUTCOMES,
    PROVIDER_FIELDS,
    unknown_fields,
    validate_budget,
    validate_outcome,
    validate_override,
    validate_provider,
)
from hygoshop_router.engine import RouterEngine
from hygoshop_router.tenant_store import month_of

READ = "routing:read"
WRITE = "routing:write"
DEFAULT_PAGE = 50


def _tenant(scope: str) -> uuid.UUID:
    """The caller's tenant, if its key holds `scope`."""
    caller = current_caller()
    if caller.tenant_id is None:
        if caller.scopes:
            raise PermissionDenied("this needs a tenant's API key")
        raise Unauthenticated("an API key is required")
    if not caller.has_scope(scope):
        raise PermissionDenied(f"this needs an API key with the `{scope}` scope")
    return caller.tenant_id


def _catalog_reader() -> uuid.UUID | None:
    """The tenant reading the catalog or health, or None for the platform admin."""
    caller = current_caller()
    if caller.is_platform_admin and caller.tenant_id is None:
        return None
    return _tenant(READ)


def _internal_tenant() -> uuid.UUID:
    """Route and ReportOutcomes: whatever scopes the original request had, its tenant."""
    tenant_id = current_caller().tenant_id
    if tenant_id is None:
        raise Unauthenticated("internal calls must carry the caller's tenant")
    return tenant_id


def _uuid(value: str, field: str, missing: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument([FieldViolation(field, "is required")])
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(missing) from None  # a malformed id names nothing: like a missing one


class RouterApi(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, engine: RouterEngine) -> None:
        self._engine = engine

    def _category(self, value: str, field: str) -> str:
        if not value:
            raise InvalidArgument([FieldViolation(field, "is required")])
        if value not in self._engine.categories:
            known = ", ".join(sorted(self._engine.categories))
            raise InvalidArgument([FieldViolation(field, f"unknown category; one of {known}")])
        return value

    # --- provider catalog ------------------------------------------------------------------

    async def ListProviders(
        self, request: router_pb2.ListProvidersRequest, context: Context
    ) -> router_pb2.ListProvidersResponse:
        _catalog_reader()
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("providers", request.category)
        after = decode_token(request.page_token, query)
        rows = [
            p
            for pid, p in sorted(self._engine.catalog.items())
            if (not request.category or p.category == request.category)
            and (after is None or pid > str(after[0]))
        ]
        response = router_pb2.ListProvidersResponse(
            providers=[convert.provider_to_proto(p) for p in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = encode_token([rows[size - 1].provider_id], query)
        return response

    async def GetProvider(
        self, request: router_pb2.GetProviderRequest, context: Context
    ) -> router_pb2.Provider:
        _catalog_reader()
        if not request.provider_id:
            raise InvalidArgument([FieldViolation("provider_id", "is required")])
        provider = self._engine.catalog.get(request.provider_id)
        if provider is None:
            raise NotFound("provider not found")
        return convert.provider_to_proto(provider)

    async def UpdateProvider(
        self, request: router_pb2.UpdateProviderRequest, context: Context
    ) -> router_pb2.Provider:
        caller = current_caller()
        if not caller.is_platform_admin:
            if not caller.scopes:
                raise Unauthenticated("an API key is required")
            raise PermissionDenied("only the platform administrator may edit the catalog")
        provider_id = request.provider.provider_id
        if not provider_id:
            raise InvalidArgument([FieldViolation("provider.provider_id", "is required")])
        paths = tuple(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                [FieldViolation("update_mask", f"is required; one of {', '.join(PROVIDER_FIELDS)}")]
            )
        require(unknown_fields(paths, PROVIDER_FIELDS))

        def change(current: Provider) -> Provider:
            updated, violations = convert.provider_fields_from_proto(
                request.provider, paths, current
            )
            require(violations + validate_provider(updated))
            return updated

        updated = await self._engine.providers.update_provider(provider_id, change, paths)
        if updated is None:
            raise NotFound("provider not found")
        self._engine.replace_provider(updated)
        return convert.provider_to_proto(updated)

    async def ListProviderHealth(
        self, request: router_pb2.ListProviderHealthRequest, context: Context
    ) -> router_pb2.ListProviderHealthResponse:
        tenant_id = _catalog_reader()
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("health", request.category)
        after = decode_token(request.page_token, query)
        tenant = None if tenant_id is None else await self._engine.tenant_routing(tenant_id)
        rows = [
            p
            for pid, p in sorted(self._engine.catalog.items())
            if (not request.category or p.category == request.category)
            and (after is None or pid > str(after[0]))
        ]
        now = datetime.now(UTC).timestamp()
        response = router_pb2.ListProviderHealthResponse(
            provider_health=[
                convert.health_to_proto(p, self._engine.tenant_health(p.provider_id, tenant, now))
                for p in rows[:size]
            ]
        )
        if len(rows) > size:
            response.next_page_token = encode_token([rows[size - 1].provider_id], query)
        return response

    # --- overrides -------------------------------------------------------------------------

    async def CreateRoutingOverride(
        self, request: router_pb2.CreateRoutingOverrideRequest, context: Context
    ) -> router_pb2.RoutingOverride:
        tenant_id = _tenant(WRITE)
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
        tenant_id = _tenant(READ)
        override_id = _uuid(request.override_id, "override_id", "override not found")
        found = await self._engine.tenants.get_override(tenant_id, override_id)
        if found is None:
            raise NotFound("override not found")
        return convert.override_to_proto(found)

    async def ListRoutingOverrides(
        self, request: router_pb2.ListRoutingOverridesRequest, context: Context
    ) -> router_pb2.ListRoutingOverridesResponse:
        tenant_id = _tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("overrides", request.category)
        token = decode_token(request.page_token, query)
        after = None
        if token is not None:
            try:
                after = (datetime.fromisoformat(str(token[0])), uuid.UUID(str(token[1])))
            except (ValueError, IndexError):
                raise InvalidArgument([FieldViolation("page_token", "is malformed")]) from None
        rows = await self._engine.tenants.list_overrides(
            tenant_id, request.category or None, limit=size + 1, after=after
        )
        response = router_pb2.ListRoutingOverridesResponse(
            routing_overrides=[convert.override_to_proto(o) for o in rows[:size]]
        )
        if len(rows) > size:
            last = rows[size - 1]
            assert last.create_time is not None
            response.next_page_token = encode_token(
                [last.create_time.isoformat(), str(last.override_id)], query
            )
        return response

    async def DeleteRoutingOverride(
        self, request: router_pb2.DeleteRoutingOverrideRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id = _tenant(WRITE)
        override_id = _uuid(request.override_id, "override_id", "override not found")
        if not await self._engine.tenants.delete_override(tenant_id, override_id):
            raise NotFound("override not found")
        self._engine.invalidate_tenant(tenant_id)
        return empty_pb2.Empty()

    # --- budgets ---------------------------------------------------------------------------

    async def GetBudget(
        self, request: router_pb2.GetBudgetRequest, context: Context
    ) -> router_pb2.Budget:
        tenant_id = _tenant(READ)
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
        tenant_id = _tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        token = decode_token(request.page_token, ("budgets",))
        month = month_of(datetime.now(UTC))
        rows = await self._engine.tenants.list_budgets(
            tenant_id, month, limit=size + 1, after=None if token is None else str(token[0])
        )
        response = router_pb2.ListBudgetsResponse(
            budgets=[convert.budget_to_proto(b, month) for b in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = encode_token([rows[size - 1].budget.category], ("budgets",))
        return response

    async def UpdateBudget(
        self, request: router_pb2.UpdateBudgetRequest, context: Context
    ) -> router_pb2.Budget:
        tenant_id = _tenant(WRITE)
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
        tenant_id = _tenant(WRITE)
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
        tenant_id = _tenant(READ)
        size = page_size(request.page_size, DEFAULT_PAGE)
        token = decode_token(request.page_token, ("alerts",))
        after = None
        if token is not None:
            try:
                after = (datetime.fromisoformat(str(token[0])), uuid.UUID(str(token[1])))
            except (ValueError, IndexError):
                raise InvalidArgument([FieldViolation("page_token", "is malformed")]) from None
        rows = await self._engine.tenants.list_alerts(tenant_id, limit=size + 1, after=after)
        response = router_pb2.ListRoutingAlertsResponse(
            routing_alerts=[convert.alert_to_proto(a) for a in rows[:size]]
        )
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = encode_token(
                [last.create_time.isoformat(), str(last.alert_id)], ("alerts",)
            )
        return response

    # --- routing ---------------------------------------------------------------------------

    def _route_inputs(self, category: str, capability: str) -> None:
        violations = []
        if not category:
            violations.append(FieldViolation("category", "is required"))
        elif category not in self._engine.categories:
            known = ", ".join(sorted(self._engine.categories))
            violations.append(FieldViolation("category", f"unknown category; one of {known}"))
        if not capability:
            violations.append(FieldViolation("capability", "is required"))
        require(violations)

    async def ExplainRoute(
        self, request: router_pb2.ExplainRouteRequest, context: Context
    ) -> router_pb2.ExplainRouteResponse:
        tenant_id = _tenant(READ)
        self._route_inputs(request.category, request.capability)
        decision, now = await self._engine.decide(
            tenant_id, request.category, request.capability, probes=False
        )
        return router_pb2.ExplainRouteResponse(decision=convert.decision_to_proto(decision, now))

    async def Route(
        self, request: router_pb2.RouteRequest, context: Context
    ) -> router_pb2.RouteResponse:
        tenant_id = _internal_tenant()
        self._route_inputs(request.category, request.capability)
        if request.hints.max_candidates < 0:
            raise InvalidArgument([FieldViolation("hints.max_candidates", "must not be negative")])
        decision, now = await self._engine.decide(
            tenant_id,
            request.category,
            request.capability,
            avoid=frozenset(request.hints.avoid_provider_ids),
            max_candidates=request.hints.max_candidates,
            probes=True,
        )
        return router_pb2.RouteResponse(decision=convert.decision_to_proto(decision, now))

    async def ReportOutcomes(
        self, request: router_pb2.ReportOutcomesRequest, context: Context
    ) -> router_pb2.ReportOutcomesResponse:
        tenant_id = _internal_tenant()
        if not 1 <= len(request.outcomes) <= MAX_OUTCOMES:
            raise InvalidArgument(
                [FieldViolation("outcomes", f"must hold 1-{MAX_OUTCOMES} outcomes")]
            )
        violations: list[FieldViolation] = []
        outcomes = []
        for i, o in enumerate(request.outcomes):
            cost = (
                money_to_decimal(o.cost, f"outcomes[{i}].cost", violations, currency=convert.USD)
                if o.HasField("cost")
                else Decimal(0)
            )
            latency_ms = o.latency.ToNanoseconds() / 1e6
            retry_after = o.retry_after.ToNanoseconds() / 1e9 if o.HasField("retry_after") else None
            result = convert.RESULT_FROM_PROTO.get(o.result)
            violations += validate_outcome(
                i,
                provider_id=o.provider_id,
                result=result,
                latency_ms=latency_ms,
                cost=cost,
                retry_after_s=retry_after,
                catalog=self._engine.catalog,
            )
            if result is not None:
                outcomes.append(
                    Outcome(o.provider_id, result, latency_ms, cost, o.capability, retry_after)
                )
        require(violations)
        accepted = await self._engine.report(tenant_id, outcomes)
        return router_pb2.ReportOutcomesResponse(accepted_count=accepted)
