"""The score movement fields: `crm setup` provisions them on both sandboxes with the vendors' types, a trend field
can be mapped to another name, and our own writes of them coming back are echoes, never a re-score."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from cli.crm_commands import crm
from connectors.base import MOVEMENT_FIELDS, shown_values, with_group
from connectors.hubspot.client import HubSpotConnector
from connectors.hubspot.fields import SCORE_FIELD_NAMES as HS
from connectors.registry import is_own_echo
from connectors.salesforce.fields import SCORE_FIELD_NAMES as SF
from core.records import Event, Movement
from sandbox import DEFAULT_HUBSPOT_TOKEN, DEFAULT_SF_SESSION, SandboxCRM
from tests.connectors.conftest import salesforce_for

CHANGED = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
MOVED = Movement(previous=40, trend="improving", changed_at=CHANGED, reason="+12: requested a demo")


def test_crm_setup_provisions_the_movement_properties_on_hubspot_contacts(sandbox: SandboxCRM) -> None:
    result = CliRunner().invoke(crm, ["setup", "hubspot", "--access-token", DEFAULT_HUBSPOT_TOKEN,
                                      "--base-url", sandbox.base_url])
    assert result.exit_code == 0, result.output
    api = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url).api.crm.properties.core_api
    types = {key: (p.type, p.field_type) for key in MOVEMENT_FIELDS
             if (p := api.get_by_name("contacts", HS[key]))}
    assert types == {"previous_score": ("number", "number"), "score_change": ("number", "number"),
                     "score_trend": ("enumeration", "select"), "score_changed_at": ("datetime", "date"),
                     "score_change_reason": ("string", "text")}
    trend = api.get_by_name("contacts", HS["score_trend"])
    assert [(o.value, o.label) for o in trend.options] == [
        ("improving", "Improving"), ("steady", "Steady"), ("declining", "Declining")]
    assert all(f"contacts.{HS[key]}" in result.output for key in MOVEMENT_FIELDS)
    assert not any(f"companies.{HS[key]}" in result.output for key in MOVEMENT_FIELDS)  # accounts keep no history


def test_crm_setup_provisions_the_movement_fields_on_salesforce_leads_and_contacts(sandbox: SandboxCRM) -> None:
    result = CliRunner().invoke(crm, ["setup", "salesforce", "--session-id", DEFAULT_SF_SESSION,
                                      "--sandbox-url", sandbox.base_url, "--create"])
    assert result.exit_code == 0, result.output
    sf = salesforce_for(sandbox).sf
    for sobject in ("Lead", "Contact"):
        described = {f["name"]: f for f in getattr(sf, sobject).describe()["fields"]}
        assert {key: described[SF[key]]["type"] for key in MOVEMENT_FIELDS} == {
            "previous_score": "double", "score_change": "double", "score_trend": "picklist",
            "score_changed_at": "datetime", "score_change_reason": "string"}
        trend = described[SF["score_trend"]]
        assert [v["value"] for v in trend["picklistValues"]] == ["improving", "steady", "declining"]
        assert trend["restrictedPicklist"] and described[SF["score_change_reason"]]["length"] == 255
    account = {f["name"] for f in sf.Account.describe()["fields"]}
    assert SF["score"] in account and not any(SF[key] in account for key in MOVEMENT_FIELDS)


def test_movement_is_written_and_read_back_through_both_sdks(sandbox: SandboxCRM) -> None:
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)
    hubspot.provision_fields()
    salesforce = salesforce_for(sandbox)
    salesforce.provision_fields(create=True)
    contact = sandbox.store.hs_create("contacts", {"email": "ma@initech.com"})["id"]
    lead = sandbox.store.sf_create("Lead", {"LastName": "Ma", "Company": "Initech"}, source="CRM_UI")
    values = shown_values(52, "A", ["+ requested a demo"], "rules:v1", datetime.now(UTC), movement=MOVED)
    assert hubspot.write_fields({contact: values}).written == (contact,)
    assert salesforce.write_fields({lead: values}).written == (lead,)
    shown = hubspot.api.crm.contacts.basic_api.get_by_id(contact, properties=[HS[k] for k in MOVEMENT_FIELDS])
    assert {k: shown.properties[HS[k]] for k in MOVEMENT_FIELDS if k != "score_changed_at"} == {
        "previous_score": "40", "score_change": "12", "score_trend": "improving",
        "score_change_reason": "+12: requested a demo"}
    record = salesforce.sf.Lead.get(lead)
    assert (record[SF["previous_score"]], record[SF["score_change"]], record[SF["score_trend"]]) == (40, 12, "improving")
    assert record[SF["score_changed_at"]].startswith("2026-12-05T09:30:00")
    # Both read-backs (a write whose answer was lost) recognise what landed.
    assert hubspot.shows_fields({contact: values}) == {contact}
    assert salesforce.shows_fields({lead: values}) == {lead}


def test_an_unknown_trend_is_refused_by_the_salesforce_picklist(sandbox: SandboxCRM) -> None:
    salesforce = salesforce_for(sandbox)
    salesforce.provision_fields(create=True)
    lead = sandbox.store.sf_create("Lead", {"LastName": "Ma", "Company": "Initech"}, source="CRM_UI")
    bad = shown_values(52, "A", [], "rules:v1", None, movement=Movement(40, "sideways", CHANGED, "+12"))
    result = salesforce.write_fields({lead: bad})
    assert result.written == () and "sideways" in result.failed[lead]


def test_a_trend_mapped_to_another_property_is_written_there(sandbox: SandboxCRM) -> None:
    hubspot = HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=sandbox.base_url)
    hubspot.provision_fields()
    hubspot.api.crm.properties.core_api.create("contacts", {
        "name": "lead_heat", "label": "Lead heat", "type": "enumeration", "fieldType": "select", "groupName": "leadbridge",
        "options": [{"label": v, "value": v} for v in ("improving", "steady", "declining")]})
    contact = sandbox.store.hs_create("contacts", {"email": "mb@initech.com"})["id"]
    hubspot.field_names = {"score_trend": "lead_heat", "score_change_reason": ""}
    hubspot.write_fields({contact: shown_values(52, "A", [], "rules:v1", None, movement=MOVED)})
    props = sandbox.store.hs_get("contacts", contact)["properties"]
    assert props["lead_heat"] == "improving" and not props.get(HS["score_trend"])
    assert not props.get(HS["score_change_reason"]) and props[HS["previous_score"]] == "40"


@pytest.mark.parametrize(("crm_name", "names"), [("hubspot", HS), ("salesforce", SF)])
def test_our_movement_writes_coming_back_are_echoes(crm_name: str, names: dict[str, str]) -> None:
    for key in MOVEMENT_FIELDS:
        event = Event(source="crm", crm=crm_name, event_type="property_change", received_at=CHANGED, object_type="contact", object_id="51",
                      occurred_at=CHANGED, properties={names[key]: "x"})
        assert is_own_echo(event), key
    human = Event(source="crm", crm=crm_name, event_type="property_change", received_at=CHANGED, object_type="contact", object_id="51",
                  occurred_at=CHANGED, properties={names["score_trend"]: "steady", "jobtitle": "CEO"})
    assert not is_own_echo(human)


def test_a_held_back_control_lead_shows_no_movement() -> None:
    shown = shown_values(52, "A", ["+ requested a demo"], "rules:v1", CHANGED, movement=MOVED)
    assert with_group(shown, "control", hidden=True) == {"group": "control"}
    assert with_group(shown, "pilot", hidden=False)["score_trend"] == "improving"
