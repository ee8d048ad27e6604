"""Upload limits per purpose, image acceptance, and how updates may rearrange images."""

from __future__ import annotations

import uuid

import pytest

from hygoshop_catalog.domain.images import (
    attached_image_stem,
    image_problem,
    rearrange_images,
    upload_problem,
)
from hygoshop_catalog.domain.listing import ImageRef
from hygoshop_catalog.domain.uploads import MB, UploadPurpose, media_type, validate_upload
from hygoshop_catalog.media import Media
from hygoshop_platform.blobs import BlobSettings, BlobStore

IMAGE = UploadPurpose.LISTING_IMAGE
IMPORT = UploadPurpose.IMPORT_FILE


def fields(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.field for v in violations]


@pytest.mark.parametrize(
    ("purpose", "content_type", "size"),
    [
        (IMAGE, "image/png", 1),
        (IMAGE, "image/jpeg", 10 * MB),
        (IMAGE, "IMAGE/WEBP", 5000),
        (IMAGE, "image/gif", 5000),
        (IMPORT, "text/csv; charset=utf-8", 50 * MB),
        (IMPORT, "application/jsonl", 100),
        (IMPORT, "application/x-ndjson", 100),
        (IMPORT, "application/json", 100),
    ],
)
def test_uploads_within_the_purpose_limits_are_accepted(
    purpose: UploadPurpose, content_type: str, size: int
) -> None:
    assert validate_upload(purpose, content_type, size, "file.bin") == []


@pytest.mark.parametrize(
    ("purpose", "content_type", "size", "file_name", "bad"),
    [
        (IMAGE, "image/png", 10 * MB + 1, "", ["size_bytes"]),
        (IMPORT, "text/csv", 50 * MB + 1, "", ["size_bytes"]),
        (IMAGE, "image/png", 0, "", ["size_bytes"]),
        (IMAGE, "image/png", -5, "", ["size_bytes"]),
        (IMAGE, "image/svg+xml", 100, "", ["content_type"]),
        (IMAGE, "text/csv", 100, "", ["content_type"]),
        (IMPORT, "image/png", 100, "", ["content_type"]),
        (IMAGE, "", 100, "", ["content_type"]),
        (IMAGE, "image/png\r\nx-amz-acl: public-read", 100, "", ["content_type"]),
        (IMAGE, "image/pngé", 100, "", ["content_type"]),
        (IMAGE, "image/png", 100, "x" * 256, ["file_name"]),
        (IMAGE, "image/png", 100, "a\nb.png", ["file_name"]),
        (None, "image/png", 100, "", ["purpose"]),
        (None, "nonsense", 0, "", ["purpose", "content_type", "size_bytes"]),
    ],
)
def test_uploads_outside_the_limits_name_each_bad_field(
    purpose: UploadPurpose | None, content_type: str, size: int, file_name: str, bad: list[str]
) -> None:
    assert fields(validate_upload(purpose, content_type, size, file_name)) == bad


def test_media_type_ignores_parameters_and_case() -> None:
    assert media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert media_type('text/csv;charset="utf-8"') == "text/csv"
    assert media_type("text") is None
    assert media_type("text/csv; charset") is None


def test_image_acceptance_trusts_the_bytes_not_the_declared_type() -> None:
    assert image_problem("image/png", 100, "image/png") is None
    assert image_problem("image/png", 100, None) == "is not a JPEG, PNG, WebP or GIF image"
    assert image_problem("image/jpeg", 100, "image/png") == (
        "content is image/png but it was uploaded as image/jpeg"
    )
    assert "at most" in (image_problem("image/png", 10 * MB + 1, "image/png") or "")
    assert image_problem("image/png", 0, "image/png") == "is an empty file"
    assert upload_problem("text/plain", 100) == "was uploaded as text/plain, not as an image"
    assert upload_problem("image/webp", 100) is None


def test_attached_image_location_is_stable_per_upload_and_listing() -> None:
    listing = uuid.uuid4()
    stem = attached_image_stem(listing, "uploads/images/abc/a.png")
    assert stem == attached_image_stem(listing, "uploads/images/abc/a.png")
    assert stem != attached_image_stem(listing, "uploads/images/abd/a.png")
    assert stem != attached_image_stem(uuid.uuid4(), "uploads/images/abc/a.png")
    assert stem.startswith(f"listings/{listing}/images/")


def test_updates_may_reorder_remove_and_describe_but_not_add_images() -> None:
    a = ImageRef("listings/l/images/a.png", "front", "image/png", 10)
    b = ImageRef("listings/l/images/b.jpg", "back", "image/jpeg", 20)
    images, violations = rearrange_images(
        (a, b), (ImageRef(b.key, "the back", "text/html", 999), ImageRef(a.key))
    )
    assert violations == []
    assert images == (
        ImageRef(b.key, "the back", "image/jpeg", 20),
        ImageRef(a.key, "", "image/png", 10),
    )

    images, violations = rearrange_images((a, b), (ImageRef(b.key),))
    assert (images, violations) == ((ImageRef(b.key, "", "image/jpeg", 20),), [])

    _, violations = rearrange_images(
        (a,), (ImageRef(a.key), ImageRef("uploads/x.png"), ImageRef(a.key))
    )
    assert fields(violations) == ["listing.images[1].key", "listing.images[2].key"]
    assert "attachImage" in violations[0].description


def test_image_urls_are_signed_only_for_keys_inside_the_tenant() -> None:
    tenant = uuid.uuid4()
    settings = BlobSettings(
        bucket="images",
        endpoint_url="http://storage.internal:9000",
        public_endpoint_url="https://files.example.test",
        access_key_id="AK",
        secret_access_key="SK",
    )
    blobs = BlobStore(settings)  # presigning is local: nothing is contacted
    try:
        url = Media(pool=None, store=None, blobs=blobs).image_url(tenant)  # type: ignore[arg-type]
        assert url is not None
        signed = url(ImageRef("listings/l/images/a.png"))
        assert signed.startswith(f"https://files.example.test/images/tenants/{tenant}/listings/")
        assert url(ImageRef(f"../{uuid.uuid4()}/listings/l/images/a.png")) == ""
        assert url(ImageRef("/etc/passwd")) == ""
    finally:
        blobs.close()
    assert Media(pool=None, store=None, blobs=None).image_url(tenant) is None  # type: ignore[arg-type]
