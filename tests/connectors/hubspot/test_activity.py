"""HubSpot activity for the pilot KPIs, read through the real hubspot-api-client from the sandbox CRM over HTTP:
engagements and their associations, lifecycle/lead-status history, deals; and the LeadFacts derived from them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hubspot import HubSpot
from hubspot.crm.objects.calls.exceptions import ApiException as CallsError
from hubspot.crm.objects.notes.exceptions import ApiException as NotesError

from connectors.hubspot.client import HubSpotConnector
from sandbox import DEFAULT_HUBSPOT_APP_USER_ID, DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from sandbox.ids import iso_ms
from scoring.activity import lead_facts
from scoring.experiment import PILOT
from tests.connectors.conftest import worked_lead_touches

REP = "111"
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _sdk(crm: SandboxCRM) -> HubSpot:
    return HubSpot(access_token=DEFAULT_HUBSPOT_TOKEN, host=crm.base_url)


def _at(when: datetime) -> float:
    return when.timestamp()


def _engage(crm: SandboxCRM, object_type: str, contact: str, when: datetime, user: str = REP,
            **props: str) -> str:
    """An activity a rep logged in HubSpot's UI, associated with the contact."""
    obj = crm.store.hs_create(object_type, {"hs_timestamp": iso_ms(_at(when)), "hubspot_owner_id": user, **props},
                              source="CRM_UI", created_at=_at(when), user_id=user)
    crm.store.hs_associate(object_type, obj["id"], "contacts", contact)
    return str(obj["id"])


def _deal(crm: SandboxCRM, contact: str, created: datetime, amount: str, stage: str,
          closed: datetime | None = None) -> str:
    props = {"dealname": "Deal", "amount": amount, "dealstage": stage, "pipeline": "default"}
    if closed is not None:
        props["closedate"] = iso_ms(_at(closed))
    deal = crm.store.hs_create("deals", props, source="CRM_UI", created_at=_at(created), user_id=REP)
    crm.store.hs_associate("deals", deal["id"], "contacts", contact)
    return str(deal["id"])


@pytest.fixture
def t0() -> datetime:
    return datetime.fromtimestamp(int(time.time()) - 30 * 86400, tz=UTC)


@pytest.fixture
def leads(sandbox: SandboxCRM, t0: datetime) -> dict[str, str]:
    """Three contacts: one worked to a won deal, one touched by leadbridge before its rep, one never touched."""
    store = sandbox.store
    a = store.hs_create("contacts", {"email": "a@acme.io", "hubspot_owner_id": REP, "hs_lead_status": "NEW"},
                        source="FORM", created_at=_at(t0))["id"]
    _engage(sandbox, "calls", a, t0 - HOUR, hs_call_direction="OUTBOUND")  # logged before the contact existed
    _engage(sandbox, "emails", a, t0 + 5 * MIN, hs_email_direction="INCOMING_EMAIL")  # the lead wrote: no touch
    _engage(sandbox, "emails", a, t0 + 10 * MIN, hs_email_direction="EMAIL")
    store.hs_update("contacts", a, {"hs_lead_status": "ATTEMPTED_TO_CONTACT"}, source="CRM_UI",
                    at=_at(t0 + 30 * MIN), user_id=REP)
    store.hs_update("contacts", a, {"hs_lead_status": "OPEN_DEAL"}, source="CRM_UI", at=_at(t0 + DAY), user_id=REP)
    store.hs_update("contacts", a, {"lifecyclestage": "salesqualifiedlead"}, source="CRM_UI", at=_at(t0 + 2 * DAY),
                    user_id=REP)
    _deal(sandbox, a, t0 + DAY + HOUR, "5000", "closedwon", t0 + 20 * DAY)
    _deal(sandbox, a, t0 + 3 * DAY, "2500.5", "closedlost", t0 + 10 * DAY)
    # leadbridge's own task for the rep, created through the API (the private app's user is its creator); the
    # API takes only an owner HubSpot knows.
    store.hs_actions.add_owner(REP, "rep@acme.io", "Rep", "One", int(REP))
    _sdk(sandbox).crm.objects.tasks.basic_api.create({
        "properties": {"hs_timestamp": iso_ms(_at(t0 + 2 * MIN)), "hs_task_subject": "Call this hot lead",
                       "hubspot_owner_id": REP},
        "associations": [{"to": {"id": a}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                       "associationTypeId": 204}]}]})

    b = store.hs_create("contacts", {"email": "b@acme.io", "hubspot_owner_id": REP}, source="FORM",
                        created_at=_at(t0 + HOUR))["id"]
    # A status leadbridge's integration set is not a rep's touch; the rep's meeting is.
    store.hs_update("contacts", b, {"hs_lead_status": "IN_PROGRESS"}, source="API", at=_at(t0 + 2 * HOUR),
                    user_id=str(DEFAULT_HUBSPOT_APP_USER_ID))
    _engage(sandbox, "meetings", b, t0 + 5 * HOUR, hs_meeting_title="Intro")
    _deal(sandbox, b, t0 + DAY, "1000", "qualifiedtobuy")

    c = store.hs_create("contacts", {"email": "c@acme.io", "hubspot_owner_id": "222"}, source="FORM",
                        created_at=_at(t0 + 2 * HOUR))["id"]
    return {"a": a, "b": b, "c": c}


