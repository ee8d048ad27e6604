"""Settings fail fast and name the variable."""

import pytest

from hygoshop_platform.settings import ServiceSettings, SettingsError


def test_defaults_and_overrides() -> None:
    s = ServiceSettings.from_env("catalog", {"GRPC_PORT": "7001", "LOG_LEVEL": "debug"})
    assert (s.service_name, s.grpc_port, s.log_level, s.database_url) == (
        "catalog",
        7001,
        "DEBUG",
        None,
    )


def test_malformed_integer_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="GRPC_PORT"):
        ServiceSettings.from_env("catalog", {"GRPC_PORT": "seven"})


def test_database_url_required_when_asked() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        ServiceSettings.from_env("catalog", {}).require_database_url()
