"""Alembic environment of the workflows schema (the mechanics live in the chassis)."""

from hygoshop_platform.migrations import run_env

run_env()
