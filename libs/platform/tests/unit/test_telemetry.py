"""Logs a service writes while serving a call are JSON lines that carry the trace id the
call arrived with (W3C traceparent, as Envoy sends it) and the caller's tenant id."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from hygoshop_platform.server import ServiceServer, create_server
from hygoshop_platform.settings import ServiceSettings
from hygoshop_platform.telemetry import JsonLogFormatter
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER

SERVICE = "hygoshop.catalog.v1.CatalogService"
log = logging.getLogger("hygoshop.test.telemetry")


class LoggingCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetListing(
        self, request: catalog_pb2.GetListingRequest, context: object
    ) -> catalog_pb2.Listing:
        log.info("looked up listing %s", request.listing_id)
        return catalog_pb2.Listing(listing_id=request.listing_id)


@pytest.fixture
async def server() -> AsyncIterator[ServiceServer]:
    srv = create_server(
        ServiceSettings(service_name="test"),
        [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, LoggingCatalog(), SERVICE)],
    )
    await srv.start()
    yield srv
    await srv.stop(0)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


async def test_a_log_line_inside_a_call_carries_trace_and_tenant(
    server: ServiceServer, json_log: io.StringIO
) -> None:
    tenant = uuid.uuid4()
    trace_id = uuid.uuid4().hex
    metadata = (
        ("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"),
        (TENANT_HEADER, str(tenant)),
        (SCOPES_HEADER, "catalog:read"),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await catalog_pb2_grpc.CatalogServiceStub(channel).GetListing(
            catalog_pb2.GetListingRequest(listing_id="L-1"), metadata=metadata
        )
    [line] = json_log.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "looked up listing L-1"
    assert entry["level"] == "INFO"
    assert entry["trace_id"] == trace_id
    assert len(entry["span_id"]) == 16
    assert entry["tenant_id"] == str(tenant)


async def test_a_log_line_outside_any_call_has_neither(json_log: io.StringIO) -> None:
    log.info("starting")
    entry = json.loads(json_log.getvalue())
    assert entry["message"] == "starting"
    assert "trace_id" not in entry
    assert "tenant_id" not in entry
