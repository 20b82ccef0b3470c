"""The numbers in `leadbridge run`'s summary line, read from a real database; a database that is down is a warning."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import delete

from cli.run_summary import RunSummary, dead_letter_count, summary_line, take_reading
from core.records import utcnow
from storage.db import Database
from storage.models import DeadLetter, InboxEvent, OutboxItem


def inbox_row(status: str) -> InboxEvent:
    return InboxEvent(dedupe_key=uuid.uuid4().hex, crm="events", object_type="contact", object_id="summary-test",
                      event_type="page", properties={}, occurred_at=utcnow(), status=status)


def outbox_row(kind: str, status: str, payload: dict[str, int], object_type: str = "batch") -> OutboxItem:
    return OutboxItem(target="hubspot", kind=kind, object_type=object_type, object_id="summary-test", payload=payload,
                      status=status)


def test_a_reading_counts_what_happened_since_the_previous_one(db: Database) -> None:
    with db.session() as session:
        before = take_reading(session, None, now=100.0)
        base_dead = dead_letter_count(session)
    assert before.received == 0 and before.written == 0
    try:
        with db.session(write=True) as session:
            session.add_all([inbox_row("pending"), inbox_row("pending"), inbox_row("pending"), inbox_row("done")])
            session.add_all([
                outbox_row("fields", "sent", {"records": 5, "written": 4}),
                outbox_row("fields", "partial", {"records": 3, "written": 2}),
                outbox_row("alert", "sent", {"written": 99}, object_type="contact"),  # a Slack message, not a lead
                outbox_row("fields", "dead", {}, object_type="contact"),  # a refused record: its dead letter counts
            ])
            session.add_all([DeadLetter(stage="score", error="boom", attempts=5, payload={}, status="open"),
                             DeadLetter(stage="score", error="boom", attempts=5, payload={}, status="discarded")])
        with db.session() as session:
            after = take_reading(session, before, now=110.0)
        assert after.received == 4
        assert after.written == 6
        assert after.backlog - before.backlog == 3
        assert after.dead_letters - base_dead == 1  # the open one (the discarded one is resolved)
        line = summary_line(after, after.at - before.at, clock=datetime(2026, 1, 2, 3, 4, 5))
        assert line == (f"[03:04:05] 0.4 events/s received, backlog {after.backlog:,}, 6 leads written in 10s, "
                        f"{after.dead_letters:,} dead letters")
        with db.session() as session:
            quiet = take_reading(session, after, now=120.0)
        assert quiet.received == 0 and quiet.written == 0  # nothing new since
    finally:
        with db.session(write=True) as session:
            session.execute(delete(DeadLetter).where(DeadLetter.error == "boom", DeadLetter.stage == "score"))
            session.execute(delete(OutboxItem).where(OutboxItem.object_id == "summary-test"))
            session.execute(delete(InboxEvent).where(InboxEvent.object_id == "summary-test"))


def test_a_database_that_does_not_answer_is_a_warning_line() -> None:
    summary = RunSummary("postgresql+psycopg://leadbridge@127.0.0.1:1/none", interval=1.0)
    try:
        line = summary.read_once()
    finally:
        summary.stop()
    assert line is not None
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] summary unavailable: database not answering \(\w+\)", line), line
