"""forget_person against a worker that is turning the person's pending events into a lead at that very moment,
and on rows no worker will read."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from core.records import utcnow
from storage.db import Database
from storage.models import InboxEvent, Lead
from storage.privacy import find_person, forget_person
from tasks.ingest import ingest_rows
from tests.pii import ERIN, World, redis_containing, rows_containing, segment


def test_a_lead_a_worker_commits_meanwhile_is_forgotten_too(world: World, db: Database) -> None:
    world.deliver_events([segment("identify", "u_erin", ERIN, traits={"email": ERIN, "firstName": "Erin"}),
                          segment("page", "u_erin", ERIN, properties={"url": "https://example.com/pricing"})])
    with db.session() as session:
        pending = list(session.scalars(select(InboxEvent.id).where(InboxEvent.status == "pending")))
    working, commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with db.session(write=True) as session:
                assert ingest_rows(session, pending, world.res).processed == 2  # Erin's lead, rows locked
                working.set()
                commit.wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            working.set()

    def forget() -> None:
        try:
            with db.session(write=True) as session:
                # PostgreSQL: the lead is not committed yet, so not seen here; deleting the rows waits for the
                # worker. SQLite: this transaction waits for the worker's (one writer).
                forget_person(session, find_person(session, emails=[ERIN]), redis=world.res.redis, actor="test")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    first = threading.Thread(target=worker)
    first.start()
    assert working.wait(10)
    second = threading.Thread(target=forget)
    second.start()
    time.sleep(0.5)  # the purge is under way and waiting on the worker
    commit.set()
    first.join(20)
    second.join(20)
    assert errors == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0
    assert rows_containing(db, ERIN) == [] and rows_containing(db, "u_erin") == []
    assert redis_containing(world.res.redis, ERIN) == []


def test_a_discarded_row_that_names_the_person_only_in_its_payload_is_forgotten(world: World, db: Database) -> None:
    """An admin's discard leaves a row unprocessed: its payload may be the only place the e-mail is (no lead)."""
    now = utcnow()
    with db.session() as session:
        session.add(InboxEvent(crm="hubspot", object_type="contact", object_id="7311", event_type="property_change",
                               email=None, properties={"notes": f"call {ERIN} back"}, dedupe_key="discarded-erin",
                               occurred_at=now, received_at=now, status="discarded", attempts=2))
    with db.session(write=True) as session:
        purged = forget_person(session, find_person(session, emails=[ERIN]), redis=None, actor="test")
    assert purged["events"] == 1
    assert rows_containing(db, ERIN) == []