@pytest.fixture
def connector(sandbox: SandboxCRM) -> HubSpotConnector:
    return HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url,
                            integration_user_id=str(DEFAULT_HUBSPOT_APP_USER_ID))


def test_read_activity_returns_touches_stages_and_deals(connector: HubSpotConnector, leads: dict[str, str],
                                                        t0: datetime) -> None:
    got = connector.read_activity([leads["a"], leads["b"], leads["c"], "999999"])
    assert set(got) == {leads["a"], leads["b"], leads["c"]}  # an unknown id is left out
    a = got[leads["a"]]
    assert a.created_at == t0 and a.owner_id == REP
    assert a.touches == worked_lead_touches(t0, REP)
    assert [(s.at, s.field, s.value) for s in a.stages if s.field == "lead_status"] == [
        (t0, "lead_status", "NEW"), (t0 + 30 * MIN, "lead_status", "ATTEMPTED_TO_CONTACT"),
        (t0 + DAY, "lead_status", "OPEN_DEAL")]
    assert [(s.at, s.value) for s in a.stages if s.field == "lifecycle_stage"] == [
        (t0, "lead"), (t0 + 2 * DAY, "salesqualifiedlead")]
    assert [(o.created_at, o.amount, o.closed_at, o.won) for o in a.opportunities] == [
        (t0 + DAY + HOUR, 5000.0, t0 + 20 * DAY, True), (t0 + 3 * DAY, 2500.5, t0 + 10 * DAY, False)]
    b = got[leads["b"]]
    assert [(t.at, t.kind, t.by_integration) for t in b.touches] == [
        (t0 + 2 * HOUR, "status_change", True), (t0 + 5 * HOUR, "meeting", False)]
    assert [(o.amount, o.closed_at, o.won) for o in b.opportunities] == [(1000.0, None, None)]
    c = got[leads["c"]]
    assert (c.touches, c.opportunities, c.owner_id) == ((), (), "222")


def test_lead_facts_from_hubspot_activity_match_hand_computed(connector: HubSpotConnector, leads: dict[str, str],
                                                              t0: datetime) -> None:
    got = connector.read_activity(list(leads.values()))
    facts = {k: lead_facts(got[v], lead_id=k, group=PILOT, created_at=got[v].created_at,  # type: ignore[arg-type]
                           rules=connector.sql_rules) for k, v in leads.items()}
    a, b, c = facts["a"], facts["b"], facts["c"]
    # a: the call before creation and leadbridge's task do not count; the rep's e-mail at +10 min does.
    assert (a.first_touch_at, a.sql_at, a.opportunity_at, a.amount, a.closed_at, a.won) == (
        t0 + 10 * MIN, t0 + DAY, t0 + DAY + HOUR, 7500.5, t0 + 20 * DAY, True)
    assert a.cluster == REP
    # b: the integration's status change is skipped; qualified when its deal opened; still open.
    assert (b.first_touch_at, b.sql_at, b.opportunity_at, b.amount, b.closed_at, b.won) == (
        t0 + 5 * HOUR, t0 + DAY, t0 + DAY, 1000.0, None, None)
    assert (c.first_touch_at, c.sql_at, c.opportunity_at, c.amount, c.closed_at, c.won) == (
        None, None, None, 0.0, None, None)


