"""Items (a producer's state), effects (a consumer's), and the outbox and inbox.

Revision ID: 0001
Revises:
"""

from alembic import op

from hygoshop_platform.bus import inbox_sql, outbox_sql
from hygoshop_platform.migrations import enable_tenant_rls

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE busprobe.items (
            tenant_id uuid NOT NULL,
            item_id   uuid NOT NULL,
            name      text NOT NULL,
            touches   integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, item_id)
        )
        """
    )
    # No unique key on the message: a second effect of one message must show, not fail.
    op.execute(
        """
        CREATE TABLE busprobe.effects (
            tenant_id  uuid NOT NULL,
            effect_id  bigint GENERATED ALWAYS AS IDENTITY,
            message_id uuid NOT NULL,
            consumer   text NOT NULL,
            PRIMARY KEY (tenant_id, effect_id)
        )
        """
    )
    for table in ("busprobe.items", "busprobe.effects"):
        for statement in enable_tenant_rls(table):
            op.execute(statement)
    for statement in [*outbox_sql("busprobe"), *inbox_sql("busprobe")]:
        op.execute(statement)
