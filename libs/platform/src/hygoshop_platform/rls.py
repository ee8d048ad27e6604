"""The row-level security meta-guard: find tenant tables or roles that RLS would not hold.

Run after migrations (in tests and at service start-up): any table with a `tenant_id`
column must have RLS enabled and forced with a policy covering every command, and an
application role must not be superuser, must not bypass RLS and must own no such table.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection

_TENANT_TABLES = """
SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS enabled,
       c.relforcerowsecurity AS forced, pg_get_userbyid(c.relowner) AS owner,
       coalesce(array_agg(DISTINCT p.polcmd) FILTER (WHERE p.polcmd IS NOT NULL), '{}') AS commands
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
  LEFT JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(:schemas)
 GROUP BY n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relowner
"""
# pg_policy.polcmd: '*' = ALL, r = SELECT, a = INSERT, w = UPDATE, d = DELETE
_ALL_COMMANDS = {"r", "a", "w", "d"}


def tenant_table_offenders(conn: Connection, schemas: Sequence[str]) -> list[str]:
    """Tenant tables of `schemas` that lack enabled+forced RLS or a policy per command."""
    offenders = []
    for row in conn.execute(text(_TENANT_TABLES), {"schemas": list(schemas)}):
        name = f"{row.schema}.{row.table}"
        commands = set(row.commands)
        if not row.enabled:
            offenders.append(f"{name}: row-level security is not enabled")
        if not row.forced:
            offenders.append(f"{name}: row-level security is not forced")
        if "*" not in commands and not commands >= _ALL_COMMANDS:
            offenders.append(f"{name}: no policy for every command (has {sorted(commands)})")
    return offenders


def role_offenders(conn: Connection, role: str, schemas: Sequence[str]) -> list[str]:
    """Why `role` could escape RLS on the tenant tables of `schemas`, if it could."""
    row = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).one_or_none()
    if row is None:
        return [f"{role}: role does not exist"]
    problems = []
    if row.rolsuper:
        problems.append(f"{role}: is a superuser")
    if row.rolbypassrls:
        problems.append(f"{role}: has BYPASSRLS")
    owned = conn.execute(
        text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p')"
            " AND pg_has_role(:r, c.relowner, 'MEMBER')"
        ),
        {"schemas": list(schemas), "r": role},
    ).scalars()
    problems += [f"{role}: owns {name}" for name in owned]
    return problems
