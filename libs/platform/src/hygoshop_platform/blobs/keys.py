"""Object keys confined to a tenant: `tenants/<tenant_id>/<path>`, and how client keys are read.

A key from a client is either relative to the caller's tenant (`uploads/...`) or spelled in
full with the caller's own prefix (`tenants/<own id>/uploads/...`). Anything else, including
another tenant's full key, is read as relative to the caller's prefix, so it names an object
of the caller that does not exist: the same answer as a missing object, never a 403 that
would confirm the other tenant's object exists.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from hygoshop_platform.errors import FieldViolation, InvalidArgument

TENANTS_ROOT = "tenants"
MAX_OBJECT_KEY_BYTES = 1024  # S3's limit for a whole key
MAX_FILE_NAME = 100
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class InvalidKey(InvalidArgument):
    """A client's key is malformed (traversal, absolute, control characters, too long)."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__([FieldViolation(field, description)])


def tenant_prefix(tenant_id: uuid.UUID) -> str:
    """`tenants/<tenant_id>/`: everything of one tenant lives under it."""
    return f"{TENANTS_ROOT}/{tenant_id}/"


@dataclass(frozen=True, slots=True)
class BlobKey:
    """An object of one tenant. Build it with `parse` (client input) or `new_upload`."""

    tenant_id: uuid.UUID
    path: str
    """Relative to the tenant's prefix; what APIs show and databases store."""

    @property
    def object_key(self) -> str:
        """The full key in the bucket."""
        return tenant_prefix(self.tenant_id) + self.path

    @classmethod
    def parse(cls, tenant_id: uuid.UUID, raw: str, field: str = "key") -> BlobKey:
        """The caller's object named by `raw`; InvalidKey (naming `field`) when malformed."""
        if not raw:
            raise InvalidKey(field, "is required")
        if raw.startswith("/"):
            raise InvalidKey(field, "must be relative: no leading /")
        if "\\" in raw or any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise InvalidKey(field, "must not contain backslashes or control characters")
        own = tenant_prefix(tenant_id)
        path = raw.removeprefix(own)
        if any(segment in ("", ".", "..") for segment in path.split("/")):
            raise InvalidKey(field, "must not contain empty, `.` or `..` path segments")
        key = cls(tenant_id, path)
        if len(key.object_key.encode()) > MAX_OBJECT_KEY_BYTES:
            raise InvalidKey(field, "is too long")
        return key

    @classmethod
    def new_upload(cls, tenant_id: uuid.UUID, folder: str, file_name: str = "") -> BlobKey:
        """A fresh, unguessable key `uploads/<folder>/<uuid>/<file name>` for a client upload."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", folder):
            raise ValueError(f"upload folder {folder!r} must be lower-case letters, digits, -")
        return cls(tenant_id, f"uploads/{folder}/{uuid.uuid4().hex}/{safe_file_name(file_name)}")


def safe_file_name(name: str) -> str:
    """A client's file name reduced to a harmless last path segment (kept for humans only)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE_NAME_CHARS.sub("_", base).strip("._")[:MAX_FILE_NAME].strip("._")
    return clean or "file"
