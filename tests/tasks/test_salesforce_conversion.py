"""A converted Salesforce Lead and its new Contact are one leadbridge lead, on every path.

The sandbox converts Leads as Salesforce does (IsConverted, ConvertedContactId, ConvertedDate) and sends its
own Outbound Messages, caught by a real HTTP receiver so each test chooses the order they arrive in. The
connector is the real simple-salesforce SDK against the sandbox; the live test runs a real worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.webhook import ack_response, parse_salesforce_outbound
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from core.settings import load_settings
from sandbox import SandboxCRM
from storage.db import Database
from storage.inbox import store_events
from storage.models import Lead, LeadCrmId, Outcome, ScoreHistory
from storage.outcomes import record_outcomes
from tasks.backfill import backfill
from tasks.ingest import IngestResult, ingest_isolated
from tasks.resources import Resources
from tasks.score import score_isolated
from tasks.writeback import flush_once
from tests.connectors.conftest import Receiver, admin, receiver, salesforce_for  # noqa: F401 - receiver: fixture
from tests.services import wipe_pipeline
from tests.tasks.conftest import SALESFORCE_ORG, LivePipeline

FIELDS = {
    "Lead": ["FirstName", "LastName", "Email", "Title", "Company", "Industry", "NumberOfEmployees", "Country",
             "Status", "IsConverted", "ConvertedDate", "ConvertedContactId", "ConvertedAccountId"],
    "Contact": ["FirstName", "LastName", "Email", "Title", "MailingCountry", "AccountId"],
}


class Deliveries:
    """The sandbox's Outbound Messages as the receiver got them, one target (and URL) per sObject."""

    def __init__(self, sandbox: SandboxCRM, receiver: Receiver, org: str) -> None:
        self.receiver = receiver
        receiver.answers = [(200, ack_response().decode(), "text/xml")]
        for sobject, fields in FIELDS.items():
            spec = {"kind": "salesforce", "url": f"{receiver.url}?sobject={sobject}", "organization_id": org,
                    "flush_seconds": 0.05, "retry_base_seconds": 0.2, "objects": {sobject: fields}}
            assert admin(sandbox, "POST", "/webhooks", json=spec).status_code == 201

    def quiet(self, for_seconds: float = 0.4) -> None:
        """Wait until no delivery has come for a moment (our own writes echo back)."""
        count = -1
        while count != self.mark():
            count = self.mark()
            time.sleep(for_seconds)

    def mark(self) -> int:
        """Where the deliveries stand now (pass to `after`)."""
        with self.receiver.lock:
            return len(self.receiver.received)

    def after(self, mark: int, sobject: str, contains: str) -> bytes:
        """The first message about `sobject` received after `mark` whose body contains `contains`."""
        def found(items: list[Any]) -> bool:
            return any(self._match(r, sobject, contains) for r in items[mark:])

        items = self.receiver.wait_for(found, timeout=15)
        return next(r.body for r in items[mark:] if self._match(r, sobject, contains))

    @staticmethod
    def _match(item: Any, sobject: str, contains: str) -> bool:
        return item.url.endswith(f"sobject={sobject}") and contains.encode() in item.body


def new_lead(sandbox: SandboxCRM, email: str) -> str:
    """A Lead a sales user creates."""
    return sandbox.store.sf_create("Lead", {"FirstName": "Ana", "LastName": "Lopez", "Email": email,
                                            "Title": "Head of Sales", "Company": "Acme", "Industry": "Software",
                                            "NumberOfEmployees": 250, "Country": "Spain"}, source="CRM_UI")


def leads_of(db: Database, email: str) -> list[tuple[int, set[str]]]:
    """(lead id, its Salesforce record ids) of every lead with this e-mail."""
    with db.session() as session:
        rows = session.execute(select(Lead.id, LeadCrmId.object_id).join(LeadCrmId, LeadCrmId.lead_id == Lead.id)
                               .where(Lead.email == email).order_by(Lead.id)).all()
    out: dict[int, set[str]] = {}
    for lead_id, object_id in rows:
        out.setdefault(lead_id, set()).add(object_id)
    return sorted(out.items())


