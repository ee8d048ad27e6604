"""google.type.Money <-> Decimal, exactly (no float on the way), with field-level validation."""

from __future__ import annotations

from decimal import Decimal

from google.type import money_pb2

from hygoshop_platform.errors import FieldViolation

NANOS = Decimal(1_000_000_000)
MAX_NANOS = 999_999_999


def money_to_decimal(
    money: money_pb2.Money,
    path: str,
    violations: list[FieldViolation],
    *,
    currency: str | None = None,
    allow_negative: bool = False,
) -> Decimal:
    """The amount of `money`; problems (nanos range, sign, currency) go to `violations`.

    `currency`, when given, is the only one accepted (an empty code is taken as it).
    """
    if not -MAX_NANOS <= money.nanos <= MAX_NANOS:
        violations.append(
            FieldViolation(f"{path}.nanos", "must be between -999999999 and 999999999")
        )
    elif (money.units > 0 and money.nanos < 0) or (money.units < 0 and money.nanos > 0):
        violations.append(FieldViolation(path, "units and nanos must have the same sign"))
    if currency is not None and money.currency_code not in ("", currency):
        violations.append(FieldViolation(f"{path}.currency_code", f"must be {currency}"))
    amount = Decimal(money.units) + Decimal(money.nanos) / NANOS
    if amount < 0 and not allow_negative:
        violations.append(FieldViolation(path, "must not be negative"))
    return amount


def decimal_to_money(amount: Decimal, currency: str) -> money_pb2.Money:
    """Money for `amount`, truncated to nanos."""
    units = int(amount)
    nanos = int((amount - units) * NANOS)
    return money_pb2.Money(currency_code=currency, units=units, nanos=nanos)
