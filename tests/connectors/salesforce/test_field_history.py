"""Field History Tracking in the sandbox Salesforce: LeadHistory/ContactHistory rows for tracked fields only,
the tracked set in the History object's describe, SOQL through the real simple-salesforce SDK."""

from __future__ import annotations

import time

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from connectors.salesforce.client import SalesforceConnector
from sandbox import DEFAULT_SF_SESSION, SandboxCRM, sandbox_instance, sandbox_requests_session


def _sdk(crm: SandboxCRM) -> Salesforce:
    return Salesforce(session_id=DEFAULT_SF_SESSION, instance_url="https://" + sandbox_instance(crm.base_url),
                      session=sandbox_requests_session(crm.base_url))


def _track(crm: SandboxCRM, sobject: str, fields: object) -> requests.Response:
    return requests.put(f"{crm.base_url}/_sandbox/salesforce/{sobject}/history-tracking", json={"fields": fields},
                        timeout=5)


def test_history_rows_for_tracked_fields_only(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    sandbox.store.sf_add_field("Lead", "Budget__c", "double", "Budget", precision=18, scale=2)
    sf = _sdk(sandbox)
    before = sandbox.store.sf_create("Lead", {"LastName": "Early", "Company": "Acme", "Budget__c": 1})
    assert sf.query("SELECT Id FROM LeadHistory")["records"] == []  # tracking off: no rows, not even `created`

    answer = _track(sandbox, "Lead", ["budget__c", "Status"])
    assert answer.status_code == 200 and answer.json()["tracked"] == ["Budget__c", "Status"]
    # Describe shows the tracked fields as the History object's Field picklist (with `created`).
    field = next(f for f in sf.LeadHistory.describe()["fields"] if f["name"] == "Field")
    assert [v["value"] for v in field["picklistValues"]] == ["created", "Budget__c", "Status"]
    assert salesforce.tracked_fields("Lead", ["BUDGET__C", "Title", "Status"]) == {"BUDGET__C": "Budget__c",
                                                                                "Status": "Status"}
    assert salesforce.tracked_fields("Contact", ["Title"]) == {}  # ContactHistory exists but tracks nothing

    at = time.time() - 3600
    lead = sandbox.store.sf_create("Lead", {"LastName": "Ng", "Company": "Acme", "Budget__c": 100}, created_at=at)
    sandbox.store.sf_update("Lead", lead, {"Title": "CTO"}, at=at + 60)  # untracked: no row
    sandbox.store.sf_update("Lead", lead, {"Budget__c": 500, "Title": "CEO"}, at=at + 120)
    sandbox.store.sf_update("Lead", lead, {"Budget__c": 500}, at=at + 180)  # same value: no change, no row
    sf.Lead.update(lead, {"Budget__c": None})  # through the REST API, now
    sf.Lead.update(before, {"Budget__c": 2})

    rows = sf.query(f"SELECT LeadId, Field, OldValue, NewValue, DataType, CreatedDate FROM LeadHistory "
                    f"WHERE LeadId IN ('{lead[:15]}') ORDER BY CreatedDate")["records"]
    assert [(r["LeadId"], r["Field"], r["OldValue"], r["NewValue"]) for r in rows] == [
        (lead, "created", None, None), (lead, "Budget__c", 100.0, 500.0), (lead, "Budget__c", 500.0, None)]
    assert rows[1]["DataType"] == "Double"
    created = sandbox.store.sf_get("Lead", lead)["CreatedDate"]  # type: ignore[index]
    assert rows[0]["CreatedDate"] == created and rows[1]["CreatedDate"] > created
    # The connector reads the same rows, batched by id, only for the fields asked.
    history = salesforce.field_history("Lead", [lead, before], ["Budget__c"])
    assert [(f, old, new) for f, _when, old, new in history[lead[:15]]] == [("Budget__c", 100.0, 500.0),
                                                                          ("Budget__c", 500.0, None)]
    assert [(old, new) for _f, _w, old, new in history[before[:15]]] == [(1.0, 2.0)]


def test_history_objects_are_read_only_and_tracking_is_checked(sandbox: SandboxCRM) -> None:
    sf = _sdk(sandbox)
    with pytest.raises(SalesforceError) as refused:
        sf.LeadHistory.create({"Field": "created"})
    assert refused.value.content[0]["errorCode"] == "INVALID_TYPE"
    assert sf.LeadHistory.describe()["createable"] is False
    too_many = [f"F{i}__c" for i in range(21)]
    for i in range(21):
        sandbox.store.sf_add_field("Contact", too_many[i], "string", f"F{i}", length=40)
    for fields, words in ((too_many, "at most 20"), (["Name"], "cannot be tracked"), (["Nope__c"], "No such field"),
                          ("Title", "list of field names")):
        answer = _track(sandbox, "Contact", fields)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.json()
    assert _track(sandbox, "Account", ["Name"]).status_code == 400
    assert requests.get(f"{sandbox.base_url}/_sandbox/salesforce/Account/history-tracking", timeout=5).status_code == 404
    assert _track(sandbox, "Contact", too_many[:20]).json()["tracked"] == too_many[:20]
