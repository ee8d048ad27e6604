"""Page tokens are opaque, bound to their query, and refuse garbage."""

import pytest

from hygoshop_platform.errors import InvalidArgument
from hygoshop_platform.pagination import MAX_PAGE_SIZE, decode_token, encode_token, page_size


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
