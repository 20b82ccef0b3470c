"""Hostile but correctly signed bodies, through a real worker: clear answers, no stall, good events still land.

Every class of hostile value (huge and non-finite numbers as numbers and as strings, lone surrogates, NUL,
deep nesting, huge strings, wrong types, out-of-range timestamps, 5,000-entry batches) goes to the HubSpot,
Salesforce (SOAP and JSON) and behavioural-events endpoints. Each answer is a 2xx or a 4xx naming the
problem; the worker processes everything that was accepted (no dead letters: the values were checked at the
boundary); and normal events sent behind them reach the CRM within seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.models import DeadLetter, InboxEvent, Lead
from tests.hostile import (
    events_hostile_batches,
    hubspot_event,
    hubspot_hostile_batches,
    iso_now,
    raw_json,
    salesforce_json_hostile_batches,
    salesforce_soap_hostile_batches,
    segment_identify,
)
from tests.processes import wait_for
from tests.tasks.conftest import SALESFORCE_ORG, LivePipeline

WRITE_WITHIN = 30.0  # seconds; at idle it is well under one


def assert_clear_answer(response: Any, soap: bool = False) -> None:
    """2xx or a 4xx whose body names the problem; never a 5xx or a traceback."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:500]
    assert "Traceback" not in text
    if soap:
        assert "Ack" in text or "faultstring" in text
        return
    body = response.get_json()
    assert isinstance(body, dict), text[:200]
    if response.status_code >= 400:
        assert body.get("error") and body.get("message"), body


@pytest.mark.slow
def test_hostile_bodies_are_answered_and_good_events_behind_them_reach_the_crm(live_pipeline: LivePipeline) -> None:
    p = live_pipeline
    store = p.sandbox.store
    victim = store.hs_create("contacts", {"email": "hostile@acme.io", "firstname": "Hos"})["id"]
    statuses: dict[str, list[int]] = {"hubspot": [], "events": [], "salesforce json": [], "salesforce soap": []}
    for body in hubspot_hostile_batches():
        response = p.signer.hubspot(p.hubspot, body)
        assert_clear_answer(response)
        statuses["hubspot"].append(response.status_code)
    for body in events_hostile_batches("hostile@acme.io"):
        response = p.signer.events(p.events, body) if _utf8(body) else None
        if response is not None:
            assert_clear_answer(response)
            statuses["events"].append(response.status_code)
    for body in salesforce_json_hostile_batches("hostile@acme.io"):
        response = p.signer.salesforce_json(p.salesforce, body)
        assert_clear_answer(response)
        statuses["salesforce json"].append(response.status_code)
    for body in salesforce_soap_hostile_batches("hostile@acme.io", SALESFORCE_ORG):
        response = p.signer.salesforce_soap(p.salesforce, body)
        assert_clear_answer(response, soap=True)
        statuses["salesforce soap"].append(response.status_code)
    # Each endpoint accepted something (the good parts of bad batches) and refused something (the 5,000-entry
    # batches, bodies nested 5,000 deep, bodies that are not JSON/XML).
    for kind, codes in statuses.items():
        assert any(c in (200, 202) for c in codes), (kind, codes)
        assert any(c == 400 for c in codes), (kind, codes)

    # The worker gets through every accepted row: nothing stays pending, no row is a dead letter.
    p.settled(120)
    assert p.unfinished() == {}
    with p.db.session() as session:
        accepted = session.scalar(select(func.count()).select_from(InboxEvent))
    assert accepted and accepted > 50

    # The person whose traits carried 1e30 employees, NUL and lone surrogates was resolved and scored. Scoring
    # is the stage after the inbox, so a drained inbox does not yet mean a score: wait for it.
    def hostile_scores() -> list[int | None]:
        with p.db.session() as session:
            return list(session.scalars(select(Lead.score).where(Lead.email == "hostile@acme.io").order_by(Lead.id)))

    wait_for(lambda: hostile_scores() and None not in hostile_scores(), WRITE_WITHIN, "the hostile leads' scores")
    with p.db.session() as session:
        letters = [(d.stage, d.error) for d in session.scalars(select(DeadLetter))]
    # Nothing failed in ingest or scoring. The hostile HubSpot events name contact ids the CRM does not have:
    # writing their scores is refused (OBJECT_NOT_FOUND), each set aside as a writeback dead letter.
    assert [d for d in letters if d[0] != "writeback"] == []
    assert all(error.startswith("OBJECT_NOT_FOUND") for _, error in letters), letters

    # Normal events behind the hostile ones, one per endpoint, each for a contact in the CRM.
    contacts = {kind: store.hs_create("contacts", {"email": f"good-{kind}@acme.io", "firstname": kind})["id"]
                for kind in ("hubspot", "events", "salesforce")}
    started = time.time()
    response = p.signer.hubspot(p.hubspot, raw_json([hubspot_event(
        subscriptionType="contact.creation", objectId=int(contacts["hubspot"]), propertyName=None,
        propertyValue=None)]))
    assert response.status_code == 202, response.get_data(as_text=True)
    response = p.signer.events(p.events, raw_json({"batch": [
        segment_identify("good-events", {"email": "good-events@acme.io", "title": "VP Sales", "employees": 250}),
        {"type": "track", "userId": "good-events", "event": "Demo Requested", "timestamp": iso_now(),
         "messageId": "good-demo", "context": {"traits": {"email": "good-events@acme.io"}}}]}))
    assert response.status_code == 202, response.get_data(as_text=True)
    response = p.signer.salesforce_json(p.salesforce, json.dumps([{
        "object": "Lead", "id": "00Q5g00000GOODAAAA", "type": "created", "occurredAt": iso_now(),
        "eventId": "good-sf", "fields": {"Email": "good-salesforce@acme.io", "Company": "Acme",
                                         "NumberOfEmployees": 120}}]).encode())
    assert response.status_code == 202, response.get_data(as_text=True)

    took = {}
    for kind, contact_id in contacts.items():
        wait_for(lambda c=contact_id: p.crm_score(c) is not None, WRITE_WITHIN,
                 f"the score of the {kind} contact written to the CRM")
        took[kind] = round(time.time() - started, 2)
    # And the person with hostile values reached the CRM too (the bad values dropped, the rest kept).
    wait_for(lambda: p.crm_score(victim) is not None, WRITE_WITHIN, "the hostile person's score in the CRM")
    print(f"normal events written after the hostile bodies within {took} s")


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
