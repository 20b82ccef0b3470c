"""HubSpot deletions purge the person: contact.privacyDeletion and contact.deletion, through the real webhook path."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import AuditEntry, DeadLetter, InboxEvent, Lead, ScoreHistory
from tasks.ingest import ingest_rows
from tests.pii import (BOB, DANA, ERIN, World, hubspot_event, person_everywhere, redis_containing,
                       rows_containing)


@pytest.mark.parametrize("subscription", ["contact.privacyDeletion", "contact.deletion"])
def test_deletion_webhook_purges_everything(world: World, db: Database, subscription: str) -> None:
    dana_id = person_everywhere(world)
    world.deliver_hubspot([hubspot_event(subscription, 101, int(time.time() * 1000))])
    world.process()
    assert rows_containing(db, DANA) == []
    assert redis_containing(world.res.redis, DANA) == []
    assert redis_containing(world.broker, DANA) == []
    with db.session() as session:
        assert session.get(Lead, dana_id) is None
        assert session.scalar(select(func.count()).select_from(ScoreHistory).where(
            ScoreHistory.lead_id == dana_id)) == 0
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.forget")).one()
        assert entry.actor == "webhook:hubspot" and entry.target == f"lead:{dana_id}"
        assert session.scalars(select(Lead).where(Lead.email == BOB)).one() is not None
    assert redis_containing(world.res.redis, BOB)


def test_events_in_the_same_batch_do_not_bring_the_person_back(world: World, db: Database) -> None:
    """A batch holding the person's changes before and after the deletion leaves nothing behind."""
    now_ms = int(time.time() * 1000)
    world.deliver_hubspot([
        hubspot_event("contact.propertyChange", 202, now_ms - 3000, propertyName="email", propertyValue=DANA),
        hubspot_event("contact.propertyChange", 202, now_ms - 2500, propertyName="jobtitle", propertyValue="CEO"),
        hubspot_event("contact.privacyDeletion", 202, now_ms - 2000),
        hubspot_event("contact.propertyChange", 202, now_ms - 1000, propertyName="firstname", propertyValue="Dana"),
    ])
    world.process()
    assert rows_containing(db, DANA) == []
    assert redis_containing(world.res.redis, DANA) == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.object_id == "202")) == 0
    assert not list(world.res.redis.scan_iter("lb:fs:t:*"))


def test_company_deletion_is_not_a_person_deletion(world: World, db: Database) -> None:
    dana_id = person_everywhere(world)
    world.deliver_hubspot([hubspot_event("company.deletion", 101, int(time.time() * 1000))])
    world.process()
    with db.session() as session:
        assert session.get(Lead, dana_id) is not None


def test_deletion_purges_events_still_pending_when_no_lead_exists(world: World, db: Database) -> None:
    """The contact's events wait in the inbox (no worker has read them): the deletion removes them before they
    can make a lead, its dead letters with them."""
    now_ms = int(time.time() * 1000)
    world.deliver_hubspot([
        hubspot_event("contact.creation", 303, now_ms - 3000),
        hubspot_event("contact.propertyChange", 303, now_ms - 2500, propertyName="email", propertyValue=ERIN),
    ])
    with db.session() as session:
        rows = list(session.scalars(select(InboxEvent).where(InboxEvent.object_id == "303")))
        assert len(rows) == 2 and {r.status for r in rows} == {"pending"}
        rows[0].status = "dead"  # one of them already failed for good: an ingest dead letter
        session.add(DeadLetter(stage="ingest", inbox_id=rows[0].id, error="ValueError", payload={"email": ERIN}))
    world.deliver_hubspot([hubspot_event("contact.privacyDeletion", 303, now_ms - 1000)])
    with db.session() as session:
        deletion = session.scalars(select(InboxEvent.id).where(InboxEvent.event_type == "privacy_deletion")).one()
    with db.session(write=True) as session:  # the worker reads the deletion's batch only
        assert ingest_rows(session, [deletion], world.res).processed == 1
    assert rows_containing(db, ERIN) == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.object_id == "303")) == 0
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.forget")).one()
        assert entry.actor == "webhook:hubspot" and entry.target == "person without a lead"
        assert entry.after["events"] == 3 and entry.after["dead_letters"] == 1
    world.process()  # the queued batches of the purged rows find nothing
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_deletion_takes_the_leads_dead_letters(world: World, db: Database) -> None:
    dana_id = person_everywhere(world)
    with db.session() as session:
        session.add(DeadLetter(stage="score", lead_id=dana_id, error="OverflowError", payload={"title": "VP"}))
        session.add(DeadLetter(stage="writeback", crm="hubspot", lead_id=dana_id, error="VALIDATION_ERROR",
                               payload={"leadbridge_grade": "A"}))
    world.deliver_hubspot([hubspot_event("contact.privacyDeletion", 101, int(time.time() * 1000))])
    world.process()
    with db.session() as session:
        assert session.get(Lead, dana_id) is None
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.forget")).one()
        assert entry.after["dead_letters"] == 2


def test_deletion_of_a_contact_never_seen_changes_nothing(world: World, db: Database) -> None:
    person_everywhere(world)
    world.deliver_hubspot([hubspot_event("contact.deletion", 987, int(time.time() * 1000))])
    world.process()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert session.scalar(select(func.count()).select_from(Lead)) == 2
