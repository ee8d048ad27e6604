"""What the test fixtures share: the migrated platform database and its roles."""

from __future__ import annotations

from dataclasses import dataclass

from hygoshop_catalog.config import SCHEMA as CATALOG_SCHEMA
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.migrations import SchemaSpec, app_url
from hygoshop_platform.testing.busprobe import BUSPROBE_SCHEMA
from hygoshop_router.config import SCHEMA as ROUTER_SCHEMA
from hygoshop_tenancy.config import SCHEMA as TENANCY_SCHEMA
from hygoshop_workflows.config import SCHEMA as WORKFLOWS_SCHEMA

SCHEMAS: tuple[SchemaSpec, ...] = (TENANCY_SCHEMA, CATALOG_SCHEMA)
# The PostgreSQL bus transport's schema, and the bus tests' small service schema (outbox,
# inbox): migrated with the others so the RLS meta-guard covers them too.
SCHEMAS += (BUS_SCHEMA, BUSPROBE_SCHEMA)
SCHEMAS += (ROUTER_SCHEMA,)
SCHEMAS += (WORKFLOWS_SCHEMA,)
# Servers with password auth (containers) need one; trust-auth servers ignore it.
APP_PASSWORD = "hygoshop-test-app"


@dataclass(frozen=True)
class PlatformDatabase:
    """A database with every service schema migrated."""

    admin_url: str

    def app_url(self, spec: SchemaSpec) -> str:
        """Where the service with `spec` connects: its non-owner application role."""
        return app_url(self.admin_url, spec, APP_PASSWORD)
