"""Mapped CRM fields from the CRM reads: enrichment gives a new contact its mapped values (a creation webhook
carries none), ordered against webhook values by when each value held; real SDKs against the sandbox CRM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import delete, select

from connectors.hubspot.client import HubSpotConnector

from core.keys import FEATURE_SCHEMA_KEY
from core.records import Event
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from scoring.features import ACTIVITY_TYPES, build_offline, to_ms
from scoring.labels import LabelledLead
from scoring.schema import MappedField
from scoring.training_set import EventIndex, build_decision_frame
from storage.feature_schema import publish_schema_version, save_schema
from storage.inbox import store_events
from storage.models import FeatureSchemaVersion, InboxEvent, LeadCrmId
from storage.outcomes import load_events
from tasks.backfill import backfill
from tasks.ingest import enrich_new_leads, ingest_rows
from tasks.resources import Resources
from tests.connectors.conftest import salesforce_for

HOUR = timedelta(hours=1)


def map_fields(res: Resources, *fields: MappedField) -> None:
    with res.db.session(write=True) as session:
        schema = save_schema(session, list(fields), actor="test")
    publish_schema_version(res.redis, schema.version)


@pytest.fixture()
def no_schema(res: Resources) -> Iterator[None]:
    """No saved feature schema before and after (other tests expect none)."""
    def wipe() -> None:
        with res.db.session(write=True) as session:
            session.execute(delete(FeatureSchemaVersion))
        res.redis.delete(FEATURE_SCHEMA_KEY)
    wipe()
    yield
    wipe()


def budget_property(sandbox: SandboxCRM) -> None:
    sandbox.store.hs_create_property("contacts", {"name": "budget", "label": "Budget", "type": "number",
                                                  "fieldType": "number", "groupName": "contactinformation"})


def deliver(res: Resources, *events: Event) -> list[int]:
    """Store and ingest webhook events as a worker does; the new leads they made."""
    with res.db.session(write=True) as session:
        ids = store_events(session, list(events), None)
        result = ingest_rows(session, ids, res)
    return result.new_leads


def hubspot_event(contact_id: str, event_type: str, at: datetime, **properties: str) -> Event:
    key = f"test:{contact_id}:{event_type}:{to_ms(at)}:{sorted(properties.items())}"
    return Event(source="hubspot", crm="hubspot", object_type="contact", object_id=contact_id, event_type=event_type,
                 occurred_at=at, received_at=datetime.now(UTC), properties=properties, dedupe_key=key)


def lead_of(res: Resources, crm: str, record_id: str) -> int:
    with res.db.session() as session:
        return session.scalars(select(LeadCrmId.lead_id).where(LeadCrmId.crm == crm,
                                                               LeadCrmId.object_id == record_id)).one()


def test_a_new_contact_gets_its_mapped_values_from_the_enrichment_read(res: Resources, sandbox: SandboxCRM,
                                                                       no_schema: None) -> None:
    budget_property(sandbox)
    map_fields(res, MappedField("hubspot", "contacts", "budget", "numeric", "budget"),
               MappedField("hubspot", "contacts", "hs_lead_source_detail", "categorical", "lead_source_detail"))
    contact = sandbox.store.hs_create("contacts", {"email": "pat@acme.io", "budget": "250000"})
    new = deliver(res, hubspot_event(contact["id"], "created", datetime.now(UTC)))
    lead = lead_of(res, "hubspot", contact["id"])
    assert new == [lead]
    assert res.features.get_online([str(lead)])[0]["budget"] is None  # the creation webhook carried nothing

    calls = res.connector("hubspot").calls  # type: ignore[union-attr]
    assert enrich_new_leads(res, [lead]) == 1
    # The mapped properties came with the contact read: the same calls as without them (contact, company links).
    assert res.connector("hubspot").calls - calls == 2  # type: ignore[union-attr]
    vector = res.features.get_online([str(lead)])[0]
    assert vector["budget"] == 250000.0
    assert vector["lead_source_detail"] is None  # a property HubSpot does not have is simply missing
    # The value holds from the contact's last modification, not from when we happened to read it.
    modified = datetime.fromisoformat(contact["properties"]["lastmodifieddate"])
    stamp = res.redis.hget(f"lb:fs:t:{lead}", "@f:budget").decode()
    assert int(stamp.split("|")[0]) == to_ms(modified)

    # Training from the stored events sees the read value too, from that time on.
    with res.db.session() as session:
        stored = load_events(session, ACTIVITY_TYPES)
    schema = res.schema()
    after = build_offline(stored.events, datetime.now(UTC), lead_ids=[str(lead)], lead_of=stored.lead_of,
                          schema=schema)
    before = build_offline(stored.events, modified - HOUR, lead_ids=[str(lead)], lead_of=stored.lead_of,
                           schema=schema)
    assert (after[str(lead)]["budget"], before[str(lead)]["budget"]) == (250000.0, None)


def test_an_older_read_never_overwrites_a_newer_webhook_value(res: Resources, sandbox: SandboxCRM,
                                                              no_schema: None) -> None:
    budget_property(sandbox)
    map_fields(res, MappedField("hubspot", "contacts", "budget", "numeric", "budget"))
    an_hour_ago = time.time() - 3600
    stale = sandbox.store.hs_create("contacts", {"email": "old@acme.io", "budget": "100"}, created_at=an_hour_ago)
    fresh = sandbox.store.hs_create("contacts", {"email": "new@acme.io", "budget": "700"}, created_at=an_hour_ago)
    now = datetime.now(UTC)
    # `stale`: a webhook reports a change made after the record was last modified as the read sees it (the CRM
    # changed since, the read raced it). `fresh`: the webhook value is older than the record's modification.
    new = deliver(res, hubspot_event(stale["id"], "property_change", now, budget="999"),
                  hubspot_event(fresh["id"], "property_change", now - 2 * HOUR, budget="5"))
    assert len(new) == 2
    assert enrich_new_leads(res, new) == 2
    old_lead, new_lead = lead_of(res, "hubspot", stale["id"]), lead_of(res, "hubspot", fresh["id"])
    vectors = res.features.get_online([str(old_lead), str(new_lead)])
    assert vectors[0]["budget"] == 999.0  # the newer webhook value stands
    assert vectors[1]["budget"] == 700.0  # the read is newer than that webhook: it wins


def test_salesforce_enrichment_reads_mapped_fields_the_org_has(res: Resources, sandbox: SandboxCRM,
                                                              no_schema: None) -> None:
    connector = salesforce_for(sandbox)
    res._connectors["salesforce"] = connector  # the sandbox needs its routing session
    sandbox.store.sf_add_field("Lead", "Budget__c", "double", "Budget", precision=18, scale=2)
    map_fields(res, MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget"),
               MappedField("salesforce", "Lead", "industry", "categorical", "lead_industry"),
               MappedField("salesforce", "Lead", "Not_There__c", "numeric", "not_there"))
    lead_id = sandbox.store.sf_create("Lead", {"LastName": "Ng", "Company": "Acme", "Email": "ng@acme.io",
                                               "Budget__c": 42000, "Industry": "Software"})
    event = Event(source="salesforce", crm="salesforce", object_type="lead", object_id=lead_id, event_type="created",
                  occurred_at=datetime.now(UTC), received_at=datetime.now(UTC), properties={"LastName": "Ng"},
                  dedupe_key=f"test:{lead_id}:created")
    new = deliver(res, event)
    assert enrich_new_leads(res, new) == 1
    vector = res.features.get_online([str(new[0])])[0]
    # `industry` as mapped; the org spells it `Industry` (describe says so), and SOQL is asked for that.
    assert (vector["budget"], vector["lead_industry"], vector["not_there"]) == (42000.0, "Software", None)
    # Describe was read once: a second read of the same objects asks only the SOQL.
    calls = connector.calls
    connector.read_leads([lead_id], {"Lead": ["Budget__c", "Not_There__c"]})
    assert connector.calls - calls == 1


# ---- backfill: mapped values with their history --------------------------------------------------------------


def test_hubspot_backfill_reads_each_value_a_mapped_property_had(res: Resources, sandbox: SandboxCRM,
                                                                 no_schema: None) -> None:
    budget_property(sandbox)
    map_fields(res, MappedField("hubspot", "contacts", "budget", "numeric", "budget"))
    day = 86_400.0
    start = time.time() - 10 * day
    contact = sandbox.store.hs_create("contacts", {"email": "lee@acme.io", "budget": "100"}, created_at=start)
    sandbox.store.hs_update("contacts", contact["id"], {"budget": "500"}, at=start + 5 * day)
    sandbox.store.hs_update("contacts", contact["id"], {"jobtitle": "CTO"}, at=start + 6 * day)
    sandbox.store.hs_update("contacts", contact["id"], {"budget": "900"}, at=start + 9 * day)

    # The sandbox shows HubSpot's shape: each value the property had, newest first, with when and how it was set.
    shown = requests.get(f"{sandbox.base_url}/crm/v3/objects/contacts/{contact['id']}",
                         params={"propertiesWithHistory": "budget"}, timeout=5,
                         headers={"Authorization": f"Bearer {DEFAULT_HUBSPOT_TOKEN}"}).json()
    entries = shown["propertiesWithHistory"]["budget"]
    assert [e["value"] for e in entries] == ["900", "500", "100"]
    assert all(set(e) == {"value", "timestamp", "sourceType"} for e in entries)
    assert datetime.fromisoformat(entries[-1]["timestamp"]) == datetime.fromtimestamp(start, UTC).replace(
        microsecond=datetime.fromtimestamp(start, UTC).microsecond // 1000 * 1000)

    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)
    report = backfill(res, "hubspot", hubspot, writeback=False)
    assert report.mapped_values == 3 and report.values_at_last_modified == 0
    with res.db.session() as session:
        rows = session.scalars(select(InboxEvent).where(InboxEvent.dedupe_key.like("bf:hs:v:%"))).all()
        assert sorted((r.occurred_at, r.properties["budget"]) for r in rows) == [
            (datetime.fromisoformat(e["timestamp"]), e["value"]) for e in reversed(entries)]
        # The snapshot at the creation does not carry today's value back in time.
        created = session.scalars(select(InboxEvent).where(InboxEvent.event_type == "created")).one()
        assert "budget" not in created.properties
        stored = load_events(session, ACTIVITY_TYPES)
    lead = str(lead_of(res, "hubspot", contact["id"]))
    assert res.features.get_online([lead])[0]["budget"] == 900.0
    # A training row decided between two changes sees the value of that time: no leakage from later ones.
    index = EventIndex(stored.events, stored.lead_of, schema=res.schema())
    labels = [LabelledLead(lead, True, datetime.fromtimestamp(start + t * day, UTC),
                           datetime.fromtimestamp(start + 9.5 * day, UTC), "test") for t in (1, 7, 9.2)]
    frame = build_decision_frame(index, labels)
    assert list(frame["budget"]) == [100.0, 500.0, 900.0]
    assert backfill(res, "hubspot", hubspot, writeback=False).mapped_values == 0  # a second run adds nothing


def test_salesforce_backfill_reports_values_known_only_at_last_modification(res: Resources, sandbox: SandboxCRM,
                                                                          no_schema: None) -> None:
    sandbox.store.sf_add_field("Lead", "Budget__c", "double", "Budget", precision=18, scale=2)
    map_fields(res, MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget"))
    converted = sandbox.store.sf_create("Lead", {"LastName": "Won", "Company": "Acme", "Email": "won@acme.io",
                                                 "Budget__c": 90000})
    sandbox.store.sf_convert_lead(converted, won=True)
    open_lead = sandbox.store.sf_create("Lead", {"LastName": "Open", "Company": "Beta", "Email": "o@beta.io",
                                                 "Budget__c": 300})
    sandbox.store.sf_create("Lead", {"LastName": "None", "Company": "Gamma", "Email": "n@gamma.io"})
    report = backfill(res, "salesforce", salesforce_for(sandbox), writeback=False)
    # Two values carry no history: they count from their Lead's LastModifiedDate. The converted Lead's outcome
    # (its conversion day) precedes that time, so its training row cannot see its budget.
    assert (report.values_at_last_modified, report.labels_before_values) == (2, 1)
    lead = str(lead_of(res, "salesforce", open_lead))
    assert res.features.get_online([lead])[0]["budget"] == 300.0
    modified = datetime.fromisoformat(sandbox.store.sf_get("Lead", open_lead)["LastModifiedDate"])
    stamp = res.redis.hget(f"lb:fs:t:{lead}", "@f:budget").decode()
    assert int(stamp.split("|")[0]) == to_ms(modified)


def test_salesforce_backfill_reads_tracked_fields_with_their_history(res: Resources, sandbox: SandboxCRM,
                                                                    no_schema: None) -> None:
    sandbox.store.sf_add_field("Lead", "Budget__c", "double", "Budget", precision=18, scale=2)
    sandbox.store.sf_set_tracked_fields("Lead", ["Budget__c"])
    map_fields(res, MappedField("salesforce", "Lead", "Budget__c", "numeric", "budget"),
               MappedField("salesforce", "Lead", "Industry", "categorical", "lead_industry"))
    day = 86_400.0
    start = time.time() - 10 * day
    store = sandbox.store
    # An older Lead whose first tracked change is the oldest row: tracking was on from then, not known before.
    early = store.sf_create("Lead", {"LastName": "Early", "Company": "Old", "Budget__c": 5}, created_at=start)
    store.sf_update("Lead", early, {"Budget__c": 7}, at=start + day)
    lead = store.sf_create("Lead", {"LastName": "Ng", "Company": "Acme", "Email": "ng@acme.io", "Budget__c": 100,
                                    "Industry": "Banking"}, created_at=start + 2 * day)
    store.sf_update("Lead", lead, {"Budget__c": 500}, at=start + 5 * day)
    store.sf_update("Lead", lead, {"Title": "CTO"}, at=start + 6 * day)
    store.sf_update("Lead", lead, {"Budget__c": 900}, at=start + 9 * day)

    connector = salesforce_for(sandbox)
    report = backfill(res, "salesforce", connector, writeback=False)
    # Budget: the Lead's three values, and the older Lead's value from its first tracked change (its earlier
    # value is not backdated to its creation). Industry is not tracked: known only at LastModifiedDate.
    assert (report.mapped_values, report.values_at_last_modified) == (4, 1)
    rows = [r for r in _sdk_rows(sandbox, lead) if r["Field"] == "Budget__c"]
    created = datetime.fromisoformat(store.sf_get("Lead", lead)["CreatedDate"])  # type: ignore[index]
    expected = [(created, 100.0)] + [(datetime.fromisoformat(r["CreatedDate"]), r["NewValue"]) for r in rows]
    with res.db.session() as session:
        values = session.scalars(select(InboxEvent).where(InboxEvent.dedupe_key.like("bf:sf:v:%"))).all()
        assert sorted((v.occurred_at, v.properties["Budget__c"]) for v in values if v.object_id == lead) == expected
        assert [v.properties["Budget__c"] for v in values if v.object_id == early] == [7.0]
        stored = load_events(session, ACTIVITY_TYPES)
    lead_id = str(lead_of(res, "salesforce", lead))
    vector = res.features.get_online([lead_id])[0]
    assert (vector["budget"], vector["lead_industry"]) == (900.0, "Banking")
    # A training row decided before a change sees the value of that time.
    index = EventIndex(stored.events, stored.lead_of, schema=res.schema())
    labels = [LabelledLead(lead_id, True, datetime.fromtimestamp(start + t * day, UTC),
                           datetime.fromtimestamp(start + 9.5 * day, UTC), "test") for t in (3, 7, 9.2)]
    assert list(build_decision_frame(index, labels)["budget"]) == [100.0, 500.0, 900.0]
    again = backfill(res, "salesforce", connector, writeback=False)
    assert (again.mapped_values, again.events_new) == (0, 0)  # a second run adds nothing


def _sdk_rows(sandbox: SandboxCRM, lead: str) -> list[dict[str, Any]]:
    """The Lead's history rows as the real SDK reads them, oldest first."""
    sf = salesforce_for(sandbox).sf
    return sf.query(f"SELECT Field, NewValue, CreatedDate FROM LeadHistory WHERE LeadId = '{lead}' "
                    "ORDER BY CreatedDate")["records"]
