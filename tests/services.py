"""Shared state helpers for tests: private broker databases on the test Redis, and emptying what the pipeline wrote."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from storage.db import Database
from storage.models import (
    Account,
    AlertRule,
    DeadLetter,
    InboxEvent,
    Lead,
    OutboxItem,
    Outcome,
    ScoreHistory,
    Source,
)

# Children before parents, so foreign keys hold while rows go.
PIPELINE_TABLES = (DeadLetter, Outcome, ScoreHistory, OutboxItem, InboxEvent, Lead, Account, AlertRule, Source)


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
