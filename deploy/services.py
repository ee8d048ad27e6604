"""The service table: every service the local stack runs. Adding a service = one entry here.

Each entry says how to start the process (`python -m <module>`), which schema it
migrates, whether Envoy routes public traffic to it, and its own environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hygoshop_catalog.config import SCHEMA as CATALOG_SCHEMA
from hygoshop_platform.blobs.settings import BlobSettings
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_router.config import SCHEMA as ROUTER_SCHEMA
from hygoshop_tenancy.config import SCHEMA as TENANCY_SCHEMA
from hygoshop_workflows.config import SCHEMA as WORKFLOWS_SCHEMA


@dataclass(frozen=True)
class StackOptions:
    """What the stack's caller decides (launcher flags, test fixtures)."""

    platform_admin_key: str
    redis_url: str | None = None
    auth_cache_ttl_seconds: float = 5.0
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    """RATE_LIMIT_<TIER>[_BURST] for tenancy (requests/s per tenant at the gateway), e.g.
    a benchmark lifting the limit of the tier it measures with; unset: the defaults."""
    otlp_endpoint: str | None = None
    processes: Mapping[str, int] = field(default_factory=dict)
    """Server processes per service (default 1), e.g. {"catalog": 2} for the benchmark;
    `<service>-<worker>` keys set a worker's count (default its `WorkerEntry.count`)."""
    s3: BlobSettings | None = None
    """Object storage for the catalog's uploads and images (passed as S3_* variables)."""
    bus_url: str | None = None
    """The message bus every service gets as BUS_URL: `amqp://...` (RabbitMQ) or
    `postgresql://...`; None: the PostgreSQL transport on the stack's own database."""
    bus_namespace: str = "hygoshop"
    """Prefix of the bus's queues and exchanges (BUS_NAMESPACE): unique per test stack."""
    bus_expires_seconds: float | None = None
    """RabbitMQ queues of a throwaway (test) stack expire when unused this long."""


@dataclass(frozen=True)
class WorkerEntry:
    """A background process of a service: the same module, schema and environment as its
    server, started after it, with no port (nothing calls it, it calls out)."""

    name: str
    """Its processes are `<service>-<name>-<i>`; in Helm, Deployment hygoshop-<service>-<name>."""
    args: tuple[str, ...]
    """Arguments after `python -m <module>`, e.g. ("worker",)."""
    count: int = 1
    """Processes the stack starts (StackOptions.processes["<service>-<name>"] overrides it)."""


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    """One name everywhere: folder, schema, proto package, process, Helm key."""
    module: str
    schema: SchemaSpec | None
    public: bool = True
    """Envoy routes its http-annotated RPCs (its upstream cluster is `name`)."""
    env: Callable[[StackOptions], dict[str, str]] = lambda _: {}
    calls: tuple[str, ...] = ()
    """Services it calls over gRPC (started before it): each one's address is passed as
    `<NAME>_GRPC_TARGET` (e.g. TENANCY_GRPC_TARGET)."""
    workers: tuple[WorkerEntry, ...] = ()
    """Background processes started beside its server processes, e.g. workflow workers."""


def _tenancy_env(options: StackOptions) -> dict[str, str]:
    env = {
        "PLATFORM_ADMIN_API_KEY": options.platform_admin_key,
        "AUTH_CACHE_TTL_SECONDS": str(options.auth_cache_ttl_seconds),
    }
    if options.redis_url:
        env["REDIS_URL"] = options.redis_url
    env.update(options.rate_limits)
    return env


def _s3_env(options: StackOptions) -> dict[str, str]:
    return options.s3.to_env() if options.s3 is not None else {}


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("tenancy", "hygoshop_tenancy", TENANCY_SCHEMA, env=_tenancy_env),
    ServiceEntry("catalog", "hygoshop_catalog", CATALOG_SCHEMA, env=_s3_env),
    ServiceEntry("router", "hygoshop_router", ROUTER_SCHEMA, calls=("tenancy",)),
    ServiceEntry(
        "workflows",
        "hygoshop_workflows",
        WORKFLOWS_SCHEMA,
        # catalog: definitions that change listings (CATALOG_GRPC_TARGET).
        calls=("catalog",),
        workers=(WorkerEntry("worker", ("worker",)),),
    ),
)
AUTHZ_SERVICE = "tenancy"
"""The service answering Envoy's ext_authz checks."""
