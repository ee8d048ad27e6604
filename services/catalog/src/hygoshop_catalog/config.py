"""Catalog's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import ServiceSettings

SCHEMA = SchemaSpec("catalog", Path(__file__).parent / "migrations")


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    base: ServiceSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CatalogSettings:
        return cls(base=ServiceSettings.from_env("catalog", env))
