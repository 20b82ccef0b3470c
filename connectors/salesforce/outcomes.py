"""Salesforce's won/lost rules: a converted Lead, a closed Opportunity with a Contact, a relayed outcome event.

Under the outcome definition in force (core/outcome_rules.py), conversion and won Opportunities can be switched
off and a Lead Status value can count as won (`outcome_of_event(event, rule)`, `keeps` for what a CRM read found).

One rule for a record's fields (`outcome_of_record`) serves both paths, so a webhook and a CRM read of the
same record report the same outcome, with the same source and time, and it is stored once:
- a converted Lead is won (the positive label, scoring/labels.py), at its ConvertedDate (else the time of the
  change), keyed by the Lead's id. After conversion the Lead and its Contact are one leadbridge lead
  (fields.linked_people), so a later closed Opportunity of the Contact lands on the same lead; a closed-lost
  one adds a loss, which does not undo the conversion's win;
- a closed Opportunity with a ContactId is won or lost (IsWon), at its CloseDate, keyed by the Contact's id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.outcome_rules import DEFAULT_RULES
from core.records import Event, Outcome

TRUE_WORDS = {"true", "1", "yes"}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in TRUE_WORDS) or value == 1


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    return default


def outcome_of_record(object_type: str, record_id: str, fields: Mapping[str, Any], changed_at: datetime
                      ) -> Outcome | None:
    """The outcome a Lead's or Opportunity's fields report (lead_id: the Lead's or Contact's id), else None.

    `changed_at` stands in for a missing date: the event's time, or the record's LastModifiedDate on a read.
    """
    if object_type == "lead" and _truthy(fields.get("IsConverted")):
        return Outcome(record_id, True, _time(fields.get("ConvertedDate"), changed_at), "salesforce.lead",
                       "converted")
    if object_type == "opportunity" and _truthy(fields.get("IsClosed")) and fields.get("ContactId"):
        return Outcome(str(fields["ContactId"]), _truthy(fields.get("IsWon")),
                       _time(fields.get("CloseDate"), changed_at), "salesforce.opportunity",
                       f"{record_id} {fields.get('StageName') or ''}".strip())
    return None


def outcome_of_event(event: Event, rule: Mapping[str, Any] | None = None) -> Outcome | None:
    """The outcome an event reports under `rule` (lead_id: the Lead's or Contact's id), else None."""
    rule = rule if rule is not None else DEFAULT_RULES["salesforce"]
    props = event.properties
    if event.event_type == "outcome":
        won = props.get("won", props.get("IsWon", props.get("IsConverted")))
        if won is None:
            return None
        return Outcome(event.object_id, _truthy(won), _time(props.get("occurredAt"), event.occurred_at),
                       "salesforce.outcome", f"{event.object_type} {event.object_id} outcome")
    found = outcome_of_record(event.object_type, event.object_id, props, event.occurred_at)
    if found is not None and keeps(found, rule):
        return found
    status = props.get("Status")
    if event.object_type == "lead" and status is not None and str(status) in (rule.get("lead_status") or ()):
        return Outcome(event.object_id, True, event.occurred_at, "salesforce.leadstatus", f"lead status {status}")
    return None


def keeps(outcome: Outcome, rule: Mapping[str, Any]) -> bool:
    """Whether an outcome found by the default rules (a CRM read, a record's fields) counts under `rule`."""
    if outcome.source == "salesforce.lead":
        return bool(rule.get("lead_converted"))
    if outcome.source == "salesforce.opportunity":
        return bool(rule.get("opportunity_won"))
    if outcome.source == "salesforce.leadstatus":
        return outcome.detail.removeprefix("lead status ") in (rule.get("lead_status") or ())
    return True


def outcomes_of_events(events: Sequence[Event], associations: Callable[[str, Sequence[str]], list[Event]],
                       rule: Mapping[str, Any] | None = None) -> tuple[list[Outcome], list[str]]:
    """Outcomes by Lead/Contact id among `events` (each names its person: no associations needed, none unresolved)."""
    return [o for e in events if (o := outcome_of_event(e, rule)) is not None], []
