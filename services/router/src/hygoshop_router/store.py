"""Platform-wide router state in PostgreSQL: the provider catalog (seeded) and health snapshots.

These tables have no tenant: no tenant owns a provider or its health. Tenant-owned state
lives in `tenant_store.py`, under row-level security.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from hygoshop_platform.db import Connection, Pool
from hygoshop_router.domain.model import Provider, Tier
from hygoshop_router.seed import Seed

log = logging.getLogger(__name__)

_COLUMNS = (
    "provider_id, category, display_name, capabilities, unit_costs, tiers, weight, enabled,"
    " offline, seed_version, edited_fields, update_time"
)
# Seeded fields an API edit protects from later seed versions.
_SEEDED = ("display_name", "capabilities", "unit_costs", "tiers", "weight", "enabled")


class SeedVersionError(RuntimeError):
    """The database already holds a newer catalog version than the file being applied."""


def _provider(row: Any) -> Provider:
    return Provider(
        provider_id=row.provider_id,
        category=row.category,
        display_name=row.display_name,
        capabilities=frozenset(row.capabilities),
        unit_costs={k: Decimal(v) for k, v in row.unit_costs.items()},
        tiers=frozenset(Tier(t) for t in row.tiers),
        weight=row.weight,
        enabled=row.enabled,
        offline=row.offline,
        seed_version=row.seed_version,
        edited_fields=frozenset(row.edited_fields),
        update_time=row.update_time,
    )


def _params(p: Provider) -> dict[str, Any]:
    return {
        "provider_id": p.provider_id,
        "category": p.category,
        "display_name": p.display_name,
        "capabilities": sorted(p.capabilities),
        # Decimal as text: no price passes through a float.
        "unit_costs": Jsonb({k: str(v) for k, v in sorted(p.unit_costs.items())}),
        "tiers": sorted(t.value for t in p.tiers),
        "weight": p.weight,
        "enabled": p.enabled,
        "offline": p.offline,
        "seed_version": p.seed_version,
    }


class ProviderStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def apply_seed(self, seed: Seed) -> int:
        """Insert or refresh every provider of `seed`; fields edited via the API are kept.

        Idempotent, and safe when several router processes start at once (advisory lock).
        Returns how many providers were written.
        """
        keep = ", ".join(
            f"{f} = CASE WHEN '{f}' = ANY(p.edited_fields) THEN p.{f} ELSE EXCLUDED.{f} END"
            for f in _SEEDED
        )
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('router.seed'))")
            cur = await conn.execute("SELECT version FROM router.seed_state")
            row = await cur.fetchone()
            if row is not None and row.version > seed.version:
                raise SeedVersionError(
                    f"the catalog is at seed version {row.version}; refusing version {seed.version}"
                )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO router.providers AS p (provider_id, category, display_name,"
                    " capabilities, unit_costs, tiers, weight, enabled, offline, seed_version,"
                    " update_time)"
                    " VALUES (%(provider_id)s, %(category)s, %(display_name)s, %(capabilities)s,"
                    " %(unit_costs)s, %(tiers)s, %(weight)s, %(enabled)s, %(offline)s,"
                    " %(seed_version)s, now())"
                    f" ON CONFLICT (provider_id) DO UPDATE SET {keep},"
                    " offline = EXCLUDED.offline, seed_version = EXCLUDED.seed_version,"
                    " update_time = CASE WHEN p.seed_version = EXCLUDED.seed_version"
                    "   THEN p.update_time ELSE now() END",
                    [_params(p) for p in seed.providers],
                )
            await conn.execute(
                "INSERT INTO router.seed_state (version) VALUES (%s) ON CONFLICT (singleton)"
                " DO UPDATE SET version = EXCLUDED.version, apply_time = now()",
                (seed.version,),
            )
        return len(seed.providers)

    async def list_providers(self) -> list[Provider]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM router.providers ORDER BY provider_id"
            )
            return [_provider(r) for r in await cur.fetchall()]

    async def update_provider(
        self, provider_id: str, change: Callable[[Provider], Provider], fields: tuple[str, ...]
    ) -> Provider | None:
        """Lock the provider, let `change` compute (and validate) the new one, write it.

        `fields` are remembered as edited, so later seed versions leave them alone.
        """
        async with self._pool.connection() as conn, conn.transaction():
            current = await self._get(conn, provider_id, lock=True)
            if current is None:
                return None
            updated = change(current)
            cur = await conn.execute(
                "UPDATE router.providers SET display_name = %(display_name)s,"
                " capabilities = %(capabilities)s, unit_costs = %(unit_costs)s,"
                " tiers = %(tiers)s, weight = %(weight)s, enabled = %(enabled)s,"
                " edited_fields = ARRAY(SELECT DISTINCT unnest(edited_fields || %(fields)s::text[])"
                "   ORDER BY 1),"
                " update_time = clock_timestamp()"
                f" WHERE provider_id = %(provider_id)s RETURNING {_COLUMNS}",
                {**_params(updated), "fields": list(fields)},
            )
            row = await cur.fetchone()
            return None if row is None else _provider(row)

    async def _get(self, conn: Connection, provider_id: str, *, lock: bool) -> Provider | None:
        sql = f"SELECT {_COLUMNS} FROM router.providers WHERE provider_id = %s"
        cur = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (provider_id,))
        row = await cur.fetchone()
        return None if row is None else _provider(row)

    async def load_health(self) -> dict[str, dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT provider_id, snapshot FROM router.provider_health")
            return {r.provider_id: dict(r.snapshot) for r in await cur.fetchall()}

    async def save_health(self, snapshots: Mapping[str, dict[str, Any]]) -> None:
        if not snapshots:
            return
        async with self._pool.connection() as conn, conn.transaction():
            # Providers unknown to the catalog (reported by a newer adapter) are skipped.
            await conn.execute(
                "INSERT INTO router.provider_health (provider_id, snapshot, update_time)"
                " SELECT s.key, s.value, now() FROM jsonb_each(%s::jsonb) s"
                " JOIN router.providers p ON p.provider_id = s.key"
                " ON CONFLICT (provider_id) DO UPDATE"
                " SET snapshot = EXCLUDED.snapshot, update_time = EXCLUDED.update_time",
                (json.dumps(snapshots),),
            )
