"""The versioned provider catalog file and its parser (the file is the source of truth)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from hygoshop_router.domain.model import Provider, Tier
from hygoshop_router.domain.validation import validate_provider

SEED_FILE = Path(__file__).parent / "providers.v1.yaml"
_KEYS = {"id", "name", "capabilities", "unit_costs", "tiers", "weight", "enabled", "offline"}


class SeedError(ValueError):
    """The seed file is malformed; the message names the provider and the problem."""


@dataclass(frozen=True, slots=True)
class Seed:
    version: int
    providers: tuple[Provider, ...]

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(p.category for p in self.providers)


def _provider(raw: dict[str, Any], version: int) -> Provider:
    pid = str(raw.get("id", ""))
    unknown = set(raw) - _KEYS
    if unknown:
        raise SeedError(f"{pid or raw}: unknown keys {sorted(unknown)}")
    category, dot, name = pid.partition(".")
    if not dot or not category or not name:
        raise SeedError(f"{pid!r}: the id must be <category>.<name>")
    try:
        costs = {str(k): Decimal(str(v)) for k, v in (raw.get("unit_costs") or {}).items()}
        tiers = frozenset(Tier(str(t)) for t in raw.get("tiers") or ())
    except (InvalidOperation, ValueError) as exc:
        raise SeedError(f"{pid}: {exc}") from None
    provider = Provider(
        provider_id=pid,
        category=category,
        display_name=str(raw.get("name", "")),
        capabilities=frozenset(str(c) for c in raw.get("capabilities") or ()),
        unit_costs=costs,
        tiers=tiers,
        weight=int(raw.get("weight", 100)),
        enabled=bool(raw.get("enabled", True)),
        offline=bool(raw.get("offline", False)),
        seed_version=version,
    )
    problems = validate_provider(provider, prefix=pid)
    if problems:
        raise SeedError("; ".join(f"{v.field}: {v.description}" for v in problems))
    return provider


def parse_seed(document: dict[str, Any]) -> Seed:
    version = document.get("version")
    if not isinstance(version, int) or version < 1:
        raise SeedError("`version` must be a positive integer")
    if document.get("currency") != "USD":
        raise SeedError("`currency` must be USD")
    providers = tuple(_provider(dict(raw), version) for raw in document.get("providers") or ())
    ids = [p.provider_id for p in providers]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise SeedError(f"duplicate provider ids {duplicates}")
    categories = {p.category for p in providers}
    without_offline = sorted(
        c for c in categories if not any(p.offline and p.category == c for p in providers)
    )
    if without_offline:
        raise SeedError(f"categories without an offline provider: {without_offline}")
    return Seed(version, providers)


def load_seed(path: Path = SEED_FILE) -> Seed:
    return parse_seed(yaml.safe_load(path.read_text()))
