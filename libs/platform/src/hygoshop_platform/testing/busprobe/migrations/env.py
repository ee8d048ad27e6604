"""Alembic environment of the `busprobe` test schema."""

from hygoshop_platform.migrations import run_env

run_env()
