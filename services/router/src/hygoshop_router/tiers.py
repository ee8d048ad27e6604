"""Tenants' tiers, from tenancy (which owns them), cached.

The router asks tenancy's GetTenant as the tenant itself (its id in the caller metadata),
which any key of that tenant may do. A tier is reused for `cache_seconds`; when tenancy
cannot answer, the last known tier keeps serving for an hour, and a tenant never seen
before is treated as free (the most restrictive tier) until tenancy answers again.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from hygoshop.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from hygoshop_platform.errors import FailedPrecondition
from hygoshop_platform.refreshing import RefreshingCache
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER
from hygoshop_router.convert import TIER_FROM_PROTO
from hygoshop_router.domain.model import Tier

log = logging.getLogger(__name__)
LOOKUP_TIMEOUT_SECONDS = 1.0
STALE_SECONDS = 3600.0
FALLBACK_TIER = Tier.FREE


class TenancyTiers:
    def __init__(self, target: str, cache_seconds: float) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = tenancy_pb2_grpc.TenantServiceStub(self._channel)
        self._cache: RefreshingCache[uuid.UUID, Tier] = RefreshingCache(
            cache_seconds, stale_seconds=STALE_SECONDS
        )

    async def tier(self, tenant_id: uuid.UUID) -> Tier:
        cached = self._cache.peek(tenant_id)
        if cached is not None:
            return cached
        try:
            return await self._cache.get(tenant_id, lambda: self._lookup(tenant_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise FailedPrecondition("the caller's tenant does not exist") from None
            log.warning(
                "tenancy unavailable (%s): routing tenant %s as %s",
                exc.code().name,
                tenant_id,
                FALLBACK_TIER.value,
            )
            return FALLBACK_TIER

    async def _lookup(self, tenant_id: uuid.UUID) -> Tier:
        tenant = await self._stub.GetTenant(
            tenancy_pb2.GetTenantRequest(tenant_id=str(tenant_id)),
            metadata=((TENANT_HEADER, str(tenant_id)), (SCOPES_HEADER, "routing:read")),
            timeout=LOOKUP_TIMEOUT_SECONDS,
        )
        return TIER_FROM_PROTO.get(tenant.tier, FALLBACK_TIER)

    async def close(self) -> None:
        await self._channel.close(None)
