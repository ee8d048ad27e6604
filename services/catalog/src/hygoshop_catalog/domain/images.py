"""Listing images: which stored objects are acceptable images, where attached ones live, and
how an update may rearrange them."""

from __future__ import annotations

import hashlib
import uuid

from hygoshop_catalog.domain.listing import ImageRef
from hygoshop_catalog.domain.uploads import MB, POLICIES, UploadPurpose, media_type
from hygoshop_catalog.domain.validation import MAX_ALT_TEXT, MAX_IMAGES, text_violations
from hygoshop_platform.errors import FieldViolation

IMAGE_POLICY = POLICIES[UploadPurpose.LISTING_IMAGE]


def image_problem(declared_type: str, size_bytes: int, sniffed_type: str | None) -> str | None:
    """Why an object is not an acceptable listing image, or None when it is.

    `sniffed_type` comes from the object's first bytes; the declared type is only what the
    uploader said, so it must agree with them.
    """
    if size_bytes <= 0:
        return "is an empty file"
    if size_bytes > IMAGE_POLICY.max_bytes:
        return (
            f"is {size_bytes} bytes; images may be at most {IMAGE_POLICY.max_bytes} bytes"
            f" ({IMAGE_POLICY.max_bytes // MB} MB)"
        )
    if sniffed_type is None:
        return "is not a JPEG, PNG, WebP or GIF image"
    declared = media_type(declared_type)
    if declared != sniffed_type:
        return f"content is {sniffed_type} but it was uploaded as {declared or 'unknown type'}"
    return None


def upload_problem(declared_type: str, size_bytes: int) -> str | None:
    """Why an upload is plainly no listing image, from its metadata alone (before copying it)."""
    if size_bytes > IMAGE_POLICY.max_bytes or size_bytes <= 0:
        return image_problem(declared_type, size_bytes, None)
    declared = media_type(declared_type)
    if declared not in IMAGE_POLICY.content_types:
        return f"was uploaded as {declared or 'an unknown type'}, not as an image"
    return None


def alt_text_violations(alt_text: str, path: str = "alt_text") -> list[FieldViolation]:
    return text_violations(alt_text, path, MAX_ALT_TEXT)


def can_add_image(images: tuple[ImageRef, ...]) -> bool:
    return len(images) < MAX_IMAGES


def attached_image_stem(listing_id: uuid.UUID, upload_path: str) -> str:
    """Where an upload attached to a listing is copied, without the extension.

    Derived from the upload's key, so a retried attach finds the image it already made.
    """
    digest = hashlib.sha256(upload_path.encode()).hexdigest()[:32]
    return f"listings/{listing_id}/images/{digest}"


def listing_storage_folder(listing_id: uuid.UUID) -> str:
    """Everything stored for one listing lives under this path (removed with the listing)."""
    return f"listings/{listing_id}"


def rearrange_images(
    current: tuple[ImageRef, ...], requested: tuple[ImageRef, ...], prefix: str = "listing"
) -> tuple[tuple[ImageRef, ...], list[FieldViolation]]:
    """The images an update asks for: a reordering, subset or re-description of `current`.

    New images come only through attach (which checks them); here a key must already be
    attached. Output-only fields (type, size) always come from the attached image.
    """
    attached = {image.key: image for image in current}
    result = []
    violations = []
    seen: set[str] = set()
    for i, image in enumerate(requested):
        path = f"{prefix}.images[{i}].key"
        known = attached.get(image.key)
        if known is None:
            violations.append(
                FieldViolation(
                    path, "is not attached to this listing; add images with :attachImage"
                )
            )
        elif image.key in seen:
            violations.append(FieldViolation(path, "repeats another image"))
        else:
            result.append(ImageRef(known.key, image.alt_text, known.content_type, known.size_bytes))
        seen.add(image.key)
    return tuple(result), violations
