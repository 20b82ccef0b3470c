"""HubSpot deletions purge the person: contact.privacyDeletion and contact.deletion, through the real webhook path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from core.runtime import ServiceUrls
from storage.db import Database
from storage.models import AuditEntry, InboxEvent, Lead, ScoreHistory
from tests.pii import (
    BOB,
    DANA,
    World,
    hubspot_event,
    make_world,
    person_everywhere,
    redis_containing,
    rows_containing,
)


@pytest.fixture()
def world(db: Database, redis_url: str, settings_overrides: dict[str, Any],
          service_urls: ServiceUrls) -> Iterator[World]:
    yield from make_world(db, redis_url, settings_overrides, service_urls)


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
