"""Score movement in the CRM: previous score, change, trend, last change and what changed, as a score rises then falls.

HubSpot over a real worker process (webhooks in, the real hubspot-api-client writing to the sandbox); Salesforce
through the same ingest, score and writeback functions in this process with the real simple-salesforce (a worker
process cannot reach the sandbox's Salesforce: simple-salesforce only speaks https, and only an in-process
session routes it to the plain-http sandbox). Every value is read back through the vendor SDK.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from connectors.hubspot.client import HubSpotConnector
from connectors.hubspot.fields import SCORE_FIELD_NAMES as HS
from connectors.salesforce.fields import SCORE_FIELD_NAMES as SF
from core.records import utcnow
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from scoring.movement import DECLINING, IMPROVING, STEADY, trend_of
from storage.db import Database
from storage.models import Lead, ScoreHistory
from tasks.maintenance import settle_lead_trends
from tasks.resources import Resources
from tasks.writeback import flush_once
from tests.connectors.conftest import Receiver, receiver, salesforce_for  # noqa: F401 - receiver: fixture
from tests.pii import hubspot_event
from tests.processes import wait_for
from tests.tasks.conftest import LivePipeline
from tests.tasks.test_salesforce_conversion import Deliveries, deliver, leads_of, new_lead, pipeline  # noqa: F401

STEADY_POINTS = 5  # the default LEADBRIDGE_TREND_STEADY_POINTS the worker runs with


def hubspot_shown(sandbox: SandboxCRM, contact_id: str) -> dict[str, Any]:
    """The contact's leadbridge fields as hubspot-api-client reads them."""
    api = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).api
    contact = api.crm.contacts.basic_api.get_by_id(contact_id, properties=list(HS.values()))
    return {key: contact.properties.get(name) for key, name in HS.items()}


def salesforce_shown(sandbox: SandboxCRM, sobject: str, record_id: str) -> dict[str, Any]:
    """The record's Leadbridge fields as simple-salesforce reads them."""
    record = getattr(salesforce_for(sandbox).sf, sobject).get(record_id)
    return {key: record.get(name) for key, name in SF.items()}


def number(value: Any) -> int | None:
    return None if value in (None, "") else int(float(value))


def track(email: str, name: str) -> dict[str, Any]:
    return {"type": "track", "userId": email, "event": name, "properties": {}, "context": {"traits": {"email": email}},
            "timestamp": datetime.now(UTC).isoformat(), "messageId": uuid.uuid4().hex}


def test_hubspot_contact_shows_its_score_rise_then_fall(live_pipeline: LivePipeline) -> None:
    p = live_pipeline
    email = "mo@initech.com"
    contact = p.sandbox.store.hs_create("contacts", {"email": email, "firstname": "Mo", "jobtitle": "VP Sales",
                                                     "company": "Initech"})["id"]

    def lead_score() -> int | None:
        with p.db.session() as session:
            return session.scalar(select(Lead.score).where(Lead.email == email))

    def shown_after(old: int | None) -> dict[str, Any]:
        """What the contact shows once the pipeline has stored and written a score other than `old`."""
        p.settled()
        wait_for(lambda: lead_score() not in (None, old), 60, "a new score stored")
        wait_for(lambda: number(hubspot_shown(p.sandbox, contact)["score"]) == lead_score(), 60,
                 "the stored score on the HubSpot contact")
        time.sleep(1.0)  # enrichment may re-score once more: wait until nothing moves
        wait_for(lambda: number(hubspot_shown(p.sandbox, contact)["score"]) == lead_score(), 60, "settled")
        return hubspot_shown(p.sandbox, contact)

    at = int(time.time() * 1000)
    body = json.dumps([hubspot_event("contact.creation", int(contact), at)]).encode()
    assert p.signer.hubspot(p.hubspot, body).status_code == 202
    first = shown_after(None)
    s0 = number(first["score"])
    with p.db.session() as session:
        # The first score ever (before enrichment read the title, if it came first): the trend window's start.
        start = session.scalar(select(ScoreHistory.score).join(Lead, Lead.id == ScoreHistory.lead_id)
                               .where(Lead.email == email).order_by(ScoreHistory.id).limit(1))

    # Rises: a demo request.
    assert p.signer.events(p.events, json.dumps({"batch": [track(email, "Demo Requested")]}).encode()).status_code == 202
    risen = shown_after(s0)
    s1 = number(risen["score"])
    assert s0 is not None and s1 is not None and s1 > s0
    assert (number(risen["previous_score"]), number(risen["score_change"])) == (s0, s1 - s0)
    assert risen["score_trend"] == IMPROVING == trend_of(s1, start, STEADY_POINTS)
    assert risen["score_change_reason"].startswith(f"+{s1 - s0}: ") and "demo" in risen["score_change_reason"]
    assert risen["score_changed_at"]

    # Falls: the contact turns out to be a student (the title changes in HubSpot, the webhook says so).
    p.sandbox.store.hs_update("contacts", contact, {"jobtitle": "Student"}, source="CRM_UI")
    body = json.dumps([hubspot_event("contact.propertyChange", int(contact), int(time.time() * 1000),
                                     propertyName="jobtitle", propertyValue="Student")]).encode()
    assert p.signer.hubspot(p.hubspot, body).status_code == 202
    fallen = shown_after(s1)
    s2 = number(fallen["score"])
    assert s2 is not None and s2 < s1
    assert (number(fallen["previous_score"]), number(fallen["score_change"])) == (s1, s2 - s1)
    # Over the window the score is compared with the one held at its start: the first score.
    assert fallen["score_trend"] == trend_of(s2, start, STEADY_POINTS)
    assert fallen["score_change_reason"] == f"-{s1 - s2}: student; no longer senior decision maker"
    assert fallen["score_changed_at"] != risen["score_changed_at"]
    with p.db.session() as session:
        lead = session.scalars(select(Lead).where(Lead.email == email)).one()
        assert (lead.score, lead.previous_score, lead.score_trend) == (s2, s1, fallen["score_trend"])


