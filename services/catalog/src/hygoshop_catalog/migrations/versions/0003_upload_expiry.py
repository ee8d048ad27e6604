"""Uploads are recorded when their URL is signed, so that abandoned ones expire.

`catalog.uploads_expired` and `catalog.uploads_forget` (SECURITY DEFINER, owner policy
`upload_expiry`, as for the outbox and inbox) let the sweeper see every tenant's expired
uploads; the application role gets nothing else across tenants.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from hygoshop_platform.migrations import enable_tenant_rls

revision = "0003"
down_revision = "0002"

OWNER, APP = "hygoshop_catalog_owner", "hygoshop_catalog_app"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE catalog.uploads (
            tenant_id   uuid NOT NULL,
            upload_key  text NOT NULL,
            purpose     text NOT NULL CHECK (purpose IN ('imports', 'images')),
            create_time timestamptz NOT NULL DEFAULT now(),
            expire_time timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, upload_key)
        )
        """
    )
    op.execute("CREATE INDEX uploads_by_expiry ON catalog.uploads (expire_time)")
    for statement in enable_tenant_rls("catalog.uploads"):
        op.execute(statement)
    op.execute(
        f"CREATE POLICY upload_expiry ON catalog.uploads FOR ALL TO {OWNER}"
        " USING (true) WITH CHECK (true)"
    )
    # An upload that an unfinished import reads is kept however old it is.
    op.execute(
        f"CREATE POLICY upload_expiry ON catalog.listing_imports FOR SELECT TO {OWNER} USING (true)"
    )
    # `now()`, not clock_timestamp(): a stable bound the expiry index can scan to.
    # Rows are locked until the caller's transaction ends: the sweeper deletes the objects
    # and then forgets the rows in one transaction, and an import that takes an upload
    # meanwhile (FOR SHARE on its row) is skipped, not swept from under it.
    op.execute(
        """
        CREATE FUNCTION catalog.uploads_expired(p_limit integer)
        RETURNS TABLE (tenant_id uuid, upload_key text)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT u.tenant_id, u.upload_key FROM catalog.uploads u
             WHERE u.expire_time < now()
               AND NOT EXISTS (
                   SELECT 1 FROM catalog.listing_imports i
                    WHERE i.tenant_id = u.tenant_id
                      AND i.state IN ('pending', 'running')
                      AND i.upload_key IN (
                          u.upload_key, 'tenants/' || u.tenant_id || '/' || u.upload_key
                      )
               )
             ORDER BY u.expire_time
             LIMIT p_limit
             FOR UPDATE OF u SKIP LOCKED
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION catalog.uploads_forget(p_tenants uuid[], p_keys text[])
        RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$
            WITH gone AS (
                DELETE FROM catalog.uploads u
                 USING unnest(p_tenants, p_keys) AS f(tenant_id, upload_key)
                 WHERE u.tenant_id = f.tenant_id AND u.upload_key = f.upload_key
                   AND u.expire_time < now()
                RETURNING 1
            )
            SELECT count(*) FROM gone
        $$
        """
    )
    for signature in ("uploads_expired(integer)", "uploads_forget(uuid[], text[])"):
        op.execute(f"REVOKE ALL ON FUNCTION catalog.{signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION catalog.{signature} TO {APP}")
