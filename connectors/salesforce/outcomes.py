"""Salesforce's won/lost rules: a converted Lead, a closed Opportunity with a Contact, a relayed outcome event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

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


def outcome_of_event(event: Event) -> Outcome | None:
    """The outcome an event reports (lead_id: the Lead's or Contact's id), else None."""
    props = event.properties
    if event.event_type == "outcome":
        won = props.get("won", props.get("IsWon", props.get("IsConverted")))
        if won is None:
            return None
        return Outcome(event.object_id, _truthy(won), _time(props.get("occurredAt"), event.occurred_at),
                       "salesforce.outcome", f"{event.object_type} {event.object_id} outcome")
    if event.object_type == "lead" and _truthy(props.get("IsConverted")):
        return Outcome(event.object_id, True, _time(props.get("ConvertedDate"), event.occurred_at),
                       "salesforce.lead", "converted")
    if event.object_type == "opportunity" and _truthy(props.get("IsClosed")) and props.get("ContactId"):
        return Outcome(str(props["ContactId"]), _truthy(props.get("IsWon")),
                       _time(props.get("CloseDate"), event.occurred_at), "salesforce.opportunity",
                       f"{event.object_id} {props.get('StageName') or ''}".strip())
    return None


def outcomes_of_events(events: Sequence[Event], associations: Callable[[str, Sequence[str]], list[Event]]
                       ) -> tuple[list[Outcome], list[str]]:
    """Outcomes by Lead/Contact id among `events` (each names its person: no associations needed, none unresolved)."""
    return [o for e in events if (o := outcome_of_event(e)) is not None], []
