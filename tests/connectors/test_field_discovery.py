"""Field discovery against the sandbox CRM through the real SDKs: custom properties and __c fields created
through the vendors' APIs, records filled, then types, fill rates and suggested kinds read back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.base import PermanentConnectorError, PropertyInfo, with_sample
from connectors.hubspot.client import HubSpotConnector
from connectors.salesforce.client import SalesforceConnector
from sandbox import DEFAULT_HUBSPOT_TOKEN, SandboxCRM
from services.field_discovery import suggest_kind
from tests.connectors.conftest import admin

HS_CUSTOM = [
    {"name": "plan_tier", "label": "Plan tier", "type": "enumeration", "fieldType": "select",
     "groupName": "contactinformation", "options": [{"label": o.title(), "value": o, "hidden": False}
                                                    for o in ("starter", "pro", "enterprise")]},
    {"name": "seats", "label": "Seats", "type": "number", "fieldType": "number", "groupName": "contactinformation"},
    {"name": "trial_started", "label": "Trial started", "type": "date", "fieldType": "date",
     "groupName": "contactinformation"},
    {"name": "is_partner", "label": "Partner", "type": "bool", "fieldType": "booleancheckbox",
     "groupName": "contactinformation"},
    {"name": "pain_points", "label": "Pain points", "type": "string", "fieldType": "textarea",
     "groupName": "contactinformation"},
    {"name": "region_code", "label": "Region", "type": "string", "fieldType": "text", "groupName": "contactinformation"},
    {"name": "crm_ref", "label": "Legacy CRM ref", "type": "string", "fieldType": "text",
     "groupName": "contactinformation"},
    {"name": "never_filled", "label": "Never filled", "type": "string", "fieldType": "text",
     "groupName": "contactinformation"},
]


def _hs_contacts(hubspot: HubSpotConnector, rows: list[dict[str, str]]) -> None:
    hubspot.api.crm.contacts.batch_api.create({"inputs": [{"properties": p, "associations": []} for p in rows]})


def test_hubspot_discovery_reads_custom_properties_with_fill_rates(hubspot_sandbox: SandboxCRM) -> None:
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=hubspot_sandbox.base_url)
    for body in HS_CUSTOM:
        created = hubspot.api.crm.properties.core_api.create("contacts", body)
        assert created.hubspot_defined is False and created.created_at is not None
    # Six older contacts without seats, then four newer ones with every custom property filled.
    _hs_contacts(hubspot, [{"email": f"old{i}@acme.io", "region_code": "EMEA" if i % 2 else "AMER",
                            "crm_ref": f"X{i:04d}"} for i in range(6)])
    time.sleep(0.01)
    _hs_contacts(hubspot, [{"email": f"new{i}@acme.io", "plan_tier": ("starter", "pro")[i % 2], "seats": str(5 + i),
                            "trial_started": "2024-03-0%d" % (i + 1), "is_partner": "true" if i else "false",
                            "pain_points": "slow onboarding and too many manual exports", "region_code": "EMEA",
                            "crm_ref": f"Y{i:04d}"} for i in range(4)])
    _hs_contacts(hubspot, [{"email": f"more{i}@acme.io", "crm_ref": f"Z{i:04d}"} for i in range(2)])
    hubspot_sandbox.store.hs_create("contacts", {"email": "ui@acme.io", "crm_ref": "W0001"})

    found = {p.name: p for p in hubspot.discover_properties("contacts", sample=200)}
    assert {b["name"] for b in HS_CUSTOM} <= set(found)
    assert all(found[b["name"]].custom for b in HS_CUSTOM) and not found["email"].custom
    assert found["plan_tier"].crm_type == "enumeration" and found["plan_tier"].options == 3
    assert found["seats"].crm_type == "number" and found["seats"].sampled == 13 and found["seats"].filled == 4
    assert found["seats"].fill_rate == pytest.approx(4 / 13)
    assert found["crm_ref"].fill_rate == 1.0 and found["crm_ref"].distinct == 13
    assert found["hs_object_id"].read_only and found["hubspot_owner_id"].references == "OWNER"

    kinds = {name: suggest_kind(info) for name, info in found.items()}
    assert {n: kinds[n].kind for n in ("plan_tier", "seats", "trial_started", "is_partner", "pain_points",
                                       "region_code", "crm_ref", "never_filled")} == {
        "plan_tier": "categorical", "seats": "numeric", "trial_started": "date", "is_partner": "boolean",
        "pain_points": "text", "region_code": "categorical", "crm_ref": "skip", "never_filled": "skip"}
    assert "identifier" in kinds["crm_ref"].reason and "empty in all 13" in kinds["never_filled"].reason
    assert "3 options" in kinds["plan_tier"].reason
    for name, why in (("email", "built-in 'email'"), ("hs_object_id", "own id"), ("hubspot_owner_id", "owner"),
                      ("leadbridge_score", "leadbridge writes"), ("lifecyclestage", "outcome"),
                      ("lastmodifieddate", "system stamp")):
        assert kinds[name].kind == "skip" and why in kinds[name].reason, (name, kinds[name])

    # Only the newest records are read: the four newest (and the later two) hold seats, the older six do not.
    newest = {p.name: p for p in hubspot.discover_properties("contacts", sample=7)}
    assert newest["seats"].sampled == 7 and newest["seats"].filled == 4
    searches = hubspot_sandbox.requests.query(path=r"/crm/v3/objects/contacts/search$")
    assert searches, "the sample is read through the CRM search API"


def test_hubspot_refuses_properties_it_would_refuse(sandbox: SandboxCRM, hubspot: HubSpotConnector) -> None:
    from hubspot.crm.properties.exceptions import ApiException

    bad = [{"name": "x1", "label": "X", "type": "bool", "fieldType": "text", "groupName": "contactinformation"},
           {"name": "x2", "label": "X", "type": "number", "fieldType": "calculation_equation",
            "groupName": "contactinformation"},
           {"name": "x3", "label": "X", "type": "enumeration", "fieldType": "select",
            "groupName": "contactinformation", "options": [{"value": "a", "hidden": False}]}]
    for body in bad:
        with pytest.raises(ApiException) as info:
            hubspot.api.crm.properties.core_api.create("contacts", body)
        assert info.value.status == 400
    assert not {"x1", "x2", "x3"} & set(sandbox.store.hs_properties["contacts"])
    with pytest.raises(PermanentConnectorError) as unknown:
        hubspot.list_properties("widgets")
    assert unknown.value.status == 400


def _tooling(sf: SalesforceConnector, full_name: str, **meta: Any) -> None:
    sf.sf.restful("tooling/sobjects/CustomField", method="POST", json={"FullName": full_name, "Metadata": meta})


def test_salesforce_discovery_reads_custom_fields_with_fill_rates(sandbox: SandboxCRM,
                                                                 salesforce: SalesforceConnector) -> None:
    plan = {"restricted": True, "valueSetDefinition": {"value": [
        {"fullName": v, "label": v, "default": v == "Starter"} for v in ("Starter", "Pro", "Enterprise")]}}
    _tooling(salesforce, "Lead.Plan__c", type="Picklist", label="Plan", valueSet=plan)
    _tooling(salesforce, "Lead.Seats__c", type="Number", label="Seats", precision=6, scale=0)
    _tooling(salesforce, "Lead.Trial_Start__c", type="Date", label="Trial start")
    _tooling(salesforce, "Lead.Partner__c", type="Checkbox", label="Partner", defaultValue="false")
    _tooling(salesforce, "Lead.Notes__c", type="LongTextArea", label="Notes", length=32768, visibleLines=3)
    _tooling(salesforce, "Lead.Ext_Ref__c", type="Text", label="External ref", length=20)
    _tooling(salesforce, "Lead.Region__c", type="Text", label="Region", length=20)
    _tooling(salesforce, "Contact.Seats__c", type="Number", label="Seats", precision=6, scale=0)
    sf = salesforce.sf
    for i in range(12):
        fields: dict[str, Any] = {"LastName": f"L{i}", "Company": f"Co{i}", "Email": f"l{i}@co{i}.io",
                                  "Ext_Ref__c": f"R{i:05d}", "Region__c": ("EMEA", "AMER", "APAC")[i % 3],
                                  "LeadSource": "Web"}
        if i < 9:
            fields.update({"Plan__c": ("Starter", "Pro")[i % 2], "Seats__c": 10 + i, "Trial_Start__c": "2024-02-01",
                           "Partner__c": i % 2 == 0, "Notes__c": "asked about the API and SSO"})
        sf.Lead.create(fields)
        time.sleep(0.002)  # CreatedDate has millisecond resolution: keep the order unambiguous
    with pytest.raises(SalesforceMalformedRequest) as refused:  # a restricted picklist keeps to its values
        sf.Lead.create({"LastName": "X", "Company": "Y", "Plan__c": "Gold"})
    assert refused.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"

    found = {p.name: p for p in salesforce.discover_properties("Lead", sample=200)}
    assert found["Plan__c"].custom and found["Plan__c"].crm_type == "picklist" and found["Plan__c"].options == 3
    assert found["Seats__c"].crm_type == "double" and found["Seats__c"].fill_rate == pytest.approx(0.75)
    assert found["Partner__c"].fill_rate == 1.0  # a checkbox is never empty in Salesforce
    assert not found["Email"].custom and found["OwnerId"].references == "Group,User"
    assert found["Industry"].options > 10 and found["LeadSource"].options == 5

    kinds = {name: suggest_kind(info) for name, info in found.items()}
    assert {n: kinds[n].kind for n in ("Plan__c", "Seats__c", "Trial_Start__c", "Partner__c", "Notes__c",
                                       "Ext_Ref__c", "Region__c", "LeadSource")} == {
        "Plan__c": "categorical", "Seats__c": "numeric", "Trial_Start__c": "date", "Partner__c": "boolean",
        "Notes__c": "text", "Ext_Ref__c": "skip", "Region__c": "categorical", "LeadSource": "categorical"}
    for name, why in (("Id", "own id"), ("OwnerId", "owner"), ("IsConverted", "outcome"),
                      ("ConvertedAccountId", "lookup"), ("Email", "built-in"), ("CreatedDate", "system stamp")):
        assert kinds[name].kind == "skip" and why in kinds[name].reason, (name, kinds[name])

    contact = {p.name: p for p in salesforce.discover_properties("Contact", sample=50)}
    assert contact["Seats__c"].custom and contact["Seats__c"].sampled == 0  # no Contact yet
    assert suggest_kind(contact["Seats__c"]).kind == "numeric"
    newest = {p.name: p for p in salesforce.discover_properties("Lead", sample=3)}
    assert newest["Seats__c"].sampled == 3 and newest["Seats__c"].filled == 0  # the three newest have no seats
    with pytest.raises(PermanentConnectorError) as unknown:
        salesforce.list_properties("Widget__c")
    assert unknown.value.status == 404


def test_tooling_refuses_a_picklist_without_values(sandbox: SandboxCRM, salesforce: SalesforceConnector) -> None:
    with pytest.raises(SalesforceMalformedRequest):
        _tooling(salesforce, "Lead.Empty__c", type="Picklist", label="Empty")
    assert sandbox.store.sf_field("Lead", "Empty__c") is None


def _info(**kw: Any) -> PropertyInfo:
    base: dict[str, Any] = {"crm": "hubspot", "object_type": "contacts", "name": "x", "label": "X",
                            "crm_type": "string", "field_type": "text"}
    return PropertyInfo(**{**base, **kw})


def test_rules_on_samples() -> None:
    calculated = _info(name="total_revenue", crm_type="number", calculated=True)
    assert suggest_kind(calculated).kind == "skip" and "calculated" in suggest_kind(calculated).reason
    numbers = with_sample(_info(), ["12", "7", None, " 3.5 ", ""])
    assert (numbers.sampled, numbers.filled, numbers.numeric) == (5, 3, 3) and suggest_kind(numbers).kind == "numeric"
    sentences = with_sample(_info(), [f"we need help with report {i}" for i in range(20)])
    assert suggest_kind(sentences).kind == "text"
    few = with_sample(_info(), ["a", "b", "c"])  # too few values to call it an identifier
    assert suggest_kind(few).kind == "text"
    sparse = with_sample(_info(crm_type="number"), ["1"] + [None] * 99)
    assert suggest_kind(sparse).kind == "numeric" and "only 1.0%" in suggest_kind(sparse).reason
    flags = with_sample(_info(crm="salesforce", crm_type="boolean"), [True, False, False])
    assert flags.numeric == 0 and suggest_kind(flags).kind == "boolean"
    unique = _info(name="external_id", unique=True)
    assert "identifier" in suggest_kind(unique).reason
    sf_phone = _info(crm="salesforce", object_type="Lead", name="Mobile__c", crm_type="phone")
    assert "contact detail" in suggest_kind(sf_phone).reason
    multi = _info(crm="salesforce", object_type="Lead", name="Topics__c", crm_type="multipicklist", options=4)
    assert suggest_kind(multi).kind == "categorical" and "multi-select" in suggest_kind(multi).reason


def test_sandbox_sends_only_subscribed_property_changes(sandbox: SandboxCRM, receiver: Any) -> None:
    created = admin(sandbox, "POST", "/webhooks", json={"kind": "hubspot", "url": receiver.url,
                                                         "client_secret": "s3cret", "flush_seconds": 0.05}).json()
    config = {"subscriptions": {"legacyCrmObjects": [
        {"subscriptionType": "contact.propertyChange", "propertyName": "jobtitle", "active": True},
        {"subscriptionType": "contact.propertyChange", "propertyName": "country", "active": False},
        {"subscriptionType": "contact.creation", "active": True}]}}
    answer = admin(sandbox, "PUT", f"/webhooks/{created['id']}/subscriptions", json=config)
    assert answer.status_code == 200 and answer.json()["subscriptions"] == {"contacts": ["jobtitle"]}
    contact = sandbox.store.hs_create("contacts", {"email": "a@b.io"})["id"]
    deal = sandbox.store.hs_create("deals", {"dealname": "D"})["id"]
    sandbox.store.hs_update("contacts", contact, {"jobtitle": "CTO", "country": "FR", "firstname": "Ana"})
    sandbox.store.hs_update("deals", deal, {"dealstage": "closedwon"})  # deals keep every property
    admin(sandbox, "POST", "/webhooks/flush", params={"timeout": 10})
    events = [e for r in receiver.received for e in json.loads(r.body)]
    changes = sorted((e["subscriptionType"], e["propertyName"]) for e in events
                     if e["subscriptionType"].endswith("propertyChange"))
    assert ("contact.propertyChange", "jobtitle") in changes and ("deal.propertyChange", "dealstage") in changes
    assert not [c for c in changes if c[0] == "contact.propertyChange" and c[1] != "jobtitle"]
    for bad in ({"legacyCrmObjects": [{"subscriptionType": "contact.propertyChange"}]},
                {"legacyCrmObjects": [{"subscriptionType": "widget.propertyChange", "propertyName": "x"}]},
                {"somethingElse": []}):
        assert admin(sandbox, "PUT", f"/webhooks/{created['id']}/subscriptions", json=bad).status_code == 400
    assert admin(sandbox, "PUT", "/webhooks/nope/subscriptions", json=config).status_code == 404
