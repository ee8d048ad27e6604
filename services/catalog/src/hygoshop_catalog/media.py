"""Uploads and listing images: the catalog's object-storage side (presigned uploads, attach).

Attaching copies the upload into the listing's own folder and checks the copy, not the
upload: a presigned PUT URL stays valid until it expires, so the uploaded object could be
replaced after a check, but nothing can write to the copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any

from hygoshop_catalog.domain.images import (
    alt_text_violations,
    attached_image_stem,
    can_add_image,
    image_problem,
    listing_storage_folder,
    upload_problem,
)
from hygoshop_catalog.domain.listing import ImageRef, Listing, ListingContent
from hygoshop_catalog.domain.uploads import UploadPurpose, media_type, validate_upload
from hygoshop_catalog.domain.validation import MAX_IMAGES
from hygoshop_catalog.store import CatalogStore
from hygoshop_catalog.upload_expiry import (
    DEFAULT_UPLOAD_RETENTION,
    record_upload,
)
from hygoshop_platform.blobs import (
    IMAGE_EXTENSIONS,
    SNIFF_BYTES,
    BlobKey,
    BlobStore,
    PresignedRequest,
    sniff_image_type,
)
from hygoshop_platform.db import Pool, tenant_transaction
from hygoshop_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    require,
)

log = logging.getLogger(__name__)

ImageUrl = Callable[[ImageRef], str]


class Media:
    """Presigned uploads and image attachment for one catalog process."""

    def __init__(
        self,
        pool: Pool,
        store: CatalogStore,
        blobs: BlobStore | None,
        upload_retention: timedelta = DEFAULT_UPLOAD_RETENTION,
    ) -> None:
        self._pool = pool
        self._store = store
        self._blobs = blobs
        self.upload_retention = upload_retention
        """How long an upload nothing takes is kept (see upload_expiry)."""

    def _storage(self) -> BlobStore:
        if self._blobs is None:
            raise FailedPrecondition(
                "object storage is not configured for this deployment (S3_BUCKET)",
                reason="STORAGE_NOT_CONFIGURED",
            )
        return self._blobs

    async def create_upload(
        self,
        tenant_id: uuid.UUID,
        purpose: UploadPurpose | None,
        content_type: str,
        size_bytes: int,
        file_name: str,
    ) -> tuple[BlobKey, PresignedRequest, datetime]:
        """A fresh key, a PUT URL for it and when the file is deleted unless taken, once
        the declared file is within the limits. The upload is recorded before the URL is
        handed out, so that no file can arrive that nothing would expire."""
        require(validate_upload(purpose, content_type, size_bytes, file_name))
        assert purpose is not None  # validate_upload refused a missing purpose
        storage = self._storage()
        key = BlobKey.new_upload(tenant_id, purpose.value, file_name)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            delete_time = await record_upload(conn, key, purpose, self.upload_retention)
        presigned = storage.presign_put(key, content_type=content_type, size_bytes=size_bytes)
        return key, presigned, delete_time

    def image_url(self, tenant_id: uuid.UUID) -> ImageUrl | None:
        """Presigned GET URLs for the tenant's images (None without object storage)."""
        storage = self._blobs
        if storage is None:
            return None

        def url(image: ImageRef) -> str:
            try:
                # Stored keys came through attach, but a key that is not one (`..`, absolute)
                # must never be signed: a client normalizing the URL could leave the tenant.
                key = BlobKey.parse(tenant_id, image.key)
            except InvalidArgument:
                return ""
            return storage.presign_get(key).url

        return url

    async def attach_image(
        self, tenant_id: uuid.UUID, listing_id: uuid.UUID, raw_key: str, alt_text: str
    ) -> Listing:
        """Check the upload named `raw_key`, copy it to the listing, append it, drop the upload."""
        require(alt_text_violations(alt_text))
        source = BlobKey.parse(tenant_id, raw_key, "key")
        storage = self._storage()
        listing = await self._store.get(tenant_id, listing_id)
        if listing is None:
            raise NotFound("listing not found")
        stem = attached_image_stem(listing_id, source.path)
        if _has_image(listing.content, stem):
            return listing  # a retry of an attach that already succeeded
        if not can_add_image(listing.content.images):
            raise _too_many_images()
        # Cheap checks on the upload first: no copy of a huge or plainly wrong file.
        upload = await storage.head(source)
        if upload is None:
            raise NotFound("upload not found", reason="UPLOAD_NOT_FOUND")
        problem = upload_problem(upload.content_type, upload.size)
        if problem is not None:
            raise InvalidArgument([FieldViolation("key", problem)])
        declared = media_type(upload.content_type) or ""
        target = BlobKey(tenant_id, stem + IMAGE_EXTENSIONS[declared])
        await storage.copy(source, target)
        try:
            image = await self._checked_image(storage, target, alt_text)
            updated = await self._store.update(
                tenant_id,
                listing_id,
                lambda current: (_append(current.content, image), False),
                ("images",),
            )
            if updated is None:
                raise NotFound("listing not found")
        except BaseException:
            await _shielded(storage.delete(target), f"remove rejected image {target.path}")
            raise
        # Its record stays: the upload URL works until it expires, and a file sent to it
        # again is deleted with the upload when the upload's retention ends.
        await _shielded(storage.delete(source), f"remove attached upload {source.path}")
        return updated

    async def _checked_image(self, storage: BlobStore, key: BlobKey, alt_text: str) -> ImageRef:
        info = await storage.head(key)
        if info is None:
            raise NotFound("upload not found", reason="UPLOAD_NOT_FOUND")
        sniffed = sniff_image_type(await storage.read_range(key, 0, SNIFF_BYTES))
        problem = image_problem(info.content_type, info.size, sniffed)
        if problem is not None or sniffed is None:
            raise InvalidArgument([FieldViolation("key", problem or "is not an image")])
        return ImageRef(key.path, alt_text, sniffed, info.size)

    async def forget_images(self, tenant_id: uuid.UUID, keys: Iterable[str]) -> None:
        """Remove images a listing no longer shows (best effort: storage is not the truth)."""
        if self._blobs is None:
            return
        for key in keys:
            await _shielded(self._blobs.delete(BlobKey(tenant_id, key)), f"remove image {key}")

    async def forget_listing(self, tenant_id: uuid.UUID, listing_id: uuid.UUID) -> None:
        """Remove every stored file of a deleted listing (best effort)."""
        if self._blobs is None:
            return
        folder = BlobKey(tenant_id, listing_storage_folder(listing_id))
        await _shielded(self._blobs.delete_folder(folder), f"remove files of listing {listing_id}")


def _has_image(content: ListingContent, stem: str) -> bool:
    return any(image.key.startswith(stem + ".") for image in content.images)


def _too_many_images() -> FailedPrecondition:
    return FailedPrecondition(
        f"the listing already has {MAX_IMAGES} images; remove one first", reason="TOO_MANY_IMAGES"
    )


def _append(content: ListingContent, image: ImageRef) -> ListingContent:
    """The content with `image` last; unchanged if a concurrent attach already added it."""
    if any(existing.key == image.key for existing in content.images):
        return content
    if not can_add_image(content.images):
        raise _too_many_images()
    return dataclasses.replace(content, images=(*content.images, image))


async def _shielded(cleanup: Coroutine[Any, Any, object], what: str) -> None:
    """Run a best-effort storage cleanup to its end even if the caller is cancelled."""
    try:
        await asyncio.shield(cleanup)
    except Exception:
        log.warning("could not %s; it stays in storage", what, exc_info=True)
