"""Catalog's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hygoshop_platform.blobs.settings import BlobSettings
from hygoshop_platform.bus import BusSettings
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import ServiceSettings, env_optional

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CatalogSettings:
        base = ServiceSettings.from_env("catalog", env)
        bus = BusSettings.from_env(base.extra) if env_optional("BUS_URL", base.extra) else None
        return cls(base=base, blobs=BlobSettings.from_env(env), bus=bus)
