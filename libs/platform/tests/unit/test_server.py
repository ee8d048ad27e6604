"""The chassis server: caller context, rich errors, tenant-tagged spans, health, graceful stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from hygoshop_platform.errors import FieldViolation, InvalidArgument, NotFound
from hygoshop_platform.server import ServiceServer, create_server
from hygoshop_platform.settings import ServiceSettings
from hygoshop_platform.telemetry import TENANT_ATTRIBUTE
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER, current_caller

SERVICE = "hygoshop.catalog.v1.CatalogService"


class ScriptedCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """Behaves as the listing id says, to exercise each path of the interceptor."""

    async def GetListing(
        self, request: catalog_pb2.GetListingRequest, context: object
    ) -> catalog_pb2.Listing:
        if request.listing_id == "missing":
            raise NotFound("listing not found")
        if request.listing_id == "invalid":
            raise InvalidArgument([FieldViolation("listing_id", "must be a UUID")])
        if request.listing_id == "crash":
            raise RuntimeError(
                'duplicate key value violates unique constraint "variants_tenant_id_sku_key"'
            )
        caller = current_caller()
        return catalog_pb2.Listing(
            listing_id=str(caller.tenant_id), title=" ".join(sorted(caller.scopes))
        )


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
async def server() -> AsyncIterator[ServiceServer]:
    srv = create_server(
        ServiceSettings(service_name="test"),
        [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, ScriptedCatalog(), SERVICE)],
    )
    await srv.start()
    yield srv
    await srv.stop(0)


async def _get(
    port: int, listing_id: str, metadata: tuple[tuple[str, str], ...] = ()
) -> catalog_pb2.Listing:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        return await stub.GetListing(
            catalog_pb2.GetListingRequest(listing_id=listing_id), metadata=metadata
        )


async def test_servicer_sees_the_caller_from_metadata(server: ServiceServer) -> None:
    tenant = uuid.uuid4()
    reply = await _get(
        server.port, "ok", ((TENANT_HEADER, str(tenant)), (SCOPES_HEADER, "catalog:read"))
    )
    assert reply.listing_id == str(tenant)
    assert reply.title == "catalog:read"


async def test_domain_error_becomes_status_with_error_info(server: ServiceServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(server.port, "missing")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(info.value)
    assert status is not None
    error = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(error)
    assert error.reason == "NOT_FOUND"


async def test_invalid_argument_carries_field_violations(server: ServiceServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(server.port, "invalid")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "listing_id"


async def test_unexpected_error_leaks_nothing(server: ServiceServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _get(server.port, "crash")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error"
    assert "constraint" not in str(info.value.debug_error_string())


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x02\xff\xfe",  # listing_id (field 1) holding bytes that are not UTF-8
        b"\x0a\x20short",  # a length (32) longer than what follows
    ],
    ids=["not-utf8", "truncated"],
)
async def test_an_undecodable_request_is_invalid_argument(
    server: ServiceServer, raw: bytes
) -> None:
    """gRPC itself answers a request its parser refuses with UNKNOWN (a 500 through the
    gateway, naming the parser); the chassis answers INVALID_ARGUMENT."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/GetListing",
            request_serializer=lambda b: b,
            response_deserializer=catalog_pb2.Listing.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(raw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "request"
    assert "Error parsing" not in (info.value.details() or "")


async def test_every_span_carries_the_tenant(
    server: ServiceServer, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    tenant = uuid.uuid4()
    await _get(server.port, "ok", ((TENANT_HEADER, str(tenant)), (SCOPES_HEADER, "catalog:read")))
    [span] = [s for s in spans.get_finished_spans() if s.name == f"{SERVICE}/GetListing"]
    assert span.attributes is not None
    assert span.attributes[TENANT_ATTRIBUTE] == str(tenant)
    assert span.kind == trace.SpanKind.SERVER


async def test_health_serving_then_not_serving_on_stop() -> None:
    srv = create_server(
        ServiceSettings(service_name="test"),
        [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, ScriptedCatalog(), SERVICE)],
    )
    await srv.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(srv.stop(grace=1))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
