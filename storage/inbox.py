"""The inbox: raw accepted events, stored once under their dedupe keys, processed, swept."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import fastjson
from core.records import Event, utcnow
from storage.models import InboxEvent

INSERT_COLUMNS = ("source_id", "dedupe_key", "crm", "object_type", "object_id", "event_type", "email", "properties",
                  "occurred_at", "received_at", "status", "attempts")


@lru_cache(maxsize=1024)  # a batch shares one received_at, and often its occurred_at values
def _db_time(value: datetime, dialect: str) -> Any:
    # Must match what storage.types.UtcDateTime writes: SQLite keeps naive UTC text in SQLAlchemy's format.
    utc = value.astimezone(UTC)
    # isoformat(" ", "microseconds") of the naive value is that format, three times faster than strftime.
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds") if dialect == "sqlite" else utc


def event_row(event: Event, source_id: int | None, dialect: str = "postgresql") -> tuple[Any, ...]:
    """The inbox column values (in INSERT_COLUMNS order) for one canonical event."""
    return (
        source_id,
        event.dedupe_key,
        event.crm,
        event.object_type,
        event.object_id[:64],
        event.event_type,
        event.email,
        fastjson.dumps(dict(event.properties)),
        _db_time(event.occurred_at, dialect),
        _db_time(event.received_at, dialect),
        "pending",
        0,
    )


@lru_cache(maxsize=64)
def _insert_sql(dialect: str, rows: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    one = "(" + ",".join([mark] * len(INSERT_COLUMNS)) + ")"
    return (
        f"INSERT INTO inbox ({','.join(INSERT_COLUMNS)}) VALUES {','.join([one] * rows)} "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
    )


# PostgreSQL: the whole batch as one JSON parameter. A multi-row VALUES list of 1,200 placeholders is too
# long for psycopg's query cache and was re-parsed in Python on every request (~8 ms of a 10 ms insert).
_PG_INSERT = (
    f"INSERT INTO inbox ({','.join(INSERT_COLUMNS)}) SELECT {','.join(INSERT_COLUMNS)} FROM json_to_recordset(%s::json)"
    " AS r(source_id int, dedupe_key text, crm text, object_type text, object_id text, event_type text, email text,"
    " properties json, occurred_at timestamptz, received_at timestamptz, status text, attempts int)"
    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
)


def store_events(session: Session, events: Sequence[Event], source_id: int | None) -> list[int]:
    """Insert events not seen before (by dedupe key) and return the new rows' ids; repeats insert nothing."""
    if not events:
        return []
    connection = session.connection()
    dialect = connection.dialect.name
    # This is the webhook hot path: one INSERT ... ON CONFLICT DO NOTHING RETURNING per batch, with values
    # passed straight to the driver (SQLAlchemy's per-request compilation and row building cost several
    # times the insert itself). SQLite chunks stay under its variable limit.
    ids: list[int] = []
    if dialect == "postgresql":
        result = connection.exec_driver_sql(_PG_INSERT, (_pg_batch(events, source_id),))
        return sorted(row[0] for row in result)
    for start in range(0, len(events), 500):
        chunk = events[start : start + 500]
        params = tuple(value for event in chunk for value in event_row(event, source_id, dialect))
        result = connection.exec_driver_sql(_insert_sql(dialect, len(chunk)), params)
        ids.extend(row[0] for row in result)
    return sorted(ids)


def _pg_batch(events: Sequence[Event], source_id: int | None) -> str:
    rows = []
    for event in events:
        row = dict(zip(INSERT_COLUMNS, event_row(event, source_id)))
        row["properties"] = orjson.Fragment(row["properties"])  # already JSON text
        for name in ("object_id", "email"):  # PostgreSQL text cannot hold NUL, JSON can: drop it here
            if row[name] and "\x00" in row[name]:
                row[name] = row[name].replace("\x00", "")
        rows.append(row)
    return orjson.dumps(rows).decode()


def mark_enqueued(session: Session, ids: Sequence[int], now: datetime | None = None) -> None:
    """Record when rows were (re-)handed to the queue, so the sweeper knows when to try again."""
    if ids:
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(ids)).values(enqueued_at=now or utcnow()))


def pending_ids(session: Session, ids: Sequence[int]) -> list[int]:
    """Those of `ids` still waiting to be processed."""
    query = select(InboxEvent.id).where(InboxEvent.id.in_(ids), InboxEvent.status == "pending")
    return sorted(session.scalars(query))


def stale_pending(session: Session, older_than: timedelta, limit: int, now: datetime | None = None) -> list[int]:
    """Pending rows whose last hand-off is older than `older_than` (the message was lost or its worker died)."""
    cutoff = (now or utcnow()) - older_than
    query = (
        select(InboxEvent.id)
        .where(InboxEvent.status == "pending")
        # A row never re-enqueued was handed off when it was received.
        .where(func.coalesce(InboxEvent.enqueued_at, InboxEvent.received_at) < cutoff)
        .order_by(InboxEvent.id)
        .limit(limit)
    )
    return list(session.scalars(query))


BACKLOG_CAP = 100_000  # counted exactly up to here; beyond it "more than" is all a summary needs


def backlog(session: Session, cap: int | None = BACKLOG_CAP) -> int:
    """How many inbox rows wait to be processed, counted up to `cap` (None: all of them).

    A summary polled every few seconds must not walk a million-row backlog each time: on PostgreSQL that
    count visits every pending row's heap tuple and took a worker's share of a core while a backlog drained.
    """
    pending = select(InboxEvent.id).where(InboxEvent.status == "pending")
    if cap is not None:
        pending = pending.limit(cap + 1)
    return int(session.scalar(select(func.count()).select_from(pending.subquery())) or 0)


def to_event(row: InboxEvent, source_name: str = "") -> Event:
    """The canonical event stored in an inbox row."""
    return Event(
        source=source_name or str(row.source_id or ""),
        crm=row.crm,  # type: ignore[arg-type]
        object_type=row.object_type,
        object_id=row.object_id,
        event_type=row.event_type,
        occurred_at=row.occurred_at,
        received_at=row.received_at,
        properties=row.properties or {},
        dedupe_key=row.dedupe_key,
        email=row.email,
    )
