"""Object storage settings (S3_*), read from the environment once, failing fast."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from hygoshop_platform.settings import SettingsError, env_int, env_optional, env_str

AddressingStyle = Literal["path", "virtual", "auto"]
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """Where objects live and how clients reach them."""

    bucket: str
    """The one bucket of this deployment; tenants are prefixes in it (S3_BUCKET)."""
    endpoint_url: str | None = None
    """The S3 API as services reach it; None means the SDK's default (S3_ENDPOINT_URL)."""
    public_endpoint_url: str | None = None
    """The S3 API as clients reach it, used for presigned URLs; defaults to `endpoint_url`
    (S3_PUBLIC_ENDPOINT_URL). A proxy in front must pass the Host header through unchanged:
    it is part of the signature."""
    access_key_id: str | None = None
    """With `secret_access_key`; both None uses the SDK's credential chain (S3_ACCESS_KEY_ID)."""
    secret_access_key: str | None = field(default=None, repr=False)
    """(S3_SECRET_ACCESS_KEY)"""
    region: str = "us-east-1"
    """Signing region; R2 wants `auto`, SeaweedFS accepts any (S3_REGION)."""
    addressing_style: AddressingStyle = "path"
    """`path` works with SeaweedFS, R2 and S3 alike (S3_ADDRESSING_STYLE)."""
    presign_put_seconds: int = 900
    """How long an upload URL stays valid (S3_PRESIGN_PUT_SECONDS)."""
    presign_get_seconds: int = 600
    """How long a download URL stays valid (S3_PRESIGN_GET_SECONDS)."""
    max_connections: int = 16
    """HTTP connections (and worker threads) per process (S3_MAX_CONNECTIONS)."""
    cors_origins: tuple[str, ...] = ()
    """Web origins (`https://admin.shop.example`) whose pages may send uploads and fetch
    files with presigned URLs straight from the browser; set on the bucket at start by
    the service that owns uploads (S3_CORS_ORIGINS, comma-separated; `*` for any)."""

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket) or ".." in self.bucket:
            raise SettingsError(
                f"S3_BUCKET {self.bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)"
            )
        for name, url in (
            ("S3_ENDPOINT_URL", self.endpoint_url),
            ("S3_PUBLIC_ENDPOINT_URL", self.public_endpoint_url),
        ):
            if url is not None and not url.startswith(("http://", "https://")):
                raise SettingsError(f"{name} must be an http:// or https:// URL, got {url!r}")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise SettingsError("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither")
        if self.addressing_style not in ("path", "virtual", "auto"):
            raise SettingsError("S3_ADDRESSING_STYLE must be path, virtual or auto")
        for name, seconds in (
            ("S3_PRESIGN_PUT_SECONDS", self.presign_put_seconds),
            ("S3_PRESIGN_GET_SECONDS", self.presign_get_seconds),
        ):
            if not 1 <= seconds <= _MAX_PRESIGN_SECONDS:
                raise SettingsError(f"{name} must be between 1 and {_MAX_PRESIGN_SECONDS}")
        if self.max_connections < 1:
            raise SettingsError("S3_MAX_CONNECTIONS must be at least 1")
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"S3_CORS_ORIGINS: {origin!r} is not an origin"
                    " (scheme://host[:port], no path), nor *"
                )

    @property
    def signing_endpoint_url(self) -> str | None:
        """The endpoint presigned URLs point at."""
        return self.public_endpoint_url or self.endpoint_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BlobSettings | None:
        """The settings, or None when object storage is not configured (no S3_BUCKET)."""
        source = os.environ if env is None else env
        bucket = env_optional("S3_BUCKET", source)
        if bucket is None:
            if env_optional("S3_ENDPOINT_URL", source):
                raise SettingsError("S3_ENDPOINT_URL is set but S3_BUCKET is not")
            return None
        return cls(
            bucket=bucket,
            endpoint_url=env_optional("S3_ENDPOINT_URL", source),
            public_endpoint_url=env_optional("S3_PUBLIC_ENDPOINT_URL", source),
            access_key_id=env_optional("S3_ACCESS_KEY_ID", source),
            secret_access_key=env_optional("S3_SECRET_ACCESS_KEY", source),
            region=env_str("S3_REGION", "us-east-1", source),
            addressing_style=cast(AddressingStyle, env_str("S3_ADDRESSING_STYLE", "path", source)),
            presign_put_seconds=env_int("S3_PRESIGN_PUT_SECONDS", 900, source),
            presign_get_seconds=env_int("S3_PRESIGN_GET_SECONDS", 600, source),
            max_connections=env_int("S3_MAX_CONNECTIONS", 16, source),
            cors_origins=tuple(
                origin.strip()
                for origin in env_str("S3_CORS_ORIGINS", "", source).split(",")
                if origin.strip()
            ),
        )

    def to_env(self) -> dict[str, str]:
        """The S3_* variables that make `from_env` return these settings (for child processes)."""
        env = {
            "S3_BUCKET": self.bucket,
            "S3_REGION": self.region,
            "S3_ADDRESSING_STYLE": self.addressing_style,
            "S3_PRESIGN_PUT_SECONDS": str(self.presign_put_seconds),
            "S3_PRESIGN_GET_SECONDS": str(self.presign_get_seconds),
            "S3_MAX_CONNECTIONS": str(self.max_connections),
        }
        if self.cors_origins:
            env["S3_CORS_ORIGINS"] = ",".join(self.cors_origins)
        optional = {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_PUBLIC_ENDPOINT_URL": self.public_endpoint_url,
            "S3_ACCESS_KEY_ID": self.access_key_id,
            "S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        env.update({name: value for name, value in optional.items() if value is not None})
        return env
