"""API keys: format, digests and scopes.

A key reads `hyg_<prefix>_<secret>`. The prefix (public, unique) finds the row; only the
SHA-256 digest of the whole key is stored. The secret has 256 bits of entropy, so a fast
digest is safe (no password-style stretching needed) and keeps the auth check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARKER = "hyg"
PREFIX_LENGTH = 12
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

# Scopes a tenant key may hold. `admin` implies every scope of its own tenant.
# Later contexts add theirs here (orders:read, workflows:write, ...).
TENANT_SCOPES = frozenset(
    {
        "catalog:read",
        "catalog:write",
        "routing:read",
        "routing:write",
        "workflows:read",
        "workflows:write",
        "admin",
    }
)


@dataclass(frozen=True, slots=True)
class NewKey:
    prefix: str
    secret: str
    """The full key to give to the client once."""
    digest: str


def digest_key(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def generate_key() -> NewKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    full = f"{KEY_MARKER}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix=prefix, secret=full, digest=digest_key(full))


def parse_prefix(presented: str) -> str | None:
    """The lookup prefix of a well-formed key, else None (no database lookup needed)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARKER or len(parts[1]) != PREFIX_LENGTH:
        return None
    if not set(parts[1]) <= set(_PREFIX_ALPHABET) or len(parts[2]) < 32:
        return None
    return parts[1]


def digests_match(presented_digest: str, stored_digest: str) -> bool:
    return hmac.compare_digest(presented_digest, stored_digest)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token
