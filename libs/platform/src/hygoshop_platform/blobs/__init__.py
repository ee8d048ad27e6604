"""Object storage (S3 API): tenant-confined keys, presigned upload/download URLs, async I/O.

store = BlobStore(BlobSettings.from_env())
key = BlobKey.new_upload(tenant_id, "imports", "rows.csv")
upload = store.presign_put(key, content_type="text/csv", size_bytes=1234)
...
info = await store.head(BlobKey.parse(tenant_id, key_from_client))
"""

from hygoshop_platform.blobs.keys import (
    MAX_OBJECT_KEY_BYTES,
    BlobKey,
    InvalidKey,
    safe_file_name,
    tenant_prefix,
)
from hygoshop_platform.blobs.settings import BlobSettings
from hygoshop_platform.blobs.sniff import IMAGE_EXTENSIONS, SNIFF_BYTES, sniff_image_type
from hygoshop_platform.blobs.store import (
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    BlobTooLarge,
    ObjectInfo,
    PresignedRequest,
    configure_cors,
    ensure_bucket,
    make_client,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_OBJECT_KEY_BYTES",
    "SNIFF_BYTES",
    "BlobKey",
    "BlobNotFound",
    "BlobSettings",
    "BlobStore",
    "BlobStoreUnavailable",
    "BlobTooLarge",
    "InvalidKey",
    "ObjectInfo",
    "PresignedRequest",
    "configure_cors",
    "ensure_bucket",
    "make_client",
    "safe_file_name",
    "sniff_image_type",
    "tenant_prefix",
]
