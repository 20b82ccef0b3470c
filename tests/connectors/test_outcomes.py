"""Each CRM's won/lost rules (connectors/<crm>/outcomes.py), through the generic dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.registry import outcomes_of_events
from core.records import Event

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def event(crm: str, object_type: str, object_id: str, event_type: str = "property_change", **props: Any) -> Event:
    return Event(source="test", crm=crm, object_type=object_type, object_id=object_id,  # type: ignore[arg-type]
                 event_type=event_type, occurred_at=T0, received_at=T0, properties=props,  # type: ignore[arg-type]
                 dedupe_key=f"{crm}:{object_id}:{sorted(props)}")


def test_a_hubspot_deal_resolves_to_its_current_contacts() -> None:
    links = [event("hubspot", "deal", "9", "association_change", toObjectId=5, associationType="DEAL_TO_CONTACT"),
             event("hubspot", "deal", "9", "association_change", toObjectId=6, toObjectTypeId="0-1"),
             event("hubspot", "deal", "9", "association_change", toObjectId=6, toObjectTypeId="0-1",
                   associationRemoved=True),
             event("hubspot", "deal", "9", "association_change", toObjectId=7, associationType="DEAL_TO_COMPANY")]
    asked: list[tuple[str, str, Sequence[str]]] = []

    def associations(crm: str, object_type: str, ids: Sequence[str]) -> list[Event]:
        asked.append((crm, object_type, list(ids)))
        return links

    found, unresolved = outcomes_of_events(
        [event("hubspot", "deal", "9", dealstage="closedlost"), event("hubspot", "deal", "8", dealstage="closedwon"),
         event("hubspot", "contact", "1", lifecyclestage="Customer"), event("hubspot", "deal", "7", dealstage="x")],
        associations)
    assert asked == [("hubspot", "deal", ["8", "9"])]
    assert [(o.lead_id, o.won, o.source) for o in found["hubspot"]] == [
        ("5", False, "hubspot.deal"), ("1", True, "hubspot.lifecyclestage")]
    assert unresolved == ["8"]


def test_salesforce_conversions_opportunities_and_relayed_outcomes() -> None:
    found, unresolved = outcomes_of_events([
        event("salesforce", "lead", "00Q1", IsConverted="true", ConvertedDate="2024-03-02"),
        event("salesforce", "opportunity", "0061", IsClosed=True, IsWon="false", ContactId="0031", StageName="Lost"),
        event("salesforce", "opportunity", "0062", IsClosed=True, IsWon=True),  # no contact: nobody to label
        event("salesforce", "contact", "0032", "outcome", won=1),
    ], lambda *_: [])
    assert [(o.lead_id, o.won, o.source, o.detail) for o in found["salesforce"]] == [
        ("00Q1", True, "salesforce.lead", "converted"), ("0031", False, "salesforce.opportunity", "0061 Lost"),
        ("0032", True, "salesforce.outcome", "contact 0032 outcome")]
    assert found["salesforce"][0].occurred_at == datetime(2024, 3, 2, tzinfo=UTC)
    assert unresolved == []


def test_other_sources_report_no_outcomes() -> None:
    assert outcomes_of_events([event("web", "person", "u1", "track", won=True)], lambda *_: []) == ({}, [])
