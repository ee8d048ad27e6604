"""What a client may upload, per purpose: checked before any upload URL is signed."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from hygoshop_platform.errors import FieldViolation

MB = 1024 * 1024
MAX_FILE_NAME = 255
MAX_CONTENT_TYPE = 200
# RFC 9110 media type: type "/" subtype, then optional "; name=value" parameters. Header
# safe by construction: printable ASCII only, so nothing can be smuggled into the signed
# Content-Type header.
_MT_CHARS = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(
    rf"(?P<type>{_MT_CHARS}/{_MT_CHARS})(?:\s*;\s*{_MT_CHARS}=(?:{_MT_CHARS}|\"[ -~]*\"))*\s*"
)


class UploadPurpose(enum.Enum):
    """The value is the folder under `uploads/` that holds this purpose's files."""

    IMPORT_FILE = "imports"
    LISTING_IMAGE = "images"


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    max_bytes: int
    content_types: frozenset[str]
    """Allowed media types (without parameters), lower case."""
    what: str
    """How to name the allowed types to a human."""


POLICIES: dict[UploadPurpose, UploadPolicy] = {
    UploadPurpose.IMPORT_FILE: UploadPolicy(
        max_bytes=50 * MB,
        content_types=frozenset(
            {"application/jsonl", "application/x-ndjson", "text/csv", "application/json"}
        ),
        what="application/jsonl, application/x-ndjson, text/csv or application/json",
    ),
    UploadPurpose.LISTING_IMAGE: UploadPolicy(
        max_bytes=10 * MB,
        content_types=frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
        what="image/jpeg, image/png, image/webp or image/gif",
    ),
}


def media_type(content_type: str) -> str | None:
    """The lower-case `type/subtype` of a well-formed Content-Type value, else None."""
    match = _MEDIA_TYPE.fullmatch(content_type)
    return match["type"].lower() if match else None


def validate_upload(
    purpose: UploadPurpose | None, content_type: str, size_bytes: int, file_name: str
) -> list[FieldViolation]:
    """Every reason the declared upload is refused (empty when it may be signed)."""
    violations = []
    if purpose is None:
        violations.append(
            FieldViolation(
                "purpose", "must be UPLOAD_PURPOSE_IMPORT_FILE or UPLOAD_PURPOSE_LISTING_IMAGE"
            )
        )
    base = media_type(content_type) if len(content_type) <= MAX_CONTENT_TYPE else None
    if not content_type:
        violations.append(FieldViolation("content_type", "is required"))
    elif base is None:
        violations.append(FieldViolation("content_type", "is not a valid media type"))
    elif purpose is not None and base not in POLICIES[purpose].content_types:
        violations.append(
            FieldViolation("content_type", f"must be {POLICIES[purpose].what}, not {base}")
        )
    if size_bytes <= 0:
        violations.append(FieldViolation("size_bytes", "must be positive"))
    elif purpose is not None and size_bytes > POLICIES[purpose].max_bytes:
        limit = POLICIES[purpose].max_bytes
        violations.append(
            FieldViolation(
                "size_bytes", f"must be at most {limit} bytes ({limit // MB} MB) for this purpose"
            )
        )
    if len(file_name) > MAX_FILE_NAME:
        violations.append(
            FieldViolation("file_name", f"must be at most {MAX_FILE_NAME} characters")
        )
    elif any(ord(c) < 32 or ord(c) == 127 for c in file_name):
        violations.append(FieldViolation("file_name", "must not contain control characters"))
    return violations
