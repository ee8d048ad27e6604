"""Outbound clients the built-in definitions use, bound once per worker process.

Definitions reach other services through these (never through a database of theirs), as
the run's tenant: each call carries the tenant and the scopes the step needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc

from hygoshop.catalog.v1 import catalog_pb2_grpc
from hygoshop_platform.tenancy import SCOPES_HEADER, TENANT_HEADER
from hygoshop_workflows.config import WorkflowsSettings
from hygoshop_workflows.runtime import NonRetryableError


@dataclass
class Dependencies:
    catalog_channel: grpc.aio.Channel | None = None

    def catalog(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        if self.catalog_channel is None:
            raise NonRetryableError("catalog is not configured (CATALOG_GRPC_TARGET)")
        return catalog_pb2_grpc.CatalogServiceStub(self.catalog_channel)

    async def close(self) -> None:
        if self.catalog_channel is not None:
            await self.catalog_channel.close(grace=None)


_bound = Dependencies()


async def bind_dependencies(settings: WorkflowsSettings) -> Dependencies:
    global _bound  # noqa: PLW0603 - one set of clients per process, bound at start
    channel = (
        grpc.aio.insecure_channel(settings.catalog_grpc_target)
        if settings.catalog_grpc_target
        else None
    )
    _bound = Dependencies(catalog_channel=channel)
    return _bound


def dependencies() -> Dependencies:
    return _bound


def as_tenant(tenant_id: uuid.UUID, *scopes: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of an internal call on behalf of `tenant_id`."""
    return ((TENANT_HEADER, str(tenant_id)), (SCOPES_HEADER, " ".join(scopes)))


PERMANENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def permanent(error: grpc.aio.AioRpcError) -> Exception:
    """A call error as a step failure: permanent codes never retry, the rest do."""
    message = f"{error.code().name}: {error.details()}"
    if error.code() in PERMANENT_CODES:
        return NonRetryableError(message)
    return RuntimeError(message)
