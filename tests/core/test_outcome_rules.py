"""Outcome definitions: parsing names the problem; each CRM's rules count what the definition says, no more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.hubspot import outcomes as hubspot
from connectors.salesforce import outcomes as salesforce
from core.outcome_rules import DEFAULT_RULES, OutcomeRuleError, describe, parse_rule, stage_reached
from core.records import Event, Outcome

AT = datetime(2026, 11, 1, tzinfo=UTC)


def event(crm: str, object_type: str, props: dict[str, Any], event_type: str = "property_change") -> Event:
    return Event(source="t", crm=crm, object_type=object_type, object_id="1", event_type=event_type,  # type: ignore[arg-type]
                 occurred_at=AT, received_at=AT, properties=props, dedupe_key="k")


@pytest.mark.parametrize(("crm", "data", "message"), [
    ("pipedrive", {}, "unknown CRM 'pipedrive'"),
    ("hubspot", {"lifecycle_stage": "hot"}, "'hot' is not a HubSpot lifecycle stage"),
    ("hubspot", {"opportunity_won": True}, "unknown hubspot criteria: opportunity_won"),
    ("hubspot", {"deal_won": False, "lead_status": []}, "choose at least one hubspot criterion"),
    ("salesforce", {"lead_status": ["", "x"]}, "lead_status must be a list of status values"),
    ("salesforce", {"lead_converted": "sometimes"}, "lead_converted must be true or false"),
    ("salesforce", [], "an object of criteria"),
])
def test_bad_definitions_are_refused_naming_the_problem(crm: str, data: Any, message: str) -> None:
    with pytest.raises(OutcomeRuleError, match=message):
        parse_rule(crm, data)


def test_a_definition_is_completed_and_normalised() -> None:
    assert parse_rule("hubspot", {"lifecycle_stage": " SalesQualifiedLead ", "lead_status": "B, A,B"}) == {
        "lifecycle_stage": "salesqualifiedlead", "lead_status": ["A", "B"], "deal_won": False}
    assert parse_rule("salesforce", {"opportunity_won": "yes"}) == {
        "lead_converted": False, "lead_status": [], "opportunity_won": True}
    assert describe("hubspot", DEFAULT_RULES["hubspot"]) == "lifecycle stage customer or later or a closed-won deal"


def test_stages_are_reached_in_order() -> None:
    assert stage_reached("customer", "salesqualifiedlead") and stage_reached("opportunity", "opportunity")
    assert not stage_reached("marketingqualifiedlead", "salesqualifiedlead") and not stage_reached("custom1", "lead")


def test_hubspot_counts_what_the_definition_says() -> None:
    sql = event("hubspot", "contact", {"lifecyclestage": "salesqualifiedlead"})
    deal = event("hubspot", "deal", {"dealstage": "closedwon"})
    assert hubspot.outcome_of_event(sql) is None  # the default: customer only
    rule = parse_rule("hubspot", {"lifecycle_stage": "salesqualifiedlead"})
    assert hubspot.outcome_of_event(sql, rule) == Outcome("1", True, AT, "hubspot.lifecyclestage",
                                                          "lifecycle stage salesqualifiedlead")
    assert hubspot.outcome_of_event(deal) is not None and hubspot.outcome_of_event(deal, rule) is None
    status = parse_rule("hubspot", {"lead_status": ["CONNECTED"]})
    assert hubspot.outcome_of_event(event("hubspot", "contact", {"hs_lead_status": "CONNECTED"}), status).source \
        == "hubspot.leadstatus"
    # What a CRM read found by the default rules, kept or not.
    customer = Outcome("1", True, AT, "hubspot.lifecyclestage", "lifecycle stage customer")
    assert hubspot.keeps(customer, rule) and not hubspot.keeps(customer, status)
    assert not hubspot.keeps(Outcome("1", True, AT, "hubspot.deal", "deal 9 closedwon"), rule)


def test_salesforce_counts_what_the_definition_says() -> None:
    converted = event("salesforce", "lead", {"IsConverted": "true", "Status": "Closed - Converted"})
    qualified = event("salesforce", "lead", {"Status": "Qualified"})
    rule = parse_rule("salesforce", {"lead_status": ["Qualified"], "opportunity_won": True})
    assert salesforce.outcome_of_event(converted).source == "salesforce.lead"
    assert salesforce.outcome_of_event(converted, rule) is None
    assert salesforce.outcome_of_event(qualified) is None
    assert salesforce.outcome_of_event(qualified, rule) == Outcome("1", True, AT, "salesforce.leadstatus",
                                                                   "lead status Qualified")
    relayed = event("salesforce", "lead", {"won": True}, event_type="outcome")
    assert salesforce.outcome_of_event(relayed, rule).source == "salesforce.outcome"  # relayed outcomes always count
