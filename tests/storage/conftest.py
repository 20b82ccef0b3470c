"""Storage fixtures: a database of its own at an older schema revision, for migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import migrated_database


@pytest.fixture()
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (SQLite, or PostgreSQL in external mode) at the revision the test names with
    `@pytest.mark.parametrize("old_database", ["0003"], indirect=True)`."""
    with migrated_database(tmp_path, request.param, prefix="leadbridge_mig") as url:
        yield url
