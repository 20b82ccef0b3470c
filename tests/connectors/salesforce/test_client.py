"""Salesforce connector + sandbox over real HTTP with the real simple-salesforce."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.base import AuthConnectorError, CrmConnector, PermanentConnectorError, TransientConnectorError
from connectors.salesforce.client import SalesforceConnector, field_specs
from connectors.salesforce.fields import SCORE_FIELD_NAMES
from connectors.salesforce.outcomes import outcome_of_event
from core.records import Event
from sandbox import (
    DEFAULT_SF_PASSWORD,
    DEFAULT_SF_SESSION,
    DEFAULT_SF_TOKEN,
    DEFAULT_SF_USERNAME,
    SandboxCRM,
    sandbox_instance,
    sandbox_requests_session,
)

from ..conftest import salesforce_for


def _sdk(crm: SandboxCRM) -> Salesforce:
    return Salesforce(session_id=DEFAULT_SF_SESSION, instance_url="https://" + sandbox_instance(crm.base_url),
                      session=sandbox_requests_session(crm.base_url))


def _leads(crm: SandboxCRM, n: int) -> list[str]:
    return [crm.store.sf_create("Lead", {"FirstName": f"A{i}", "LastName": "Lopez", "Company": "Acme",
                                         "Email": f"a{i}@acme.io", "Title": "CTO", "NumberOfEmployees": 250,
                                         "Industry": "Software", "Country": "DE"}, source="CRM_UI")
            for i in range(n)]


def test_connector_satisfies_protocol(salesforce: SalesforceConnector) -> None:
    assert isinstance(salesforce, CrmConnector)


def test_field_check_reports_exactly_what_is_missing(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    sandbox.store.sf_add_field("Lead", "Leadbridge_Score__c", "double", "Leadbridge Score", precision=5, scale=2)
    report = salesforce.check_fields()
    assert report.existing == ("Lead.Leadbridge_Score__c",)
    assert len(report.missing) == len(field_specs()) - 1
    reasons = next(s for s in report.missing if s.full_name == "Contact.Leadbridge_Reasons__c")
    assert reasons.metadata == {"FullName": "Contact.Leadbridge_Reasons__c",
                                "Metadata": {"type": "LongTextArea", "label": "Leadbridge Reasons", "length": 32768,
                                             "visibleLines": 5,
                                             "description": "Why the score is what it is, one reason per line"}}


def test_provisioning_creates_fields_once(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    first = salesforce.provision_fields(create=True)
    assert first.ok and len(first.created) == len(field_specs())
    second = salesforce.provision_fields(create=True)
    assert second.ok and second.created == () and len(second.existing) == len(field_specs())
    describe = _sdk(sandbox).Lead.describe()
    score = next(f for f in describe["fields"] if f["name"] == "Leadbridge_Score__c")
    assert score["custom"] and score["type"] == "double" and score["updateable"]


def test_read_leads_and_contacts_with_account(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    lead_ids = _leads(sandbox, 3)
    acc = sandbox.store.sf_create("Account", {"Name": "Globex", "Industry": "Manufacturing", "NumberOfEmployees": 5000,
                                              "BillingCountry": "US", "Website": "https://www.globex.com"})
    contact = sandbox.store.sf_create("Contact", {"LastName": "Simpson", "Email": "homer@globex.com", "AccountId": acc})
    got = salesforce.read_leads([lead_ids[1], contact[:15], "00QSb0000000zzzAAA"])
    assert [g.lead.id for g in got] == [lead_ids[1], contact]
    lead = got[0]
    assert lead.lead.title == "CTO" and lead.account is not None and lead.account.domain == "acme.io"
    assert lead.account.employees == 250
    person = got[1]
    assert person.account is not None and person.account.id == acc and person.account.domain == "globex.com"
    assert person.account.employees == 5000 and person.lead.account_id == acc
    with pytest.raises(PermanentConnectorError):
        salesforce.read_leads(["001Sb0000000002IAA"])


def test_soql_paging_follows_next_records_url(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    crm = make_sandbox(salesforce_query_batch=200)
    _leads(crm, 450)
    sf = _sdk(crm)
    first = sf.query("SELECT Id, Email FROM Lead ORDER BY Email")
    assert first["totalSize"] == 450 and not first["done"] and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    connector = salesforce_for(crm)
    records = connector.query_all("SELECT Id, Email FROM Lead WHERE Company = 'Acme' AND Email LIKE 'a%'")
    assert len(records) == 450 and len({r["Id"] for r in records}) == 450
    pages = crm.requests.query(path=r"/query/")
    assert len(pages) >= 3 + 1  # 1 SDK query + 3 connector pages


def test_soql_subset_rejects_what_it_does_not_parse(sandbox: SandboxCRM) -> None:
    sf = _sdk(sandbox)
    for soql in ("SELECT COUNT() FROM Lead", "SELECT Id FROM Lead GROUP BY Company",
                 "SELECT Id, (SELECT Id FROM Contacts) FROM Account", "SELECT Id FROM Lead WHERE Id = :x"):
        with pytest.raises(SalesforceMalformedRequest) as info:
            sf.query(soql)
        assert info.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query("SELECT Nope__c FROM Lead")
    assert info.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_soql_where_in_and_relationships(sandbox: SandboxCRM) -> None:
    ids = _leads(sandbox, 5)
    sf = _sdk(sandbox)
    res = sf.query(f"SELECT Id FROM Lead WHERE Id IN ('{ids[0]}', '{ids[2][:15]}') AND IsConverted = FALSE")
    assert sorted(r["Id"] for r in res["records"]) == sorted([ids[0], ids[2]])
    res = sf.query("SELECT Id, Email FROM Lead WHERE (Email = 'a1@acme.io' OR Email = 'A3@ACME.IO') ORDER BY Email DESC")
    assert [r["Email"] for r in res["records"]] == ["a3@acme.io", "a1@acme.io"]
    res = sf.query("SELECT Id, Owner.Name FROM Lead LIMIT 1")
    assert res["records"][0]["Owner"]["Name"] == "Sandbox Admin"


def test_collections_partial_failure_and_all_or_none(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    salesforce.provision_fields(create=True)
    ids = _leads(sandbox, 3)
    sf = _sdk(sandbox)
    body = {"allOrNone": False, "records": [
        {"attributes": {"type": "Lead"}, "id": ids[0], SCORE_FIELD_NAMES["score"]: 55},
        {"attributes": {"type": "Lead"}, "id": "001Sb0000000002IAA", SCORE_FIELD_NAMES["score"]: 1},
        {"attributes": {"type": "Lead"}, "id": ids[1], SCORE_FIELD_NAMES["grade"]: "TOO LONG"},
    ]}
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert [r["success"] for r in results] == [True, False, False]
    assert results[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert results[2]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert sandbox.store.sf_get("Lead", ids[0])[SCORE_FIELD_NAMES["score"]] == 55.0
    body["allOrNone"] = True
    body["records"][0][SCORE_FIELD_NAMES["score"]] = 66
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sandbox.store.sf_get("Lead", ids[0])[SCORE_FIELD_NAMES["score"]] == 55.0  # nothing committed
    too_many = {"records": [{"attributes": {"type": "Lead"}, "id": ids[0]}] * 201}
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("composite/sobjects", method="PATCH", json=too_many)
    assert info.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_write_fields_in_collections_of_200(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    salesforce.provision_fields(create=True)
    ids = _leads(sandbox, 450)
    when = datetime(2024, 6, 3, 16, 0, tzinfo=UTC)
    updates = {i: {"score": 80, "grade": "B", "reasons": ["+ demo requested"], "tier": "hot", "model_version": "v3",
                   "scored_at": when} for i in ids}
    updates[ids[5]] = {"grade": "ABC"}  # longer than the field allows: that record fails, the rest land
    result = salesforce.write_fields(updates)
    assert result.calls == 3
    assert len(result.written) == 449 and "STRING_TOO_LONG" in result.failed[ids[5]]
    rec = sandbox.store.sf_get("Lead", ids[0])
    assert rec["Leadbridge_Score__c"] == 80.0 and rec["Leadbridge_Reasons__c"] == "+ demo requested"
    assert rec["Leadbridge_Scored_At__c"] == "2024-06-03T16:00:00.000Z"
    calls = sandbox.requests.query(path=r"/composite/sobjects$")
    assert len(calls) == 3 and all(c["status"] == 200 for c in calls)


def test_shows_fields_reads_back_leads_and_contacts(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    salesforce.provision_fields(create=True)
    ids = _leads(sandbox, 3)
    contact = sandbox.store.sf_create("Contact", {"LastName": "Ng", "Email": "ng@acme.io"}, source="CRM_UI")
    values = {"score": 71, "grade": "B", "reasons": ["+ requested a demo"], "tier": "warm", "model_version": "v3",
              "scored_at": datetime(2024, 6, 3, 16, 0, tzinfo=UTC)}
    salesforce.write_fields({i: values for i in [ids[0], ids[1], contact]})
    sandbox.store.sf_update("Lead", ids[1], {"Leadbridge_Score__c": 12}, source="CRM_UI")
    shown = salesforce.shows_fields({i: {**values, "scored_at": None} for i in [*ids, contact]})
    assert shown == {ids[0], contact}  # ids[1] was changed by someone else, ids[2] never written


def test_outcomes_from_conversion_and_opportunities(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    ids = _leads(sandbox, 4)
    store = sandbox.store
    made = [store.sf_convert_lead(ids[0], won=True), store.sf_convert_lead(ids[1], won=False),
            store.sf_convert_lead(ids[2], won=None)]
    read = salesforce.read_outcomes()
    # Each conversion is won at its ConvertedDate (keyed by the Lead); each closed Opportunity is its own outcome
    # (keyed by its Contact): the rule webhook events go through too (connectors/salesforce/outcomes.py).
    day = datetime.fromisoformat(store.sf_get("Lead", ids[0])["ConvertedDate"]).replace(tzinfo=UTC)
    assert sorted((o.lead_id, o.won, o.source, o.occurred_at) for o in read) == sorted([
        *((i, True, "salesforce.lead", day) for i in ids[:3]),
        (made[0]["ContactId"], True, "salesforce.opportunity", day),
        (made[1]["ContactId"], False, "salesforce.opportunity", day)])
    events = [Event(source="t", crm="salesforce", object_type="lead", object_id=ids[i], event_type="property_change",
                    occurred_at=datetime.now(UTC), received_at=datetime.now(UTC), dedupe_key=f"k{i}",
                    properties=store.sf_get("Lead", ids[i])) for i in range(4)]
    by_event = sorted((o for e in events if (o := outcome_of_event(e))), key=lambda o: o.lead_id)
    assert by_event == sorted((o for o in read if o.source == "salesforce.lead"), key=lambda o: o.lead_id)
    future = salesforce.read_outcomes(since=datetime(2999, 1, 1, tzinfo=UTC))
    assert future == []


def test_daily_budget_from_header_and_limit_exceeded(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    crm = make_sandbox(salesforce_daily_api_max=6)
    connector = salesforce_for(crm, retry_attempts=1)
    connector.query_all("SELECT Id FROM Lead")
    assert connector.api_budget() == {"used": 1, "limit": 6, "remaining": 5}
    for _ in range(5):
        connector.query_all("SELECT Id FROM Lead")
    with pytest.raises(TransientConnectorError) as info:
        connector.query_all("SELECT Id FROM Lead")
    assert info.value.status == 403 and info.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert info.value.retry_after == 3600.0


def test_username_password_login_and_bad_login(sandbox: SandboxCRM) -> None:
    good = SalesforceConnector(username=DEFAULT_SF_USERNAME, password=DEFAULT_SF_PASSWORD,
                               security_token=DEFAULT_SF_TOKEN, session=sandbox_requests_session(sandbox.base_url))
    assert good.query_all("SELECT Id FROM Account") == []
    bad = SalesforceConnector(username=DEFAULT_SF_USERNAME, password="wrong", security_token="x",
                              session=sandbox_requests_session(sandbox.base_url))
    with pytest.raises(AuthConnectorError) as info:
        bad.query_all("SELECT Id FROM Account")
    assert "INVALID_LOGIN" in str(info.value)


def test_expired_session_is_auth_error(sandbox: SandboxCRM) -> None:
    connector = SalesforceConnector(session_id="00Dexpired!x", instance_url="https://" + sandbox_instance(sandbox.base_url),
                                    session=sandbox_requests_session(sandbox.base_url))
    with pytest.raises(AuthConnectorError) as info:
        connector.read_leads(["00QSb0000000001AAA"])
    assert info.value.status == 401 and info.value.code == "INVALID_SESSION_ID"
    assert len(sandbox.requests.query(family="salesforce")) == 1


def test_sandbox_persists_records_in_its_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = SandboxCRM(data_dir=str(tmp_path))
    first.start(port=0)
    lead = first.store.sf_create("Lead", {"LastName": "Kept", "Company": "Acme"})
    first.store.sf_add_field("Lead", "Leadbridge_Score__c", "double", "Score", precision=5, scale=2)
    first.stop()
    second = SandboxCRM(data_dir=str(tmp_path))
    second.start(port=0)
    try:
        assert salesforce_for(second).read_leads([lead])[0].lead.last_name == "Kept"
        assert second.store.sf_field("Lead", "Leadbridge_Score__c") is not None
    finally:
        second.stop()
