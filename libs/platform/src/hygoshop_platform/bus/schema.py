"""The `bus` schema of the PostgreSQL transport, migrated like a service's schema."""

from pathlib import Path

from hygoshop_platform.migrations import SchemaSpec

BUS_SCHEMA = SchemaSpec("bus", Path(__file__).parent / "migrations")
"""Migrate with `hygoshop_platform.migrations.upgrade(admin_url, BUS_SCHEMA)`; processes
connect as its application role (`app_url(admin_url, BUS_SCHEMA)`) in BUS_URL."""
