"""google.type.Money <-> Decimal, exactly (no float on the way), with field-level validation."""

from __future__ import annotations

from decimal import Decimal

from google.type import money_pb2

from hygoshop_platform.errors import FieldViolation

NANOS = Decimal(1_000_000_000)
MAX_NANOS = 999_999_999

# ISO 4217 currencies a price may be in: the circulating ones, without fund codes (BOV,
# CHE, CLF, ...), precious metals (XAU, ...) and testing codes (XTS, XXX).
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW
    ZWG
    """.split()  # noqa: SIM905 (a table, kept readable)
)


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
