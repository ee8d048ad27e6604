"""Alembic environment of the `bus` schema (the PostgreSQL transport's tables)."""

from hygoshop_platform.migrations import run_env

run_env()
