"""Shared state helpers for tests: databases of their own, private broker databases on the test Redis, and emptying
what the pipeline wrote."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from core.runtime import sqlite_url
from storage.db import Database
from storage.migrate import upgrade
from storage.models import (
    Account,
    AlertRule,
    BandSet,
    DeadLetter,
    FeatureSchemaVersion,
    InboxEvent,
    Lead,
    LeadGroup,
    Measurement,
    OutboxItem,
    Outcome,
    OutcomeDefinition,
    Pilot,
    ScoreHistory,
    Source,
)

# Children before parents, so foreign keys hold while rows go.
PIPELINE_TABLES = (DeadLetter, Outcome, ScoreHistory, OutboxItem, InboxEvent, LeadGroup, Lead, Account, AlertRule,
                   Source, FeatureSchemaVersion, Measurement, Pilot, BandSet, OutcomeDefinition)


@contextmanager
def migrated_database(data_dir: Path, revision: str = "head", prefix: str = "leadbridge_test") -> Iterator[str]:
    """URL of a database of its own migrated to `revision`: SQLite in `data_dir`, or, with
    LEADBRIDGE_TEST_DATABASE_URL set, a fresh PostgreSQL database on that server (dropped afterwards)."""
    admin_url = os.environ.get("LEADBRIDGE_TEST_DATABASE_URL")
    if not admin_url:
        url = sqlite_url(data_dir)
        upgrade(url, revision)
        yield url
        return
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = "postgresql+psycopg://" + plain.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url, revision)
        yield url
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def broker_urls(redis_url: str, number: int) -> tuple[str, str]:
    """(Celery broker URL, redis-py URL) of database `number` on the Redis at `redis_url`."""
    if redis_url.startswith("unix://"):
        path = redis_url[len("unix://"):].split("?", 1)[0]
        return f"redis+socket://{path}?virtual_host={number}", f"unix://{path}?db={number}"
    # A URL without a database path ("redis://host:port") is the server's base already.
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{number}", f"{base}/{number}"


def wipe_pipeline(db: Database, redis: Any, *also: Any) -> None:
    """Empty every table the pipeline writes (and the models in `also`) and the pipeline's Redis keys."""
    with db.session() as session:
        for model in (*PIPELINE_TABLES, *also):
            session.execute(delete(model))
    keys = list(redis.scan_iter("lb:*"))
    if keys:
        redis.delete(*keys)
