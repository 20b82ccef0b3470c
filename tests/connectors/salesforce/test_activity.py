"""Salesforce activity for the pilot KPIs, read with SOQL through the real simple-salesforce from the sandbox CRM:
Tasks, Events, LeadHistory (Status), Opportunities via conversion and contact roles, OpportunityHistory; and the
LeadFacts derived from them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.salesforce.client import SalesforceConnector
from sandbox import DEFAULT_SF_SESSION, SandboxCRM, sandbox_instance, sandbox_requests_session
from scoring.activity import lead_facts
from scoring.experiment import PILOT
from tests.connectors.conftest import salesforce_for, worked_lead_touches

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _sdk(crm: SandboxCRM) -> Salesforce:
    return Salesforce(session_id=DEFAULT_SF_SESSION, instance_url="https://" + sandbox_instance(crm.base_url),
                      session=sandbox_requests_session(crm.base_url))


def _at(when: datetime) -> float:
    return when.timestamp()


@pytest.fixture
def t0() -> datetime:
    today = datetime.fromtimestamp(time.time(), tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - 30 * DAY


@pytest.fixture
def world(sandbox: SandboxCRM, t0: datetime) -> dict[str, str]:
    """A rep, three people: a Lead worked to a won opportunity, a Contact on two, a Lead never touched."""
    store = sandbox.store
    rep = store.sf_create("User", {"Email": "rep@acme.io", "Username": "rep@acme.io"})
    api = store.sf_default_owner  # the session's user: leadbridge's integration user
    store.sf_set_tracked_fields("Lead", ["Status"])  # Lead Status history is kept only where the org tracks it

    a = store.sf_create("Lead", {"LastName": "Ana", "Company": "Acme", "OwnerId": rep}, created_at=_at(t0))
    store.sf_create("Task", {"WhoId": a, "TaskSubtype": "Call", "Status": "Completed", "OwnerId": rep},
                    created_at=_at(t0 - HOUR), user_id=rep)  # logged before the lead existed (a merged duplicate)
    store.sf_create("Task", {"WhoId": a, "Subject": "Call this hot lead", "OwnerId": rep},
                    created_at=_at(t0 + 2 * MIN))  # leadbridge's own task for the rep (created by the API user)
    store.sf_create("Task", {"WhoId": a, "TaskSubtype": "Email", "Status": "Completed", "OwnerId": rep},
                    created_at=_at(t0 + 10 * MIN), user_id=rep)
    store.sf_update("Lead", a, {"Status": "Working - Contacted"}, at=_at(t0 + 30 * MIN), user_id=rep)
    store.sf_update("Lead", a, {"Status": "Qualified"}, at=_at(t0 + DAY), user_id=rep)
    won = store.sf_create("Opportunity", {"Name": "Acme", "StageName": "Qualification", "Amount": 5000,
                                          "CloseDate": (t0 + 40 * DAY).date().isoformat()},
                          created_at=_at(t0 + DAY + HOUR), user_id=rep)
    store.sf_update("Opportunity", won, {"StageName": "Closed Won", "CloseDate": (t0 + 20 * DAY).date().isoformat()},
                    at=_at(t0 + 20 * DAY), user_id=rep)
    store.sf_system_update("Lead", a, {"IsConverted": True, "ConvertedOpportunityId": won})

    b = store.sf_create("Contact", {"LastName": "Bo", "OwnerId": rep}, created_at=_at(t0 + HOUR))
    store.sf_create("Task", {"WhoId": b, "TaskSubtype": "Email", "Subject": "Sequence step 1"},
                    created_at=_at(t0 + 2 * HOUR))  # a sequence e-mail leadbridge sent
    store.sf_create("Event", {"WhoId": b, "Subject": "Intro", "OwnerId": rep,
                              "ActivityDateTime": (t0 + 5 * HOUR).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                              "DurationInMinutes": 30}, created_at=_at(t0 + 3 * HOUR), user_id=rep)
    for created, amount, stage, close in ((t0 + DAY, 1000, "Prospecting", t0 + 40 * DAY),
                                          (t0 + 2 * DAY, 300, "Closed Lost", t0 + 4 * DAY)):
        opp = store.sf_create("Opportunity", {"Name": "Bo", "StageName": stage, "Amount": amount,
                                              "CloseDate": close.date().isoformat()}, created_at=_at(created),
                              user_id=rep)
        store.sf_create("OpportunityContactRole", {"OpportunityId": opp, "ContactId": b, "IsPrimary": True},
                        created_at=_at(created), user_id=rep)

    other = store.sf_create("User", {"Email": "two@acme.io", "Username": "two@acme.io"})
    c = store.sf_create("Lead", {"LastName": "Cy", "Company": "Acme", "OwnerId": other}, created_at=_at(t0 + 2 * HOUR))
    return {"a": a, "b": b, "c": c, "rep": rep, "other": other, "api": api}


def test_read_activity_returns_tasks_events_status_history_and_opportunities(
        sandbox: SandboxCRM, salesforce: SalesforceConnector, world: dict[str, str], t0: datetime) -> None:
    got = salesforce.read_activity([world["a"], world["b"][:15], world["c"], "00QSb0000099999"])
    assert set(got) == {world["a"], world["b"][:15], world["c"]}  # keyed as asked; an unknown id is left out
    assert salesforce.api_user_id() == world["api"]  # from /services/oauth2/userinfo
    rep = world["rep"]
    a = got[world["a"]]
    assert a.created_at == t0 and a.owner_id == rep
    assert a.touches == worked_lead_touches(t0, rep)
    assert [(s.at, s.field, s.value) for s in a.stages] == [
        (t0 + 30 * MIN, "lead_status", "Working - Contacted"), (t0 + DAY, "lead_status", "Qualified"),
        (t0 + DAY + HOUR, "opportunity_stage", "Qualification"), (t0 + 20 * DAY, "opportunity_stage", "Closed Won")]
    assert [(o.created_at, o.amount, o.closed_at, o.won) for o in a.opportunities] == [
        (t0 + DAY + HOUR, 5000.0, t0 + 20 * DAY, True)]
    b = got[world["b"][:15]]
    assert [(t.at, t.kind, t.by_integration) for t in b.touches] == [
        (t0 + 2 * HOUR, "email", True), (t0 + 5 * HOUR, "meeting", False)]
    assert [(o.amount, o.closed_at, o.won) for o in b.opportunities] == [(1000.0, None, None),
                                                                        (300.0, t0 + 4 * DAY, False)]
    c = got[world["c"]]
    assert (c.touches, c.stages, c.opportunities, c.owner_id) == ((), (), (), world["other"])


def test_lead_facts_from_salesforce_activity_match_hand_computed(
        salesforce: SalesforceConnector, world: dict[str, str], t0: datetime) -> None:
    got = salesforce.read_activity([world["a"], world["b"], world["c"]])
    facts = {k: lead_facts(got[world[k]], lead_id=k, group=PILOT, created_at=got[world[k]].created_at,  # type: ignore[arg-type]
                           rules=salesforce.sql_rules) for k in ("a", "b", "c")}
    a, b, c = facts["a"], facts["b"], facts["c"]
    # a: the call logged before creation and leadbridge's task do not count; the rep's e-mail does.
    # 'Working - Contacted' is not qualified, 'Qualified' is (a day in, before the opportunity).
    assert (a.first_touch_at, a.sql_at, a.opportunity_at, a.amount, a.closed_at, a.won) == (
        t0 + 10 * MIN, t0 + DAY, t0 + DAY + HOUR, 5000.0, t0 + 20 * DAY, True)
    assert a.cluster == world["rep"]
    # b: the sequence e-mail is ours; the rep's meeting is the first touch; one opportunity open, one lost.
    assert (b.first_touch_at, b.sql_at, b.opportunity_at, b.amount, b.closed_at, b.won) == (
        t0 + 5 * HOUR, t0 + DAY, t0 + DAY, 1300.0, None, None)
    assert (c.first_touch_at, c.sql_at, c.opportunity_at, c.amount, c.closed_at, c.won) == (
        None, None, None, 0.0, None, None)


def test_activity_soql_is_chunked(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    ids = [sandbox.store.sf_create("Lead", {"LastName": f"L{i}", "Company": "Acme"}) for i in range(250)]
    got = salesforce.read_activity(ids)
    assert len(got) == 250
    # userinfo once; Lead, Task, Event and LeadHistory each in two IN lists of at most 200 ids; nothing else.
    assert salesforce.calls == 1 + 4 * 2


def test_configured_integration_user_skips_userinfo(sandbox: SandboxCRM, world: dict[str, str]) -> None:
    connector = salesforce_for(sandbox, integration_user_id=world["rep"])
    got = connector.read_activity([world["a"]])
    # Seen as the rep's own integration user, the rep's touches are flagged and the API user's task is not.
    assert [t.by_integration for t in got[world["a"]].touches] == [True, False, True, True, True]


def test_activity_objects_over_rest(sandbox: SandboxCRM, world: dict[str, str]) -> None:
    sf = _sdk(sandbox)
    created = sf.Task.create({"WhoId": world["c"], "Subject": "Call", "TaskSubtype": "Call"})
    task = sf.Task.get(created["id"])
    assert (task["CreatedById"], task["OwnerId"], task["Status"], task["IsClosed"]) == (
        world["api"], world["api"], "Not Started", False)
    sf.Task.update(created["id"], {"Status": "Completed"})
    assert sf.Task.get(created["id"])["CompletedDateTime"] is not None
    with pytest.raises(SalesforceMalformedRequest) as audit:
        sf.Task.create({"WhoId": world["c"], "CreatedById": world["rep"]})  # audit fields are the platform's
    assert audit.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as who:
        sf.Task.create({"WhoId": world["rep"]})  # a User is neither a Lead nor a Contact
    assert who.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    with pytest.raises(SalesforceMalformedRequest) as history:
        sf.OpportunityHistory.create({"StageName": "Closed Won"})
    assert history.value.content[0]["errorCode"] == "INVALID_TYPE"
    assert sf.OpportunityHistory.describe()["createable"] is False
    rows = sf.query("SELECT StageName, Amount, CreatedById FROM OpportunityHistory ORDER BY CreatedDate")["records"]
    assert [r["StageName"] for r in rows] == ["Prospecting", "Qualification", "Closed Lost", "Closed Won"]
    assert {r["CreatedById"] for r in rows} == {world["rep"]}


def test_task_query_pages_and_userinfo_refuses_a_bad_token(sandbox: SandboxCRM, world: dict[str, str]) -> None:
    for i in range(205):
        sandbox.store.sf_create("Task", {"WhoId": world["c"], "Subject": f"t{i}"})
    sf = _sdk(sandbox)
    first = sf.query("SELECT Id FROM Task WHERE WhoId = '" + world["c"] + "'", headers={
        "Sforce-Query-Options": "batchSize=200"})
    assert (first["totalSize"], len(first["records"]), first["done"]) == (205, 200, False)
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers={
        "Sforce-Query-Options": "batchSize=200"})
    assert (len(rest["records"]), rest["done"]) == (5, True)
    session = sandbox_requests_session(sandbox.base_url)
    url = f"https://{sandbox_instance(sandbox.base_url)}/services/oauth2/userinfo"
    ok = session.get(url, headers={"Authorization": f"Bearer {DEFAULT_SF_SESSION}"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["user_id"] == world["api"]
    assert ok.json()["preferred_username"] == "admin@sandbox.leadbridge"
    bad = session.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 403 and bad.text == "Bad_OAuth_Token"
    assert isinstance(bad, requests.Response)
