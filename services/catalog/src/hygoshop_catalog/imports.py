"""Listing imports, a long-running operation: accept a request, then run it as a bus job.

Accepting checks everything knowable up front (request id, policy, row and byte limits,
the upload's existence and type), stores the import and enqueues its job through the
outbox in the same transaction: a retry with the same request id finds the first import
and enqueues nothing. Running is idempotent without an inbox: progress (`rows_done`)
commits with each chunk's upsert, so a redelivered job resumes after the last committed
chunk, and a finished import ignores its job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from hygoshop.catalog.v1 import catalog_pb2
from hygoshop.events.v1 import catalog_pb2 as events_pb2
from hygoshop_catalog import events
from hygoshop_catalog.bulk import upsert_listings
from hygoshop_catalog.convert import content_from_proto
from hygoshop_catalog.domain.import_rows import (
    ParsedRow,
    RowError,
    parse_csv,
    parse_json_array,
    parse_json_lines,
)
from hygoshop_catalog.domain.uploads import POLICIES, UploadPurpose, media_type
from hygoshop_catalog.domain.validation import validate_content
from hygoshop_catalog.upload_expiry import hold_upload
from hygoshop_platform.blobs import (
    BlobKey,
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    BlobTooLarge,
)
from hygoshop_platform.bus import Delivery, PermanentFailure, add_to_outbox
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

log = logging.getLogger(__name__)

MAX_ROWS = 100_000
MAX_INLINE_ROWS = 1_000
MAX_BYTES = POLICIES[UploadPurpose.IMPORT_FILE].max_bytes
MAX_ERRORS_KEPT = 100
CHUNK_ROWS = 5_000
MAX_REQUEST_ID = 100
_FORMATS = {
    "application/jsonl": "json_lines",
    "application/x-ndjson": "json_lines",
    "application/json": "json",
    "text/csv": "csv",
}
_POLICIES = {
    catalog_pb2.IMPORT_ERROR_POLICY_UNSPECIFIED: "reject_all",
    catalog_pb2.IMPORT_ERROR_POLICY_REJECT_ALL: "reject_all",
    catalog_pb2.IMPORT_ERROR_POLICY_SKIP_FAILED_ROWS: "skip_failed_rows",
}
_COLUMNS = (
    "import_id, request_id, state, error_policy, format, upload_key, rows_done, received,"
    " created, updated, failed, errors, failure_message, create_time, start_time, end_time,"
    " update_time"
)


@dataclass(frozen=True, slots=True)
class ImportRecord:
    import_id: uuid.UUID
    request_id: str
    state: str
    error_policy: str
    format: str
    upload_key: str | None
    rows_done: int
    received: int
    created: int
    updated: int
    failed: int
    errors: list[dict[str, Any]]
    failure_message: str
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime


class _NotYet(RuntimeError):
    """The job cannot run in this deployment yet (no object storage): retried."""


_TRANSIENT = (psycopg.OperationalError, PoolTimeout, BlobStoreUnavailable, OSError, _NotYet)
"""What a later attempt of the job may get past; anything else ends the import."""
UNEXPECTED_FAILURE = (
    "the import stopped on an internal error; rows committed before it stay. Start a new"
    " import (another request_id) to try again"
)


class _ImportFailed(Exception):
    """The import as a whole cannot proceed; nothing (more) is written."""

    def __init__(
        self, message: str, errors: list[RowError] | None = None, received: int = 0
    ) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.received = received


def _too_many(count: int) -> _ImportFailed | None:
    if count <= MAX_ROWS:
        return None
    return _ImportFailed(f"the file has {count} rows; the limit is {MAX_ROWS}")


def _request_violations(
    request: catalog_pb2.ImportListingsRequest, source: str | None
) -> list[FieldViolation]:
    """Every reason the import request is refused before anything is read or stored."""
    violations = []
    if not request.request_id.strip():
        violations.append(FieldViolation("request_id", "is required (the idempotency key)"))
    elif len(request.request_id) > MAX_REQUEST_ID:
        violations.append(
            FieldViolation("request_id", f"must be at most {MAX_REQUEST_ID} characters")
        )
    if request.error_policy not in _POLICIES:
        violations.append(FieldViolation("error_policy", "unknown policy"))
    if source is None:
        violations.append(FieldViolation("source", "give `inline` listings or an `upload_key`"))
    elif source == "inline" and not request.inline.listings:
        violations.append(FieldViolation("inline.listings", "at least one listing is required"))
    elif source == "inline" and len(request.inline.listings) > MAX_INLINE_ROWS:
        violations.append(
            FieldViolation(
                "inline.listings",
                f"at most {MAX_INLINE_ROWS} listings inline; upload a file for more (up to {MAX_ROWS})",
            )
        )
    return violations


class ListingImports:
    def __init__(self, pool: Pool, blobs: BlobStore | None, *, enabled: bool = True) -> None:
        self._pool = pool
        self._blobs = blobs
        self._enabled = enabled  # False without a bus: nothing would run the job

    # -- accepting ---------------------------------------------------------------------

    async def start(
        self, tenant_id: uuid.UUID, request: catalog_pb2.ImportListingsRequest
    ) -> ImportRecord:
        if not self._enabled:
            raise FailedPrecondition("imports need the message bus", reason="BUS_NOT_CONFIGURED")
        source = request.WhichOneof("source")
        violations = _request_violations(request, source)
        if violations:
            raise InvalidArgument(violations)
        existing = await self._by_request_id(tenant_id, request.request_id)
        if existing is not None:
            return existing
        upload, inline, fmt = None, None, "inline"
        if source == "inline":
            inline = request.inline.SerializeToString()
        else:
            upload = self._upload_key(tenant_id, request.upload_key)
        import_id = uuid.uuid4()
        async with tenant_transaction(self._pool, tenant_id) as conn:
            if upload is not None:
                # Held, then checked: a sweep of expired uploads cannot delete the file
                # between the check and the import that keeps it (see upload_expiry).
                await hold_upload(conn, upload)
                fmt = await self._check_upload(upload)
            cur = await conn.execute(
                "INSERT INTO catalog.listing_imports (tenant_id, import_id, request_id, state,"
                " error_policy, format, upload_key, inline_rows) VALUES (%s, %s, %s, 'pending',"
                " %s, %s, %s, %s) ON CONFLICT (tenant_id, request_id) DO NOTHING RETURNING 1",
                (
                    tenant_id,
                    import_id,
                    request.request_id,
                    _POLICIES[request.error_policy],
                    fmt,
                    upload.path if upload is not None else None,
                    inline,
                ),
            )
            if await cur.fetchone() is not None:
                await add_to_outbox(conn, "catalog", events.import_requested(tenant_id, import_id))
        found = await self._by_request_id(tenant_id, request.request_id)
        assert found is not None
        return found

    def _upload_key(self, tenant_id: uuid.UUID, raw_key: str) -> BlobKey:
        if self._blobs is None:
            raise FailedPrecondition(
                "object storage is not configured", reason="STORAGE_NOT_CONFIGURED"
            )
        return BlobKey.parse(tenant_id, raw_key, "upload_key")

    async def _check_upload(self, key: BlobKey) -> str:
        """The import format of the upload `key`, once it is found fit to import."""
        assert self._blobs is not None  # _upload_key refused a deployment without storage
        # Existence first: another tenant's key (read relative to the caller) is simply missing.
        info = await self._blobs.head(key)
        if info is None:
            raise NotFound("upload not found")
        if not key.path.startswith(f"uploads/{UploadPurpose.IMPORT_FILE.value}/"):
            raise InvalidArgument(
                [FieldViolation("upload_key", "must be an upload made for IMPORT_FILE")]
            )
        if info.size > MAX_BYTES:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "upload_key", f"the file is {info.size} bytes; the limit is {MAX_BYTES}"
                    )
                ]
            )
        fmt = _FORMATS.get(media_type(info.content_type) or "")
        if fmt is None:
            raise InvalidArgument(
                [FieldViolation("upload_key", f"unsupported content type {info.content_type}")]
            )
        return fmt

    async def get(self, tenant_id: uuid.UUID, import_id: uuid.UUID) -> ImportRecord | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._fetch(conn, "import_id = %s", import_id)

    async def _by_request_id(self, tenant_id: uuid.UUID, request_id: str) -> ImportRecord | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._fetch(conn, "request_id = %s", request_id)

    @staticmethod
    async def _fetch(
        conn: Connection, where: str, value: object, lock: bool = False
    ) -> ImportRecord | None:
        sql = f"SELECT {_COLUMNS} FROM catalog.listing_imports WHERE {where}"
        cur = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (value,))
        row = await cur.fetchone()
        return None if row is None else ImportRecord(**row._asdict())

    # -- running -----------------------------------------------------------------------

    async def run_job(self, delivery: Delivery) -> None:
        """The `catalog.listing_import` job handler, running as the envelope's tenant."""
        tenant_id = uuid.UUID(delivery.envelope.tenant_id)
        try:
            import_id = uuid.UUID(delivery.unpack(events_pb2.ListingImportRequested).import_id)
        except ValueError:
            raise PermanentFailure("malformed import id") from None
        record = await self.get(tenant_id, import_id)
        if record is None:  # not this tenant's import: no effect, never retried
            raise PermanentFailure(f"import {import_id} not found for tenant {tenant_id}")
        if record.state in ("succeeded", "failed"):
            return
        await self._set(
            tenant_id, import_id, "state = 'running', start_time = coalesce(start_time, now())"
        )
        try:
            rows = await self._rows(tenant_id, import_id, record)
            if record.error_policy == "reject_all":
                await self._run_all_or_nothing(tenant_id, import_id, rows)
            else:
                await self._run_skipping_failures(tenant_id, import_id, record.rows_done, rows)
        except _ImportFailed as failed:
            await self._fail(tenant_id, import_id, str(failed), failed.errors, failed.received)
            return
        except _TRANSIENT:
            raise  # the job is retried (with backoff) and resumes from committed progress
        except Exception:
            # A bug or corrupt data: retrying would fail the same way, the import would stay
            # RUNNING for ever. End it, keeping what it committed and its counts.
            log.exception("import %s of tenant %s failed unexpectedly", import_id, tenant_id)
            await self._set_failed_unexpectedly(tenant_id, import_id)
            return
        await self._set(tenant_id, import_id, "state = 'succeeded', end_time = now()")

    async def _rows(
        self, tenant_id: uuid.UUID, import_id: uuid.UUID, record: ImportRecord
    ) -> Iterator[ParsedRow]:
        if record.format == "inline":
            async with tenant_transaction(self._pool, tenant_id) as conn:
                cur = await conn.execute(
                    "SELECT inline_rows FROM catalog.listing_imports WHERE import_id = %s",
                    (import_id,),
                )
                row = await cur.fetchone()
            assert row is not None
            inline = catalog_pb2.InlineListings.FromString(row.inline_rows)
            return (
                _parse_proto_row(i, listing) for i, listing in enumerate(inline.listings, start=1)
            )
        if self._blobs is None:
            raise _NotYet("object storage is not configured")  # retried until it is
        assert record.upload_key is not None
        try:
            data = await self._blobs.get(
                BlobKey.parse(tenant_id, record.upload_key), max_bytes=MAX_BYTES
            )
        except BlobNotFound:
            raise _ImportFailed("the uploaded file no longer exists") from None
        except BlobTooLarge as exc:
            raise _ImportFailed(f"the file is larger than {exc.limit} bytes") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _ImportFailed("the file is not UTF-8 text") from None
        # Rows are counted before any is parsed or written: an oversized file does no work.
        if record.format == "json":
            if failed := _too_many(text.count('"variants"')):  # an upper bound of listings
                raise failed
            return parse_json_array(text)
        lines = text.splitlines(keepends=True)
        header = 1 if record.format == "csv" else 0
        if failed := _too_many(sum(1 for line in lines if line.strip()) - header):
            raise failed
        return parse_csv(lines) if header else parse_json_lines(lines)

    async def _run_all_or_nothing(
        self, tenant_id: uuid.UUID, import_id: uuid.UUID, rows: Iterator[ParsedRow]
    ) -> None:
        parsed = list(rows)
        errors = [e for r in parsed for e in r.errors]
        if errors:
            raise _ImportFailed(
                f"{sum(1 for r in parsed if r.errors)} of {len(parsed)} rows are invalid; nothing was imported",
                errors,
                len(parsed),
            )
        valid = [(r.row, r.content) for r in parsed if r.content is not None]
        async with tenant_transaction(self._pool, tenant_id) as conn:
            created = updated = 0
            for start in range(0, len(valid), CHUNK_ROWS):
                result = await upsert_listings(conn, tenant_id, valid[start : start + CHUNK_ROWS])
                if result.errors:
                    raise _ImportFailed(
                        "some rows conflict with existing listings; nothing was imported",
                        list(result.errors),
                        len(parsed),
                    )
                created, updated = created + len(result.created), updated + len(result.updated)
                await add_to_outbox(
                    conn,
                    "catalog",
                    events.listings_imported(tenant_id, import_id, result.created, result.updated),
                )
            await conn.execute(
                "UPDATE catalog.listing_imports SET rows_done = %s, received = %s, created = %s,"
                " updated = %s, update_time = now() WHERE import_id = %s",
                (len(parsed), len(parsed), created, updated, import_id),
            )

    async def _run_skipping_failures(
        self, tenant_id: uuid.UUID, import_id: uuid.UUID, done: int, rows: Iterator[ParsedRow]
    ) -> None:
        # Rows committed by an earlier delivery of this job are parsed again, not written.
        remaining = itertools.islice(rows, done, None)

        def next_chunk() -> list[ParsedRow]:
            return list(itertools.islice(remaining, CHUNK_ROWS))

        # Parse the next chunk in a thread while this one is written: parsing is Python CPU
        # in this process, the upsert mostly PostgreSQL's, so the two overlap.
        chunk = await asyncio.to_thread(next_chunk)
        while chunk:
            parsing = asyncio.ensure_future(asyncio.to_thread(next_chunk))
            try:
                await self._write_chunk(tenant_id, import_id, chunk)
            except BaseException:
                parsing.cancel()
                raise
            chunk = await parsing

    async def _write_chunk(
        self, tenant_id: uuid.UUID, import_id: uuid.UUID, chunk: list[ParsedRow]
    ) -> None:
        valid = [(r.row, r.content) for r in chunk if r.content is not None]
        async with tenant_transaction(self._pool, tenant_id) as conn:
            result = await upsert_listings(conn, tenant_id, valid)
            errors = [e for r in chunk for e in r.errors] + list(result.errors)
            failed_rows = len({e.row for e in errors})
            await conn.execute(
                "UPDATE catalog.listing_imports SET rows_done = rows_done + %(n)s,"
                " received = received + %(n)s, created = created + %(c)s, updated = updated + %(u)s,"
                " failed = failed + %(f)s, update_time = now(),"
                " errors = CASE WHEN jsonb_array_length(errors) >= %(max)s THEN errors"
                "   ELSE errors || %(e)s END"
                " WHERE import_id = %(id)s",
                {
                    "n": len(chunk), "c": len(result.created), "u": len(result.updated),
                    "f": failed_rows, "max": MAX_ERRORS_KEPT, "id": import_id,
                    "e": _errors_json(sorted(errors, key=lambda e: e.row)[:MAX_ERRORS_KEPT]),
                },
            )  # fmt: skip
            if result.created or result.updated:
                await add_to_outbox(
                    conn,
                    "catalog",
                    events.listings_imported(tenant_id, import_id, result.created, result.updated),
                )

    async def _set(self, tenant_id: uuid.UUID, import_id: uuid.UUID, assignments: str) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                f"UPDATE catalog.listing_imports SET {assignments}, update_time = now() WHERE import_id = %s",
                (import_id,),
            )

    async def _set_failed_unexpectedly(self, tenant_id: uuid.UUID, import_id: uuid.UUID) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                "UPDATE catalog.listing_imports SET state = 'failed', end_time = now(),"
                " update_time = now(), failure_message = %s WHERE import_id = %s",
                (UNEXPECTED_FAILURE, import_id),
            )

    async def _fail(
        self,
        tenant_id: uuid.UUID,
        import_id: uuid.UUID,
        message: str,
        errors: list[RowError],
        received: int,
    ) -> None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                "UPDATE catalog.listing_imports SET state = 'failed', end_time = now(), update_time = now(),"
                " failure_message = %s, errors = %s, received = greatest(received, %s), failed = %s,"
                " created = 0, updated = 0 WHERE import_id = %s",
                (
                    message,
                    _errors_json(errors[:MAX_ERRORS_KEPT]),
                    received,
                    len({e.row for e in errors}),
                    import_id,
                ),
            )
        log.info("import %s failed: %s", import_id, message)


def _errors_json(errors: list[RowError]) -> Jsonb:
    return Jsonb([{"row": e.row, "field": e.field, "description": e.description} for e in errors])


def _parse_proto_row(number: int, listing: catalog_pb2.Listing) -> ParsedRow:
    violations: list[FieldViolation] = []
    content = content_from_proto(listing, violations, prefix="")
    if listing.images:
        violations.append(
            FieldViolation(".images", "cannot be imported; attach images with :attachImage")
        )
    violations += validate_content(content, prefix="")
    if violations:
        return ParsedRow(
            number,
            None,
            tuple(RowError(number, v.field.lstrip("."), v.description) for v in violations),
        )
    return ParsedRow(number, content)
