"""Composition root of tenancy: build(settings) -> a ready-to-start server."""

from __future__ import annotations

from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from hygoshop.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from hygoshop_platform.cache import cache_from_url
from hygoshop_platform.db import assert_safe_role, open_pool
from hygoshop_platform.server import ServiceServer, create_server
from hygoshop_tenancy.api import TenantApi
from hygoshop_tenancy.authz import (
    AuthCache,
    Authenticator,
    AuthorizationService,
    TenantRateLimits,
)
from hygoshop_tenancy.config import SCHEMA, TenancySettings
from hygoshop_tenancy.ratelimit import limiter_from_url
from hygoshop_tenancy.store import TenancyStore

TENANT_SERVICE = tenancy_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name
AUTHZ_SERVICE = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name


async def build(settings: TenancySettings) -> ServiceServer:
    base = settings.base
    pool = await open_pool(
        base.require_database_url(), size=base.db_pool_size, application_name="tenancy"
    )
    await assert_safe_role(pool, SCHEMA.schema)
    store = TenancyStore(pool)
    kv = cache_from_url(settings.redis_url, namespace="hygoshop:tenancy:auth")
    auth_cache = AuthCache(kv, settings.auth_cache_ttl_seconds)
    authenticator = Authenticator(store, auth_cache, settings.platform_admin_api_key)
    limiter = limiter_from_url(settings.redis_url, namespace="hygoshop:tenancy:rate")
    limits = TenantRateLimits(limiter, settings.rate_limits)
    server = create_server(
        base,
        [
            (
                tenancy_pb2_grpc.add_TenantServiceServicer_to_server,
                TenantApi(store, auth_cache),
                TENANT_SERVICE,
            ),
            (
                external_auth_pb2_grpc.add_AuthorizationServicer_to_server,
                AuthorizationService(authenticator, limits),
                AUTHZ_SERVICE,
            ),
        ],
    )
    server.on_stop.extend([pool.close, kv.close, limiter.close])
    return server
