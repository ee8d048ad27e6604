"""Composition root of catalog: build(settings) -> a ready-to-start server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from botocore.exceptions import BotoCoreError, ClientError

from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from hygoshop_catalog import events
from hygoshop_catalog.api import CatalogApi
from hygoshop_catalog.config import SCHEMA, CatalogSettings
from hygoshop_catalog.imports import ListingImports
from hygoshop_catalog.media import Media
from hygoshop_catalog.store import CatalogStore
from hygoshop_catalog.upload_expiry import UploadSweeper
from hygoshop_platform.blobs import BlobSettings, BlobStore, configure_cors
from hygoshop_platform.bus import ConsumerOptions, start_service_bus
from hygoshop_platform.db import assert_safe_role, open_pool
from hygoshop_platform.server import ServiceServer, create_server

log = logging.getLogger(__name__)

CATALOG_SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


async def build(settings: CatalogSettings) -> ServiceServer:
    base = settings.base
    pool = await open_pool(
        base.require_database_url(), size=base.db_pool_size, application_name="catalog"
    )
    await assert_safe_role(pool, SCHEMA.schema)
    blobs = BlobStore(settings.blobs) if settings.blobs is not None else None
    if settings.blobs is not None:
        await _allow_browser_uploads(settings.blobs)
    store = CatalogStore(pool)
    imports = ListingImports(pool, blobs, enabled=settings.bus is not None)
    server = create_server(
        base,
        [
            (
                catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
                CatalogApi(store, Media(pool, store, blobs, settings.upload_retention), imports),
                CATALOG_SERVICE,
            )
        ],
    )
    # on_stop runs in reverse: consumers and relay stop first, then the bus, then the pool.
    server.on_stop.append(pool.close)
    if blobs is not None:
        server.on_stop.append(_closer(blobs))
        sweeper = UploadSweeper(pool, blobs, settings.upload_sweep_seconds)
        await sweeper.start()
        server.on_stop.append(sweeper.stop)
    if settings.bus is not None:
        bus = await start_service_bus(
            server.on_stop, pool, SCHEMA.schema, settings.bus, consumes=True
        )
        import_jobs = await bus.consume_jobs(
            events.IMPORT_JOB, imports.run_job, ConsumerOptions(prefetch=2)
        )
        server.on_stop.append(import_jobs.stop)
    return server


def _closer(blobs: BlobStore) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        blobs.close()

    return close


async def _allow_browser_uploads(blobs: BlobSettings) -> None:
    """Set the bucket's CORS rules for S3_CORS_ORIGINS. A failure is logged, not fatal:
    uploads from servers and apps still work, only browsers' are refused."""
    try:
        await asyncio.to_thread(configure_cors, blobs)
    except (BotoCoreError, ClientError) as error:
        log.error("could not set CORS rules on bucket %s: %s", blobs.bucket, error)
