"""Catalog's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from hygoshop_catalog.upload_expiry import DEFAULT_SWEEP_SECONDS, DEFAULT_UPLOAD_RETENTION
from hygoshop_platform.blobs.settings import BlobSettings
from hygoshop_platform.bus import BusSettings
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import (
    ServiceSettings,
    SettingsError,
    env_float,
    env_int,
    env_optional,
)

SCHEMA = SchemaSpec("catalog", Path(__file__).parent / "migrations")


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    base: ServiceSettings
    blobs: BlobSettings | None = None
    """Object storage for uploads and images (S3_*); without it those RPCs answer
    FAILED_PRECONDITION and listings show no image URLs."""
    bus: BusSettings | None = None
    """The message bus (BUS_URL): publishes the outbox (listing events) and runs import
    jobs. Without it events wait in the outbox and imports answer FAILED_PRECONDITION."""
    upload_retention: timedelta = DEFAULT_UPLOAD_RETENTION
    """How long an upload nothing takes is kept before it is deleted
    (CATALOG_UPLOAD_RETENTION_SECONDS); at least as long as an upload URL lives."""
    upload_sweep_seconds: float = DEFAULT_SWEEP_SECONDS
    """How often expired uploads are looked for (CATALOG_UPLOAD_SWEEP_SECONDS)."""

    def __post_init__(self) -> None:
        if self.upload_sweep_seconds <= 0:
            raise SettingsError("CATALOG_UPLOAD_SWEEP_SECONDS must be > 0")
        url_lifetime = self.blobs.presign_put_seconds if self.blobs is not None else 0
        if self.upload_retention.total_seconds() < max(url_lifetime, 1):
            raise SettingsError(
                "CATALOG_UPLOAD_RETENTION_SECONDS must be at least S3_PRESIGN_PUT_SECONDS"
                f" ({url_lifetime}): a file could arrive after its upload was swept"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CatalogSettings:
        base = ServiceSettings.from_env("catalog", env)
        bus = BusSettings.from_env(base.extra) if env_optional("BUS_URL", base.extra) else None
        retention = env_int(
            "CATALOG_UPLOAD_RETENTION_SECONDS",
            int(DEFAULT_UPLOAD_RETENTION.total_seconds()),
            base.extra,
        )
        return cls(
            base=base,
            blobs=BlobSettings.from_env(env),
            bus=bus,
            upload_retention=timedelta(seconds=retention),
            upload_sweep_seconds=env_float(
                "CATALOG_UPLOAD_SWEEP_SECONDS", DEFAULT_SWEEP_SECONDS, base.extra
            ),
        )
