"""Settings read from the environment once, frozen, failing fast with the variable's name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class SettingsError(ValueError):
    """A required variable is missing or malformed; the message names it."""


def env_str(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str:
    source = os.environ if env is None else env
    value = source.get(name, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise SettingsError(f"environment variable {name} is required")
    return value


def env_int(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, str(default), env)
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(
            f"environment variable {name} must be an integer, got {raw!r}"
        ) from None


def env_float(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    raw = env_str(name, str(default), env)
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name} must be a number, got {raw!r}") from None


def env_optional(name: str, env: Mapping[str, str] | None = None) -> str | None:
    source = os.environ if env is None else env
    return source.get(name) or None


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What every service process needs. Services embed it in their own frozen config."""

    service_name: str
    """One name everywhere: folder, proto package, process, OTEL service name."""
    grpc_host: str = "127.0.0.1"
    """Interface to bind; `0.0.0.0` in containers (GRPC_HOST)."""
    grpc_port: int = 0
    """Port to bind; 0 picks a free one (GRPC_PORT)."""
    database_url: str | None = None
    """Runtime connection as the service's non-owner application role (DATABASE_URL)."""
    migrations_database_url: str | None = None
    """Connection allowed to create the schema and roles (MIGRATIONS_DATABASE_URL)."""
    db_pool_size: int = 10
    """Connections kept per process (DB_POOL_SIZE)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector; nothing is exported when unset (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    log_level: str = "INFO"
    """Root log level (LOG_LEVEL)."""
    shutdown_grace_seconds: float = 10.0
    """How long in-flight calls may drain after SIGTERM (SHUTDOWN_GRACE_SECONDS)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """The environment the settings were read from, for service-specific values."""

    @classmethod
    def from_env(cls, service_name: str, env: Mapping[str, str] | None = None) -> ServiceSettings:
        source = dict(os.environ if env is None else env)
        return cls(
            service_name=service_name,
            grpc_host=env_str("GRPC_HOST", "127.0.0.1", source),
            grpc_port=env_int("GRPC_PORT", 0, source),
            database_url=env_optional("DATABASE_URL", source),
            migrations_database_url=env_optional("MIGRATIONS_DATABASE_URL", source),
            db_pool_size=env_int("DB_POOL_SIZE", 10, source),
            otlp_endpoint=env_optional("OTEL_EXPORTER_OTLP_ENDPOINT", source),
            log_level=env_str("LOG_LEVEL", "INFO", source).upper(),
            shutdown_grace_seconds=env_float("SHUTDOWN_GRACE_SECONDS", 10.0, source),
            extra=source,
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("environment variable DATABASE_URL is required")
        return self.database_url
