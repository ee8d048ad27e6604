"""The command line every service shares: `python -m hygoshop_<name> [serve|migrate]`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import uvloop

from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.migrations import SchemaSpec, upgrade
from hygoshop_platform.server import ServiceServer, serve
from hygoshop_platform.settings import ServiceSettings, SettingsError, env_optional
from hygoshop_platform.telemetry import configure_logging, configure_tracing

log = logging.getLogger(__name__)


class HasBase(Protocol):
    @property
    def base(self) -> ServiceSettings: ...


S = TypeVar("S", bound=HasBase)


def run_service(
    load_settings: Callable[[], S],
    build: Callable[[S], Awaitable[ServiceServer]],
    schema: SchemaSpec | None,
) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    try:
        settings = load_settings()
    except SettingsError as exc:
        parser.exit(2, f"configuration error: {exc}\n")
    base = settings.base
    configure_logging(base.log_level)
    if args.command == "migrate":
        if schema is None:
            log.info("%s has no schema to migrate", base.service_name)
            return
        if not base.migrations_database_url:
            parser.exit(2, "configuration error: MIGRATIONS_DATABASE_URL is required\n")
        password = env_optional("DATABASE_APP_PASSWORD")
        upgrade(base.migrations_database_url, schema, app_password=password)
        log.info("schema %s is up to date", schema.schema)
        if (env_optional("BUS_URL") or "").startswith("postgresql://"):
            # The bus runs over PostgreSQL: its schema is every service's to keep current
            # (migrations take a lock per schema, so concurrent Jobs wait for each other).
            upgrade(base.migrations_database_url, BUS_SCHEMA, app_password=password)
            log.info("schema %s is up to date", BUS_SCHEMA.schema)
        return
    configure_tracing(base.service_name, base.otlp_endpoint)

    async def main() -> None:
        server = await build(settings)
        await serve(server, base.shutdown_grace_seconds)

    # uvloop: measured about 15% less CPU per gRPC call than the default loop.
    uvloop.run(main())
