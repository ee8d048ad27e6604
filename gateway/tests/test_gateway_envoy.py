"""A real Envoy with the rendered config, a fake ext_authz server and a recording service.

What a client sees: health and the API document without a key, JSON errors from Envoy
itself, fail-closed auth, and identity headers that only ext_authz can set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format
from google.type import money_pb2

from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI, render_envoy_config
from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

pytestmark = pytest.mark.integration

ENVOY = Path(sys.executable).parent / "envoy"
DESCRIPTOR, OPENAPI = DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI

TENANT, SCOPES, KEY_ID = "x-hygoshop-tenant-id", "x-hygoshop-scopes", "x-hygoshop-key-id"
DENIAL = {"code": 16, "message": "invalid or revoked API key", "details": []}
MAX_BODY = 16 * 1024
AUTHZ_TIMEOUT_MS = 300


def free_port() -> int:
    """A loopback port that was free a moment ago; nothing listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_envoy(config_text: str, workdir: Path, port: int) -> AsyncIterator[str]:
    """Start Envoy with `config_text`, yield its base URL once /healthz answers, stop it."""
    config = workdir / f"envoy-{port}.yaml"
    config.write_text(config_text)
    log_path = workdir / f"envoy-{port}.log"
    with log_path.open("w") as log:
        # Hot restart off: no shared memory, so parallel Envoys never clash on a base id.
        proc = await asyncio.create_subprocess_exec(
            *(str(ENVOY), "-c", str(config), "--disable-hot-restart", "--concurrency", "1"),
            *("-l", "warning"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=1) as client:
            for _ in range(200):
                if proc.returncode is not None:
                    raise AssertionError(
                        f"Envoy exited ({proc.returncode}):\n{log_path.read_text()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"Envoy did not become ready:\n{log_path.read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _set(key: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


@dataclass
class FakeAuthz:
    """envoy.service.auth.v3.Authorization keyed on the bearer token, like tenancy's."""

    checks: list[dict[str, str]] = field(default_factory=list)

    async def check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        headers = dict(request.attributes.request.http.headers)
        self.checks.append(headers)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token == "slow":
            await asyncio.sleep(1)
        if token in {"tenant-key", "slow"}:
            ok = [_set(TENANT, "tenant-a"), _set(SCOPES, "catalog:read"), _set(KEY_ID, "key-a")]
        elif token == "admin-key":  # the platform admin acts on no tenant: no tenant header
            ok = [_set(SCOPES, "platform:admin")]
        else:
            return external_auth_pb2.CheckResponse(
                status={"code": 16},
                denied_response={
                    "status": {"code": 401},
                    "headers": [_set("content-type", "application/json")],
                    "body": json.dumps(DENIAL),
                },
            )
        return external_auth_pb2.CheckResponse(status={"code": 0}, ok_response={"headers": ok})

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            "envoy.service.auth.v3.Authorization",
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=external_auth_pb2.CheckRequest.FromString,
                    response_serializer=external_auth_pb2.CheckResponse.SerializeToString,
                )
            },
        )


@dataclass
class RecordingCatalog:
    """hygoshop.catalog.v1.CatalogService's GetListing and ListListings; keeps what came."""

    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    list_requests: list[catalog_pb2.ListListingsRequest] = field(default_factory=list)

    async def get_listing(
        self, request: catalog_pb2.GetListingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.Listing:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        price = money_pb2.Money(currency_code="EUR", units=12, nanos=500_000_000)
        return catalog_pb2.Listing(
            listing_id=request.listing_id,
            title="Linen shirt",
            variants=[catalog_pb2.Variant(sku="SKU-1", price=price)],
        )

    async def list_listings(
        self,
        request: catalog_pb2.ListListingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> catalog_pb2.ListListingsResponse:
        self.list_requests.append(request)
        return catalog_pb2.ListListingsResponse()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        messages = catalog_pb2  # request and response types by RPC
        return grpc.method_handlers_generic_handler(
            messages.DESCRIPTOR.services_by_name["CatalogService"].full_name,
            {
                "GetListing": grpc.unary_unary_rpc_method_handler(
                    self.get_listing,
                    request_deserializer=messages.GetListingRequest.FromString,
                    response_serializer=messages.Listing.SerializeToString,
                ),
                "ListListings": grpc.unary_unary_rpc_method_handler(
                    self.list_listings,
                    request_deserializer=messages.ListListingsRequest.FromString,
                    response_serializer=messages.ListListingsResponse.SerializeToString,
                ),
            },
        )


@dataclass
class Gateway:
    url: str
    authz: FakeAuthz
    catalog: RecordingCatalog

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


async def _grpc_server(handler: grpc.GenericRpcHandler[Any, Any]) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest_asyncio.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    authz, catalog = FakeAuthz(), RecordingCatalog()
    authz_server, authz_port = await _grpc_server(authz.handler())
    catalog_server, catalog_port = await _grpc_server(catalog.handler())
    listen = free_port()
    config = render_envoy_config(
        listen_host="127.0.0.1",
        listen_port=listen,
        admin_port=None,
        descriptor_path=DESCRIPTOR,
        openapi_path=OPENAPI,
        # tenancy's two "processes" are closed ports: a backend that is down.
        upstreams={
            "catalog": [("127.0.0.1", catalog_port)],
            "tenancy": [("127.0.0.1", free_port()), ("127.0.0.1", free_port())],
            "router": [("127.0.0.1", free_port())],
            "workflows": [("127.0.0.1", free_port())],
        },
        authz=("127.0.0.1", authz_port),
        authz_timeout_ms=AUTHZ_TIMEOUT_MS,
        max_request_bytes=MAX_BODY,
    )
    try:
        async with running_envoy(config, tmp_path_factory.mktemp("envoy"), listen) as url:
            yield Gateway(url, authz, catalog)
    finally:
        await authz_server.stop(None)
        await catalog_server.stop(None)


def _is_status_json(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json", response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    return body


async def test_healthz_answers_without_a_key_or_an_auth_call(gateway: Gateway) -> None:
    checks = len(gateway.authz.checks)
    async with gateway.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert len(gateway.authz.checks) == checks


async def test_openapi_document_is_served_without_a_key(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == OPENAPI.read_bytes()


async def test_unknown_path_is_a_json_404_for_an_authenticated_caller(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.get("/v1/nothing", headers={"authorization": "Bearer tenant-key"})
    assert response.status_code == 404
    _is_status_json(response, 5)


async def test_unknown_path_without_a_key_is_denied_before_routing(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.get("/v1/nothing")
    assert response.status_code == 401


async def test_denial_keeps_the_authz_status_and_json_body(gateway: Gateway) -> None:
    calls = len(gateway.catalog.metadata)
    async with gateway.client() as client:
        response = await client.get("/v1/listings/l1", headers={"authorization": "Bearer bad"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DENIAL
    assert len(gateway.catalog.metadata) == calls


async def test_allowed_call_to_a_backend_that_is_down_is_a_json_503(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.get(
            "/v1/tenants/t1", headers={"authorization": "Bearer tenant-key"}
        )
    assert response.status_code == 503
    _is_status_json(response, 14)


async def test_authz_timeout_fails_closed(gateway: Gateway) -> None:
    calls = len(gateway.catalog.metadata)
    async with gateway.client() as client:
        response = await client.get("/v1/listings/l1", headers={"authorization": "Bearer slow"})
    assert response.status_code == 503
    body = _is_status_json(response, 14)
    assert body["message"] == "authorization service unavailable"
    assert len(gateway.catalog.metadata) == calls


async def test_transcoded_call_carries_the_identity_set_by_authz(gateway: Gateway) -> None:
    spoofed = {TENANT: "tenant-b", KEY_ID: "key-b", SCOPES: "admin"}
    async with gateway.client() as client:
        response = await client.get(
            "/v1/listings/l1", headers={"authorization": "Bearer tenant-key", **spoofed}
        )
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["listingId"] == "l1"
    # proto3 JSON: lowerCamel names, int64 as a string, enums by name, defaults printed.
    assert listing["variants"][0]["price"] == {
        "currencyCode": "EUR",
        "units": "12",
        "nanos": 500000000,
    }
    assert listing["status"] == "LISTING_STATUS_UNSPECIFIED"
    seen = gateway.catalog.metadata[-1]
    assert (seen[TENANT], seen[KEY_ID], seen[SCOPES]) == ("tenant-a", "key-a", "catalog:read")
    assert "authorization" not in seen  # the API key never reaches a service


async def test_client_identity_headers_are_stripped_before_ext_authz(gateway: Gateway) -> None:
    # The admin key gets no tenant header from authz, so a spoofed one would survive
    # overwrite semantics: only the gateway's early strip removes it.
    spoofed = {
        TENANT: "tenant-b",
        "X-Hygoshop-Key-Id": "key-b",
        "x-hygoshop-anything": "x",
        "x_hygoshop_tenant_id": "tenant-c",
    }
    async with gateway.client() as client:
        response = await client.get(
            "/v1/listings/l2", headers={"authorization": "Bearer admin-key", **spoofed}
        )
    assert response.status_code == 200, response.text
    seen = gateway.catalog.metadata[-1]
    assert seen[SCOPES] == "platform:admin"
    leaked = [k for k in seen if k.replace("_", "-").startswith("x-hygoshop-") and k != SCOPES]
    assert leaked == []
    to_authz = gateway.authz.checks[-1]
    assert not [k for k in to_authz if k.replace("_", "-").startswith("x-hygoshop-")]


async def test_raw_grpc_through_the_gateway_is_authenticated_and_stripped(gateway: Gateway) -> None:
    target = gateway.url.removeprefix("http://")
    request = catalog_pb2.GetListingRequest(listing_id="g1")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GetListing(request, metadata=[(TENANT, "tenant-b")])
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = await stub.GetListing(
            request, metadata=[(TENANT, "tenant-b"), ("authorization", "Bearer admin-key")]
        )
    assert reply.listing_id == "g1"
    assert TENANT not in gateway.catalog.metadata[-1]


async def test_query_parameters_use_json_names_and_reach_the_service(gateway: Gateway) -> None:
    params = {
        "pageSize": "7",
        "status": "listing_status_active",
        "updatedAfter": "2026-01-02T03:04:05Z",
    }
    async with gateway.client() as client:
        response = await client.get(
            "/v1/listings", params=params, headers={"authorization": "Bearer tenant-key"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"listings": [], "nextPageToken": ""}
    got = json_format.MessageToDict(gateway.catalog.list_requests[-1])
    assert got == {
        "pageSize": 7,
        "status": "LISTING_STATUS_ACTIVE",
        "updatedAfter": "2026-01-02T03:04:05Z",
    }


async def test_unknown_query_parameter_is_a_json_400(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.get(
            "/v1/listings", params={"tenantId": "b"}, headers={"authorization": "Bearer tenant-key"}
        )
    assert response.status_code == 400
    _is_status_json(response, 3)


async def test_malformed_json_body_is_a_json_400(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.post(
            "/v1/listings",
            content=b'{"title": ',
            headers={"authorization": "Bearer tenant-key", "content-type": "application/json"},
        )
    assert response.status_code == 400
    _is_status_json(response, 3)


async def test_body_over_the_limit_is_a_json_413(gateway: Gateway) -> None:
    async with gateway.client() as client:
        response = await client.post(
            "/v1/listings",
            json={"title": "x" * (MAX_BODY + 1)},
            headers={"authorization": "Bearer tenant-key"},
        )
    assert response.status_code == 413
    _is_status_json(response, 3)


async def test_unreachable_authz_fails_closed(tmp_path: Path) -> None:
    listen = free_port()
    config = render_envoy_config(
        listen_host="127.0.0.1",
        listen_port=listen,
        admin_port=None,
        descriptor_path=DESCRIPTOR,
        openapi_path=OPENAPI,
        upstreams={
            "catalog": [("127.0.0.1", free_port())],
            "tenancy": [("127.0.0.1", free_port())],
            "router": [("127.0.0.1", free_port())],
            "workflows": [("127.0.0.1", free_port())],
        },
        authz=("127.0.0.1", free_port()),
    )
    async with (
        running_envoy(config, tmp_path, listen) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/v1/listings/l1", headers={"authorization": "Bearer k"})
    assert response.status_code == 503
    assert _is_status_json(response, 14)["message"] == "authorization service unavailable"
