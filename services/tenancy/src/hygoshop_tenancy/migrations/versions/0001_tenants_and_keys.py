"""Tenants and API keys, with row-level security and the key lookup function.

Revision ID: 0001
Revises:
"""

from alembic import op

from hygoshop_platform.migrations import enable_tenant_rls

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenancy.tenants (
            tenant_id    uuid PRIMARY KEY,
            display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
            tier         text NOT NULL CHECK (tier IN ('free', 'growth', 'enterprise')),
            create_time  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE tenancy.api_keys (
            tenant_id    uuid NOT NULL REFERENCES tenancy.tenants (tenant_id),
            key_id       uuid NOT NULL,
            prefix       text NOT NULL UNIQUE,
            digest       text NOT NULL,
            display_name text NOT NULL DEFAULT '',
            scopes       text[] NOT NULL,
            create_time  timestamptz NOT NULL DEFAULT now(),
            revoke_time  timestamptz,
            PRIMARY KEY (tenant_id, key_id)
        )
        """
    )
    for table in ("tenancy.tenants", "tenancy.api_keys"):
        for statement in enable_tenant_rls(table):
            op.execute(statement)
    # The auth check must find a key before it knows the tenant. Only this function may:
    # it runs as the owner role, which a SELECT-only policy lets read keys; the
    # application role can execute it but cannot read other tenants' rows itself.
    op.execute(
        "CREATE POLICY key_lookup ON tenancy.api_keys FOR SELECT"
        " TO hygoshop_tenancy_owner USING (true)"
    )
    op.execute(
        """
        CREATE FUNCTION tenancy.lookup_api_key(p_prefix text)
        RETURNS TABLE (key_id uuid, tenant_id uuid, digest text, scopes text[],
                       revoked boolean)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT k.key_id, k.tenant_id, k.digest, k.scopes, k.revoke_time IS NOT NULL
            FROM tenancy.api_keys k WHERE k.prefix = p_prefix
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tenancy.lookup_api_key(text) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION tenancy.lookup_api_key(text) TO hygoshop_tenancy_app")
