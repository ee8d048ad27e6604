"""Who is calling: the tenant and scopes the gateway established, per request.

The gateway's ext_authz check turns an API key into these metadata headers; services
read the caller only from them (never from a URL or body field) and pass them on when
they call each other.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass

TENANT_HEADER = "x-hygoshop-tenant-id"
SCOPES_HEADER = "x-hygoshop-scopes"
KEY_ID_HEADER = "x-hygoshop-key-id"
PLATFORM_ADMIN_SCOPE = "platform:admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    tenant_id: uuid.UUID | None
    """None for the platform administrator, who acts on no tenant's data."""
    scopes: frozenset[str]
    key_id: str | None = None

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN_SCOPE in self.scopes

    def has_scope(self, scope: str) -> bool:
        # `admin` of a tenant implies every scope of that tenant; the platform admin has
        # only what it is given explicitly, so it cannot read tenant data by accident.
        return scope in self.scopes or (self.tenant_id is not None and "admin" in self.scopes)

    def to_metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata to pass the caller on to another service."""
        items = [(SCOPES_HEADER, " ".join(sorted(self.scopes)))]
        if self.tenant_id is not None:
            items.append((TENANT_HEADER, str(self.tenant_id)))
        if self.key_id:
            items.append((KEY_ID_HEADER, self.key_id))
        return tuple(items)


ANONYMOUS = Caller(tenant_id=None, scopes=frozenset())

_current: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "hygoshop_caller", default=ANONYMOUS
)


def current_caller() -> Caller:
    return _current.get()


def set_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _current.set(caller)


def reset_caller(token: contextvars.Token[Caller]) -> None:
    _current.reset(token)


def caller_from_metadata(metadata: dict[str, str]) -> Caller:
    """Parse the gateway's headers. A malformed tenant id yields no tenant, not an error."""
    raw_tenant = metadata.get(TENANT_HEADER, "")
    tenant_id: uuid.UUID | None
    try:
        tenant_id = uuid.UUID(raw_tenant) if raw_tenant else None
    except ValueError:
        tenant_id = None
    scopes = frozenset(s for s in metadata.get(SCOPES_HEADER, "").split() if s)
    return Caller(tenant_id=tenant_id, scopes=scopes, key_id=metadata.get(KEY_ID_HEADER) or None)
