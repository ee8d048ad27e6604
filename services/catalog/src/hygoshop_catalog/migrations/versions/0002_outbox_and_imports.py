"""The catalog's outbox and inbox, and listing imports.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from hygoshop_platform.bus import inbox_sql, outbox_sql
from hygoshop_platform.migrations import enable_tenant_rls

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    for statement in [*outbox_sql("catalog"), *inbox_sql("catalog")]:
        op.execute(statement)
    op.execute(
        """
        CREATE TABLE catalog.listing_imports (
            tenant_id       uuid NOT NULL,
            import_id       uuid NOT NULL,
            request_id      text NOT NULL,
            state           text NOT NULL
                CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
            error_policy    text NOT NULL CHECK (error_policy IN ('reject_all', 'skip_failed_rows')),
            format          text NOT NULL CHECK (format IN ('inline', 'json_lines', 'json', 'csv')),
            upload_key      text,
            inline_rows     bytea,
            rows_done       integer NOT NULL DEFAULT 0,
            received        integer NOT NULL DEFAULT 0,
            created         integer NOT NULL DEFAULT 0,
            updated         integer NOT NULL DEFAULT 0,
            failed          integer NOT NULL DEFAULT 0,
            errors          jsonb NOT NULL DEFAULT '[]',
            failure_message text NOT NULL DEFAULT '',
            create_time     timestamptz NOT NULL DEFAULT now(),
            start_time      timestamptz,
            end_time        timestamptz,
            update_time     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, import_id),
            UNIQUE (tenant_id, request_id)
        )
        """
    )
    for statement in enable_tenant_rls("catalog.listing_imports"):
        op.execute(statement)
