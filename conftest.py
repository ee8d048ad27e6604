"""Fixtures shared by every test folder: real PostgreSQL, migrated once per session.

The server comes from `hygoshop_platform.testing.postgres` (DATABASE_URL, local :5432,
Docker, embedded PostgreSQL, in that order); each session gets its own database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hygoshop_platform.migrations import upgrade
from tests.support import APP_PASSWORD, SCHEMAS, PlatformDatabase

if TYPE_CHECKING:
    from hygoshop_platform.testing.postgres import MakeDatabase

pytest_plugins = ["hygoshop_platform.testing.postgres", "hygoshop_platform.testing.s3"]


@pytest.fixture(scope="session")
def platform_db(make_database: MakeDatabase) -> PlatformDatabase:
    url = make_database("platform")
    for spec in SCHEMAS:
        upgrade(url, spec, app_password=APP_PASSWORD)
    return PlatformDatabase(url)
