"""Fixtures for the platform's tests: a store on each backend, and an API world.

The PostgreSQL leg reads its URL from ``SHAREDML_TEST_POSTGRES_URL`` or from
the file ``.ci/services.sh`` writes; under CI it must run, elsewhere it skips
when no server is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_world import World, fresh_postgres, make_world

from sharedml.platform.store import Store, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store migrated to head, on SQLite and on PostgreSQL."""
    store = Store(sqlite_url(tmp_path)) if request.param == "sqlite" else fresh_postgres()
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)
