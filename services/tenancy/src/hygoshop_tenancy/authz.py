"""The gateway's auth check (Envoy ext_authz v3 `Check`): API key -> tenant id + scopes,
then the tenant's rate limit (429 over it, see `ratelimit`).

Decisions are cached for a short TTL under the key's digest (never the key itself);
revoking a key deletes its cache entry, so with a shared Redis cache revocation is
immediate, and with in-process caches it takes at most the TTL.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from hygoshop_platform.cache import KVCache
from hygoshop_platform.server import Context
from hygoshop_platform.telemetry import tag_tenant
from hygoshop_platform.tenancy import (
    KEY_ID_HEADER,
    PLATFORM_ADMIN_SCOPE,
    SCOPES_HEADER,
    TENANT_HEADER,
)
from hygoshop_tenancy.domain.keys import bearer_token, digest_key, digests_match, parse_prefix
from hygoshop_tenancy.domain.tenants import Tier
from hygoshop_tenancy.ratelimit import Limit, RateLimiter
from hygoshop_tenancy.store import TenancyStore

log = logging.getLogger(__name__)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_DENIED = b"-"  # cached marker of a key that does not authenticate


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str | None
    scopes: tuple[str, ...]
    key_id: str
    tier: Tier | None = None
    """The tenant's tier (its rate limit); None for the platform admin."""

    def encode(self) -> bytes:
        tier = self.tier.value if self.tier else None
        return json.dumps([self.tenant_id, list(self.scopes), self.key_id, tier]).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Principal:
        tenant_id, scopes, key_id, *rest = json.loads(raw)  # entries cached before tiers: 3
        tier = Tier(rest[0]) if rest and rest[0] else None
        return cls(tenant_id, tuple(scopes), key_id, tier)


class AuthCache:
    def __init__(self, cache: KVCache, ttl_seconds: float) -> None:
        self._cache = cache
        self._ttl = ttl_seconds

    async def get(self, digest: str) -> Principal | bytes | None:
        if self._ttl <= 0:
            return None
        try:
            raw = await self._cache.get(digest)
        except Exception:  # a cache outage must not become an auth outage
            log.warning("auth cache unavailable", exc_info=True)
            return None
        if raw is None:
            return None
        return _DENIED if raw == _DENIED else Principal.decode(raw)

    async def put(self, digest: str, principal: Principal | None) -> None:
        if self._ttl <= 0:
            return
        try:
            await self._cache.set(digest, principal.encode() if principal else _DENIED, self._ttl)
        except Exception:
            log.warning("auth cache unavailable", exc_info=True)

    async def invalidate(self, digest: str) -> None:
        # A failure here is loud: the revoked key would live until the TTL.
        await self._cache.delete(digest)


class Authenticator:
    """Resolves a presented key to a principal, or None."""

    def __init__(self, store: TenancyStore, cache: AuthCache, admin_key: str | None) -> None:
        self._store = store
        self._cache = cache
        self._admin_digest = digest_key(admin_key) if admin_key else None

    async def authenticate(self, presented: str) -> Principal | None:
        digest = digest_key(presented)
        if self._admin_digest is not None and digests_match(digest, self._admin_digest):
            return Principal(None, (PLATFORM_ADMIN_SCOPE,), "platform-admin")
        cached = await self._cache.get(digest)
        if cached == _DENIED:
            return None
        if isinstance(cached, Principal):
            return cached
        principal = await self._resolve(presented, digest)
        await self._cache.put(digest, principal)
        return principal

    async def _resolve(self, presented: str, digest: str) -> Principal | None:
        prefix = parse_prefix(presented)
        if prefix is None:
            return None
        found = await self._store.lookup_key(prefix)
        if found is None or found.revoked or not digests_match(digest, found.digest):
            return None
        return Principal(str(found.tenant_id), found.scopes, str(found.key_id), found.tier)


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
    )


