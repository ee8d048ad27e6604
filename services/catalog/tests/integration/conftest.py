"""The catalog's schema on the platform test database, through its application role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hygoshop_catalog.config import SCHEMA
from hygoshop_platform.db import Pool, open_pool
from tests.support import PlatformDatabase


@pytest.fixture
async def pool(platform_db: PlatformDatabase) -> AsyncIterator[Pool]:
    """Room for a test that holds a transaction open while the code under test runs."""
    pool = await open_pool(platform_db.app_url(SCHEMA), size=4)
    yield pool
    await pool.close()
