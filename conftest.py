"""Fixtures shared by every test folder: real PostgreSQL, migrated once per session.

The server comes from `hygoshop_platform.testing.postgres` (DATABASE_URL, local :5432,
Docker, embedded PostgreSQL, in that order); each session gets its own database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from hygoshop_catalog.config import SCHEMA as CATALOG_SCHEMA
from hygoshop_platform.migrations import SchemaSpec, app_url, upgrade
from hygoshop_tenancy.config import SCHEMA as TENANCY_SCHEMA

if TYPE_CHECKING:
    from hygoshop_platform.testing.postgres import MakeDatabase

pytest_plugins = ["hygoshop_platform.testing.postgres"]

SCHEMAS: tuple[SchemaSpec, ...] = (TENANCY_SCHEMA, CATALOG_SCHEMA)
# Servers with password auth (containers) need one; trust-auth servers ignore it.
APP_PASSWORD = "hygoshop-test-app"


@dataclass(frozen=True)
class PlatformDatabase:
    """A database with every service schema migrated."""

    admin_url: str

    def app_url(self, spec: SchemaSpec) -> str:
        """Where the service with `spec` connects: its non-owner application role."""
        return app_url(self.admin_url, spec, APP_PASSWORD)


@pytest.fixture(scope="session")
def platform_db(make_database: "MakeDatabase") -> PlatformDatabase:
    url = make_database("platform")
    for spec in SCHEMAS:
        upgrade(url, spec, app_password=APP_PASSWORD)
    return PlatformDatabase(url)
