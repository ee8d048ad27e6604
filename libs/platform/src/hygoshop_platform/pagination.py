"""Opaque page tokens for List methods (AIP-158): keyset positions bound to their query.

A token carries the last row's sort key and a fingerprint of the filters it was issued
for; reusing it with other filters, or sending garbage, is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from hygoshop_platform.errors import FieldViolation, InvalidArgument

MAX_PAGE_SIZE = 100
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    after: tuple[Any, ...] | None
    """The sort key of the last row of the previous page, or None for the first page."""


def _fingerprint(query: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(query), default=str).encode()).hexdigest()[:16]


def page_size(requested: int, default: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation(field, "must not be negative")])
    if requested == 0:
        return default
    return min(requested, MAX_PAGE_SIZE)


def encode_token(after: Sequence[Any], query: Sequence[Any]) -> str:
    payload = json.dumps({"k": list(after), "q": _fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(
    token: str, query: Sequence[Any], field: str = "page_token"
) -> tuple[Any, ...] | None:
    if not token:
        return None
    invalid = InvalidArgument(
        [FieldViolation(field, "is not a token from a previous page of this query")]
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(payload, dict) or payload.get("q") != _fingerprint(query):
        raise invalid
    key = payload.get("k")
    if not isinstance(key, list) or not key:
        raise invalid
    return tuple(key)


def split_page(
    rows: Sequence[T], size: int, key: Callable[[T], Sequence[Any]], query: Sequence[Any]
) -> tuple[Sequence[T], str]:
    """Rows read with `limit=size + 1` -> (this page, the next page's token, "" if last).

    Reading one row more than the page tells whether another page exists without a count.
    """
    if len(rows) <= size:
        return rows, ""
    return rows[:size], encode_token(list(key(rows[size - 1])), query)


def decode_time_id_token(
    token: str, query: Sequence[Any], field: str = "page_token"
) -> tuple[datetime, uuid.UUID] | None:
    """A token whose position is (a timestamp, a UUID): the usual keyset of time-ordered lists."""
    position = decode_token(token, query, field)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(str(position[0])), uuid.UUID(str(position[1]))
    except (ValueError, IndexError):
        raise InvalidArgument([FieldViolation(field, "is malformed")]) from None
