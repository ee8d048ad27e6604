"""Composition root of router: build(settings) -> a ready-to-start server."""

from __future__ import annotations

from hygoshop.router.v1 import router_pb2, router_pb2_grpc
from hygoshop_platform.bus import start_service_bus
from hygoshop_platform.db import assert_safe_role, open_pool
from hygoshop_platform.server import ServiceServer, create_server
from hygoshop_router.api import RouterApi
from hygoshop_router.config import SCHEMA, RouterSettings
from hygoshop_router.domain.health import HealthBook
from hygoshop_router.engine import RouterEngine
from hygoshop_router.seed import load_seed
from hygoshop_router.store import ProviderStore
from hygoshop_router.tenant_store import TenantStore
from hygoshop_router.tiers import TenancyTiers

ROUTER_SERVICE = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


async def build(settings: RouterSettings) -> ServiceServer:
    base = settings.base
    seed = load_seed(settings.seed_file)  # a malformed catalog file fails the start, loudly
    pool = await open_pool(
        base.require_database_url(), size=base.db_pool_size, application_name="router"
    )
    await assert_safe_role(pool, SCHEMA.schema)
    tiers = TenancyTiers(settings.tenancy_target, settings.tier_cache_seconds)
    engine = RouterEngine(
        ProviderStore(pool),
        TenantStore(pool),
        tiers,
        HealthBook(settings.health),
        tenant_cache_seconds=settings.tenant_cache_seconds,
        health_persist_seconds=settings.health_persist_seconds,
        catalog_refresh_seconds=settings.catalog_refresh_seconds,
        decision_memo=settings.decision_memo,
    )
    try:
        await engine.start(seed)
    except BaseException:
        await tiers.close()
        await pool.close()
        raise
    server = create_server(
        base,
        [(router_pb2_grpc.add_RouterServiceServicer_to_server, RouterApi(engine), ROUTER_SERVICE)],
    )
    # on_stop runs in reverse: the relay stops, then the bus closes, then the engine
    # persists health before the pool closes.
    server.on_stop.extend([pool.close, tiers.close, engine.stop])
    if settings.bus is not None:
        await start_service_bus(server.on_stop, pool, SCHEMA.schema, settings.bus)
    return server
