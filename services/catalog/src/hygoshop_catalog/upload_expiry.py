"""Abandoned uploads expire: every signed upload is recorded, and a sweeper deletes the
files nothing took once their retention has passed.

Every upload is swept when its retention ends, whatever took it:
- attached as a listing image: the file was copied to the listing and removed at once,
  but the upload URL works until it expires, so the key is swept anyway (a file sent to
  it again goes then; deleting a file that is not there is no error);
- read by an import: it is kept while the import is pending or running (`hold_upload`
  locks its row while the import is recorded, so a sweep meanwhile skips it);
- nothing took it: the sweeper deletes the file, then the row.

The retention must outlast the upload URL (`S3_PRESIGN_PUT_SECONDS`), or a file could
arrive after its row was swept and never go away; settings refuse a shorter one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from hygoshop_catalog.domain.uploads import UploadPurpose
from hygoshop_platform.blobs import BlobKey, BlobStore
from hygoshop_platform.db import Connection, Pool
from hygoshop_platform.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_RETENTION = timedelta(days=1)
"""How long an upload nothing takes is kept (CATALOG_UPLOAD_RETENTION_SECONDS)."""
DEFAULT_SWEEP_SECONDS = 600.0
"""How often expired uploads are looked for (CATALOG_UPLOAD_SWEEP_SECONDS)."""
SWEEP_BATCH = 100
"""Uploads deleted per transaction: their rows stay locked while their files go."""


async def record_upload(
    conn: Connection, key: BlobKey, purpose: UploadPurpose, retention: timedelta
) -> datetime:
    """Note a signed upload (in the caller's tenant transaction); its delete time."""
    cur = await conn.execute(
        "INSERT INTO catalog.uploads (tenant_id, upload_key, purpose, expire_time)"
        " VALUES (%s, %s, %s, now() + %s) RETURNING expire_time",
        (key.tenant_id, key.path, purpose.value, retention),
    )
    row = await cur.fetchone()
    assert row is not None
    return row.expire_time  # type: ignore[no-any-return]


async def hold_upload(conn: Connection, key: BlobKey) -> None:
    """Keep a sweep off the upload until the caller's transaction, which records the
    import that reads it, commits: from then on the unfinished import keeps it."""
    await conn.execute(
        "SELECT 1 FROM catalog.uploads WHERE tenant_id = %s AND upload_key = %s FOR SHARE",
        (key.tenant_id, key.path),
    )


async def sweep_expired_uploads(pool: Pool, blobs: BlobStore, batch: int = SWEEP_BATCH) -> int:
    """Delete every expired upload's file, then its row; how many went. A storage error
    rolls the batch back: its rows stay and the next sweep tries again (deleting a file
    that is already gone is not an error)."""
    swept = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT tenant_id, upload_key FROM catalog.uploads_expired(%s)", (batch,)
            )
            expired = [BlobKey(row.tenant_id, row.upload_key) for row in await cur.fetchall()]
            for key in expired:
                await blobs.delete(key)
            if expired:
                await conn.execute(
                    "SELECT catalog.uploads_forget(%s, %s)",
                    ([k.tenant_id for k in expired], [k.path for k in expired]),
                )
        swept += len(expired)
        if len(expired) < batch:
            if swept:
                log.info("deleted %d expired uploads", swept)
            return swept


class UploadSweeper(Periodic):
    """Runs `sweep_expired_uploads` every `every` seconds; every replica may run one."""

    def __init__(self, pool: Pool, blobs: BlobStore, every: float) -> None:
        self.swept = 0
        self._pool = pool
        self._blobs = blobs
        super().__init__("upload-sweeper", self._sweep, every)

    async def _sweep(self) -> None:
        self.swept += await sweep_expired_uploads(self._pool, self._blobs)