def test_salesforce_lead_shows_its_score_rise_then_fall_and_the_trend_settles(
        pipeline: Resources, sandbox: SandboxCRM, receiver: Receiver, db: Database) -> None:  # noqa: F811
    res = pipeline
    feed = Deliveries(sandbox, receiver, "00D5g000004ABCDEA2")
    mark = feed.mark()
    lead_sf = sandbox.store.sf_create("Lead", {"FirstName": "Jo", "LastName": "Diaz", "Email": "jo@acme.io",
                                               "Title": "Engineer", "Company": "Acme"}, source="CRM_UI")
    deliver(res, feed.after(mark, "Lead", lead_sf))
    first = salesforce_shown(sandbox, "Lead", lead_sf)
    s0 = number(first["score"])
    assert s0 is not None
    assert all(first[k] is None for k in ("previous_score", "score_change", "score_trend", "score_changed_at",
                                           "score_change_reason"))

    def retitle(title: str) -> dict[str, Any]:
        feed.quiet()
        mark = feed.mark()
        sandbox.store.sf_update("Lead", lead_sf, {"Title": title}, source="CRM_UI")
        deliver(res, feed.after(mark, "Lead", f"<sf:Title>{title}</sf:Title>"))
        return salesforce_shown(sandbox, "Lead", lead_sf)

    risen = retitle("VP Sales")  # c-level or VP: +10
    s1 = number(risen["score"])
    assert s1 == s0 + 10
    assert (number(risen["previous_score"]), number(risen["score_change"]), risen["score_trend"]) == (s0, 10, IMPROVING)
    assert risen["score_change_reason"] == "+10: senior decision maker"
    assert risen["score_changed_at"]

    fallen = retitle("Student")  # no longer VP (-10), a student (-15)
    s2 = number(fallen["score"])
    assert s2 == s1 - 25
    # Against the score held at the window's start (the first score): -15, beyond the steady band.
    assert (number(fallen["previous_score"]), number(fallen["score_change"]), fallen["score_trend"]) == (
        s1, -25, DECLINING)
    reason = fallen["score_change_reason"]
    assert reason == "-25: student; no longer senior decision maker"

    # A day later with no new score: the beat sweep settles the trend, once, and the writeback shows it.
    [(lead_id, _)] = leads_of(db, "jo@acme.io")
    with db.session() as session:
        session.execute(update(Lead).where(Lead.id == lead_id).values(
            score_changed_at=utcnow() - timedelta(hours=25)))
    assert settle_lead_trends(res) == 1
    assert flush_once(res, "salesforce") == 1  # the one write the settling costs
    assert flush_once(res, "salesforce") == 0
    settled = salesforce_shown(sandbox, "Lead", lead_sf)
    assert settled["score_trend"] == STEADY
    assert (number(settled["score"]), number(settled["previous_score"]), settled["score_change_reason"]) == (
        s2, s1, reason)
    assert settle_lead_trends(res) == 0  # nothing left to settle: no write per lead per tick
    assert flush_once(res, "salesforce") == 0
