"""Migrations: the same revisions build the schema on SQLite and PostgreSQL, and re-running is a no-op."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from storage.db import Database
from storage.migrate import current_revision, head_revision, upgrade
from storage.models import Base, Source


def test_schema_matches_models_at_head(db: Database, database_url: str) -> None:
    assert current_revision(db.engine) == head_revision()
    upgrade(database_url)  # running again changes nothing and does not fail
    assert current_revision(db.engine) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    created = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as session:
        session.add(Source(name="tz-check", kind="events", slug="tz-check-slug", secret="s", created_at=created))
    with db.session() as session:
        row = session.scalars(select(Source).where(Source.name == "tz-check")).one()
        assert row.created_at == created
        assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
        session.delete(row)


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        with db.session() as session:
            session.add(Source(name="naive", kind="events", slug="naive-slug", secret="s", created_at=datetime(2026, 1, 1)))
    with db.session() as session:
        assert session.scalars(select(Source).where(Source.name == "naive")).first() is None
