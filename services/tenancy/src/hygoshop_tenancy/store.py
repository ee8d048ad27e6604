"""Tenancy's repository: tenants and API keys in PostgreSQL, always in a tenant transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hygoshop_platform.db import tenant_transaction
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


_KEY_COLUMNS = "tenant_id, key_id, prefix, display_name, scopes, create_time, revoke_time"


def _key(row: object) -> ApiKeyRow:
    return ApiKeyRow(
        tenant_id=row.tenant_id,  # type: ignore[attr-defined]
        key_id=row.key_id,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        display_name=row.display_name,  # type: ignore[attr-defined]
        scopes=tuple(row.scopes),  # type: ignore[attr-defined]
        create_time=row.create_time,  # type: ignore[attr-defined]
        revoke_time=row.revoke_time,  # type: ignore[attr-defined]
    )


class TenancyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_tenant(self, display_name: str, tier: Tier) -> TenantRow:
        tenant_id = uuid.uuid4()
        async with tenant_transaction(self._engine, tenant_id) as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO tenancy.tenants (tenant_id, display_name, tier)"
                        " VALUES (:id, :name, :tier) RETURNING create_time"
                    ),
                    {"id": tenant_id, "name": display_name, "tier": tier.value},
                )
            ).one()
        return TenantRow(tenant_id, display_name, tier, row.create_time)

    async def get_tenant(self, tenant_id: uuid.UUID) -> TenantRow | None:
        async with tenant_transaction(self._engine, tenant_id) as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT tenant_id, display_name, tier, create_time FROM tenancy.tenants"
                        " WHERE tenant_id = :id"
                    ),
                    {"id": tenant_id},
                )
            ).one_or_none()
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
        async with tenant_transaction(self._engine, tenant_id) as conn:
            exists = (
                await conn.execute(
                    text("SELECT 1 FROM tenancy.tenants WHERE tenant_id = :id"), {"id": tenant_id}
                )
            ).first()
            if exists is None:
                return None
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO tenancy.api_keys"
                        " (tenant_id, key_id, prefix, digest, display_name, scopes)"
                        " VALUES (:tenant, :key, :prefix, :digest, :name, :scopes)"
                        f" RETURNING {_KEY_COLUMNS}"
                    ),
                    {
                        "tenant": tenant_id,
                        "key": uuid.uuid4(),
                        "prefix": prefix,
                        "digest": digest,
                        "name": display_name,
                        "scopes": list(scopes),
                    },
                )
            ).one()
        return _key(row)

    async def list_keys(
        self, tenant_id: uuid.UUID, *, limit: int, after: tuple[str, str] | None
    ) -> list[ApiKeyRow]:
        """Keys by creation time then id, starting after a (create_time, key_id) position."""
        where = "TRUE"
        params: dict[str, object] = {"limit": limit}
        if after is not None:
            where = "(create_time, key_id) > (CAST(:t AS timestamptz), CAST(:k AS uuid))"
            params.update(t=after[0], k=after[1])
        async with tenant_transaction(self._engine, tenant_id) as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_KEY_COLUMNS} FROM tenancy.api_keys WHERE {where}"
                    " ORDER BY create_time, key_id LIMIT :limit"
                ),
                params,
            )
            return [_key(r) for r in rows]

    async def revoke_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> str | None:
        """Revoke; returns the key's digest (to invalidate caches), None when not found."""
        async with tenant_transaction(self._engine, tenant_id) as conn:
            row = (
                await conn.execute(
                    text(
                        "UPDATE tenancy.api_keys SET revoke_time = coalesce(revoke_time, now())"
                        " WHERE key_id = :key RETURNING digest"
                    ),
                    {"key": key_id},
                )
            ).one_or_none()
        return None if row is None else str(row.digest)

    async def lookup_key(self, prefix: str) -> KeyLookup | None:
        """Find a key by prefix for the auth check, across tenants (SECURITY DEFINER)."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT * FROM tenancy.lookup_api_key(:prefix)"), {"prefix": prefix}
                )
            ).one_or_none()
        if row is None:
            return None
        return KeyLookup(row.key_id, row.tenant_id, row.digest, tuple(row.scopes), row.revoked)
