"""A minimal service schema for the bus's tests and benchmark: items, effects, outbox, inbox.

It is what a real service does in its migration (tables with RLS, then `outbox_sql` and
`inbox_sql`), small enough to show the bus's guarantees without a real service.
"""

from pathlib import Path

from hygoshop_platform.migrations import SchemaSpec

BUSPROBE_SCHEMA = SchemaSpec("busprobe", Path(__file__).parent / "migrations")
