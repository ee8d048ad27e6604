"""The versioned provider catalog file: every category and provider of the design, valid."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hygoshop_router.domain.model import Tier
from hygoshop_router.seed import SEED_FILE, SeedError, load_seed, parse_seed

# ARCHITECTURE.md section 1, "Adapter categories and providers".
DESIGN = {
    "commerce": {"shopify", "woocommerce", "bigcommerce", "amazon-sp-api", "medusa"},
    "social": {"ayrshare"},
    "llm": {"anthropic", "openai", "openrouter", "local", "template"},
    "imagegen": {"replicate", "openai-images", "local"},
    "payments": {"stripe", "stripe-connect"},
    "shipping": {"easypost", "shipstation"},
    "tax": {"taxjar", "avalara"},
    "email": {"resend", "postmark", "sendgrid", "local"},
    "workflow": {"internal"},
}


def test_the_seed_has_every_provider_of_the_design_and_an_offline_one_per_category() -> None:
    seed = load_seed()
    assert seed.version == 1
    names: dict[str, set[str]] = {}
    for p in seed.providers:
        names.setdefault(p.category, set()).add(p.provider_id.split(".", 1)[1])
    assert set(names) == set(DESIGN)
    for category, expected in DESIGN.items():
        assert expected <= names[category], category
        offline = [p for p in seed.providers if p.category == category and p.offline]
        assert offline, f"{category} has no offline provider"
        # The offline fallback serves every tier and costs nothing.
        assert all(p.tiers == frozenset(Tier) and not p.paid for p in offline)


def test_every_tier_can_be_served_in_every_category() -> None:
    seed = load_seed()
    for category in DESIGN:
        for tier in Tier:
            assert any(
                p.enabled and tier in p.tiers for p in seed.providers if p.category == category
            ), (category, tier)


def _document() -> dict[str, Any]:
    return dict(yaml.safe_load(SEED_FILE.read_text()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=0), "version"),
        (lambda d: d.update(currency="EUR"), "currency"),
        (lambda d: d["providers"][0].update(id="noprefix"), "<category>.<name>"),
        (lambda d: d["providers"][0].update(tiers=["gold"]), "gold"),
        (lambda d: d["providers"][0].update(tiers=[]), "at least one tier"),
        (lambda d: d["providers"][0].update(unit_costs={"nope": "1"}), "capabilities"),
        (lambda d: d["providers"][0].update(unit_costs={"sync_catalog": "-1"}), "between 0"),
        (lambda d: d["providers"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["providers"].append(dict(d["providers"][0])), "duplicate"),
        (
            lambda d: d.update(providers=[p for p in d["providers"] if not p.get("offline")]),
            "without an offline provider",
        ),
    ],
)
def test_a_malformed_seed_is_refused_with_the_reason(change: Any, message: str) -> None:
    document = _document()
    change(document)
    with pytest.raises(SeedError, match=message):
        parse_seed(document)
