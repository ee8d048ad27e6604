"""The PostgreSQL transport's queues: messages and the events exchange's bindings.

Revision ID: 0001
Revises:

The bus schema is a broker, not tenant data: a message's tenant travels inside its
envelope and headers (as on RabbitMQ), and the consumer's own transaction runs as that
tenant. Only the bus role reads these tables; no service's role is granted them.
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE bus.messages (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            queue       text NOT NULL,
            body        bytea NOT NULL,
            headers     jsonb NOT NULL,
            deliveries  integer NOT NULL DEFAULT 0,
            visible_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp()
        ) WITH (fillfactor = 80)
        """
    )
    # Claiming takes the oldest visible message of one queue.
    op.execute("CREATE INDEX messages_ready ON bus.messages (queue, visible_at, id)")
    op.execute(
        """
        CREATE TABLE bus.bindings (
            exchange text NOT NULL,
            queue    text NOT NULL,
            pattern  text NOT NULL,
            regex    text NOT NULL,
            PRIMARY KEY (exchange, queue, pattern)
        )
        """
    )
