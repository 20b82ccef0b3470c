"""The inbox: events stored through the raw fast path read back exactly, and repeats insert nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import delete, select

from core.records import Event
from storage.db import Database
from storage.inbox import backlog, stale_pending, store_events, to_event
from storage.models import InboxEvent


def make_event(n: int) -> Event:
    return Event(
        source="s", crm="hubspot", object_type="contact", object_id=str(1000 + n), event_type="property_change",
        occurred_at=datetime(2026, 3, 1, 12, 0, n % 60, 123456, tzinfo=timezone(timedelta(hours=-5))),
        received_at=datetime(2026, 3, 1, 17, 0, 1, tzinfo=UTC),
        properties={"email": f"p{n}@example.com", "nested": {"n": n}, "_meta": {"eventId": n}},
        dedupe_key=f"{n:064d}", email=f"p{n}@example.com",
    )


def test_round_trip_and_dedupe(db: Database) -> None:
    with db.session() as session:
        session.execute(delete(InboxEvent))
    events = [make_event(n) for n in range(120)]
    with db.session() as session:
        ids = store_events(session, events, None)
    assert len(ids) == 120
    with db.session() as session:
        again = store_events(session, events[:10] + [make_event(500)], None)
    assert len(again) == 1
    with db.session() as session:
        rows = session.scalars(select(InboxEvent).where(InboxEvent.id.in_(ids)).order_by(InboxEvent.id)).all()
        restored = [to_event(row, "s") for row in rows]
        assert restored == events
        assert backlog(session) == 121
        # received in 2026: all of them are older than a minute and count as stale for the sweeper
        assert len(stale_pending(session, timedelta(minutes=1), limit=1000)) == 121
        assert stale_pending(session, timedelta(days=365 * 50), limit=1000) == []
        session.execute(delete(InboxEvent))


def test_values_json_libraries_disagree_on_round_trip_too(db: Database) -> None:
    """Integers beyond 64 bits, non-ASCII text and a NUL in an id: stored, read back, never a server error."""
    with db.session() as session:
        session.execute(delete(InboxEvent))
    odd = Event(
        source="s", crm="hubspot", object_type="contact", object_id="12\x0034", event_type="property_change",
        occurred_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), received_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        properties={"big": 2**70, "name": "Zoë Ñúñez ✓", "_meta": {"eventId": 1}}, dedupe_key="f" * 64, email=None,
    )
    with db.session() as session:
        ids = store_events(session, [odd], None)
    with db.session() as session:
        row = session.get(InboxEvent, ids[0])
        assert row is not None
        assert row.properties == {"big": 2**70, "name": "Zoë Ñúñez ✓", "_meta": {"eventId": 1}}
        assert row.object_id in ("1234", "12\x0034")  # PostgreSQL text cannot hold NUL; SQLite keeps it
        session.execute(delete(InboxEvent))
