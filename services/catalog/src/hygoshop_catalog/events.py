"""The catalog's domain events, as outbox envelopes (`catalog.<entity>.<event>`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask

from hygoshop.events.v1 import catalog_pb2 as events_pb2
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_catalog.convert import listing_to_proto
from hygoshop_catalog.domain.listing import Listing
from hygoshop_platform.bus import new_event, new_job

LISTING_CREATED = "catalog.listing.created"
LISTING_UPDATED = "catalog.listing.updated"
LISTING_DELETED = "catalog.listing.deleted"
LISTINGS_IMPORTED = "catalog.listings.imported"
IMPORT_JOB = "catalog.listing_import"


def listing_created(tenant_id: uuid.UUID, listing: Listing) -> Envelope:
    payload = events_pb2.ListingCreated(
        listing_id=str(listing.listing_id), listing=listing_to_proto(listing)
    )
    return new_event(LISTING_CREATED, payload, tenant_id=tenant_id)


def listing_updated(tenant_id: uuid.UUID, listing: Listing, paths: Sequence[str]) -> Envelope:
    payload = events_pb2.ListingUpdated(
        listing_id=str(listing.listing_id),
        listing=listing_to_proto(listing),
        update_mask=FieldMask(paths=list(paths)),
    )
    return new_event(LISTING_UPDATED, payload, tenant_id=tenant_id)


def listing_deleted(tenant_id: uuid.UUID, listing_id: uuid.UUID, skus: Sequence[str]) -> Envelope:
    payload = events_pb2.ListingDeleted(listing_id=str(listing_id), skus=list(skus))
    return new_event(LISTING_DELETED, payload, tenant_id=tenant_id)


def import_requested(tenant_id: uuid.UUID, import_id: uuid.UUID) -> Envelope:
    payload = events_pb2.ListingImportRequested(import_id=str(import_id))
    return new_job(IMPORT_JOB, payload, tenant_id=tenant_id)


def listings_imported(
    tenant_id: uuid.UUID,
    import_id: uuid.UUID,
    created: Sequence[uuid.UUID],
    updated: Sequence[uuid.UUID],
) -> Envelope:
    payload = events_pb2.ListingsImported(
        import_id=str(import_id),
        created_listing_ids=[str(i) for i in created],
        updated_listing_ids=[str(i) for i in updated],
    )
    return new_event(LISTINGS_IMPORTED, payload, tenant_id=tenant_id)
