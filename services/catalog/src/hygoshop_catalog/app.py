"""Composition root of catalog: build(settings) -> a ready-to-start server."""

from __future__ import annotations

from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from hygoshop_catalog.api import CatalogApi
from hygoshop_catalog.config import SCHEMA, CatalogSettings
from hygoshop_catalog.store import CatalogStore
from hygoshop_platform.db import assert_safe_role, open_pool
from hygoshop_platform.server import ServiceServer, create_server

CATALOG_SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


async def build(settings: CatalogSettings) -> ServiceServer:
    base = settings.base
    pool = await open_pool(
        base.require_database_url(), size=base.db_pool_size, application_name="catalog"
    )
    await assert_safe_role(pool, SCHEMA.schema)
    server = create_server(
        base,
        [
            (
                catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
                CatalogApi(CatalogStore(pool)),
                CATALOG_SERVICE,
            )
        ],
    )
    server.on_stop.append(pool.close)
    return server
