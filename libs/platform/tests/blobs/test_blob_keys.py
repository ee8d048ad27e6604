"""Blob keys stay inside the caller's tenant prefix; sniffing and settings behave."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygoshop_platform.blobs import (
    BlobKey,
    BlobSettings,
    InvalidKey,
    safe_file_name,
    sniff_image_type,
    tenant_prefix,
)
from hygoshop_platform.settings import SettingsError

TENANT = uuid.UUID("11111111-1111-1111-1111-111111111111")
OTHER = uuid.UUID("22222222-2222-2222-2222-222222222222")


def test_relative_and_own_full_keys_name_the_same_object() -> None:
    relative = BlobKey.parse(TENANT, "uploads/images/abc/photo.png")
    full = BlobKey.parse(TENANT, f"tenants/{TENANT}/uploads/images/abc/photo.png")
    assert relative == full
    assert relative.path == "uploads/images/abc/photo.png"
    assert relative.object_key == f"tenants/{TENANT}/uploads/images/abc/photo.png"


def test_another_tenants_full_key_stays_inside_the_callers_prefix() -> None:
    key = BlobKey.parse(TENANT, f"tenants/{OTHER}/uploads/x.png")
    assert key.object_key == f"tenants/{TENANT}/tenants/{OTHER}/uploads/x.png"
    assert key.object_key.startswith(tenant_prefix(TENANT))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "is required"),
        ("/etc/passwd", "no leading /"),
        ("../other/x", "`..`"),
        ("uploads/../../x", "`..`"),
        (f"tenants/{TENANT}/../{OTHER}/x", "`..`"),
        ("uploads//x", "empty"),
        ("uploads/./x", "`.`"),
        ("uploads/x/", "empty"),
        ("uploads\\..\\x", "backslashes"),
        ("uploads/x\n.png", "control"),
        ("a/" + "b" * 1100, "too long"),
    ],
)
def test_malformed_keys_are_refused_naming_the_field(raw: str, problem: str) -> None:
    with pytest.raises(InvalidKey) as refused:
        BlobKey.parse(TENANT, raw, field="image.key")
    (violation,) = refused.value.violations
    assert violation.field == "image.key"
    assert problem in violation.description


@given(st.text(max_size=80))
def test_any_accepted_key_is_confined_to_the_tenant(raw: str) -> None:
    try:
        key = BlobKey.parse(TENANT, raw)
    except InvalidKey:
        return
    assert key.object_key.startswith(tenant_prefix(TENANT))
    assert ".." not in key.object_key.split("/")
    assert "" not in key.object_key.split("/")


def test_upload_keys_are_fresh_and_keep_a_harmless_file_name() -> None:
    first = BlobKey.new_upload(TENANT, "images", "../../My Photo (1).PNG")
    second = BlobKey.new_upload(TENANT, "images", "../../My Photo (1).PNG")
    assert first != second
    folder, kind, token, name = first.path.split("/")
    assert (folder, kind, name) == ("uploads", "images", "My_Photo_1_.PNG")
    assert len(token) == 32
    assert safe_file_name("") == "file"
    assert safe_file_name("...") == "file"
    assert safe_file_name("C:\\dir\\rows.csv") == "rows.csv"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"hello, I am text", None),
        (b"<svg xmlns=", None),
        (b"", None),
    ],
)
def test_image_types_come_from_magic_numbers(head: bytes, expected: str | None) -> None:
    assert sniff_image_type(head) == expected


def test_settings_from_env_round_trip() -> None:
    assert BlobSettings.from_env({}) is None
    env = {
        "S3_BUCKET": "hygoshop",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "S3_PUBLIC_ENDPOINT_URL": "https://files.example.test",
        "S3_ACCESS_KEY_ID": "AK",
        "S3_SECRET_ACCESS_KEY": "SK",
        "S3_REGION": "auto",
        "S3_CORS_ORIGINS": "https://admin.shop.example, http://127.0.0.1:5173",
    }
    settings = BlobSettings.from_env(env)
    assert settings is not None
    assert settings.signing_endpoint_url == "https://files.example.test"
    assert settings.cors_origins == ("https://admin.shop.example", "http://127.0.0.1:5173")
    assert "SK" not in repr(settings)
    assert BlobSettings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"S3_ENDPOINT_URL": "http://127.0.0.1:9000"}, "S3_BUCKET"),
        ({"S3_BUCKET": "Bad_Name"}, "S3_BUCKET"),
        ({"S3_BUCKET": "ok-bucket", "S3_ACCESS_KEY_ID": "AK"}, "S3_SECRET_ACCESS_KEY"),
        ({"S3_BUCKET": "ok-bucket", "S3_ENDPOINT_URL": "127.0.0.1:9000"}, "S3_ENDPOINT_URL"),
        ({"S3_BUCKET": "ok-bucket", "S3_PRESIGN_GET_SECONDS": "0"}, "S3_PRESIGN_GET_SECONDS"),
        ({"S3_BUCKET": "ok-bucket", "S3_CORS_ORIGINS": "https://a.example/app"}, "S3_CORS_ORIGINS"),
        ({"S3_BUCKET": "ok-bucket", "S3_CORS_ORIGINS": "admin.example"}, "S3_CORS_ORIGINS"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        BlobSettings.from_env(env)
