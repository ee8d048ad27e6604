"""The caller comes from gateway metadata only, and scopes mean what they say."""

import uuid

from hygoshop_platform.tenancy import (
    SCOPES_HEADER,
    TENANT_HEADER,
    Caller,
    caller_from_metadata,
)


def test_caller_parsed_from_gateway_headers() -> None:
    tenant = uuid.uuid4()
    caller = caller_from_metadata(
        {TENANT_HEADER: str(tenant), SCOPES_HEADER: "catalog:read  catalog:write"}
    )
    assert caller.tenant_id == tenant
    assert caller.scopes == {"catalog:read", "catalog:write"}
    assert caller.has_scope("catalog:read")
    assert not caller.has_scope("admin")


def test_malformed_tenant_id_yields_no_tenant() -> None:
    assert caller_from_metadata({TENANT_HEADER: "' OR 1=1 --"}).tenant_id is None


def test_tenant_admin_has_every_scope_of_its_tenant_but_platform_admin_does_not() -> None:
    tenant_admin = Caller(uuid.uuid4(), frozenset({"admin"}))
    assert tenant_admin.has_scope("catalog:write")
    platform = Caller(None, frozenset({"platform:admin"}))
    assert platform.is_platform_admin
    assert not platform.has_scope("catalog:read")


def test_metadata_round_trip_for_internal_calls() -> None:
    caller = Caller(uuid.uuid4(), frozenset({"catalog:read"}), key_id="k1")
    assert caller_from_metadata(dict(caller.to_metadata())) == caller
