"""Poison drills: one bad row, one lead whose values break scoring, one write the CRM refuses, with traffic flowing.

No webhook body can carry such a value any more (core.values checks every value at the boundary), so each
poison is planted past the boundary, as a bug, an older version or a changed feature declaration could leave
it: an inbox row whose properties are not an object; a lead whose activity in Redis names a stream the
features no longer declare; a lead whose stored grade is not one the CRM's field allows. Each must become
exactly one dead letter while every good event is processed and every other lead's score reaches the CRM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, update

from storage.models import DeadLetter, InboxEvent, Lead, LeadCrmId
from tests.crm_ids import crm_id, has_id
from tests.drills.conftest import Stack, report, wait

GOOD_EVENTS = 10_000


def dead_letters(stack: Stack) -> list[DeadLetter]:
    with stack.db.session() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def statuses(stack: Stack) -> dict[str, int]:
    with stack.db.session() as session:
        return {s: int(c) for s, c in session.execute(select(InboxEvent.status, func.count())
                                                       .group_by(InboxEvent.status))}


def some_lead(stack: Stack) -> tuple[int, str, str]:
    """(lead id, HubSpot id, e-mail) of a scored lead known to the CRM."""
    with stack.db.session() as session:
        lead = session.scalars(select(Lead).where(has_id("hubspot"), Lead.score.is_not(None),
                                                  Lead.email.is_not(None)).order_by(Lead.id)).first()
        assert lead is not None
        return lead.id, str(crm_id(session, lead.id, "hubspot")), str(lead.email)


def with_first_traffic(make_stack: Callable[..., Stack],
                       broker_number: int) -> tuple[Stack, int, tuple[int, str, str]]:
    """A one-worker stack with people in the CRM and 500 events processed: (stack, people, some_lead)."""
    stack = make_stack(broker_number)
    stack.start(workers=1)
    people = stack.add_people()
    stack.send_many(500)
    stack.converge(120, "the first traffic")
    return stack, people, some_lead(stack)


@pytest.mark.slow
def test_a_poison_row_among_ten_thousand_good_events(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(10)
    stack.start(workers=1)
    people = stack.add_people()
    poison: list[int] = []

    def plant(batch: int) -> None:
        if batch != 200:
            return
        # Properties that are a JSON array, not an object: the lead resolver cannot read them.
        now = datetime.now(UTC)
        with stack.db.session() as session:
            contact = session.scalar(select(LeadCrmId.object_id).where(LeadCrmId.crm == "hubspot"))
            row = session.execute(insert(InboxEvent).values(
                source_id=stack.hubspot_source.id, dedupe_key="poison-row", crm="hubspot", object_type="contact",
                object_id=contact, event_type="property_change", email=None, properties=[1, 2, 3],
                occurred_at=now, received_at=now, status="pending", attempts=0).returning(InboxEvent.id)).scalar_one()
        poison.append(row)
        stack.celery.send_task("tasks.ingest.process_events", kwargs={"ids": [row]})

    started = time.monotonic()
    accepted = stack.send_many(GOOD_EVENTS, batch_size=25, between=plant)
    assert accepted == GOOD_EVENTS and poison
    took = stack.converge(240, "all good events processed and written with a poison row among them")
    wait(lambda: [d for d in dead_letters(stack) if d.status == "open"], 60, "the poison row's dead letter")
    letters = dead_letters(stack)
    assert [(d.stage, d.inbox_id, d.status) for d in letters] == [("ingest", poison[0], "open")]
    assert letters[0].attempts == 5 and "AttributeError" in letters[0].error
    counts = statuses(stack)
    assert counts.get("dead") == 1 and not counts.get("pending") and not counts.get("failed"), counts
    assert counts.get("done", 0) + counts.get("ignored", 0) >= GOOD_EVENTS
    report("poison row", converged=took, total=time.monotonic() - started, people=people, good_events=accepted,
           dead_letters=len(letters), attempts=letters[0].attempts)


@pytest.mark.slow
def test_a_lead_whose_values_break_scoring(make_stack: Callable[..., Stack]) -> None:
    stack, people, (lead_id, hubspot_id, email) = with_first_traffic(make_stack, 11)
    # An activity entry of a stream the features no longer declare (a renamed feature, old data in Redis).
    stack.redis.zadd(f"lb:fs:a:{lead_id}", {"retired_stream|old-event": int(time.time() * 1000)})
    stack.set_aside.add(lead_id)
    before = stack.crm_scores()[hubspot_id]

    stack.send_many(2000)
    stack.celery.send_task("tasks.score.score_leads", args=[[lead_id]])
    took = stack.converge(180, "every other lead scored and written")
    wait(lambda: [d for d in dead_letters(stack) if d.status == "open"], 60, "the lead's dead letter")
    letters = dead_letters(stack)
    assert [(d.stage, d.lead_id, d.status) for d in letters] == [("score", lead_id, "open")]
    assert "KeyError" in letters[0].error and letters[0].attempts == 5
    assert "raw_traits" in letters[0].payload["features"] or letters[0].payload["features"]
    assert stack.redis.sismember("lb:aside:score", lead_id)
    assert stack.crm_scores()[hubspot_id] == before  # its CRM field keeps its last good score
    assert not statuses(stack).get("pending") and not statuses(stack).get("dead")
    report("poison score", converged=took, people=people, dead_letters=len(letters), attempts=letters[0].attempts)


@pytest.mark.slow
def test_a_write_the_crm_refuses(make_stack: Callable[..., Stack]) -> None:
    stack, people, (lead_id, hubspot_id, _) = with_first_traffic(make_stack, 12)
    with stack.db.session() as session:
        # A grade the CRM's enumeration field does not allow: HubSpot refuses the whole batch update (400).
        session.execute(update(Lead).where(Lead.id == lead_id).values(grade="Z", scored_at=datetime.now(UTC)))
    stack.set_aside.add(lead_id)
    before = stack.crm_scores()[hubspot_id]

    def mark(batch: int) -> None:
        if batch == 10:
            stack.redis.sadd("lb:dirty:hubspot", lead_id)

    stack.send_many(2000, between=mark)
    took = stack.converge(180, "every other lead written")
    wait(lambda: [d for d in dead_letters(stack) if d.status == "open"], 60, "the refused write's dead letter")
    letters = dead_letters(stack)
    assert [(d.stage, d.crm, d.lead_id, d.status) for d in letters] == [("writeback", "hubspot", lead_id, "open")]
    assert "INVALID_OPTION" in letters[0].error or "allowed options" in letters[0].error
    assert letters[0].payload["values"]["grade"] == "Z"
    assert stack.crm_scores()[hubspot_id] == before
    report("poison write", converged=took, people=people, dead_letters=len(letters))
