"""CatalogService: checks scopes, maps proto <-> domain, calls the store. Nothing else."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC as _UTC

from google.protobuf import empty_pb2

from hygoshop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from hygoshop_catalog.convert import STATUS_FROM_PROTO, content_from_proto, listing_to_proto
from hygoshop_catalog.domain.images import rearrange_images
from hygoshop_catalog.domain.listing import UPDATABLE_FIELDS, Listing, ListingContent, apply_update
from hygoshop_catalog.domain.uploads import UploadPurpose
from hygoshop_catalog.domain.validation import validate_content
from hygoshop_catalog.imports import ImportRecord, ListingImports
from hygoshop_catalog.media import Media
from hygoshop_catalog.store import CatalogStore, ListFilter
from hygoshop_platform.access import require_tenant
from hygoshop_platform.errors import (
    Aborted,
    FieldViolation,
    InvalidArgument,
    NotFound,
    require,
)
from hygoshop_platform.pagination import decode_time_id_token, page_size, split_page
from hygoshop_platform.server import Context

READ = "catalog:read"
WRITE = "catalog:write"
MAX_REQUEST_ID = 100
PURPOSE_FROM_PROTO = {
    catalog_pb2.UPLOAD_PURPOSE_IMPORT_FILE: UploadPurpose.IMPORT_FILE,
    catalog_pb2.UPLOAD_PURPOSE_LISTING_IMAGE: UploadPurpose.LISTING_IMAGE,
}


def _listing_id(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        # A malformed id cannot name any listing: answer as for a missing one.
        if not value:
            raise InvalidArgument([FieldViolation(field, "is required")]) from None
        raise NotFound("listing not found") from None


class CatalogApi(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, store: CatalogStore, media: Media, imports: ListingImports) -> None:
        self._store = store
        self._media = media
        self._imports = imports

    async def GetListing(
        self, request: catalog_pb2.GetListingRequest, context: Context
    ) -> catalog_pb2.Listing:
        tenant_id = require_tenant(READ)
        listing = await self._store.get(tenant_id, _listing_id(request.listing_id, "listing_id"))
        if listing is None:
            raise NotFound("listing not found")
        return listing_to_proto(listing, self._media.image_url(tenant_id))

    async def ListListings(
        self, request: catalog_pb2.ListListingsRequest, context: Context
    ) -> catalog_pb2.ListListingsResponse:
        tenant_id = require_tenant(READ)
        size = page_size(request.page_size, default=25)
        flt = ListFilter()
        if request.status != catalog_pb2.LISTING_STATUS_UNSPECIFIED:
            if request.status not in STATUS_FROM_PROTO:
                raise InvalidArgument([FieldViolation("status", "unknown status")])
            flt = ListFilter(status=STATUS_FROM_PROTO[request.status])
        if request.HasField("updated_after"):
            flt = ListFilter(
                status=flt.status, updated_after=request.updated_after.ToDatetime(tzinfo=_UTC)
            )
        query = (
            "listings",
            flt.status and flt.status.value,
            flt.updated_after and flt.updated_after.isoformat(),
        )
        after = decode_time_id_token(request.page_token, query)
        rows = await self._store.list(tenant_id, flt, limit=size + 1, after=after)
        page, next_token = split_page(
            rows, size, lambda r: (r.update_time.isoformat(), str(r.listing_id)), query
        )
        image_url = self._media.image_url(tenant_id)
        return catalog_pb2.ListListingsResponse(
            listings=[listing_to_proto(r, image_url) for r in page], next_page_token=next_token
        )

    async def CreateListing(
        self, request: catalog_pb2.CreateListingRequest, context: Context
    ) -> catalog_pb2.Listing:
        tenant_id = require_tenant(WRITE)
        violations: list[FieldViolation] = []
        if not request.HasField("listing"):
            raise InvalidArgument([FieldViolation("listing", "is required")])
        content = content_from_proto(request.listing, violations)
        violations += validate_content(content)
        if content.images:
            # Images are checked and copied by AttachListingImage, never taken on trust.
            violations.append(
                FieldViolation("listing.images", "attach images after creating the listing")
            )
        if len(request.request_id) > MAX_REQUEST_ID:
            violations.append(
                FieldViolation("request_id", f"must be at most {MAX_REQUEST_ID} characters")
            )
        require(violations)
        # Output-only and identifier fields in the body (listing_id, etag, times) are ignored.
        listing = await self._store.create(tenant_id, content, request.request_id or None)
        return listing_to_proto(listing, self._media.image_url(tenant_id))

    async def UpdateListing(
        self, request: catalog_pb2.UpdateListingRequest, context: Context
    ) -> catalog_pb2.Listing:
        tenant_id = require_tenant(WRITE)
        listing_id = _listing_id(request.listing.listing_id, "listing.listing_id")
        paths = tuple(request.update_mask.paths) or UPDATABLE_FIELDS
        violations = [
            FieldViolation(
                "update_mask", f"cannot update {p!r}; updatable: {', '.join(UPDATABLE_FIELDS)}"
            )
            for p in paths
            if p not in UPDATABLE_FIELDS
        ]
        require(violations)
        incoming = content_from_proto(request.listing, violations)
        require(violations)
        expected_etag = request.listing.etag
        removed_images: list[str] = []

        def change(current: Listing) -> tuple[ListingContent, bool]:
            if expected_etag and expected_etag != current.etag:
                raise Aborted(
                    "the listing changed since it was read; read it again", reason="ETAG_MISMATCH"
                )
            requested = incoming
            if "images" in paths:
                images, image_violations = rearrange_images(current.content.images, incoming.images)
                require(image_violations)
                requested = dataclasses.replace(incoming, images=images)
                kept = {image.key for image in images}
                removed_images[:] = [i.key for i in current.content.images if i.key not in kept]
            content = apply_update(current.content, requested, paths)
            require(validate_content(content))
            return content, "variants" in paths

        updated = await self._store.update(tenant_id, listing_id, change, paths)
        if updated is None:
            raise NotFound("listing not found")
        await self._media.forget_images(tenant_id, removed_images)
        return listing_to_proto(updated, self._media.image_url(tenant_id))

    async def DeleteListing(
        self, request: catalog_pb2.DeleteListingRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id = require_tenant(WRITE)
        listing_id = _listing_id(request.listing_id, "listing_id")
        if not await self._store.delete(tenant_id, listing_id):
            raise NotFound("listing not found")
        await self._media.forget_listing(tenant_id, listing_id)
        return empty_pb2.Empty()

    async def AttachListingImage(
        self, request: catalog_pb2.AttachListingImageRequest, context: Context
    ) -> catalog_pb2.Listing:
        tenant_id = require_tenant(WRITE)
        listing_id = _listing_id(request.listing_id, "listing_id")
        listing = await self._media.attach_image(
            tenant_id, listing_id, request.key, request.alt_text
        )
        return listing_to_proto(listing, self._media.image_url(tenant_id))

    async def CreateUpload(
        self, request: catalog_pb2.CreateUploadRequest, context: Context
    ) -> catalog_pb2.Upload:
        tenant_id = require_tenant(WRITE)
        purpose = PURPOSE_FROM_PROTO.get(request.purpose)
        content_type = request.content_type.strip()
        key, presigned, delete_time = await self._media.create_upload(
            tenant_id, purpose, content_type, request.size_bytes, request.file_name
        )
        upload = catalog_pb2.Upload(
            key=key.path,
            purpose=request.purpose,
            content_type=content_type,
            size_bytes=request.size_bytes,
            url=presigned.url,
            method=presigned.method,
            headers=dict(presigned.headers),
        )
        upload.expire_time.FromDatetime(presigned.expire_time)
        upload.delete_time.FromDatetime(delete_time)
        return upload

    async def ImportListings(
        self, request: catalog_pb2.ImportListingsRequest, context: Context
    ) -> catalog_pb2.ListingImport:
        tenant_id = require_tenant(WRITE)
        return _import_to_proto(await self._imports.start(tenant_id, request))

    async def GetListingImport(
        self, request: catalog_pb2.GetListingImportRequest, context: Context
    ) -> catalog_pb2.ListingImport:
        tenant_id = require_tenant(READ)
        try:
            import_id = uuid.UUID(request.import_id)
        except ValueError:
            raise NotFound("import not found") from None
        record = await self._imports.get(tenant_id, import_id)
        if record is None:
            raise NotFound("import not found")
        return _import_to_proto(record)


_IMPORT_STATES = {
    "pending": catalog_pb2.LISTING_IMPORT_STATE_PENDING,
    "running": catalog_pb2.LISTING_IMPORT_STATE_RUNNING,
    "succeeded": catalog_pb2.LISTING_IMPORT_STATE_SUCCEEDED,
    "failed": catalog_pb2.LISTING_IMPORT_STATE_FAILED,
}
_IMPORT_POLICIES = {
    "reject_all": catalog_pb2.IMPORT_ERROR_POLICY_REJECT_ALL,
    "skip_failed_rows": catalog_pb2.IMPORT_ERROR_POLICY_SKIP_FAILED_ROWS,
}
_IMPORT_FORMATS = {
    "inline": catalog_pb2.IMPORT_FORMAT_INLINE,
    "json_lines": catalog_pb2.IMPORT_FORMAT_JSON_LINES,
    "json": catalog_pb2.IMPORT_FORMAT_JSON,
    "csv": catalog_pb2.IMPORT_FORMAT_CSV,
}


def _import_to_proto(record: ImportRecord) -> catalog_pb2.ListingImport:
    message = catalog_pb2.ListingImport(
        import_id=str(record.import_id),
        state=_IMPORT_STATES[record.state],
        error_policy=_IMPORT_POLICIES[record.error_policy],
        source=record.upload_key or "inline",
        format=_IMPORT_FORMATS[record.format],
        counts=catalog_pb2.ImportCounts(
            received=record.received,
            created=record.created,
            updated=record.updated,
            failed=record.failed,
        ),
        errors=[catalog_pb2.ImportRowError(**e) for e in record.errors],
        failure_message=record.failure_message,
        request_id=record.request_id,
    )
    message.create_time.FromDatetime(record.create_time)
    message.update_time.FromDatetime(record.update_time)
    if record.start_time is not None:
        message.start_time.FromDatetime(record.start_time)
    if record.end_time is not None:
        message.end_time.FromDatetime(record.end_time)
    return message
