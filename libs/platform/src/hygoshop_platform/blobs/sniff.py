"""What a file really is, from its first bytes (magic numbers), whatever its uploader declared."""

from __future__ import annotations

SNIFF_BYTES = 16
"""Enough leading bytes for every signature below."""

_SIGNATURES: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("image/jpeg", (b"\xff\xd8\xff",)),
    ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ("image/gif", (b"GIF87a", b"GIF89a")),
)
IMAGE_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}


def sniff_image_type(head: bytes) -> str | None:
    """The image media type whose signature `head` starts with (JPEG, PNG, GIF, WebP), else None."""
    for media_type, prefixes in _SIGNATURES:
        if head.startswith(prefixes):
            return media_type
    # WebP is a RIFF container: "RIFF", a 4-byte little-endian size, then "WEBP".
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
