"""Catalog settings: upload retention and sweeping, read from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hygoshop_catalog.config import CatalogSettings
from hygoshop_platform.settings import SettingsError

S3 = {"S3_BUCKET": "media", "S3_ENDPOINT_URL": "http://127.0.0.1:8333"}


def test_uploads_are_kept_a_day_and_swept_every_ten_minutes_by_default() -> None:
    settings = CatalogSettings.from_env(S3)
    assert settings.upload_retention == timedelta(days=1)
    assert settings.upload_sweep_seconds == 600


def test_retention_and_sweep_interval_come_from_the_environment() -> None:
    settings = CatalogSettings.from_env(
        {
            **S3,
            "CATALOG_UPLOAD_RETENTION_SECONDS": "7200",
            "CATALOG_UPLOAD_SWEEP_SECONDS": "30",
        }
    )
    assert (settings.upload_retention, settings.upload_sweep_seconds) == (timedelta(hours=2), 30)


def test_a_retention_shorter_than_an_upload_url_lives_is_refused() -> None:
    """Else a file could be sent after its upload was swept, and stay for ever."""
    env = {**S3, "S3_PRESIGN_PUT_SECONDS": "3600", "CATALOG_UPLOAD_RETENTION_SECONDS": "600"}
    with pytest.raises(SettingsError, match="S3_PRESIGN_PUT_SECONDS"):
        CatalogSettings.from_env(env)


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_sweep_interval_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(SettingsError, match="CATALOG_UPLOAD_SWEEP_SECONDS"):
        CatalogSettings.from_env({**S3, "CATALOG_UPLOAD_SWEEP_SECONDS": value})
