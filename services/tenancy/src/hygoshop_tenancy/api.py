"""TenantService: translates proto <-> domain and enforces who may call what."""

from __future__ import annotations

import uuid

from google.protobuf import empty_pb2, timestamp_pb2

from hygoshop.tenancy.v1 import tenancy_pb2, tenancy_pb2_grpc
from hygoshop_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    require,
)
from hygoshop_platform.pagination import decode_token, page_size, split_page
from hygoshop_platform.server import Context
from hygoshop_platform.tenancy import Caller, current_caller
from hygoshop_tenancy.authz import AuthCache
from hygoshop_tenancy.domain.keys import generate_key
from hygoshop_tenancy.domain.tenants import Tier, validate_display_name, validate_scopes
from hygoshop_tenancy.store import ApiKeyRow, TenancyStore, TenantRow

_TIERS = {
    tenancy_pb2.TIER_FREE: Tier.FREE,
    tenancy_pb2.TIER_GROWTH: Tier.GROWTH,
    tenancy_pb2.TIER_ENTERPRISE: Tier.ENTERPRISE,
}
_TIER_PROTO = {tier: number for number, tier in _TIERS.items()}


def _timestamp(value: object) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def _tenant_proto(row: TenantRow) -> tenancy_pb2.Tenant:
    return tenancy_pb2.Tenant(
        tenant_id=str(row.tenant_id),
        display_name=row.display_name,
        tier=_TIER_PROTO[row.tier],
        create_time=_timestamp(row.create_time),
    )


def _key_proto(row: ApiKeyRow) -> tenancy_pb2.ApiKey:
    key = tenancy_pb2.ApiKey(
        key_id=str(row.key_id),
        tenant_id=str(row.tenant_id),
        display_name=row.display_name,
        scopes=list(row.scopes),
        prefix=row.prefix,
        create_time=_timestamp(row.create_time),
    )
    if row.revoke_time is not None:
        key.revoke_time.CopyFrom(_timestamp(row.revoke_time))
    return key


def _parse_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument([FieldViolation(field, "must be a UUID")]) from None


def _authenticated() -> Caller:
    caller = current_caller()
    if not caller.scopes:
        raise Unauthenticated("an API key is required")
    return caller


def _require_platform_admin() -> None:
    if not _authenticated().is_platform_admin:
        raise PermissionDenied("only the platform administrator may do this")


def _tenant_in_reach(raw_id: str, field: str, *, needs_admin: bool) -> uuid.UUID:
    """The target tenant if the caller may act on it. Another tenant reads as missing."""
    caller = _authenticated()
    tenant_id = _parse_id(raw_id, field)
    if caller.is_platform_admin:
        return tenant_id
    if caller.tenant_id != tenant_id:
        raise NotFound("tenant not found")
    if needs_admin and not caller.has_scope("admin"):
        raise PermissionDenied("this needs an API key with the `admin` scope")
    return tenant_id


class TenantApi(tenancy_pb2_grpc.TenantServiceServicer):
    def __init__(self, store: TenancyStore, auth_cache: AuthCache) -> None:
        self._store = store
        self._auth_cache = auth_cache

    async def CreateTenant(
        self, request: tenancy_pb2.CreateTenantRequest, context: Context
    ) -> tenancy_pb2.Tenant:
        _require_platform_admin()
        tenant = request.tenant
        violations = validate_display_name(tenant.display_name, "tenant.display_name")
        if tenant.tier not in _TIERS and tenant.tier != tenancy_pb2.TIER_UNSPECIFIED:
            violations.append(FieldViolation("tenant.tier", "unknown tier"))
        require(violations)
        tier = _TIERS.get(tenant.tier, Tier.FREE)
        return _tenant_proto(await self._store.create_tenant(tenant.display_name.strip(), tier))

    async def GetTenant(
        self, request: tenancy_pb2.GetTenantRequest, context: Context
    ) -> tenancy_pb2.Tenant:
        tenant_id = _tenant_in_reach(request.tenant_id, "tenant_id", needs_admin=False)
        row = await self._store.get_tenant(tenant_id)
        if row is None:
            raise NotFound("tenant not found")
        return _tenant_proto(row)

    async def CreateApiKey(
        self, request: tenancy_pb2.CreateApiKeyRequest, context: Context
    ) -> tenancy_pb2.CreateApiKeyResponse:
        tenant_id = _tenant_in_reach(request.tenant_id, "tenant_id", needs_admin=True)
        key = request.api_key
        violations = validate_scopes(list(key.scopes), "api_key.scopes")
        if len(key.display_name) > 200:
            violations.append(
                FieldViolation("api_key.display_name", "must be at most 200 characters")
            )
        require(violations)
        new = generate_key()
        row = await self._store.create_key(
            tenant_id,
            prefix=new.prefix,
            digest=new.digest,
            display_name=key.display_name,
            scopes=list(key.scopes),
        )
        if row is None:
            raise NotFound("tenant not found")
        return tenancy_pb2.CreateApiKeyResponse(api_key=_key_proto(row), secret=new.secret)

    async def ListApiKeys(
        self, request: tenancy_pb2.ListApiKeysRequest, context: Context
    ) -> tenancy_pb2.ListApiKeysResponse:
        tenant_id = _tenant_in_reach(request.tenant_id, "tenant_id", needs_admin=True)
        size = page_size(request.page_size, default=50)
        query = ("api_keys", str(tenant_id))
        after = decode_token(request.page_token, query)
        position = None if after is None else (str(after[0]), str(after[1]))
        rows = await self._store.list_keys(tenant_id, limit=size + 1, after=position)
        if not rows and after is None and await self._store.get_tenant(tenant_id) is None:
            raise NotFound("tenant not found")
        page, next_token = split_page(
            rows, size, lambda r: (r.create_time.isoformat(), str(r.key_id)), query
        )
        return tenancy_pb2.ListApiKeysResponse(
            api_keys=[_key_proto(r) for r in page], next_page_token=next_token
        )

    async def DeleteApiKey(
        self, request: tenancy_pb2.DeleteApiKeyRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id = _tenant_in_reach(request.tenant_id, "tenant_id", needs_admin=True)
        key_id = _parse_id(request.key_id, "key_id")
        digest = await self._store.revoke_key(tenant_id, key_id)
        if digest is None:
            raise NotFound("API key not found")
        await self._auth_cache.invalidate(digest)
        return empty_pb2.Empty()
