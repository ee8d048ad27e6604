"""Validation of tenants and API key requests."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from hygoshop_platform.errors import FieldViolation
from hygoshop_tenancy.domain.keys import TENANT_SCOPES

MAX_NAME = 200


class Tier(enum.Enum):
    FREE = "free"
    GROWTH = "growth"
    ENTERPRISE = "enterprise"


def validate_display_name(name: str, field: str) -> list[FieldViolation]:
    stripped = name.strip()
    if not stripped:
        return [FieldViolation(field, "must not be empty")]
    if len(name) > MAX_NAME:
        return [FieldViolation(field, f"must be at most {MAX_NAME} characters")]
    if any(ord(c) < 32 for c in name):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def validate_scopes(scopes: Sequence[str], field: str) -> list[FieldViolation]:
    if not scopes:
        return [FieldViolation(field, "at least one scope is required")]
    violations = [
        FieldViolation(
            f"{field}[{i}]", f"unknown scope; allowed: {', '.join(sorted(TENANT_SCOPES))}"
        )
        for i, scope in enumerate(scopes)
        if scope not in TENANT_SCOPES
    ]
    if len(set(scopes)) != len(scopes):
        violations.append(FieldViolation(field, "must not repeat a scope"))
    return violations
