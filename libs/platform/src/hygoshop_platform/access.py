"""Who may call a tenant-scoped method: the caller's tenant, if its key holds a scope.

Every service's API layer starts its methods with `require_tenant("<context>:read|write")`;
the answers are the same everywhere: no key at all is UNAUTHENTICATED, a key without a
tenant (the platform admin) or without the scope is PERMISSION_DENIED.
"""

from __future__ import annotations

import uuid

from hygoshop_platform.errors import PermissionDenied, Unauthenticated
from hygoshop_platform.tenancy import current_caller


def require_tenant(scope: str) -> uuid.UUID:
    """The caller's tenant, if its key holds `scope` (a tenant `admin` key holds all)."""
    caller = current_caller()
    if caller.tenant_id is None:
        if caller.scopes:
            raise PermissionDenied("this needs a tenant's API key")
        raise Unauthenticated("an API key is required")
    if not caller.has_scope(scope):
        raise PermissionDenied(f"this needs an API key with the `{scope}` scope")
    return caller.tenant_id
