"""`leadbridge run`'s periodic one-line summary: events/s received, inbox backlog, leads written, dead letters.

Every number comes from a cheap query: a primary-key range since the last reading (events received,
CRM write batches) or a COUNT on an indexed status column (backlog, dead letters). A reading that fails
(the database is down) prints a short warning instead of the numbers; `run` goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.db import Database
from storage.dead_letters import open_counts
from storage.inbox import BACKLOG_CAP, backlog
from storage.models import InboxEvent, OutboxItem


def dead_letter_count(session: Session) -> int:
    """Dead letters set aside and not yet retried or discarded, every stage (status "open", an indexed column)."""
    return sum(open_counts(session).values())


@dataclass
class Reading:
    """What the database said at one moment; `received` and `written` are counted since the previous reading."""

    at: float
    inbox_id: int
    outbox_id: int
    received: int
    written: int
    backlog: int
    dead_letters: int


def take_reading(session: Session, previous: Reading | None, now: float) -> Reading:
    """Read the numbers; with no previous reading the counts since then are 0 (it sets the baseline)."""
    if previous is None:
        inbox_id = int(session.scalar(select(func.max(InboxEvent.id))) or 0)
        outbox_id = int(session.scalar(select(func.max(OutboxItem.id))) or 0)
        received = written = 0
    else:
        # A count, not the difference of ids: PostgreSQL spends a sequence value on every duplicate delivery.
        count, last = session.execute(
            select(func.count(), func.max(InboxEvent.id)).where(InboxEvent.id > previous.inbox_id)).one()
        received, inbox_id = int(count or 0), int(last or previous.inbox_id)
        # One outbox row per CRM write batch; its payload says how many records the CRM accepted.
        outbox_id = int(session.scalar(select(func.max(OutboxItem.id)).where(OutboxItem.id > previous.outbox_id))
                        or previous.outbox_id)
        payloads = session.scalars(
            select(OutboxItem.payload).where(OutboxItem.id > previous.outbox_id, OutboxItem.id <= outbox_id,
                                             OutboxItem.kind == "fields", OutboxItem.object_type == "batch"))
        written = sum(int((payload or {}).get("written") or 0) for payload in payloads)
    return Reading(at=now, inbox_id=inbox_id, outbox_id=outbox_id, received=received, written=written,
                   backlog=backlog(session), dead_letters=dead_letter_count(session))


def summary_line(reading: Reading, seconds: float, clock: datetime | None = None) -> str:
    """The one line printed: rate over the interval, backlog, leads written in it, open dead letters."""
    stamp = (clock or datetime.now()).strftime("%H:%M:%S")
    rate = reading.received / seconds if seconds > 0 else 0.0
    shown = f"over {BACKLOG_CAP:,}" if reading.backlog > BACKLOG_CAP else f"{reading.backlog:,}"
    return (f"[{stamp}] {rate:,.1f} events/s received, backlog {shown}, "
            f"{reading.written:,} leads written in {seconds:.0f}s, {reading.dead_letters:,} dead letters")


def failure_line(exc: BaseException, clock: datetime | None = None) -> str:
    """The line printed instead when the database cannot be read."""
    stamp = (clock or datetime.now()).strftime("%H:%M:%S")
    return f"[{stamp}] summary unavailable: database not answering ({type(exc).__name__})"


class RunSummary(threading.Thread):
    """Prints a summary line every `interval` seconds until stopped (a daemon: a hung query holds up nothing)."""

    def __init__(self, database_url: str, interval: float, echo: Callable[[str], Any] = click.echo,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="leadbridge-run-summary", daemon=True)
        self.database_url = database_url
        self.interval = interval
        self.echo = echo
        self.clock = clock
        self._stop_event = threading.Event()
        self._database: Database | None = None
        self._last: Reading | None = None

    def _db(self) -> Database:
        if self._database is None:
            if self.database_url.startswith("sqlite"):
                self._database = Database(self.database_url)
            else:  # a database that is down or stuck answers within seconds, not after TCP's timeouts
                self._database = Database(self.database_url, pool_size=1, max_overflow=0, connect_args={
                    "connect_timeout": 3, "options": "-c statement_timeout=5000"})
        return self._database

    def read_once(self) -> str | None:
        """Take a reading; the line to print (None for the first, which only sets the baseline)."""
        now = self.clock()
        try:
            with self._db().session() as session:
                reading = take_reading(session, self._last, now)
        except Exception as exc:  # noqa: BLE001 - a summary that cannot be read must never stop `run`
            return failure_line(exc)
        previous, self._last = self._last, reading
        if previous is None:
            return None
        return summary_line(reading, reading.at - previous.at)

    def run(self) -> None:
        self.read_once()
        while not self._stop_event.wait(self.interval):
            line = self.read_once()
            if line is not None and not self._stop_event.is_set():
                self.echo(line)

    def stop(self) -> None:
        """Stop printing and close the database connections."""
        self._stop_event.set()
        if self._database is not None:
            self._database.dispose()