def outcomes_of(db: Database, lead_id: int) -> list[tuple[bool, str, datetime]]:
    with db.session() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(Outcome.won, Outcome.source, Outcome.occurred_at).where(Outcome.lead_id == lead_id))]


def converted_at(sandbox: SandboxCRM, lead_sf_id: str) -> datetime:
    """The ConvertedDate the sandbox Lead shows, as the instant both paths record."""
    return datetime.fromisoformat(sandbox.store.sf_get("Lead", lead_sf_id)["ConvertedDate"]).replace(tzinfo=UTC)


# ---- in this process: ingest, score and writeback code on a Resources with the Salesforce connector --------


@pytest.fixture()
def pipeline(sandbox: SandboxCRM, db: Database, redis_url: str, settings_overrides: dict[str, Any],
             service_urls: ServiceUrls) -> Iterator[Resources]:
    """Worker resources whose Salesforce connector is the real SDK on the sandbox, over emptied tables and keys."""
    client = make_redis_client(redis_url)
    wipe_pipeline(db, client)
    res = Resources(load_settings(settings_overrides, env_file=None), service_urls, db, client)
    connector = salesforce_for(sandbox)
    connector.provision_fields(create=True)
    res._connectors["salesforce"] = connector
    yield res


def deliver(res: Resources, body: bytes) -> IngestResult:
    """What a worker does with one delivered Outbound Message: store, ingest, score, write back."""
    events = parse_salesforce_outbound(body, source="salesforce", received_at=datetime.now(UTC),
                                       org_id=SALESFORCE_ORG).events
    with res.db.session(write=True) as session:
        ids = store_events(session, events, None)
    result = ingest_isolated(res, ids)
    moved = sorted(set(result.retargeted) & result.leads)
    score_isolated(res, sorted(result.leads), "event", mark_writes=True, also_write=moved)
    while flush_once(res, "salesforce"):
        pass
    return result


def delivered_lead(res: Resources, feed: Deliveries, sandbox: SandboxCRM, db: Database,
                   email: str) -> tuple[str, int, set[str]]:
    """A new Salesforce Lead, delivered: (its Salesforce id, the leadbridge lead id, the records that lead stands for)."""
    mark = feed.mark()
    lead_sf = new_lead(sandbox, email)
    deliver(res, feed.after(mark, "Lead", lead_sf))
    [(lead_id, records)] = leads_of(db, email)
    return lead_sf, lead_id, records


def shown_score(sandbox: SandboxCRM, sobject: str, record_id: str) -> int | None:
    value = sandbox.store.sf_get(sobject, record_id).get("Leadbridge_Score__c")
    return None if value is None else int(value)


def test_a_conversion_links_the_contact_and_moves_the_writes_to_it(pipeline: Resources, sandbox: SandboxCRM,
                                                                   receiver: Receiver, db: Database) -> None:
    res = pipeline
    feed = Deliveries(sandbox, receiver, SALESFORCE_ORG)
    lead_sf, lead_id, records = delivered_lead(res, feed, sandbox, db, "ana@acme.io")
    assert records == {lead_sf}
    with db.session() as session:
        score = session.get(Lead, lead_id).score
    assert score is not None and shown_score(sandbox, "Lead", lead_sf) == score
    feed.quiet()

    mark = feed.mark()
    contact_sf = sandbox.store.sf_convert_lead(lead_sf, won=None)["ContactId"]
    result = deliver(res, feed.after(mark, "Lead", "<sf:IsConverted>true"))
    # One lead, standing for both records; the Contact now takes the writes, though the score did not move.
    assert leads_of(db, "ana@acme.io") == [(lead_id, {lead_sf, contact_sf})]
    assert result.retargeted == {lead_id: {"salesforce"}}
    with db.session() as session:
        assert session.get(Lead, lead_id).score == score
    assert shown_score(sandbox, "Contact", contact_sf) == score
    assert outcomes_of(db, lead_id) == [(True, "salesforce.lead", converted_at(sandbox, lead_sf))]

    # The Contact's own events (its creation, then a sales user's edit) update that lead, never a second one.
    deliver(res, feed.after(mark, "Contact", contact_sf))
    mark = feed.mark()
    sandbox.store.sf_update("Contact", contact_sf, {"Title": "Chief Revenue Officer"}, source="CRM_UI")
    deliver(res, feed.after(mark, "Contact", "Chief Revenue Officer"))
    assert leads_of(db, "ana@acme.io") == [(lead_id, {lead_sf, contact_sf})]
    with db.session() as session:
        lead = session.get(Lead, lead_id)
        assert lead.title == "Chief Revenue Officer"
        final = lead.score
    assert res.features.get_online([str(lead_id)])[0]["seniority"] == "c-level"
    assert shown_score(sandbox, "Contact", contact_sf) == final
    assert shown_score(sandbox, "Lead", lead_sf) == score  # the converted Lead is not written again


