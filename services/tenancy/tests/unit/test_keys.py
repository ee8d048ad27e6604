"""API key format, digests and scope validation."""

from hygoshop_tenancy.domain.keys import (
    bearer_token,
    digest_key,
    digests_match,
    generate_key,
    parse_prefix,
)
from hygoshop_tenancy.domain.tenants import validate_display_name, validate_scopes


def test_generated_key_parses_to_its_prefix_and_digest_is_not_the_key() -> None:
    key = generate_key()
    assert parse_prefix(key.secret) == key.prefix
    assert key.digest == digest_key(key.secret)
    assert key.secret not in key.digest
    assert generate_key().secret != key.secret


def test_malformed_keys_have_no_prefix() -> None:
    for presented in [
        "",
        "hyg_short_x",
        "abc_abcdefghijkl_" + "x" * 40,
        "hyg_ABCDEFGHIJKL_" + "x" * 40,
        "hyg_abcdefghijkl_short",
    ]:
        assert parse_prefix(presented) is None


def test_digest_comparison() -> None:
    assert digests_match(digest_key("a"), digest_key("a"))
    assert not digests_match(digest_key("a"), digest_key("b"))


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token("Bearer " + "x" * 600) is None


def test_scopes_must_be_known_and_distinct() -> None:
    assert validate_scopes(["catalog:read", "admin"], "s") == []
    assert [v.field for v in validate_scopes(["catalog:read", "platform:admin"], "s")] == ["s[1]"]
    assert validate_scopes([], "s")[0].description == "at least one scope is required"
    assert validate_scopes(["admin", "admin"], "s")[0].field == "s"


def test_display_name_rules() -> None:
    assert validate_display_name("Acme", "n") == []
    assert validate_display_name("  ", "n")[0].description == "must not be empty"
    assert validate_display_name("x" * 201, "n")
    assert validate_display_name("a\x00b", "n")
