"""Parser test helpers: each inbound parser called the way its unit tests call it, and event builders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connectors.events import parse_events
from connectors.hubspot.webhook import parse_hubspot
from connectors.parsing.results import ParseResult
from connectors.salesforce.webhook import parse_salesforce_json, parse_salesforce_outbound
from core.records import Event

RECEIVED = datetime(2024, 6, 3, 16, 5, tzinfo=UTC)
PORTAL = 62515
ORG_18 = "00D5g000004ABCDEA2"


def json_body(payload: Any) -> bytes:
    """`payload` as a request body: bytes as they are, anything else as JSON."""
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def with_overrides(event: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`event` with each override set, or its key removed where the override is None."""
    for key, value in overrides.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def hubspot(events: Any, *, portal_id: int | None = PORTAL, received_at: datetime = RECEIVED) -> ParseResult:
    """parse_hubspot for the "hubspot-main" source of portal PORTAL."""
    return parse_hubspot(json_body(events), source="hubspot-main", received_at=received_at,
                         portal_id=portal_id)


def outbound(body: bytes | str, *, org_id: str | None = ORG_18,
             received_at: datetime = RECEIVED) -> ParseResult:
    """parse_salesforce_outbound for the "sf-main" source of org ORG_18."""
    raw = body.encode() if isinstance(body, str) else body
    return parse_salesforce_outbound(raw, source="sf-main", received_at=received_at, org_id=org_id)


def relay(payload: Any, *, org_id: str | None = ORG_18, received_at: datetime = RECEIVED) -> ParseResult:
    """parse_salesforce_json for the "sf-relay" source of org ORG_18."""
    return parse_salesforce_json(json_body(payload), source="sf-relay", received_at=received_at,
                                 org_id=org_id)


def events(payload: Any, *, received_at: datetime = RECEIVED, source: str = "website") -> ParseResult:
    """parse_events for the "website" source."""
    return parse_events(json_body(payload), source=source, received_at=received_at)


def kinds(result: ParseResult) -> list[tuple[str, str, str]]:
    """(object type, object id, event type) of each event a parser returned."""
    return [(e.object_type, e.object_id, e.event_type) for e in result.events]


def split_meta(event: Event) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event's properties without "_meta", and its "_meta"."""
    props = dict(event.properties)
    return props, props.pop("_meta")
