"""Per-service schema, roles and Alembic migrations.

Each service owns one schema, an owner role (NOLOGIN, owns the tables) and an application
role (LOGIN, no BYPASSRLS, owns nothing, gets DML through default privileges). Migrations
run as the owner role so no table is owned by the role the service connects as.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from hygoshop_platform.infra.postgres import to_sqlalchemy_url


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    """A service's database footprint."""

    schema: str
    """Schema name, the service's name (`catalog`)."""
    migrations_dir: Path
    """The service's Alembic script folder."""

    @property
    def owner_role(self) -> str:
        return f"hygoshop_{self.schema}_owner"

    @property
    def app_role(self) -> str:
        return f"hygoshop_{self.schema}_app"


def app_url(admin_url: str, spec: SchemaSpec, password: str | None = None) -> str:
    """The URL the service connects with: same server and database, the application role."""
    url = make_url(admin_url).set(username=spec.app_role, password=password)
    return url.render_as_string(hide_password=False)


def _ensure_role(conn: Connection, name: str, attributes: str) -> None:
    # CREATE ROLE has no IF NOT EXISTS; roles are cluster-wide, so concurrent test
    # databases may race here: duplicate_object is fine.
    conn.execute(
        text(
            "DO $$ BEGIN"
            f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN"
            f"  CREATE ROLE {name} {attributes};"
            " END IF;"
            " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"
            " END $$"
        )
    )


def ensure_schema_and_roles(conn: Connection, spec: SchemaSpec, app_password: str | None) -> None:
    _ensure_role(conn, spec.owner_role, "NOLOGIN NOSUPERUSER NOBYPASSRLS")
    _ensure_role(conn, spec.app_role, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    conn.execute(text(f"ALTER ROLE {spec.app_role} NOSUPERUSER NOBYPASSRLS"))
    if app_password is not None:
        # ALTER ROLE takes no bind parameters: pass the secret through a local setting.
        conn.execute(
            text("SELECT set_config('hygoshop.app_password', :pw, true)"), {"pw": app_password}
        )
        conn.execute(
            text(
                "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L',"
                f" '{spec.app_role}', current_setting('hygoshop.app_password')); END $$"
            )
        )
        conn.execute(text("SELECT set_config('hygoshop.app_password', '', true)"))
    conn.execute(text(f"GRANT {spec.owner_role} TO current_user"))
    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {spec.schema} AUTHORIZATION {spec.owner_role}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {spec.schema} TO {spec.app_role}"))
    conn.execute(
        text(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {spec.owner_role} IN SCHEMA {spec.schema}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {spec.app_role}"
        )
    )
    conn.execute(
        text(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {spec.owner_role} IN SCHEMA {spec.schema}"
            f" GRANT USAGE, SELECT ON SEQUENCES TO {spec.app_role}"
        )
    )


_ROLE_ATTEMPTS = 5


def upgrade(admin_url: str, spec: SchemaSpec, *, app_password: str | None = None) -> None:
    """Create the schema and roles if needed, then apply every migration (idempotent)."""
    engine = create_engine(to_sqlalchemy_url(admin_url))
    try:
        # Roles are shared by every database of the server, and the advisory lock below is
        # per database: two databases migrating at once (parallel test sessions) can race
        # on ALTER ROLE ("tuple concurrently updated"). The role step is idempotent: retry.
        for attempt in range(1, _ROLE_ATTEMPTS + 1):
            try:
                with engine.begin() as conn:
                    ensure_schema_and_roles(conn, spec, app_password)
                break
            except DBAPIError as exc:
                if attempt == _ROLE_ATTEMPTS or "concurrently" not in str(exc.orig):
                    raise
                time.sleep(0.05 * attempt)
        with engine.begin() as conn:
            # Serialize concurrent migrators (several replicas starting at once).
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": spec.schema})
            conn.execute(text(f"SET LOCAL ROLE {spec.owner_role}"))
            cfg = Config()
            cfg.set_main_option("script_location", str(spec.migrations_dir))
            cfg.attributes["connection"] = conn
            cfg.attributes["schema"] = spec.schema
            command.upgrade(cfg, "head")
            # The version table is bookkeeping of the owner, not data of the service.
            conn.execute(text(f"REVOKE ALL ON {spec.schema}.alembic_version FROM {spec.app_role}"))
    finally:
        engine.dispose()


def run_env() -> None:
    """Body of every service's migrations/env.py: online, on the connection `upgrade` holds."""
    cfg = context.config
    conn = cfg.attributes["connection"]
    schema = cfg.attributes["schema"]
    context.configure(
        connection=conn,
        version_table_schema=schema,
        include_schemas=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def enable_tenant_rls(table: str) -> list[str]:
    """SQL that turns on fail-closed row-level security for a `schema.table` with tenant_id.

    The policy compares to `app.tenant_id`; an unset or empty setting gives NULL, which
    matches no row and fails every insert: closed by default.
    """
    predicate = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})",
    ]