def allow(principal: Principal) -> external_auth_pb2.CheckResponse:
    headers = [
        _header(SCOPES_HEADER, " ".join(principal.scopes)),
        _header(KEY_ID_HEADER, principal.key_id),
    ]
    # The key never travels past the gateway; a tenant header the client sent never does either.
    remove = ["authorization"]
    if principal.tenant_id is None:
        remove.append(TENANT_HEADER)
    else:
        headers.append(_header(TENANT_HEADER, principal.tenant_id))
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(headers=headers, headers_to_remove=remove),
    )


def rate_limited(retry_after: float, tier: Tier, limit: Limit) -> external_auth_pb2.CheckResponse:
    """429 with Retry-After (whole seconds, at least 1) and the wait in a RetryInfo."""
    message = (
        f"rate limit exceeded: the {tier.value} tier allows {limit.per_second:g} requests/s"
        f" (bursts of {limit.burst}); retry in {retry_after:.2f}s"
    )
    return _denied(
        http_status_pb2.TooManyRequests,
        code_pb2.RESOURCE_EXHAUSTED,
        message,
        _error_info("RATE_LIMITED", tier=tier.value, per_second=f"{limit.per_second:g}"),
        {"@type": f"{_TYPES}google.rpc.RetryInfo", "retryDelay": f"{retry_after:.3f}s"},
        headers={"retry-after": str(max(1, math.ceil(retry_after)))},
    )


class TenantRateLimits:
    """Admits or refuses a tenant's request by its tier's limit (see `ratelimit`)."""

    def __init__(self, limiter: RateLimiter, limits: Mapping[Tier, Limit]) -> None:
        self._limiter = limiter
        self._limits = limits

    async def check(self, principal: Principal) -> external_auth_pb2.CheckResponse | None:
        """None when admitted, else the 429 to answer."""
        if principal.tenant_id is None or principal.tier is None:
            return None  # the platform admin
        limit = self._limits[principal.tier]
        try:
            wait = await self._limiter.admit(principal.tenant_id, limit)
        except Exception:  # a limiter outage must not become an API outage
            log.warning("rate limiter unavailable; admitting", exc_info=True)
            return None
        return None if wait is None else rate_limited(wait, principal.tier, limit)


def deny(message: str) -> external_auth_pb2.CheckResponse:
    return _denied(
        http_status_pb2.Unauthorized,
        code_pb2.UNAUTHENTICATED,
        message,
        _error_info("API_KEY_INVALID"),
        headers={"www-authenticate": 'Bearer realm="hygoshop"'},
    )


_TYPES = "type.googleapis.com/"


def _error_info(reason: str, **metadata: str) -> dict[str, object]:
    info: dict[str, object] = {
        "@type": f"{_TYPES}google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "hygoshop.io",
    }
    if metadata:
        info["metadata"] = metadata
    return info


def _denied(
    http_status: int,
    code: int,
    message: str,
    *details: dict[str, object],
    headers: Mapping[str, str],
) -> external_auth_pb2.CheckResponse:
    """Envoy answers the client itself: `http_status` with a google.rpc.Status JSON body."""
    body = {"code": code, "message": message, "details": list(details)}
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_status),
            headers=[
                _header("content-type", "application/json"),
                *(_header(k, v) for k, v in headers.items()),
            ],
            body=json.dumps(body),
        ),
    )


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):
    """Envoy's ext_authz. Any failure inside is an error to Envoy, which fails closed."""

    def __init__(self, authenticator: Authenticator, limits: TenantRateLimits) -> None:
        self._authenticator = authenticator
        self._limits = limits

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Context
    ) -> external_auth_pb2.CheckResponse:
        headers = request.attributes.request.http.headers
        token = bearer_token(headers.get("authorization", ""))
        if token is None:
            return deny("missing API key: send `Authorization: Bearer <key>`")
        principal = await self._authenticator.authenticate(token)
        if principal is None:
            return deny("invalid or revoked API key")
        tag_tenant(principal.tenant_id)
        refused = await self._limits.check(principal)
        return refused if refused is not None else allow(principal)
