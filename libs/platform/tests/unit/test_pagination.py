"""Page tokens are opaque, bound to their query, and refuse garbage."""

import uuid
from datetime import UTC, datetime

import pytest

from hygoshop_platform.errors import InvalidArgument
from hygoshop_platform.pagination import (
    MAX_PAGE_SIZE,
    decode_time_id_token,
    decode_token,
    encode_token,
    page_size,
    split_page,
)


def test_token_round_trips_for_the_same_query() -> None:
    token = encode_token(["2026-01-01T00:00:00+00:00", "id-1"], ("listings", "active"))
    assert decode_token(token, ("listings", "active")) == ("2026-01-01T00:00:00+00:00", "id-1")


def test_empty_token_means_first_page() -> None:
    assert decode_token("", ("q",)) is None


@pytest.mark.parametrize("token", ["not-base64!!", "e30", "W10", "eyJrIjpbXSwicSI6IngifQ"])
def test_garbage_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode_token(token, ("q",))
    assert info.value.violations[0].field == "page_token"


def test_token_of_another_query_is_refused() -> None:
    token = encode_token([1], ("listings", "active"))
    with pytest.raises(InvalidArgument):
        decode_token(token, ("listings", "draft"))


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert page_size(0, default=25) == 25
    assert page_size(7, default=25) == 7
    assert page_size(10_000, default=25) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1, default=25)


def test_split_page_returns_the_page_and_a_token_only_when_more_exist() -> None:
    rows = [1, 2, 3, 4]
    page, token = split_page(rows, 3, lambda r: (r,), ("q",))
    assert (list(page), decode_token(token, ("q",))) == ([1, 2, 3], (3,))
    assert split_page(rows[:3], 3, lambda r: (r,), ("q",)) == (rows[:3], "")


def test_time_and_id_tokens() -> None:
    when, ident = datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()
    token = encode_token([when.isoformat(), str(ident)], ("q",))
    assert decode_time_id_token(token, ("q",)) == (when, ident)
    with pytest.raises(InvalidArgument):
        decode_time_id_token(encode_token(["yesterday", "x"], ("q",)), ("q",))
