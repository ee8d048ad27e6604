"""One REST call through the real Envoy is one trace: gateway, auth check, service and the
consumer of the event it published, in one tree, every span tagged with the caller's tenant.

The platform runs with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-test OTLP/gRPC
collector that Envoy and every service export to, exactly as they would to a real one.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy.services import StackOptions
from deploy.stack import start_stack
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.infra import ManagedProcess
from hygoshop_platform.migrations import app_url
from hygoshop_platform.telemetry import TENANT_ATTRIBUTE
from hygoshop_platform.testing.otlp import CollectedSpan, OtlpCollector
from hygoshop_platform.testing.postgres import MakeDatabase
from tests.e2e.listing_consumer import SERVICE as CONSUMER_SERVICE
from tests.support import APP_PASSWORD

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Hop:
    """A span the trace of a listing's creation must hold."""

    service: str
    kind: str
    name: str

    def matches(self, span: CollectedSpan) -> bool:
        return (span.service, span.kind, span.name) == (self.service, self.kind, self.name)


GATEWAY = Hop("gateway", "SERVER", "ingress")
GATEWAY_AUTH_CALL = Hop(
    "gateway", "CLIENT", "async envoy.service.auth.v3.Authorization.Check egress"
)
AUTH_CHECK = Hop("tenancy", "SERVER", "envoy.service.auth.v3.Authorization/Check")
CREATE_LISTING = Hop("catalog", "SERVER", "hygoshop.catalog.v1.CatalogService/CreateListing")
CONSUMED = Hop(CONSUMER_SERVICE, "CONSUMER", "catalog.listing.created process")

LISTING_CREATED_HOPS: tuple[Hop, ...] = (
    GATEWAY,
    GATEWAY_AUTH_CALL,
    AUTH_CHECK,
    CREATE_LISTING,
    # The listing-created event, relayed from the catalog's outbox over the bus: the
    # envelope carries the CreateListing span's traceparent, so the consumer's span joins
    # this trace under it, tagged with the envelope's tenant.
    CONSUMED,
)
UNTAGGED_HOPS = frozenset({GATEWAY_AUTH_CALL})
"""Envoy's own call to the auth check runs while the tenant is still unknown (it is what
finds it) and Envoy offers no way to tag it afterwards; the check's server span, on the
other side of that call, carries the tenant."""


@dataclass(frozen=True)
class Traced:
    http: httpx.Client
    collector: OtlpCollector
    consumer_env: dict[str, str]
    """What a downstream consumer process of this stack needs: its bus and collector."""


@pytest.fixture(scope="module")
def traced(
    make_database: MakeDatabase, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traced]:
    # A database of its own: services of two stacks on one database would share the
    # catalog's outbox, and the other stack's relay could publish this stack's events.
    database = make_database("traced")
    with OtlpCollector() as collector, pytest.MonkeyPatch.context() as env:
        # Services export every 100 ms instead of every 5 s (inherited by the processes).
        env.setitem(os.environ, "OTEL_BSP_SCHEDULE_DELAY", "100")
        options = StackOptions(
            platform_admin_key=admin_key,
            otlp_endpoint=collector.endpoint,
            # Its own bus namespace (PostgreSQL transport): no other stack's consumers
            # take its messages, nor it theirs.
            bus_namespace=f"trace{uuid.uuid4().hex[:12]}",
        )
        consumer_env = {
            "BUS_URL": app_url(database, BUS_SCHEMA, APP_PASSWORD),
            "BUS_NAMESPACE": options.bus_namespace,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        }
        stack = start_stack(
            database,
            Path(tmp_path_factory.mktemp("traced-stack")),
            options,
            app_password=APP_PASSWORD,
        )
        try:
            with httpx.Client(base_url=stack.gateway_url, timeout=10.0) as http:
                yield Traced(http, collector, consumer_env)
        finally:
            stack.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _tenant_and_key(http: httpx.Client, admin_key: str) -> tuple[str, str]:
    tenant = http.post(
        "/v1/tenants",
        json={"displayName": "Traced", "tier": "TIER_GROWTH"},
        headers=_bearer(admin_key),
    )
    assert tenant.status_code == 200, tenant.text
    tenant_id = tenant.json()["tenantId"]
    key = http.post(
        f"/v1/tenants/{tenant_id}/apiKeys",
        json={"displayName": "traces", "scopes": ["catalog:write"]},
        headers=_bearer(admin_key),
    )
    assert key.status_code == 200, key.text
    return tenant_id, key.json()["secret"]


def _trace_of_create(collector: OtlpCollector) -> list[CollectedSpan]:
    """The whole trace the CreateListing call belongs to, once every hop has arrived."""

    def created(spans: list[CollectedSpan]) -> bool:
        return any(CREATE_LISTING.matches(s) for s in spans)

    spans = collector.wait_for(created)
    [create] = [s for s in spans if CREATE_LISTING.matches(s)]

    def complete(spans: list[CollectedSpan]) -> bool:
        trace = [s for s in spans if s.trace_id == create.trace_id]
        return all(any(hop.matches(s) for s in trace) for hop in LISTING_CREATED_HOPS)

    collector.wait_for(complete)
    return collector.trace(create.trace_id)


def test_creating_a_listing_is_one_trace_tagged_with_the_tenant(
    traced: Traced, admin_key: str
) -> None:
    tenant_id, key = _tenant_and_key(traced.http, admin_key)
    forged_tenant = str(uuid.uuid4())
    consumer = ManagedProcess(
        CONSUMER_SERVICE,
        [sys.executable, "-m", "tests.e2e.listing_consumer"],
        env=traced.consumer_env,
        cwd=REPO,
    ).start()
    consumer.wait_until(lambda: "ready" in consumer.log_tail(), "the consumer subscribed")
    reply = traced.http.post(
        "/v1/listings",
        json={
            "title": "Traced shirt",
            "variants": [{"sku": "TRACE-1", "price": {"currencyCode": "USD", "units": "10"}}],
        },
        # A client's own identity header is stripped: it can reach neither the service
        # nor the trace.
        headers={**_bearer(key), "x-hygoshop-tenant-id": forged_tenant},
    )
    assert reply.status_code == 200, reply.text

    trace = _trace_of_create(traced.collector)
    assert consumer.wait(timeout=30) == 0

    found = {hop: [s for s in trace if hop.matches(s)] for hop in LISTING_CREATED_HOPS}
    assert {hop: len(spans) for hop, spans in found.items()} == dict.fromkeys(
        LISTING_CREATED_HOPS, 1
    )
    # One tree: a single root (the gateway's), every other span's parent in the trace.
    by_id = {s.span_id: s for s in trace}
    [root] = [s for s in trace if not s.parent_span_id]
    assert GATEWAY.matches(root)
    assert all(s.parent_span_id in by_id for s in trace if s is not root)
    # Envoy propagated the context to both upstream calls (traceparent in gRPC metadata).
    [auth_call], [check], [create] = (
        found[GATEWAY_AUTH_CALL],
        found[AUTH_CHECK],
        found[CREATE_LISTING],
    )
    assert by_id[check.parent_span_id] is auth_call
    assert by_id[create.parent_span_id] is root
    [consumed] = found[CONSUMED]
    assert by_id[consumed.parent_span_id] is create
    # Every span carries the tenant the API key belongs to, the gateway's included.
    for span in trace:
        if not any(hop.matches(span) for hop in UNTAGGED_HOPS):
            assert span.attributes.get(TENANT_ATTRIBUTE) == tenant_id, (span.service, span.name)
    assert forged_tenant not in {s.attributes.get(TENANT_ATTRIBUTE) for s in trace}