def test_a_contact_seen_before_the_conversion_is_merged_into_the_lead(pipeline: Resources, sandbox: SandboxCRM,
                                                                      receiver: Receiver, db: Database) -> None:
    res = pipeline
    feed = Deliveries(sandbox, receiver, SALESFORCE_ORG)
    lead_sf, lead_id, _ = delivered_lead(res, feed, sandbox, db, "bo@acme.io")
    feed.quiet()

    mark = feed.mark()
    contact_sf = sandbox.store.sf_convert_lead(lead_sf, won=None)["ContactId"]
    conversion = feed.after(mark, "Lead", "<sf:IsConverted>true")
    created = feed.after(mark, "Contact", contact_sf)
    mark = feed.mark()
    sandbox.store.sf_update("Contact", contact_sf, {"Title": "Chief Revenue Officer"}, source="CRM_UI")
    promoted = feed.after(mark, "Contact", "Chief Revenue Officer")
    # The Contact's events arrive first: nothing yet says whose it is, so it gets a provisional lead.
    deliver(res, created)
    deliver(res, promoted)
    [(first, _), (provisional, contact_records)] = leads_of(db, "bo@acme.io")
    assert first == lead_id and contact_records == {contact_sf}
    res.redis.sadd("lb:dirty:salesforce", provisional)  # as if a write of it were still waiting
    assert res.features.get_online([str(provisional)])[0]["seniority"] == "c-level"
    assert res.features.get_online([str(lead_id)])[0]["seniority"] != "c-level"
    with db.session() as session:
        histories = [session.scalar(select(func.count()).select_from(ScoreHistory)
                                    .where(ScoreHistory.lead_id == i)) for i in (lead_id, provisional)]
    assert histories[1] >= 1

    result = deliver(res, conversion)
    # The conversion folds the provisional lead into the Lead's: one lead, both records, score history kept.
    assert result.merged == {provisional}
    assert leads_of(db, "bo@acme.io") == [(lead_id, {lead_sf, contact_sf})]
    with db.session() as session:
        assert session.get(Lead, provisional) is None
        assert session.scalar(select(func.count()).select_from(ScoreHistory)
                              .where(ScoreHistory.lead_id == lead_id)) >= sum(histories)
        score = session.get(Lead, lead_id).score
    # The Contact's newer title counts for the lead it became; the provisional lead's Redis state is gone.
    assert res.features.get_online([str(lead_id)])[0]["seniority"] == "c-level"
    assert not res.redis.exists(f"lb:fs:t:{provisional}")
    assert not res.redis.sismember("lb:dirty:salesforce", provisional)
    assert res.redis.hget("lb:written:salesforce", provisional) is None
    assert outcomes_of(db, lead_id) == [(True, "salesforce.lead", converted_at(sandbox, lead_sf))]
    assert shown_score(sandbox, "Contact", contact_sf) == score

    # Delivered again (Salesforce retries until acknowledged), nothing changes.
    again = deliver(res, conversion)
    assert again.processed == 0 and not again.merged
    assert leads_of(db, "bo@acme.io") == [(lead_id, {lead_sf, contact_sf})]
    assert len(outcomes_of(db, lead_id)) == 1


