"""Async SQLAlchemy (psycopg 3) engines and the tenant transaction that row-level security needs.

Every tenant-scoped query runs inside `tenant_transaction()`, which sets `app.tenant_id`
with `set_config(..., true)`: local to the transaction, so a pooled connection never
carries one tenant's setting into another's request.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

TENANT_SETTING = "app.tenant_id"


class UnsafeDatabaseRole(RuntimeError):
    """The service's database role could bypass row-level security; it must not start."""


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` -> `postgresql+psycopg://` (psycopg 3 for both sync and async)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str, *, pool_size: int = 10, application_name: str = "hygoshop"
) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"application_name": application_name, "connect_timeout": 5},
    )


@asynccontextmanager
async def tenant_transaction(
    engine: AsyncEngine, tenant_id: uuid.UUID
) -> AsyncIterator[AsyncConnection]:
    """A transaction in which row-level security sees only `tenant_id`'s rows."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config(:name, :value, true)"),
            {"name": TENANT_SETTING, "value": str(tenant_id)},
        )
        yield conn


async def assert_safe_role(engine: AsyncEngine, schema: str) -> None:
    """Refuse to run as a role that row-level security would not hold.

    The role must not be a superuser, must not have BYPASSRLS and must own no table of
    the service's schema (owners skip RLS unless it is FORCEd; we FORCE it too, but
    defense in depth means not relying on one mechanism).
    """
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT r.rolname, r.rolsuper, r.rolbypassrls,"
                    " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    "   WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')"
                    "   AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owned"
                    " FROM pg_roles r WHERE r.rolname = current_user"
                ),
                {"schema": schema},
            )
        ).one()
    if row.rolsuper or row.rolbypassrls or row.owned:
        raise UnsafeDatabaseRole(
            f"database role {row.rolname!r} is superuser={row.rolsuper}, "
            f"bypassrls={row.rolbypassrls}, owns {row.owned} table(s) in schema {schema!r}: "
            "connect as the service's application role"
        )
