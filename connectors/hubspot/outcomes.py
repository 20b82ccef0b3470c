"""HubSpot's won/lost rules under the outcome definition in force (core/outcome_rules.py): by default a contact
whose lifecycle stage became customer, or a deal closed won (a deal closed lost is a loss); or the lifecycle stage
reaching another stage, or a lead status value."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.outcome_rules import DEFAULT_RULES, stage_reached
from core.records import Event, Outcome

# Default pipeline stage ids; custom pipelines' stage ids are resolved by the periodic CRM read.
DEAL_STAGES = {"closedwon": True, "closedlost": False}


def outcome_of_event(event: Event, rule: Mapping[str, Any] | None = None) -> Outcome | None:
    """The outcome an event reports under `rule` (lead_id: the contact's id, or the deal's for a deal), else None."""
    rule = rule if rule is not None else DEFAULT_RULES["hubspot"]
    props = event.properties
    if event.object_type == "contact":
        stage = props.get("lifecyclestage")
        if rule.get("lifecycle_stage") and stage_reached(stage, rule["lifecycle_stage"]):
            return Outcome(event.object_id, True, event.occurred_at, "hubspot.lifecyclestage",
                           f"lifecycle stage {str(stage).lower()}")
        status = props.get("hs_lead_status")
        if status is not None and str(status) in (rule.get("lead_status") or ()):
            return Outcome(event.object_id, True, event.occurred_at, "hubspot.leadstatus", f"lead status {status}")
    if event.object_type == "deal" and event.event_type == "property_change" and rule.get("deal_won"):
        stage = str(props.get("dealstage") or "").lower()
        if stage in DEAL_STAGES:
            return Outcome(event.object_id, DEAL_STAGES[stage], event.occurred_at, "hubspot.deal",
                           f"deal {event.object_id} {stage}")
    return None


def keeps(outcome: Outcome, rule: Mapping[str, Any]) -> bool:
    """Whether a recorded outcome (from an event, or a CRM read by the default rules) still counts under `rule`."""
    if outcome.source == "hubspot.deal":
        return bool(rule.get("deal_won"))
    if outcome.source == "hubspot.lifecyclestage":  # detail "lifecycle stage <stage>" (a CRM read: customer)
        stage = outcome.detail.removeprefix("lifecycle stage ").strip() or "customer"
        return bool(rule.get("lifecycle_stage")) and stage_reached(stage, rule["lifecycle_stage"])
    if outcome.source == "hubspot.leadstatus":
        return outcome.detail.removeprefix("lead status ") in (rule.get("lead_status") or ())
    return True


def deal_contacts(associations: Sequence[Event]) -> dict[str, set[str]]:
    """Deal id -> contact ids, from deal association events in time order (a removal drops the contact)."""
    out: dict[str, set[str]] = {}
    for event in associations:
        props = event.properties
        kind = str(props.get("associationType") or "").upper()
        if "CONTACT" not in kind and props.get("toObjectTypeId") != "0-1":
            continue
        contact = props.get("toObjectId")
        if contact is None:
            continue
        contacts = out.setdefault(event.object_id, set())
        if props.get("associationRemoved") is True:
            contacts.discard(str(contact))
        else:
            contacts.add(str(contact))
    return out


def outcomes_of_events(events: Sequence[Event], associations: Callable[[str, Sequence[str]], list[Event]],
                       rule: Mapping[str, Any] | None = None) -> tuple[list[Outcome], list[str]]:
    """Outcomes by contact id among `events`, and the deals whose contacts are not known yet.

    A deal's contacts come from the association events already stored (`associations(object_type, ids)`);
    deals whose contacts are unknown are picked up by the periodic CRM read.
    """
    found = [(e, o) for e in events if (o := outcome_of_event(e, rule)) is not None]
    deal_ids = sorted({o.lead_id for e, o in found if e.object_type == "deal"})
    deals = deal_contacts(associations("deal", deal_ids)) if deal_ids else {}
    people: list[Outcome] = []
    unresolved: list[str] = []
    for event, outcome in found:
        if event.object_type != "deal":
            people.append(outcome)
        elif contacts := deals.get(outcome.lead_id):
            people.extend(Outcome(c, outcome.won, outcome.occurred_at, outcome.source, outcome.detail)
                          for c in sorted(contacts))
        else:
            unresolved.append(outcome.lead_id)
    return people, unresolved
