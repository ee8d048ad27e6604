"""A step can end `cancelled`: its run ended while the step was in flight, waiting or
backing off. Before this, such steps stayed `running` or `retrying` in a finished run's
history forever. Existing ones are closed here too.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("ALTER TABLE workflows.steps DROP CONSTRAINT steps_state_check")
    op.execute(
        "ALTER TABLE workflows.steps ADD CONSTRAINT steps_state_check CHECK (state IN"
        " ('running', 'retrying', 'succeeded', 'failed', 'cancelled'))"
    )
    op.execute(
        "UPDATE workflows.steps s SET state = 'cancelled', wake_at = NULL,"
        " end_time = coalesce(r.end_time, clock_timestamp())"
        " FROM workflows.runs r"
        " WHERE r.tenant_id = s.tenant_id AND r.run_id = s.run_id"
        " AND r.state IN ('succeeded', 'failed', 'cancelled')"
        " AND s.state IN ('running', 'retrying')"
    )
