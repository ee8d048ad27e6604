"""The service table: every service the local stack runs. Adding a service = one entry here.

Each entry says how to start the process (`python -m <module>`), which schema it
migrates, whether Envoy routes public traffic to it, and its own environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hygoshop_catalog.config import SCHEMA as CATALOG_SCHEMA
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_tenancy.config import SCHEMA as TENANCY_SCHEMA


@dataclass(frozen=True)
class StackOptions:
    """What the stack's caller decides (launcher flags, test fixtures)."""

    platform_admin_key: str
    redis_url: str | None = None
    auth_cache_ttl_seconds: float = 5.0
    otlp_endpoint: str | None = None
    processes: Mapping[str, int] = field(default_factory=dict)
    """Server processes per service (default 1), e.g. {"catalog": 2} for the benchmark."""


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    """One name everywhere: folder, schema, proto package, process, Helm key."""
    module: str
    schema: SchemaSpec | None
    public: bool = True
    """Envoy routes its http-annotated RPCs (its upstream cluster is `name`)."""
    env: Callable[[StackOptions], dict[str, str]] = lambda _: {}


def _tenancy_env(options: StackOptions) -> dict[str, str]:
    env = {
        "PLATFORM_ADMIN_API_KEY": options.platform_admin_key,
        "AUTH_CACHE_TTL_SECONDS": str(options.auth_cache_ttl_seconds),
    }
    if options.redis_url:
        env["REDIS_URL"] = options.redis_url
    return env


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("tenancy", "hygoshop_tenancy", TENANCY_SCHEMA, env=_tenancy_env),
    ServiceEntry("catalog", "hygoshop_catalog", CATALOG_SCHEMA),
)
AUTHZ_SERVICE = "tenancy"
"""The service answering Envoy's ext_authz checks."""
