"""RouterService: the routing methods (Route, ExplainRoute, ReportOutcomes) on top of the
catalog and tenant-settings methods. Each method checks who may call (see `access`), maps
proto <-> domain and calls the engine or a store. Nothing else.
"""

from __future__ import annotations

from decimal import Decimal

from hygoshop.router.v1 import router_pb2, router_pb2_grpc
from hygoshop_platform.access import require_tenant
from hygoshop_platform.errors import FieldViolation, InvalidArgument, require
from hygoshop_platform.money import money_to_decimal
from hygoshop_platform.server import Context
from hygoshop_router import convert
from hygoshop_router.access import READ, internal_tenant
from hygoshop_router.catalog_api import CatalogMethods
from hygoshop_router.domain.model import Outcome
from hygoshop_router.domain.ranking import Decision
from hygoshop_router.domain.validation import MAX_OUTCOMES, validate_outcome
from hygoshop_router.engine import RouterEngine
from hygoshop_router.settings_api import TenantSettingsMethods

MAX_RENDERED = 20_000


class RouterApi(CatalogMethods, TenantSettingsMethods, router_pb2_grpc.RouterServiceServicer):
    def __init__(self, engine: RouterEngine) -> None:
        super().__init__(engine)
        # The engine reuses decisions while they stay exact; reuse their protos with them.
        self._rendered: dict[int, tuple[Decision, router_pb2.RouteDecision]] = {}

    def _render(self, decision: Decision, now: float, into: router_pb2.RouteDecision) -> None:
        """Write the decision's proto into `into` (a response's field), stamped with `now`."""
        kept = self._rendered.get(id(decision))
        if kept is None or kept[0] is not decision:
            kept = (decision, convert.decision_to_proto(decision, now))
            if len(self._rendered) >= MAX_RENDERED:
                self._rendered.clear()
            self._rendered[id(decision)] = kept
        into.CopyFrom(kept[1])
        into.decide_time.FromNanoseconds(int(now * 1e9))

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
        tenant_id = require_tenant(READ)
        self._route_inputs(request.category, request.capability)
        decision, now = await self._engine.decide(
            tenant_id, request.category, request.capability, probes=False
        )
        response = router_pb2.ExplainRouteResponse()
        self._render(decision, now, response.decision)
        return response

    async def Route(
        self, request: router_pb2.RouteRequest, context: Context
    ) -> router_pb2.RouteResponse:
        tenant_id = internal_tenant()
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
        response = router_pb2.RouteResponse()
        self._render(decision, now, response.decision)
        return response

    async def ReportOutcomes(
        self, request: router_pb2.ReportOutcomesRequest, context: Context
    ) -> router_pb2.ReportOutcomesResponse:
        tenant_id = internal_tenant()
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
