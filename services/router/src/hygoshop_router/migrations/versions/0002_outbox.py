"""The router's outbox: routing alerts are published as events (`router.alert.raised`).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from hygoshop_platform.bus import outbox_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    for statement in outbox_sql("router"):
        op.execute(statement)
