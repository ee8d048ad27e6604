"""Tenancy's repository: tenants and API keys in PostgreSQL, always in a tenant transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hygoshop_platform.db import Pool, tenant_transaction
from hygoshop_tenancy.domain.tenants import Tier


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant_id: uuid.UUID
    display_name: str
    tier: Tier
    create_time: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    prefix: str
    display_name: str
    scopes: tuple[str, ...]
    create_time: datetime
    revoke_time: datetime | None


@dataclass(frozen=True, slots=True)
class KeyLookup:
    key_id: uuid.UUID
    tenant_id: uuid.UUID
    digest: str
    scopes: tuple[str, ...]
    revoked: bool
    tier: Tier


_KEY_COLUMNS = "tenant_id, key_id, prefix, display_name, scopes, create_time, revoke_time"


def _key(row: Any) -> ApiKeyRow:
    return ApiKeyRow(
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        prefix=row.prefix,
        display_name=row.display_name,
        scopes=tuple(row.scopes),
        create_time=row.create_time,
        revoke_time=row.revoke_time,
    )


class TenancyStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create_tenant(self, display_name: str, tier: Tier) -> TenantRow:
        tenant_id = uuid.uuid4()
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "INSERT INTO tenancy.tenants (tenant_id, display_name, tier)"
                " VALUES (%s, %s, %s) RETURNING create_time",
                (tenant_id, display_name, tier.value),
            )
            row = await cur.fetchone()
        assert row is not None
        return TenantRow(tenant_id, display_name, tier, row.create_time)

    async def get_tenant(self, tenant_id: uuid.UUID) -> TenantRow | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "SELECT tenant_id, display_name, tier, create_time FROM tenancy.tenants"
                " WHERE tenant_id = %s",
                (tenant_id,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return TenantRow(row.tenant_id, row.display_name, Tier(row.tier), row.create_time)

    async def create_key(
        self,
        tenant_id: uuid.UUID,
        *,
        prefix: str,
        digest: str,
        display_name: str,
        scopes: Sequence[str],
    ) -> ApiKeyRow | None:
        """Insert a key; None when the tenant does not exist (seen through RLS)."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "INSERT INTO tenancy.api_keys"
                " (tenant_id, key_id, prefix, digest, display_name, scopes)"
                " SELECT tenant_id, %s, %s, %s, %s, %s FROM tenancy.tenants WHERE tenant_id = %s"
                f" RETURNING {_KEY_COLUMNS}",
                (uuid.uuid4(), prefix, digest, display_name, list(scopes), tenant_id),
            )
            row = await cur.fetchone()
        return None if row is None else _key(row)

    async def list_keys(
        self, tenant_id: uuid.UUID, *, limit: int, after: tuple[str, str] | None
    ) -> list[ApiKeyRow]:
        """Keys by creation time then id, starting after a (create_time, key_id) position."""
        where = "TRUE"
        params: dict[str, object] = {"limit": limit}
        if after is not None:
            where = "(create_time, key_id) > (%(t)s::timestamptz, %(k)s::uuid)"
            params.update(t=after[0], k=after[1])
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM tenancy.api_keys WHERE {where}"
                " ORDER BY create_time, key_id LIMIT %(limit)s",
                params,
            )
            return [_key(r) for r in await cur.fetchall()]

    async def revoke_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> str | None:
        """Revoke; returns the key's digest (to invalidate caches), None when not found."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "UPDATE tenancy.api_keys SET revoke_time = coalesce(revoke_time, now())"
                " WHERE key_id = %s RETURNING digest",
                (key_id,),
            )
            row = await cur.fetchone()
        return None if row is None else str(row.digest)

    async def lookup_key(self, prefix: str) -> KeyLookup | None:
        """Find a key by prefix for the auth check, across tenants (SECURITY DEFINER)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM tenancy.lookup_api_key(%s)", (prefix,))
            row = await cur.fetchone()
        if row is None:
            return None
        return KeyLookup(
            row.key_id, row.tenant_id, row.digest, tuple(row.scopes), row.revoked, Tier(row.tier)
        )
