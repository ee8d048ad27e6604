"""Who may call what, shared by the RouterService methods, and their common helpers.

Public reads need `routing:read` (or the platform admin for the catalog and health),
tenant writes `routing:write`, catalog edits the platform admin. Route and ReportOutcomes
have no HTTP rule (internal callers only) and need just a tenant in the caller metadata.
"""

from __future__ import annotations

import uuid

from hygoshop_platform.access import require_tenant
from hygoshop_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from hygoshop_platform.tenancy import current_caller
from hygoshop_router.engine import RouterEngine

READ = "routing:read"
WRITE = "routing:write"
DEFAULT_PAGE = 50


def catalog_reader() -> uuid.UUID | None:
    """The tenant reading the catalog or health, or None for the platform admin."""
    caller = current_caller()
    if caller.is_platform_admin and caller.tenant_id is None:
        return None
    return require_tenant(READ)


def internal_tenant() -> uuid.UUID:
    """Route and ReportOutcomes: whatever scopes the original request had, its tenant."""
    tenant_id = current_caller().tenant_id
    if tenant_id is None:
        raise Unauthenticated("internal calls must carry the caller's tenant")
    return tenant_id


def parse_uuid(value: str, field: str, missing: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument([FieldViolation(field, "is required")])
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(missing) from None  # a malformed id names nothing: like a missing one


class ApiBase:
    """What every group of RouterService methods shares: the engine."""

    def __init__(self, engine: RouterEngine) -> None:
        self._engine = engine

    def _category(self, value: str, field: str) -> str:
        if not value:
            raise InvalidArgument([FieldViolation(field, "is required")])
        if value not in self._engine.categories:
            known = ", ".join(sorted(self._engine.categories))
            raise InvalidArgument([FieldViolation(field, f"unknown category; one of {known}")])
        return value