def test_a_backfill_of_converted_leads_keeps_one_lead_and_one_outcome(pipeline: Resources, sandbox: SandboxCRM,
                                                                      db: Database) -> None:
    res = pipeline
    leads = [new_lead(sandbox, f"person{i}@acme.io") for i in range(3)]
    contacts = [sandbox.store.sf_convert_lead(lead, won=won)["ContactId"]
                for lead, won in zip(leads, (True, False, None))]
    connector: SalesforceConnector = res._connectors["salesforce"]
    backfill(res, "salesforce", connector, writeback=True)
    for i, (lead_sf, contact_sf) in enumerate(zip(leads, contacts)):
        [(lead_id, records)] = leads_of(db, f"person{i}@acme.io")
        assert records == {lead_sf, contact_sf}
        stored = outcomes_of(db, lead_id)
        conversion = (True, "salesforce.lead", converted_at(sandbox, lead_sf))
        assert conversion in stored  # each conversion once; a closed Opportunity adds its own outcome
        assert len([o for o in stored if o[1] == "salesforce.lead"]) == 1
        assert len(stored) == (1 if i == 2 else 2)
    while flush_once(res, "salesforce"):
        pass
    with db.session() as session:
        scores = dict(session.execute(select(LeadCrmId.object_id, Lead.score)
                                      .join(Lead, Lead.id == LeadCrmId.lead_id)).all())
    assert all(shown_score(sandbox, "Contact", c) == scores[c] for c in contacts)
    assert all(shown_score(sandbox, "Lead", lead) is None for lead in leads)


# ---- over a real worker: the webhook path and the CRM-read path record the same outcome once -----------------


@pytest.mark.slow
def test_webhook_and_crm_read_record_the_conversion_once(live_pipeline: LivePipeline, receiver: Receiver,
                                                         settings_overrides: dict[str, Any],
                                                         service_urls: ServiceUrls, redis_url: str) -> None:
    p = live_pipeline
    sandbox, db = p.sandbox, p.db
    feed = Deliveries(sandbox, receiver, SALESFORCE_ORG)

    def post(body: bytes) -> None:
        response = p.signer.salesforce_soap(p.salesforce, body)
        assert response.status_code == 200, response.data
        p.settled()

    mark = feed.mark()
    lead_sf = new_lead(sandbox, "cy@acme.io")
    post(feed.after(mark, "Lead", lead_sf))
    mark = feed.mark()
    contact_sf = sandbox.store.sf_convert_lead(lead_sf, won=True)["ContactId"]
    post(feed.after(mark, "Lead", "<sf:IsConverted>true"))
    post(feed.after(mark, "Contact", contact_sf))
    [(lead_id, records)] = leads_of(db, "cy@acme.io")
    assert records == {lead_sf, contact_sf}
    conversion = (True, "salesforce.lead", converted_at(sandbox, lead_sf))
    assert outcomes_of(db, lead_id) == [conversion]

    # The CRM-read path (what learning polls and backfill imports) reports the same outcome: stored already.
    connector = salesforce_for(sandbox)
    read = connector.read_outcomes()
    assert [(o.lead_id, o.won, o.source, o.occurred_at) for o in read if o.source == "salesforce.lead"] == [
        (lead_sf, *conversion)]
    with db.session(write=True) as session:
        result = record_outcomes(session, "salesforce", read)
    assert (result.recorded, result.unknown_leads) == (1, 0)  # the won Opportunity, on the Contact: same lead
    res = Resources(load_settings(settings_overrides, env_file=None), service_urls, db, make_redis_client(redis_url))
    report = backfill(res, "salesforce", connector, writeback=False)
    assert report.outcomes_new == 0
    assert leads_of(db, "cy@acme.io") == [(lead_id, {lead_sf, contact_sf})]
    stored = outcomes_of(db, lead_id)
    assert sorted(stored) == sorted([conversion, (True, "salesforce.opportunity", converted_at(sandbox, lead_sf))])
