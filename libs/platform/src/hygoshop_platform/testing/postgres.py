"""Pytest plugin: one PostgreSQL per test session and a factory for throwaway databases on it.

Load it from the root conftest: `pytest_plugins = ["hygoshop_platform.testing.postgres"]`.
The server comes from `find_or_start_postgres()` (DATABASE_URL, local :5432, Docker,
embedded); HYGOSHOP_PG_SOURCES=embedded (comma separated) forces the sources, e.g. in CI.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import cast, get_args

import pytest

from hygoshop_platform.infra.postgres import (
    DEFAULT_SOURCES,
    PostgresHandle,
    Source,
    create_database,
    drop_database,
    find_or_start_postgres,
)

MakeDatabase = Callable[..., str]
"""`make_database(prefix="test") -> url` of a new, empty database dropped at session end."""


def _sources() -> tuple[Source, ...]:
    raw = os.environ.get("HYGOSHOP_PG_SOURCES", "")
    if not raw.strip():
        return DEFAULT_SOURCES
    names = tuple(s.strip() for s in raw.split(",") if s.strip())
    unknown = [n for n in names if n not in get_args(Source)]
    if unknown:
        raise pytest.UsageError(f"HYGOSHOP_PG_SOURCES: unknown {unknown}; use {get_args(Source)}")
    return cast(tuple[Source, ...], names)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresHandle]:
    """The session's server; stopped at the end only if this session started it."""
    handle = find_or_start_postgres(sources=_sources())
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def pg_admin_url(postgres_server: PostgresHandle) -> str:
    """A superuser `postgresql://` URL (use `to_sqlalchemy_url` for SQLAlchemy)."""
    return postgres_server.url


@pytest.fixture(scope="session")
def make_database(pg_admin_url: str) -> Iterator[MakeDatabase]:
    """Factory for uniquely named databases; all of them are dropped (WITH FORCE) at the end."""
    created: list[str] = []

    def make(prefix: str = "test") -> str:
        # Unique across parallel sessions (xdist workers, two developers on one server).
        clean = re.sub(r"[^a-z0-9_]", "_", prefix.lower()).strip("_")[:40] or "test"
        name = f"hs_{clean}_{uuid.uuid4().hex[:12]}"
        url = create_database(pg_admin_url, name)
        created.append(name)
        return url

    yield make
    for name in reversed(created):
        drop_database(pg_admin_url, name)
