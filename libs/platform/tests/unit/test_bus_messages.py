"""Bus pieces without a broker: envelopes, headers, failure history, backoff, topic patterns."""

from __future__ import annotations

import re
import uuid

import pytest

from hygoshop.events.v1.catalog_pb2 import ListingCreated, ListingDeleted
from hygoshop_platform.bus import BusSettings, Delivery, MalformedMessage, RetryPolicy
from hygoshop_platform.bus.message import (
    ATTEMPT_HEADER,
    FAILURES_HEADER,
    Failure,
    attempt_from,
    envelope_headers,
    failures_from,
    new_event,
    new_job,
    parse_envelope,
    with_failure,
)
from hygoshop_platform.bus.pg import topic_regex
from hygoshop_platform.settings import SettingsError


def test_an_event_round_trips_through_its_body() -> None:
    tenant = uuid.uuid4()
    event = new_event("catalog.listing.created", ListingCreated(listing_id="L1"), tenant_id=tenant)
    parsed = parse_envelope(event.SerializeToString())
    delivery = Delivery(envelope=parsed, consumer="search.listings")
    assert delivery.tenant_id == tenant
    assert delivery.type == "catalog.listing.created"
    assert delivery.unpack(ListingCreated).listing_id == "L1"
    assert parsed.schema_version == 1
    assert parsed.occurred_time.seconds > 0
    with pytest.raises(MalformedMessage, match=r"not hygoshop\.events\.v1\.ListingDeleted"):
        delivery.unpack(ListingDeleted)


@pytest.mark.parametrize(
    ("maker", "type_"),
    [
        (new_event, "catalog.listing"),
        (new_event, "Catalog.Listing.Created"),
        (new_job, "catalog.listing.import"),
        (new_job, "import"),
    ],
)
def test_message_types_must_follow_the_naming(maker: object, type_: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        maker(type_, ListingCreated(), tenant_id=uuid.uuid4())  # type: ignore[operator]


def test_a_body_that_is_not_an_envelope_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        parse_envelope(b"\xff\xff not protobuf")
    with pytest.raises(MalformedMessage, match="kind or a type"):
        parse_envelope(b"")
    no_tenant = new_job("catalog.listing_import", ListingCreated(), tenant_id=uuid.uuid4())
    no_tenant.tenant_id = "acme"
    with pytest.raises(MalformedMessage, match="message_id or tenant_id"):
        Delivery(envelope=parse_envelope(no_tenant.SerializeToString()), consumer="c")


def test_headers_carry_the_routing_facts() -> None:
    tenant = uuid.uuid4()
    job = new_job("catalog.listing_import", ListingCreated(), tenant_id=tenant, schema_version=2)
    headers = envelope_headers(job)
    assert headers["hygoshop-message-id"] == job.message_id
    assert headers["hygoshop-type"] == "catalog.listing_import"
    assert headers["hygoshop-schema-version"] == 2
    assert headers["hygoshop-tenant-id"] == str(tenant)


def test_failures_accumulate_into_the_history() -> None:
    headers = {"hygoshop-type": "x", "x-death": [{"count": 1}], "x-delivery-count": 3}
    first = Failure.now(1, "importer", "ValueError: bad row")
    second_headers = with_failure(headers, first, 2)
    second = Failure.now(2, "importer", "ValueError: bad row again")
    third_headers = with_failure(second_headers, second, 3)
    assert attempt_from(third_headers) == 3
    assert [f.error for f in failures_from(third_headers)] == [first.error, second.error]
    assert "x-death" not in third_headers  # broker bookkeeping is not copied along
    assert third_headers["hygoshop-type"] == "x"
    assert attempt_from({ATTEMPT_HEADER: "garbage"}) == 1
    assert failures_from({FAILURES_HEADER: ["not a table"]}) == ()


def test_backoff_grows_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=6, first_delay=0.5, multiplier=3.0, max_delay=10.0)
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert policy.delays_ms() == [500, 1500, 4500, 10000]
    assert RetryPolicy(max_attempts=1).delays_ms() == []


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("catalog.listing.*", ["catalog.listing.created"], ["catalog.listing", "catalog.x.y.z"]),
        ("catalog.#", ["catalog", "catalog.listing.created"], ["orders.order.placed"]),
        ("#", ["a", "a.b.c"], []),
        ("#.created", ["catalog.listing.created", "created"], ["catalog.listing.updated"]),
        ("*.listing.*", ["catalog.listing.deleted"], ["catalog.listings.deleted"]),
    ],
)
def test_topic_patterns_match_like_amqp(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    regex = re.compile(topic_regex(pattern))
    for key in matches:
        assert regex.search("." + key), key
    for key in misses:
        assert not regex.search("." + key), key


def test_bus_settings_pick_the_transport_from_the_url() -> None:
    env = {"BUS_URL": "amqp://guest:guest@127.0.0.1:5672/", "BUS_NAMESPACE": "stack1"}
    settings = BusSettings.from_env(env)
    assert (settings.transport, settings.namespace, settings.delivery_limit) == (
        "amqp",
        "stack1",
        5,
    )
    assert BusSettings("postgresql+psycopg://u@h/db").transport == "postgresql"
    with pytest.raises(SettingsError, match="BUS_URL is required"):
        BusSettings.from_env({})
    with pytest.raises(SettingsError, match="BUS_URL must start"):
        BusSettings("redis://localhost")
    with pytest.raises(SettingsError, match="BUS_NAMESPACE"):
        BusSettings("amqp://h/", namespace="Bad.Name")
