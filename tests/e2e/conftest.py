"""The platform started for real (services + Envoy) once per test session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.services import StackOptions
from deploy.stack import Stack, start_stack
from tests.support import APP_PASSWORD, PlatformDatabase

AUTH_CACHE_TTL_SECONDS = 2.0


@pytest.fixture(scope="session")
def admin_key() -> str:
    return "hyg_admin_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def stack(
    platform_db: PlatformDatabase, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    run_dir = Path(tmp_path_factory.mktemp("stack"))
    options = StackOptions(
        platform_admin_key=admin_key, auth_cache_ttl_seconds=AUTH_CACHE_TTL_SECONDS
    )
    started = start_stack(platform_db.admin_url, run_dir, options, app_password=APP_PASSWORD)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=10.0) as client:
        yield client
