"""Tenancy and the router served in this process on real PostgreSQL, with gRPC clients."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from hygoshop.router.v1 import router_pb2_grpc
from hygoshop.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.migrations import upgrade
from hygoshop_platform.server import ServiceServer
from hygoshop_platform.tenancy import PLATFORM_ADMIN_SCOPE, SCOPES_HEADER, TENANT_HEADER
from hygoshop_platform.testing.postgres import MakeDatabase
from hygoshop_router.app import build as build_router
from hygoshop_router.config import SCHEMA as ROUTER_SCHEMA
from hygoshop_router.config import RouterSettings
from hygoshop_tenancy.app import build as build_tenancy
from hygoshop_tenancy.config import SCHEMA as TENANCY_SCHEMA
from hygoshop_tenancy.config import TenancySettings
from tests.support import APP_PASSWORD, PlatformDatabase

ADMIN = ((SCOPES_HEADER, PLATFORM_ADMIN_SCOPE),)
# Short periods so recovery happens within a test; thresholds stay the defaults.
ROUTER_ENV = {
    "ROUTER_OPEN_SECONDS": "0.4",
    "ROUTER_PROBE_INTERVAL_SECONDS": "0.05",
    "HEALTH_PERSIST_SECONDS": "3600",  # persistence in these tests happens at stop
    "TENANT_CACHE_SECONDS": "2",
}


def tenant_md(tenant_id: uuid.UUID, *scopes: str) -> tuple[tuple[str, str], ...]:
    """Metadata the gateway (or an internal caller passing the request on) would send."""
    return ((TENANT_HEADER, str(tenant_id)), (SCOPES_HEADER, " ".join(scopes)))


@dataclass
class Platform:
    tenancy: ServiceServer
    router: ServiceServer
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub
    tenancy_stub: tenancy_pb2_grpc.TenantServiceAsyncStub
    db: PlatformDatabase
    tenancy_target: str

    @property
    def router_target(self) -> str:
        return f"127.0.0.1:{self.router.port}"

    async def new_tenant(self, tier: int = tenancy_pb2.TIER_GROWTH) -> uuid.UUID:
        tenant = await self.tenancy_stub.CreateTenant(
            tenancy_pb2.CreateTenantRequest(
                tenant=tenancy_pb2.Tenant(display_name=f"t-{secrets.token_hex(3)}", tier=tier)
            ),
            metadata=ADMIN,
        )
        return uuid.UUID(tenant.tenant_id)

    def router_settings(self, **extra: str) -> RouterSettings:
        return RouterSettings.from_env(
            {
                "DATABASE_URL": self.db.app_url(ROUTER_SCHEMA),
                "TENANCY_GRPC_TARGET": self.tenancy_target,
                **ROUTER_ENV,
                **extra,
            }
        )

    async def restart_router(self, **extra: str) -> None:
        """Stop the router (it persists health) and build a new one on a new port."""
        await self.router.stop(grace=1)
        await self.channel.close(None)
        self.router = await build_router(self.router_settings(**extra))
        await self.router.start()
        self.channel = grpc.aio.insecure_channel(self.router_target)
        self.stub = router_pb2_grpc.RouterServiceStub(self.channel)


@pytest.fixture(scope="session")
def router_db(make_database: MakeDatabase) -> PlatformDatabase:
    """A database of its own: these tests edit the catalog and apply seeds, which must not
    leak into the shared platform database the end-to-end stack runs on."""
    url = make_database("router")
    for spec in (TENANCY_SCHEMA, ROUTER_SCHEMA, BUS_SCHEMA):
        upgrade(url, spec, app_password=APP_PASSWORD)
    return PlatformDatabase(url)


@pytest.fixture(scope="module")
async def platform(router_db: PlatformDatabase) -> AsyncIterator[Platform]:
    platform_db = router_db
    tenancy = await build_tenancy(
        TenancySettings.from_env(
            {
                "DATABASE_URL": platform_db.app_url(TENANCY_SCHEMA),
                "AUTH_CACHE_TTL_SECONDS": "0",
            }
        )
    )
    await tenancy.start()
    tenancy_target = f"127.0.0.1:{tenancy.port}"
    tenancy_channel = grpc.aio.insecure_channel(tenancy_target)
    holder = Platform(
        tenancy=tenancy,
        router=None,  # type: ignore[arg-type]
        channel=None,  # type: ignore[arg-type]
        stub=None,  # type: ignore[arg-type]
        tenancy_stub=tenancy_pb2_grpc.TenantServiceStub(tenancy_channel),
        db=platform_db,
        tenancy_target=tenancy_target,
    )
    holder.router = await build_router(holder.router_settings())
    await holder.router.start()
    holder.channel = grpc.aio.insecure_channel(holder.router_target)
    holder.stub = router_pb2_grpc.RouterServiceStub(holder.channel)
    try:
        yield holder
    finally:
        await holder.channel.close(None)
        await holder.router.stop(grace=1)
        await tenancy_channel.close(None)
        await tenancy.stop(grace=1)
