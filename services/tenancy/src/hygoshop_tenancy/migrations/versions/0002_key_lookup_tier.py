"""The key lookup also returns the tenant's tier, for the gateway's per-tier rate limits.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # The owner (only the lookup function runs as it) may read a key's tenant's tier.
    op.execute(
        "CREATE POLICY key_lookup ON tenancy.tenants FOR SELECT"
        " TO hygoshop_tenancy_owner USING (true)"
    )
    # A function's result columns cannot change in place.
    op.execute("DROP FUNCTION tenancy.lookup_api_key(text)")
    op.execute(
        """
        CREATE FUNCTION tenancy.lookup_api_key(p_prefix text)
        RETURNS TABLE (key_id uuid, tenant_id uuid, digest text, scopes text[],
                       revoked boolean, tier text)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT k.key_id, k.tenant_id, k.digest, k.scopes, k.revoke_time IS NOT NULL,
                   t.tier
              FROM tenancy.api_keys k
              JOIN tenancy.tenants t ON t.tenant_id = k.tenant_id
             WHERE k.prefix = p_prefix
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tenancy.lookup_api_key(text) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION tenancy.lookup_api_key(text) TO hygoshop_tenancy_app")