def test_activity_reads_are_batched(sandbox: SandboxCRM, connector: HubSpotConnector, t0: datetime) -> None:
    ids = [sandbox.store.hs_create("contacts", {"email": f"p{i}@acme.io"}, created_at=_at(t0))["id"]
           for i in range(120)]
    for cid in ids[:3]:
        _engage(sandbox, "calls", cid, t0 + HOUR)
    got = connector.read_activity(ids)
    assert len(got) == 120 and sum(len(a.touches) for a in got.values()) == 3
    # Contacts with history 50 a call (3), five activity types and deals: associations 100 a call (2 each, 12),
    # and one batch read of the calls found.
    assert connector.calls == 3 + 12 + 1


def test_engagement_endpoints_page_search_and_refuse(sandbox: SandboxCRM, t0: datetime) -> None:
    contact = sandbox.store.hs_create("contacts", {"email": "x@acme.io"}, created_at=_at(t0))["id"]
    calls = [_engage(sandbox, "calls", contact, t0 + i * MIN, user="7" if i % 2 else REP) for i in range(5)]
    sdk = _sdk(sandbox)
    first = sdk.crm.objects.calls.basic_api.get_page(limit=2, properties=["hs_timestamp", "hubspot_owner_id"])
    assert [c.id for c in first.results] == calls[:2] and first.paging.next.after == calls[1]
    last = sdk.crm.objects.calls.basic_api.get_page(limit=2, after=calls[3])
    assert [c.id for c in last.results] == calls[4:] and last.paging is None
    one = sdk.crm.objects.calls.basic_api.get_by_id(calls[0], properties=["hs_created_by_user_id", "hs_timestamp"])
    assert one.properties["hs_created_by_user_id"] == REP
    assert one.properties["hs_timestamp"] == iso_ms(_at(t0))
    assert one.properties["hs_createdate"] == iso_ms(_at(t0))  # activities name their creation hs_createdate
    found = sdk.crm.objects.calls.search_api.do_search({"filterGroups": [{"filters": [
        {"propertyName": "hubspot_owner_id", "operator": "EQ", "value": "7"}]}], "limit": 1})
    assert found.total == 2 and found.paging.next.after == "1"
    page = sdk.crm.associations.v4.basic_api.get_page("contact", contact, "call", limit=3)
    assert [str(r.to_object_id) for r in page.results] == calls[:3]
    assert page.results[0].association_types[0].type_id == 193
    with pytest.raises(CallsError) as missing:
        sdk.crm.objects.calls.basic_api.create({"properties": {"hs_call_title": "no time"}})
    assert missing.value.status == 400 and "hs_timestamp" in missing.value.body
    with pytest.raises(NotesError) as nowhere:
        sdk.crm.objects.notes.basic_api.create({"properties": {"hs_timestamp": iso_ms()}, "associations": [
            {"to": {"id": "424242"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]})
    assert nowhere.value.status == 400
    assert len(sandbox.store.hs_objects["notes"]) == 0  # nothing half-written


def test_contact_history_of_lead_status_names_who_changed_it(sandbox: SandboxCRM, t0: datetime) -> None:
    contact = sandbox.store.hs_create("contacts", {"email": "h@acme.io", "hs_lead_status": "NEW"},
                                      created_at=_at(t0))["id"]
    sdk = _sdk(sandbox)
    sdk.crm.contacts.basic_api.update(contact, {"properties": {"hs_lead_status": "CONNECTED"}})
    got = sdk.crm.contacts.basic_api.get_by_id(contact, properties_with_history=["hs_lead_status"])
    entries = got.properties_with_history["hs_lead_status"]
    assert [e.value for e in entries] == ["CONNECTED", "NEW"]  # newest first
    assert entries[0].updated_by_user_id == DEFAULT_HUBSPOT_APP_USER_ID and entries[0].source_type == "API"
    with pytest.raises(Exception) as bad:
        sdk.crm.contacts.basic_api.update(contact, {"properties": {"hs_lead_status": "MAYBE"}})
    assert getattr(bad.value, "status", None) == 400
